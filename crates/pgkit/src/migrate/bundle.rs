//! One SQL file for `psql -f` and `gcloud sql import sql`.
//!
//! Cloud SQL's import runs plain SQL, without psql's `\if`, so each migration
//! is guarded in SQL itself: a `DO` block that returns when the file's
//! version is already in the tracking table (and refuses, as `up` does, when
//! it was applied with another checksum), refuses when the file before it is
//! not recorded (an earlier block failed and psql carried on), else
//! `EXECUTE`s the file's statements and inserts its tracking row. A `DO`
//! block is one transaction, so a file and its record land together. The
//! whole bundle holds the same advisory lock as `up`. Running it twice, or
//! after `up`, changes nothing.
//!
//! The file's own `BEGIN`/`COMMIT` are left out (a `DO` block cannot commit
//! from inside `EXECUTE`). A `-- pgkit:no-transaction` file cannot run inside
//! a `DO` block at all (`CREATE INDEX CONCURRENTLY`): its statements are
//! written unguarded, followed by a guarded record, so they run on every run
//! of the bundle and must be safe to repeat (`IF NOT EXISTS`). The output is
//! deterministic, so a bundle can be committed and diffed.

use std::fmt::Write;

use super::source::{Migration, TxMode};
use super::tracking::Tracking;

/// A bundle's text and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub sql: String,
    /// One line per file that needs care (unguarded statements).
    pub warnings: Vec<String>,
}

/// Writes the bundle of `migrations` (in order) for `tracking`'s table.
pub fn bundle(migrations: &[Migration], tracking: &Tracking, lock_key: i64) -> Bundle {
    let mut sql = header(migrations, tracking);
    let mut warnings = Vec::new();
    let _ = writeln!(sql, "SET statement_timeout = 0;");
    let _ = writeln!(
        sql,
        "DO $pgkit$ BEGIN PERFORM pg_advisory_lock({lock_key}); END $pgkit$;\n"
    );
    sql.push_str(&tracking.ensure_sql());
    let mut previous: Option<&Migration> = None;
    for m in migrations {
        sql.push('\n');
        match m.mode {
            TxMode::NoTransaction => {
                warnings.push(format!(
                    "{}: runs outside a transaction, so the bundle cannot guard it: its statements run on every run of the bundle and must be safe to repeat",
                    m.name
                ));
                sql.push_str(&unguarded(m, tracking, previous));
            }
            _ => sql.push_str(&guarded(m, tracking, previous)),
        }
        previous = Some(m);
    }
    let _ = writeln!(
        sql,
        "\nDO $pgkit$ BEGIN PERFORM pg_advisory_unlock({lock_key}); END $pgkit$;"
    );
    Bundle { sql, warnings }
}

fn header(migrations: &[Migration], tracking: &Tracking) -> String {
    let range = match (migrations.first(), migrations.last()) {
        (Some(a), Some(b)) => format!("{} .. {}", a.name, b.name),
        _ => "none".into(),
    };
    format!(
        "-- pgkit bundle: {} migration(s), {range}\n\
         -- Run with:  psql -v ON_ERROR_STOP=1 -f THIS_FILE \"$DATABASE_URL\"\n\
         --       or:  gcloud sql import sql INSTANCE gs://BUCKET/THIS_FILE --database=DBNAME\n\
         -- Each migration runs only when its version is not yet in {}, and records\n\
         -- itself there in the same transaction: running this file again changes nothing,\n\
         -- and it leaves the same state as `pgkit migrate up`. Do not edit: regenerate it\n\
         -- with `pgkit bundle`.\n\n",
        migrations.len(),
        tracking.qualified()
    )
}

fn guarded(m: &Migration, tracking: &Tracking, previous: Option<&Migration>) -> String {
    let table = tracking.qualified();
    let body = body_without_transaction_control(m);
    let outer = free_tag(&m.sql, "pgkit_do");
    let inner = free_tag(&m.sql, "pgkit_sql");
    let mut out = String::new();
    let _ = writeln!(out, "-- {} (sha256 {})", m.name, m.checksum);
    let _ = writeln!(out, "DO {outer}\nDECLARE\n    pgkit_applied text;\n    pgkit_started timestamptz := clock_timestamp();\nBEGIN");
    out.push_str(&already_applied_check(m, &table, "RETURN;"));
    out.push_str(&previous_check(m, &table, previous));
    let _ = writeln!(
        out,
        "    RAISE NOTICE 'pgkit: applying %', {};",
        literal(&m.name)
    );
    let _ = writeln!(out, "    EXECUTE {inner}\n{body}\n{inner};");
    let _ = writeln!(out, "    {}", insert(m, &table));
    let _ = writeln!(out, "END\n{outer};");
    out
}

fn unguarded(m: &Migration, tracking: &Tracking, previous: Option<&Migration>) -> String {
    let table = tracking.qualified();
    let tag = free_tag(&m.sql, "pgkit_do");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- {} (sha256 {}): outside a transaction, unguarded; runs on every run",
        m.name, m.checksum
    );
    let _ = writeln!(out, "DO {tag}\nDECLARE\n    pgkit_applied text;\nBEGIN");
    out.push_str(&already_applied_check(m, &table, "NULL;"));
    out.push_str(&previous_check(m, &table, previous));
    let _ = writeln!(out, "END\n{tag};");
    for s in &m.statements {
        let text = &m.sql[s.range.clone()];
        out.push_str(text);
        if !text.trim_end().ends_with(';') {
            out.push(';');
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "DO {tag}\nDECLARE\n    pgkit_started timestamptz := clock_timestamp();\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM {table} WHERE version = {}) THEN\n        {}\n    END IF;\nEND\n{tag};",
        m.version,
        insert(m, &table)
    );
    out
}

/// Stops on a changed file, as `up` does; `then` runs when it is applied.
fn already_applied_check(m: &Migration, table: &str, then: &str) -> String {
    format!(
        "    SELECT checksum INTO pgkit_applied FROM {table} WHERE version = {v};\n    \
         IF FOUND THEN\n        \
         IF pgkit_applied <> {sum} THEN\n            \
         RAISE EXCEPTION 'pgkit: % was applied with sha256 % but this bundle has %', {name}, pgkit_applied, {sum}\n                \
         USING HINT = 'restore the file and put the change in a new migration, or accept it with pgkit migrate repair';\n        \
         END IF;\n        {then}\n    END IF;\n",
        v = m.version,
        sum = literal(&m.checksum),
        name = literal(&m.name),
    )
}

/// Refuses to run a file whose predecessor did not get recorded.
fn previous_check(m: &Migration, table: &str, previous: Option<&Migration>) -> String {
    let Some(p) = previous else {
        return String::new();
    };
    format!(
        "    IF NOT EXISTS (SELECT 1 FROM {table} WHERE version = {pv}) THEN\n        \
         RAISE EXCEPTION 'pgkit: % not applied: % before it is not recorded (did it fail above?)', {name}, {pname};\n    \
         END IF;\n",
        pv = p.version,
        name = literal(&m.name),
        pname = literal(&p.name),
    )
}

fn insert(m: &Migration, table: &str) -> String {
    format!(
        "INSERT INTO {table} (version, name, checksum, execution_ms, sql) VALUES ({}, {}, {}, floor(extract(epoch FROM clock_timestamp() - pgkit_started) * 1000)::bigint, {});",
        m.version,
        literal(&m.name),
        literal(&m.checksum),
        literal(&m.sql)
    )
}

/// The file's text with its own opening BEGIN and final COMMIT cut out.
fn body_without_transaction_control(m: &Migration) -> String {
    match m.mode {
        TxMode::Own { begin, commit } => {
            let b = m.statements[begin].range.clone();
            let c = m.statements[commit].range.clone();
            format!(
                "{}{}{}",
                &m.sql[..b.start],
                &m.sql[b.end..c.start],
                &m.sql[c.end..]
            )
        }
        _ => m.sql.clone(),
    }
}

/// A dollar-quote tag that does not occur in `text`.
fn free_tag(text: &str, base: &str) -> String {
    (0..)
        .map(|i| {
            if i == 0 {
                format!("${base}$")
            } else {
                format!("${base}{i}$")
            }
        })
        .find(|tag| !text.contains(tag.as_str()))
        .expect("some numbered tag is free")
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_files_own_transaction_and_quotes_safely() {
        let m = Migration::from_file(
            "001_x.sql",
            "-- head\nBEGIN;\nCREATE TABLE a (t text DEFAULT '$pgkit_sql$');\nCOMMIT;\n",
        )
        .unwrap();
        let t = Tracking::new("public").unwrap();
        let b = bundle(std::slice::from_ref(&m), &t, 42);
        assert!(b.warnings.is_empty());
        assert!(b.sql.contains("EXECUTE $pgkit_sql1$"), "{}", b.sql);
        let body = body_without_transaction_control(&m);
        assert_eq!(
            body,
            "-- head\n\nCREATE TABLE a (t text DEFAULT '$pgkit_sql$');\n\n"
        );
        assert!(b.sql.contains("pg_advisory_lock(42)"));
    }

    #[test]
    fn no_transaction_files_are_written_unguarded_with_a_warning() {
        let m = Migration::from_file(
            "002_idx.sql",
            "-- pgkit:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON a (t)",
        )
        .unwrap();
        let b = bundle(&[m], &Tracking::new("public").unwrap(), 1);
        assert_eq!(b.warnings.len(), 1);
        assert!(b
            .sql
            .contains("\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON a (t);\n"));
    }
}
