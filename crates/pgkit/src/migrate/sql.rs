//! Splitting a SQL file into statements the way psql does, and finding its
//! own transaction control.
//!
//! A migration runs "as written": statement by statement through the simple
//! query protocol, exactly as `psql -f` sends it. So the file is cut where
//! psql cuts it: at semicolons outside strings, quoted identifiers, comments,
//! dollar quotes and parentheses, and not inside the `BEGIN ATOMIC … END` body
//! of a `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (psql's own heuristic,
//! `psqlscan.l`). Tokens come from `squawk-lexer`, a PostgreSQL lexer.
//!
//! Knowing each statement's first words tells the runner where the file's own
//! `BEGIN` and final `COMMIT` are, so the tracking row can go just before that
//! `COMMIT` and land in the same transaction as the file.

use std::ops::Range;

use squawk_lexer::{tokenize, TokenKind};

/// One statement of a file: where it is and what its first words are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Bytes of the file, from the statement's first token through its
    /// semicolon (or the end of the file when the last one has none).
    pub range: Range<usize>,
    /// The first three words, upper-cased, for classification.
    pub words: Vec<String>,
}

/// What a statement does to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Begin,
    Commit,
    Rollback,
    /// Anything else (including SAVEPOINT and ROLLBACK TO, which are fine
    /// inside a transaction).
    Other,
}

impl Statement {
    pub fn control(&self) -> Control {
        let w = |i: usize| self.words.get(i).map(String::as_str).unwrap_or("");
        match w(0) {
            "BEGIN" => Control::Begin,
            "START" if w(1) == "TRANSACTION" => Control::Begin,
            "COMMIT" | "END" if w(1) != "PREPARED" => Control::Commit,
            "ROLLBACK" | "ABORT" if w(1) != "PREPARED" && w(1) != "TO" => {
                // `ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] x` stays inside the transaction.
                if matches!(w(1), "WORK" | "TRANSACTION") && w(2) == "TO" {
                    Control::Other
                } else {
                    Control::Rollback
                }
            }
            _ => Control::Other,
        }
    }

    /// The statement's first word, upper-cased ("" for none).
    pub fn first_word(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }
}

/// Cuts `sql` into statements as psql would. Comments and blank text between
/// statements belong to none.
pub fn split(sql: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut state = Splitter::default();
    let mut pos = 0usize;
    for token in tokenize(sql) {
        let start = pos;
        pos += token.len as usize;
        match token.kind {
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. } => {}
            TokenKind::Semi if state.paren_depth == 0 && state.begin_depth == 0 => {
                if let Some(s) = state.start.take() {
                    out.push(Statement {
                        range: s..pos,
                        words: std::mem::take(&mut state.words),
                    });
                }
                state = Splitter::default();
            }
            kind => {
                state.start.get_or_insert(start);
                state.end = pos;
                state.see(kind, &sql[start..pos]);
            }
        }
    }
    if let Some(s) = state.start {
        out.push(Statement {
            range: s..state.end,
            words: state.words,
        });
    }
    out
}

/// The running state of one statement being scanned.
#[derive(Default)]
struct Splitter {
    start: Option<usize>,
    /// End of the last token that was not whitespace or a comment.
    end: usize,
    words: Vec<String>,
    /// Leading identifiers, to spot `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
    idents: Vec<String>,
    paren_depth: i32,
    begin_depth: i32,
}

impl Splitter {
    fn see(&mut self, kind: TokenKind, text: &str) {
        match kind {
            TokenKind::OpenParen => self.paren_depth += 1,
            TokenKind::CloseParen => self.paren_depth = (self.paren_depth - 1).max(0),
            TokenKind::Ident => self.ident(text),
            _ => {}
        }
        if self.words.len() < 3 {
            self.words.push(text.to_ascii_uppercase());
        }
    }

    fn ident(&mut self, text: &str) {
        let word = text.to_ascii_uppercase();
        if self.idents.len() < 4 {
            self.idents.push(word.clone());
        }
        if !self.is_routine() || self.paren_depth != 0 {
            return;
        }
        match word.as_str() {
            "BEGIN" => self.begin_depth += 1,
            // CASE also ends with END; it matters only inside a BEGIN body.
            "CASE" if self.begin_depth >= 1 => self.begin_depth += 1,
            "END" if self.begin_depth > 0 => self.begin_depth -= 1,
            _ => {}
        }
    }

    /// `CREATE FUNCTION`, `CREATE PROCEDURE`, or the same with `OR REPLACE`.
    fn is_routine(&self) -> bool {
        let i: Vec<&str> = self.idents.iter().map(String::as_str).collect();
        matches!(
            i.as_slice(),
            ["CREATE", "FUNCTION" | "PROCEDURE", ..]
                | ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]
        )
    }
}

/// Whether a statement is one of the `CONCURRENTLY` forms that run outside
/// a transaction (`CREATE [UNIQUE] INDEX`, `DROP INDEX`, `REINDEX`, `ALTER
/// TABLE … DETACH PARTITION`): they take locks that let reads and writes go
/// on, and one cancelled half-way leaves an invalid index (or a pending
/// detach) behind, so the runner lets them wait rather than time out.
pub fn is_concurrently(statement: &str) -> bool {
    let mut words = tokenize(statement)
        .scan(0usize, |pos, t| {
            let start = *pos;
            *pos += t.len as usize;
            Some((t.kind, start..*pos))
        })
        .filter(|(kind, _)| *kind == TokenKind::Ident)
        .map(|(_, r)| statement[r].to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    matches!(first.as_str(), "CREATE" | "DROP" | "REINDEX" | "ALTER")
        && words.any(|w| w == "CONCURRENTLY")
}

/// The name of a statement PostgreSQL refuses inside a transaction block
/// (`CREATE INDEX CONCURRENTLY`, `VACUUM`, `CREATE DATABASE`, …), read from
/// its leading words; `None` for any other statement. The runner refuses a
/// file that would run one in a transaction, and `pgkit lint` asks the same
/// function, so the two agree.
pub fn non_transactional(statement: &str) -> Option<&'static str> {
    let words: Vec<String> = idents(statement).take(8).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let concurrently = || w.contains(&"CONCURRENTLY");
    match w.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => Some("CREATE INDEX CONCURRENTLY"),
        ["DROP", "INDEX", "CONCURRENTLY", ..] => Some("DROP INDEX CONCURRENTLY"),
        ["REINDEX", ..] if concurrently() => Some("REINDEX CONCURRENTLY"),
        ["ALTER", "TABLE", ..] if w.contains(&"DETACH") && is_concurrently(statement) => {
            Some("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY")
        }
        ["VACUUM", ..] => Some("VACUUM"),
        ["CREATE", "DATABASE", ..] => Some("CREATE DATABASE"),
        ["DROP", "DATABASE", ..] => Some("DROP DATABASE"),
        ["CREATE", "TABLESPACE", ..] => Some("CREATE TABLESPACE"),
        ["DROP", "TABLESPACE", ..] => Some("DROP TABLESPACE"),
        ["ALTER", "SYSTEM", ..] => Some("ALTER SYSTEM"),
        _ => None,
    }
}

/// The unquoted words of a statement, upper-cased, skipping comments,
/// literals and punctuation.
fn idents(statement: &str) -> impl Iterator<Item = String> + '_ {
    tokenize(statement)
        .scan(0usize, |pos, t| {
            let start = *pos;
            *pos += t.len as usize;
            Some((t.kind, start..*pos))
        })
        .filter(|(kind, _)| *kind == TokenKind::Ident)
        .map(|(_, r)| statement[r].to_ascii_uppercase())
}

/// The file's tokens without whitespace and comments: two texts with the
/// same list run the same statements (`migrate repair` accepts such an
/// edit without `--force`).
pub fn significant_tokens(sql: &str) -> Vec<&str> {
    let mut pos = 0usize;
    tokenize(sql)
        .filter_map(|t| {
            let start = pos;
            pos += t.len as usize;
            match t.kind {
                TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. } => {
                    None
                }
                _ => Some(&sql[start..pos]),
            }
        })
        .collect()
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(sql: &str, byte: usize) -> (u32, u32) {
    let byte = floor_char_boundary(sql, byte.min(sql.len()));
    let before = &sql[..byte];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = sql[line_start..byte].chars().count() as u32 + 1;
    (line, col)
}

/// The byte offset of the `n`th character (0-based) of `text`, clamped to its end.
pub fn char_to_byte(text: &str, n: usize) -> usize {
    text.char_indices()
        .nth(n)
        .map(|(i, _)| i)
        .unwrap_or(text.len())
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).into_iter().map(|s| &sql[s.range]).collect()
    }

    #[test]
    fn cuts_at_semicolons_outside_quotes_comments_and_bodies() {
        let sql = "-- header; not a statement\n\
                   BEGIN;\n\
                   CREATE TABLE t (a text DEFAULT 'x;y', \"b;\" int); /* ; */\n\
                   DO $$ BEGIN RAISE NOTICE 'hi;'; END $$;\n\
                   CREATE FUNCTION f() RETURNS trigger AS $body$\nBEGIN NEW.x = 1; RETURN NEW; END;\n$body$ LANGUAGE plpgsql;\n\
                   SELECT E'it\\'s;';\n\
                   COMMIT;\n-- trailing comment";
        assert_eq!(
            texts(sql),
            vec![
                "BEGIN;",
                "CREATE TABLE t (a text DEFAULT 'x;y', \"b;\" int);",
                "DO $$ BEGIN RAISE NOTICE 'hi;'; END $$;",
                "CREATE FUNCTION f() RETURNS trigger AS $body$\nBEGIN NEW.x = 1; RETURN NEW; END;\n$body$ LANGUAGE plpgsql;",
                "SELECT E'it\\'s;';",
                "COMMIT;",
            ]
        );
    }

    #[test]
    fn keeps_sql_standard_function_bodies_whole() {
        let sql = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n\
                   BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;";
        let parts = texts(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("END;"));
        assert_eq!(parts[1], "SELECT 3;");
    }

    #[test]
    fn last_statement_may_lack_its_semicolon() {
        assert_eq!(texts("SELECT 1;\nCOMMIT\n"), vec!["SELECT 1;", "COMMIT"]);
        assert!(split("-- only a comment\n").is_empty());
    }

    #[test]
    fn classifies_transaction_control() {
        let kinds: Vec<Control> = split(
            "begin work; START TRANSACTION ISOLATION LEVEL SERIALIZABLE; SAVEPOINT a; \
             ROLLBACK TO SAVEPOINT a; ROLLBACK WORK TO a; rollback; end; COMMIT AND NO CHAIN; \
             COMMIT PREPARED 'x'; SELECT 1;",
        )
        .iter()
        .map(Statement::control)
        .collect();
        use Control::*;
        assert_eq!(
            kinds,
            vec![Begin, Begin, Other, Other, Other, Rollback, Commit, Commit, Other, Other]
        );
    }

    #[test]
    fn spots_the_concurrently_forms() {
        for yes in [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
            "create unique index concurrently i on t (a)",
            "-- why\nDROP INDEX CONCURRENTLY i;",
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t;",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY;",
        ] {
            assert!(is_concurrently(yes), "{yes}");
        }
        for no in [
            "CREATE INDEX i ON t (a);",
            "ALTER TABLE t ADD COLUMN c int;",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
            "SELECT 'CREATE INDEX CONCURRENTLY';",
            "CREATE TABLE t (\"concurrently\" int);",
        ] {
            assert!(!is_concurrently(no), "{no}");
        }
    }

    #[test]
    fn comments_and_whitespace_are_not_significant_but_literals_are() {
        let a = "-- v1\nCREATE TABLE t (a int);\n/* note */ SELECT 'x  y';";
        let b = "CREATE TABLE t (\n    a int -- the a\n);\nSELECT 'x  y';\n";
        assert_eq!(significant_tokens(a), significant_tokens(b));
        assert_ne!(
            significant_tokens(a),
            significant_tokens("CREATE TABLE t (a int);\nSELECT 'x y';")
        );
        assert_ne!(
            significant_tokens(a),
            significant_tokens("CREATE TABLE t (a bigint);\nSELECT 'x  y';")
        );
    }

    #[test]
    fn names_what_cannot_run_in_a_transaction() {
        for (sql, what) in [
            (
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
                "CREATE INDEX CONCURRENTLY",
            ),
            (
                "-- x\ncreate unique index concurrently i on t (a)",
                "CREATE INDEX CONCURRENTLY",
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS i;",
                "DROP INDEX CONCURRENTLY",
            ),
            (
                "REINDEX (VERBOSE) TABLE CONCURRENTLY t;",
                "REINDEX CONCURRENTLY",
            ),
            ("VACUUM ANALYZE t;", "VACUUM"),
            ("CREATE DATABASE x;", "CREATE DATABASE"),
            ("ALTER SYSTEM SET work_mem = '8MB';", "ALTER SYSTEM"),
        ] {
            assert_eq!(non_transactional(sql), Some(what), "{sql}");
        }
        for sql in [
            "CREATE INDEX IF NOT EXISTS i ON t (a);",
            "CREATE TABLE t (concurrently int);",
            "SELECT 'VACUUM';",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
        ] {
            assert_eq!(non_transactional(sql), None, "{sql}");
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        let sql = "SELECT 'é';\nSELECT x;";
        let at = sql.find("x;").unwrap();
        assert_eq!(line_col(sql, at), (2, 8));
        assert_eq!(line_col(sql, 0), (1, 1));
        assert_eq!(char_to_byte("éa", 1), 2);
    }
}
