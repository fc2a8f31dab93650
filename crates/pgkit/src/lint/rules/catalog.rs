//! What the migration set leaves behind once every file has run: its tables
//! and columns, triggers, and comments. Built by replaying the statements in
//! apply order (drops and renames included), so rules that span files ask
//! "does the finished schema have X" rather than "does some file say X".

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxNode;

use crate::lint::names::{called_function, is_jsonb, last_segment, QualifiedName};
use crate::lint::source::{Located, SqlFile};

/// A place in the set: file index and byte offset in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    pub file: usize,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub jsonb: bool,
    pub site: Site,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: QualifiedName,
    pub site: Site,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub name: String,
    pub table: QualifiedName,
    pub function: Option<String>,
    pub before: bool,
    pub on_update: bool,
    pub for_each_row: bool,
    pub site: Site,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub tables: Vec<Table>,
    pub triggers: Vec<Trigger>,
    pub table_comments: Vec<QualifiedName>,
    /// Table and column of each `COMMENT ON COLUMN`.
    pub column_comments: Vec<(QualifiedName, String)>,
}

impl Catalog {
    pub fn build(files: &[SqlFile]) -> Catalog {
        let mut catalog = Catalog::default();
        for (index, file) in files.iter().enumerate() {
            for located in file.stmts_with_bodies() {
                catalog.apply(file, index, &located);
            }
        }
        catalog
    }

    pub fn table_has_comment(&self, table: &QualifiedName) -> bool {
        self.table_comments.iter().any(|t| t.matches(table))
    }

    pub fn column_has_comment(&self, table: &QualifiedName, column: &str) -> bool {
        self.column_comments
            .iter()
            .any(|(t, c)| c == column && t.matches(table))
    }

    pub fn triggers_on<'a>(
        &'a self,
        table: &'a QualifiedName,
    ) -> impl Iterator<Item = &'a Trigger> {
        self.triggers.iter().filter(move |t| t.table.matches(table))
    }

    fn apply(&mut self, file: &SqlFile, index: usize, located: &Located) {
        let site = |node: &SyntaxNode| Site {
            file: index,
            offset: file.offset(located.body, node),
        };
        match &located.stmt {
            ast::Stmt::CreateTable(create) => self.create_table(create, &site),
            ast::Stmt::AlterTable(alter) => self.alter_table(alter, &site),
            ast::Stmt::DropTable(drop) => {
                for name in drop.table_name_refs() {
                    if let Some(name) = QualifiedName::of(name.syntax()) {
                        self.drop_table(&name);
                    }
                }
            }
            ast::Stmt::CreateTrigger(create) => {
                if let Some(trigger) = trigger(create, site(create.syntax())) {
                    self.triggers
                        .retain(|t| !(t.name == trigger.name && t.table.matches(&trigger.table)));
                    self.triggers.push(trigger);
                }
            }
            ast::Stmt::DropTrigger(drop) => {
                let name = drop.trigger_ref().and_then(|t| last_segment(t.syntax()));
                let table = relation(drop.on_relation());
                if let (Some(name), Some(table)) = (name, table) {
                    self.triggers
                        .retain(|t| !(t.name == name && t.table.matches(&table)));
                }
            }
            ast::Stmt::CommentOn(comment) => self.comment_on(comment),
            _ => {}
        }
    }

    fn create_table(&mut self, create: &ast::CreateTable, site: &dyn Fn(&SyntaxNode) -> Site) {
        if matches!(create.persistence(), Some(ast::Persistence::Temp(_))) {
            return;
        }
        let Some(name) = create
            .table_name()
            .and_then(|n| QualifiedName::of(n.syntax()))
        else {
            return;
        };
        if self.tables.iter().any(|t| t.name.matches(&name)) {
            return; // IF NOT EXISTS on a table an earlier file made: no-op
        }
        let columns = create
            .table_arg_list()
            .into_iter()
            .flat_map(|list| list.args())
            .filter_map(|arg| match arg {
                ast::TableArg::Column(column) => column_def(&column, site),
                _ => None,
            })
            .collect();
        self.tables.push(Table {
            name,
            site: site(create.syntax()),
            columns,
        });
    }

    fn alter_table(&mut self, alter: &ast::AlterTable, site: &dyn Fn(&SyntaxNode) -> Site) {
        let Some(name) = alter
            .table_relation_name()
            .and_then(|n| QualifiedName::of(n.syntax()))
        else {
            return;
        };
        for action in alter.actions() {
            match action {
                ast::AlterTableAction::AddColumn(add) => {
                    let column = add.column_name().and_then(|n| last_segment(n.syntax()));
                    let table = self.tables.iter_mut().find(|t| t.name.matches(&name));
                    if let (Some(column), Some(table)) = (column, table) {
                        if !table.columns.iter().any(|c| c.name == column) {
                            table.columns.push(Column {
                                name: column,
                                jsonb: add.ty().is_some_and(|ty| is_jsonb(&ty)),
                                site: site(add.syntax()),
                            });
                        }
                    }
                }
                ast::AlterTableAction::DropColumn(drop) => {
                    if let Some(column) = drop
                        .column_name_ref()
                        .and_then(|n| last_segment(n.syntax()))
                    {
                        for table in self.tables.iter_mut().filter(|t| t.name.matches(&name)) {
                            table.columns.retain(|c| c.name != column);
                        }
                    }
                }
                ast::AlterTableAction::RenameColumn(rename) => {
                    let from = rename
                        .column_name_ref()
                        .and_then(|n| last_segment(n.syntax()));
                    let to = rename.column_name().and_then(|n| last_segment(n.syntax()));
                    if let (Some(from), Some(to)) = (from, to) {
                        self.rename_column(&name, &from, &to);
                    }
                }
                ast::AlterTableAction::TableRenameTo(rename) => {
                    if let Some(to) = rename.table_name().and_then(|n| last_segment(n.syntax())) {
                        self.rename_table(&name, &to);
                    }
                }
                _ => {}
            }
        }
    }

    fn drop_table(&mut self, name: &QualifiedName) {
        self.tables.retain(|t| !t.name.matches(name));
        self.triggers.retain(|t| !t.table.matches(name));
        self.table_comments.retain(|t| !t.matches(name));
        self.column_comments.retain(|(t, _)| !t.matches(name));
    }

    fn rename_table(&mut self, from: &QualifiedName, to: &str) {
        let rename = |name: &mut QualifiedName| {
            if name.matches(from) {
                name.name = to.to_owned();
            }
        };
        self.tables.iter_mut().for_each(|t| rename(&mut t.name));
        self.triggers.iter_mut().for_each(|t| rename(&mut t.table));
        self.table_comments.iter_mut().for_each(rename);
        self.column_comments.iter_mut().for_each(|(t, _)| rename(t));
    }

    fn rename_column(&mut self, table: &QualifiedName, from: &str, to: &str) {
        for t in self.tables.iter_mut().filter(|t| t.name.matches(table)) {
            for column in t.columns.iter_mut().filter(|c| c.name == from) {
                column.name = to.to_owned();
            }
        }
        for (t, column) in self.column_comments.iter_mut() {
            if t.matches(table) && column == from {
                *column = to.to_owned();
            }
        }
    }

    fn comment_on(&mut self, comment: &ast::CommentOn) {
        let removes = comment.null_token().is_some();
        match comment.comment_object() {
            Some(ast::CommentObject::ObjectTable(object)) => {
                let Some(name) = object
                    .table_name_ref()
                    .and_then(|n| QualifiedName::of(n.syntax()))
                else {
                    return;
                };
                self.table_comments.retain(|t| *t != name);
                if !removes {
                    self.table_comments.push(name);
                }
            }
            Some(ast::CommentObject::ObjectColumn(object)) => {
                let Some(path) = object.name() else {
                    return;
                };
                let mut parts = crate::lint::names::segments(path.syntax());
                let (Some(column), Some(table)) = (parts.pop(), parts.pop()) else {
                    return;
                };
                let table = QualifiedName {
                    schema: parts.pop(),
                    name: table,
                };
                self.column_comments
                    .retain(|(t, c)| !(*t == table && *c == column));
                if !removes {
                    self.column_comments.push((table, column));
                }
            }
            _ => {}
        }
    }
}

fn column_def(column: &ast::Column, site: &dyn Fn(&SyntaxNode) -> Site) -> Option<Column> {
    Some(Column {
        name: last_segment(column.name()?.syntax())?,
        jsonb: column.ty().is_some_and(|ty| is_jsonb(&ty)),
        site: site(column.syntax()),
    })
}

pub(crate) fn relation(on: Option<ast::OnRelation>) -> Option<QualifiedName> {
    QualifiedName::of(on?.relation_name_ref()?.syntax())
}

fn trigger(create: &ast::CreateTrigger, site: Site) -> Option<Trigger> {
    let on_update = create.trigger_event_list().is_some_and(|list| {
        list.trigger_events()
            .any(|e| matches!(e, ast::TriggerEvent::TriggerEventUpdate(_)))
    });
    Some(Trigger {
        name: last_segment(create.trigger()?.syntax())?,
        table: relation(create.on_relation())?,
        function: create.call_expr().and_then(|call| called_function(&call)),
        before: matches!(create.timing(), Some(ast::Timing::TimingBefore(_))),
        on_update,
        for_each_row: matches!(
            create.trigger_level(),
            Some(ast::TriggerLevel::ForEachRow(_))
        ),
        site,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::source::FileKind;

    fn catalog(files: &[&str]) -> Catalog {
        let files: Vec<SqlFile> = files
            .iter()
            .enumerate()
            .map(|(i, sql)| {
                SqlFile::parse(
                    format!("00{i}_x.sql").into(),
                    FileKind::Migration,
                    (*sql).into(),
                )
            })
            .collect();
        Catalog::build(&files)
    }

    #[test]
    fn tables_columns_and_comments_across_files() {
        let c = catalog(&[
            "CREATE TABLE app.t (id int, doc jsonb, updated_at timestamptz);",
            "COMMENT ON TABLE t IS 'x'; COMMENT ON COLUMN app.t.doc IS 'y';",
        ]);
        assert_eq!(c.tables.len(), 1);
        let t = &c.tables[0];
        assert_eq!(t.name.to_string(), "app.t");
        assert_eq!(t.columns.iter().filter(|c| c.jsonb).count(), 1);
        assert!(c.table_has_comment(&t.name));
        assert!(c.column_has_comment(&t.name, "doc"));
        assert!(!c.column_has_comment(&t.name, "id"));
    }

    #[test]
    fn comment_is_null_removes_the_comment() {
        let c = catalog(&[
            "CREATE TABLE t (a int); COMMENT ON TABLE t IS 'x'; COMMENT ON TABLE t IS NULL;",
        ]);
        assert!(!c.table_has_comment(&c.tables[0].name));
    }

    #[test]
    fn drops_and_renames_are_replayed() {
        let c = catalog(&[
            "CREATE TABLE a (x int, y jsonb); CREATE TABLE b (z int);",
            "DROP TABLE b; ALTER TABLE a DROP COLUMN x, RENAME COLUMN y TO doc; ALTER TABLE a RENAME TO c;",
        ]);
        assert_eq!(c.tables.len(), 1);
        assert_eq!(c.tables[0].name.name, "c");
        let cols: Vec<_> = c.tables[0]
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["doc"]);
    }

    #[test]
    fn triggers_record_timing_event_and_level() {
        let c = catalog(&[
            "CREATE TRIGGER t1 BEFORE UPDATE ON s.t FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();",
        ]);
        let t = &c.triggers[0];
        assert_eq!(t.function.as_deref(), Some("update_updated_at_column"));
        assert!(t.before && t.on_update && t.for_each_row);
        assert_eq!(t.table.to_string(), "s.t");
    }

    #[test]
    fn statements_inside_do_blocks_count() {
        let c = catalog(&[
            "CREATE TABLE t (a int);\nDO $$ BEGIN\n  COMMENT ON TABLE t IS 'x';\nEND $$;",
        ]);
        assert!(c.table_has_comment(&c.tables[0].name));
    }
}
