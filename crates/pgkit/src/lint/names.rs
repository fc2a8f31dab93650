//! SQL names as PostgreSQL resolves them: unquoted identifiers fold to lower
//! case, quoted ones keep their case (with `""` meaning `"`). Rules compare
//! tables, columns and triggers through these, so `Users` and `users` match
//! and `"Users"` does not.

use std::fmt;

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

/// A possibly schema-qualified name. Without a schema it stands for whatever
/// the search path finds, so it matches the same name in any schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QualifiedName {
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    /// From a name node such as a path (`s.t`), taking the last part as the name.
    pub fn of(node: &SyntaxNode) -> Option<Self> {
        let mut parts = segments(node);
        let name = parts.pop()?;
        Some(QualifiedName {
            schema: parts.pop(),
            name,
        })
    }

    /// Same object as far as the files can tell.
    pub fn matches(&self, other: &QualifiedName) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The dot-separated parts of a name node, each folded as PostgreSQL does.
pub(crate) fn segments(node: &SyntaxNode) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current: Option<String> = None;
    for token in node
        .descendants_with_tokens()
        .filter_map(|element| element.into_token())
    {
        match token.kind() {
            SyntaxKind::WHITESPACE | SyntaxKind::COMMENT => {}
            SyntaxKind::DOT => parts.extend(current.take()),
            _ => {
                let folded = fold_ident(token.text());
                current = Some(match current.take() {
                    Some(prev) => prev + &folded,
                    None => folded,
                });
            }
        }
    }
    parts.extend(current);
    parts
}

/// One identifier as PostgreSQL stores it.
pub(crate) fn fold_ident(text: &str) -> String {
    match text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text.to_lowercase(),
    }
}

/// The last name part of a node (`public.f` -> `f`), folded.
pub(crate) fn last_segment(node: &SyntaxNode) -> Option<String> {
    segments(node).pop()
}

/// The function a call expression calls, without schema: `s.f(1)` -> `f`.
pub(crate) fn called_function(call: &ast::CallExpr) -> Option<String> {
    let callee = call
        .syntax()
        .children()
        .find(|child| child.kind() != SyntaxKind::ARG_LIST)?;
    last_segment(&callee)
}

/// Whether a type node is plain `jsonb` (optionally `pg_catalog.jsonb`), not an array.
pub(crate) fn is_jsonb(ty: &ast::Type) -> bool {
    matches!(ty, ast::Type::PathType(_)) && last_segment(ty.syntax()).as_deref() == Some("jsonb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use squawk_syntax::SourceFile;

    fn first<N: AstNode>(sql: &str) -> N {
        let parse = SourceFile::parse(sql);
        parse
            .tree()
            .syntax()
            .descendants()
            .find_map(N::cast)
            .expect("node in sql")
    }

    #[test]
    fn unquoted_names_fold_and_quoted_keep_case() {
        assert_eq!(fold_ident("Users"), "users");
        assert_eq!(fold_ident("\"Users\""), "Users");
        assert_eq!(fold_ident("\"a\"\"b\""), "a\"b");
    }

    #[test]
    fn qualified_names_split_on_the_dot() {
        let table: ast::TableName = first("CREATE TABLE App.\"Users\" (id int);");
        let name = QualifiedName::of(table.syntax()).unwrap();
        assert_eq!(name.schema.as_deref(), Some("app"));
        assert_eq!(name.name, "Users");
        assert_eq!(name.to_string(), "app.Users");
    }

    #[test]
    fn unqualified_matches_any_schema_but_two_schemas_must_agree() {
        let plain = QualifiedName {
            schema: None,
            name: "t".into(),
        };
        let a = QualifiedName {
            schema: Some("a".into()),
            name: "t".into(),
        };
        let b = QualifiedName {
            schema: Some("b".into()),
            name: "t".into(),
        };
        assert!(plain.matches(&a) && a.matches(&plain));
        assert!(!a.matches(&b));
    }

    #[test]
    fn keyword_column_names_are_names_too() {
        let col: ast::Column = first("CREATE TABLE t (data jsonb);");
        assert_eq!(last_segment(col.name().unwrap().syntax()).unwrap(), "data");
        assert!(is_jsonb(&col.ty().unwrap()));
    }

    #[test]
    fn jsonb_arrays_and_other_types_are_not_jsonb() {
        let col: ast::Column = first("CREATE TABLE t (a jsonb[]);");
        assert!(!is_jsonb(&col.ty().unwrap()));
        let col: ast::Column = first("CREATE TABLE t (a json);");
        assert!(!is_jsonb(&col.ty().unwrap()));
        let col: ast::Column = first("CREATE TABLE t (a pg_catalog.JSONB);");
        assert!(is_jsonb(&col.ty().unwrap()));
    }

    #[test]
    fn called_function_drops_the_schema() {
        let call: ast::CallExpr = first("SELECT public.update_updated_at_column();");
        assert_eq!(called_function(&call).unwrap(), "update_updated_at_column");
    }
}
