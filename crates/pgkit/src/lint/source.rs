//! One SQL file ready for the rules: its text, its syntax tree, the parsed
//! bodies of its `DO` blocks, and the byte-offset to `line:col` conversion.

use std::path::{Path, PathBuf};

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::plpgsql::Plpgsql;
use squawk_syntax::syntax_error::SyntaxError;
use squawk_syntax::SyntaxNode;

use super::report::Finding;
use super::rule::Rule;

/// Which part of the migration set a file belongs to; the rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FileKind {
    /// `NNN_*.sql` in the migrations folder itself.
    Migration,
    /// `seeds/`: must be idempotent.
    Seed,
    /// `data/`: test data, guarded by `app.environment`.
    Data,
}

/// A statement and where its nodes live: in the file's own tree, or in the
/// parsed body of the file's `body`-th `DO` block (offsets then need mapping).
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub stmt: ast::Stmt,
    pub body: Option<usize>,
}

/// A `DO` block's code, parsed as plpgsql; `at` is where the `DO` starts.
pub(crate) struct DoBody {
    pub at: usize,
    pub code: Plpgsql,
}

pub(crate) struct SqlFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub text: String,
    pub tree: ast::SourceFile,
    pub syntax_errors: Vec<SyntaxError>,
    /// Parsed plpgsql of each `DO` block, in file order.
    pub bodies: Vec<DoBody>,
    line_starts: Vec<usize>,
}

impl SqlFile {
    pub fn parse(path: PathBuf, kind: FileKind, text: String) -> Self {
        let parse = ast::SourceFile::parse(&text);
        let tree = parse.tree();
        let syntax_errors = parse.errors();
        let bodies = tree
            .stmts()
            .filter_map(|stmt| match stmt {
                ast::Stmt::Do(block) => Some(DoBody {
                    at: start(block.syntax()),
                    code: block.plpgsql()?,
                }),
                _ => None,
            })
            .collect();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SqlFile {
            path,
            kind,
            text,
            tree,
            syntax_errors,
            bodies,
            line_starts,
        }
    }

    /// The file name without `.sql`, as the header's `Migration:` names it.
    pub fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Top-level statements, in order.
    pub fn stmts(&self) -> impl Iterator<Item = ast::Stmt> {
        self.tree.stmts()
    }

    /// Top-level statements, each followed by the statements of its `DO`
    /// body when it is a `DO` block (outermost statements only).
    pub fn stmts_with_bodies(&self) -> Vec<Located> {
        let mut out = Vec::new();
        for stmt in self.stmts() {
            let at = start(stmt.syntax());
            out.push(Located { stmt, body: None });
            if let Some(index) = self.bodies.iter().position(|b| b.at == at) {
                let root = self.bodies[index].code.syntax();
                out.extend(outermost_stmts(&root).map(|stmt| Located {
                    stmt,
                    body: Some(index),
                }));
            }
        }
        out
    }

    /// Byte offset in this file of the start of `node`, which lives in the
    /// file's tree (`body` None) or in the given `DO` body.
    pub fn offset(&self, body: Option<usize>, node: &SyntaxNode) -> usize {
        match body.and_then(|i| self.bodies.get(i)) {
            Some(body) => usize::from(body.code.source_range(node.text_range()).start()),
            None => start(node),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (to_u32(line + 1), to_u32(col + 1))
    }

    pub fn line_of(&self, offset: usize) -> u32 {
        self.line_col(offset).0
    }

    /// A finding of `rule` at `offset` of this file.
    pub fn finding(
        &self,
        rule: Rule,
        offset: usize,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        let (line, col) = self.line_col(offset);
        Finding {
            file: self.path.clone(),
            line,
            col,
            rule,
            severity: rule.severity(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A finding at the start of `node` (in the file's tree or a `DO` body).
    pub fn finding_at(
        &self,
        rule: Rule,
        body: Option<usize>,
        node: &SyntaxNode,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        self.finding(rule, self.offset(body, node), message, fix)
    }
}

/// Byte offset where a node of the file's own tree starts.
pub(crate) fn start(node: &SyntaxNode) -> usize {
    usize::from(node.text_range().start())
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Statements of a body that are not inside another statement of it.
fn outermost_stmts(root: &SyntaxNode) -> impl Iterator<Item = ast::Stmt> + '_ {
    root.descendants()
        .filter_map(ast::Stmt::cast)
        .filter(|stmt| {
            !stmt
                .syntax()
                .ancestors()
                .skip(1)
                .any(|a| ast::Stmt::can_cast(a.kind()))
        })
}

/// Orders a migration set the way the runner applies it: migrations by their
/// numeric prefix, then seeds, then test data.
pub(crate) fn apply_order(kind: FileKind, path: &Path) -> (FileKind, u64, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse().unwrap_or(u64::MAX);
    (kind, number, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SqlFile {
        SqlFile::parse("001_x.sql".into(), FileKind::Migration, text.into())
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = file("SELECT 1;\n-- é\nSELECT 2;");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(10), (2, 1));
        // "é" is two bytes: the character after it is column 5.
        assert_eq!(f.line_col(15), (2, 5));
        assert_eq!(f.line_col(16), (3, 1));
    }

    #[test]
    fn do_bodies_map_back_to_file_offsets() {
        let sql = "BEGIN;\nDO $$\nBEGIN\n  INSERT INTO t VALUES (1);\nEND\n$$;\nCOMMIT;\n";
        let f = file(sql);
        let insert = f
            .stmts_with_bodies()
            .into_iter()
            .find(|l| matches!(l.stmt, ast::Stmt::Insert(_)))
            .unwrap();
        assert_eq!(insert.body, Some(0));
        let at = f.offset(insert.body, insert.stmt.syntax());
        assert_eq!(f.line_col(at), (4, 3));
        assert!(f.text[at..].starts_with("INSERT"));
    }

    #[test]
    fn order_is_kind_then_number_then_name() {
        let mut names = [
            (FileKind::Seed, "001_a.sql"),
            (FileKind::Migration, "010_b.sql"),
            (FileKind::Migration, "002_c.sql"),
            (FileKind::Migration, "notes.sql"),
        ];
        names.sort_by_key(|(kind, n)| apply_order(*kind, Path::new(n)));
        let order: Vec<_> = names.iter().map(|(_, n)| *n).collect();
        assert_eq!(order, ["002_c.sql", "010_b.sql", "notes.sql", "001_a.sql"]);
    }
}
