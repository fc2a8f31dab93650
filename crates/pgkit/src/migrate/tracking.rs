//! The tracking table: which files ran, with what checksum, when, how long.
//!
//! `<schema>.pgkit_migrations(version, name, checksum, applied_at,
//! execution_ms, sql)`, one row per applied file. `sql` is the text as
//! applied, so `migrate repair` can show what changed in a file since and
//! tell an edit of comments from one of statements (rows written before
//! pgkit kept it have NULL there; a table from then gains the column). The schema is configurable (a
//! service that owns a schema keeps its record there); its name is validated
//! and quoted here, the only place it enters SQL text. Every value goes in as
//! a parameter.

use chrono::{DateTime, Utc};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::GenericClient;

use super::error::MigrateError;

/// The tracking table's name inside its schema.
pub const TABLE: &str = "pgkit_migrations";

/// One row of the tracking table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
    pub execution_ms: i64,
    /// The text as applied; `None` for rows recorded before pgkit kept it.
    pub sql: Option<String>,
}

/// The tracking table of one schema.
#[derive(Debug, Clone)]
pub struct Tracking {
    schema: String,
}

impl Tracking {
    pub fn new(schema: &str) -> Result<Tracking, MigrateError> {
        validate_schema(schema)?;
        Ok(Tracking {
            schema: schema.to_string(),
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `"schema".pgkit_migrations`, for SQL text.
    pub fn qualified(&self) -> String {
        format!("{}.{TABLE}", escape_identifier(&self.schema))
    }

    /// Creates the schema and the table when missing. A DO block, so a role
    /// without CREATE on the database can still use an existing schema.
    /// Write privileges that default privileges hand out on the new table
    /// (`pgkit provision` sets such defaults for the runtime role) are
    /// revoked at once: only the migration owner writes the history; others
    /// keep SELECT at most.
    pub fn ensure_sql(&self) -> String {
        let schema = escape_identifier(&self.schema);
        let table = self.qualified();
        format!(
            "DO $pgkit$\nDECLARE\n    grantee text;\nBEGIN\n    \
             IF to_regnamespace('{schema}') IS NULL THEN\n        CREATE SCHEMA {schema};\n    END IF;\n    \
             IF to_regclass('{table}') IS NULL THEN\n        \
             CREATE TABLE {table} (\n            \
             version      BIGINT PRIMARY KEY,\n            \
             name         TEXT NOT NULL,\n            \
             checksum     TEXT NOT NULL,\n            \
             applied_at   TIMESTAMPTZ NOT NULL DEFAULT now(),\n            \
             execution_ms BIGINT NOT NULL,\n            \
             sql          TEXT\n        );\n        \
             COMMENT ON TABLE {table} IS 'Migration files applied by pgkit: one row per file; checksum is sha256 of the file with LF line endings';\n        \
             FOR grantee IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END\n            \
             FROM pg_catalog.pg_class c CROSS JOIN aclexplode(c.relacl) a\n            \
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee\n            \
             WHERE c.oid = '{table}'::regclass AND a.grantee <> c.relowner\n              \
             AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')\n        \
             LOOP\n            \
             EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM %s', grantee);\n        \
             END LOOP;\n    \
             ELSIF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute\n                       \
             WHERE attrelid = '{table}'::regclass AND attname = 'sql' AND NOT attisdropped) THEN\n        \
             ALTER TABLE {table} ADD COLUMN sql TEXT;\n    \
             END IF;\nEND\n$pgkit$;\n"
        )
    }

    /// The parameterised insert of one row ($1 version, $2 name, $3
    /// checksum, $4 execution_ms, $5 the text as applied).
    pub fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} (version, name, checksum, execution_ms, sql) VALUES ($1, $2, $3, $4, $5)",
            self.qualified()
        )
    }

    pub async fn ensure(&self, client: &impl GenericClient) -> Result<(), MigrateError> {
        client
            .batch_execute(&self.ensure_sql())
            .await
            .map_err(|e| MigrateError::db(&format!("cannot create {}", self.qualified()), &e))
    }

    pub async fn exists(&self, client: &impl GenericClient) -> Result<bool, MigrateError> {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.qualified()])
            .await
            .map_err(|e| MigrateError::db("cannot look for the tracking table", &e))?;
        Ok(row.get(0))
    }

    /// Every row, by version; none when the table does not exist yet.
    pub async fn applied(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<AppliedRow>, MigrateError> {
        if !self.exists(client).await? {
            return Ok(Vec::new());
        }
        // Through to_jsonb: `status` reads a table an older pgkit created,
        // without the `sql` column, as it is (it changes nothing).
        let sql = format!(
            "SELECT version, name, checksum, applied_at, execution_ms, to_jsonb(m)->>'sql' \
             FROM {} m ORDER BY version",
            self.qualified()
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| MigrateError::db(&format!("cannot read {}", self.qualified()), &e))?;
        Ok(rows
            .iter()
            .map(|r| AppliedRow {
                version: r.get(0),
                name: r.get(1),
                checksum: r.get(2),
                applied_at: r.get(3),
                execution_ms: r.get(4),
                sql: r.get(5),
            })
            .collect())
    }

    pub async fn insert(
        &self,
        client: &impl GenericClient,
        version: i64,
        name: &str,
        checksum: &str,
        execution_ms: i64,
        sql: &str,
    ) -> Result<(), tokio_postgres::Error> {
        client
            .execute(
                &self.insert_sql(),
                &[&version, &name, &checksum, &execution_ms, &sql],
            )
            .await
            .map(|_| ())
    }

    /// Accepts a file's current checksum, name and text for an applied version.
    pub async fn repair(
        &self,
        client: &impl GenericClient,
        version: i64,
        name: &str,
        checksum: &str,
        text: &str,
    ) -> Result<(), MigrateError> {
        let sql = format!(
            "UPDATE {} SET checksum = $2, name = $3, sql = $4 WHERE version = $1",
            self.qualified()
        );
        client
            .execute(&sql, &[&version, &checksum, &name, &text])
            .await
            .map(|_| ())
            .map_err(|e| MigrateError::db(&format!("cannot update {}", self.qualified()), &e))
    }
}

/// A schema name we are willing to put in SQL text: lower-case letters,
/// digits and `_`, not starting with a digit, at most 63 bytes.
pub fn validate_schema(schema: &str) -> Result<(), MigrateError> {
    let problem = if schema.is_empty() {
        Some("it is empty")
    } else if schema.len() > 63 {
        Some("it is longer than 63 bytes")
    } else if schema.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if !schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("only lower-case letters, digits and _ are accepted")
    } else {
        None
    };
    match problem {
        Some(p) => Err(MigrateError::InvalidSchema {
            schema: schema.to_string(),
            problem: p.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked_before_they_reach_sql() {
        for ok in ["public", "dave", "svc_2"] {
            assert!(Tracking::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Public",
            "a-b",
            "x\"; DROP TABLE y; --",
            "1abc",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(Tracking::new(bad), Err(MigrateError::InvalidSchema { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            Tracking::new("dave").unwrap().qualified(),
            "\"dave\".pgkit_migrations"
        );
        assert_eq!(escape_identifier("a\"b"), "\"a\"\"b\"");
    }
}
