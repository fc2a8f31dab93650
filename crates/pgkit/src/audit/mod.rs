//! `pgkit audit`: the standard's rules checked on a live database's catalog.
//!
//! Lint reads migration files; audit reads what the files actually built, so
//! it also catches hand-made changes, files that ran out of order and
//! databases created by another tool. Each check is one catalog query over
//! the user tables (system schemas, partitions and extension members are
//! skipped): tables with `updated_at` but no `BEFORE UPDATE` trigger calling
//! `update_updated_at_column()`, tables and JSONB columns without comments,
//! foreign keys without a supporting index, tables without a primary key.
//! With a service schema ([`AuditOptions::schema`]) the checks cover that
//! schema only, and two more guard the schema-per-service boundary: objects
//! of the schema's owner that live elsewhere, and roles other than the
//! service's own holding privileges inside it. Findings carry the SQL that
//! fixes them; `docs/operations.md` lists the checks.

mod report;

use tokio_postgres::Client;

pub use report::{AuditFinding, AuditReport, AuditRule, Severity};

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// The service's schema; `None` audits every user schema and skips the
    /// schema-boundary checks.
    pub schema: Option<String>,
    /// Roles of the service itself (its runtime role, IAM users) that may
    /// hold privileges in the schema besides the owners.
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("schema {schema:?} does not exist in database {database:?}; check --schema (names are case-sensitive) or create it with `pgkit provision`")]
    SchemaNotFound { schema: String, database: String },
    #[error("the audit's {check} query failed: {message}")]
    Query {
        check: &'static str,
        message: String,
    },
}

/// The tables every check looks at: ordinary and partitioned tables (not
/// their partitions) outside the system schemas, not owned by an extension.
/// `$1` is the schema, or NULL for all.
const TABLES: &str = "
    SELECT c.oid, n.nspname::text AS nsp, c.relname::text AS rel,
           n.nspname || '.' || c.relname AS display,
           format('%I.%I', n.nspname, c.relname) AS qualified
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
      AND ($1::text IS NULL OR n.nspname = $1::text)
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_depend d
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/// Runs every check and returns the findings.
pub async fn audit(client: &Client, opts: &AuditOptions) -> Result<AuditReport, AuditError> {
    let schema = opts.schema.as_deref();
    if let Some(s) = schema {
        ensure_schema(client, s).await?;
    }
    let tables_checked = count_tables(client, schema).await?;
    let mut findings = Vec::new();
    findings.extend(updated_at_trigger(client, schema).await?);
    findings.extend(table_comment(client, schema).await?);
    findings.extend(jsonb_column_comment(client, schema).await?);
    findings.extend(foreign_key_index(client, schema).await?);
    findings.extend(primary_key(client, schema).await?);
    if let Some(s) = schema {
        findings.extend(object_outside_schema(client, s).await?);
        findings.extend(foreign_grant(client, s, &opts.roles).await?);
    }
    Ok(AuditReport::new(findings, tables_checked))
}

async fn query(
    client: &Client,
    check: &'static str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, AuditError> {
    client
        .query(sql, params)
        .await
        .map_err(|e| AuditError::Query {
            check,
            message: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_string()),
        })
}

/// Runs one check's query and turns each row into its finding.
async fn check(
    client: &Client,
    check: &'static str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    finding: impl Fn(&tokio_postgres::Row) -> AuditFinding,
) -> Result<Vec<AuditFinding>, AuditError> {
    let rows = query(client, check, sql, params).await?;
    Ok(rows.iter().map(finding).collect())
}

async fn ensure_schema(client: &Client, schema: &str) -> Result<(), AuditError> {
    let rows = query(
        client,
        "schema",
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1), current_database()::text",
        &[&schema],
    )
    .await?;
    let row = &rows[0];
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    Err(AuditError::SchemaNotFound {
        schema: schema.to_string(),
        database: row.get(1),
    })
}

async fn count_tables(client: &Client, schema: Option<&str>) -> Result<usize, AuditError> {
    let sql = format!("WITH t AS ({TABLES}) SELECT count(*) FROM t");
    let rows = query(client, "table count", &sql, &[&schema]).await?;
    Ok(rows[0].get::<_, i64>(0) as usize)
}

async fn updated_at_trigger(
    client: &Client,
    schema: Option<&str>,
) -> Result<Vec<AuditFinding>, AuditError> {
    // tgtype bits: 1 FOR EACH ROW, 2 BEFORE, 16 UPDATE.
    let sql = format!(
        "WITH t AS ({TABLES})
         SELECT t.display, t.qualified,
                format('%I', left('update_' || t.rel || '_updated_at', 63)),
                EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                        WHERE p.proname = 'update_updated_at_column' AND p.pronargs = 0)
         FROM t
         JOIN pg_catalog.pg_attribute a
           ON a.attrelid = t.oid AND a.attname = 'updated_at' AND a.attnum > 0 AND NOT a.attisdropped
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_catalog.pg_trigger tg
             JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
             WHERE tg.tgrelid = t.oid AND NOT tg.tgisinternal AND tg.tgenabled <> 'D'
               AND p.proname = 'update_updated_at_column'
               AND (tg.tgtype::int & 19) = 19)"
    );
    check(client, "updated_at trigger", &sql, &[&schema], |row| {
        let (qualified, trigger): (String, String) = (row.get(1), row.get(2));
        let mut fix = String::new();
        if !row.get::<_, bool>(3) {
            fix.push_str(
                "CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$ \
                 BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$ LANGUAGE plpgsql; ",
            );
        }
        fix.push_str(&format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {qualified}; CREATE TRIGGER {trigger} \
             BEFORE UPDATE ON {qualified} FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();"
        ));
        AuditFinding::new(
            row.get(0),
            AuditRule::UpdatedAtTrigger,
            "table has updated_at but no enabled BEFORE UPDATE FOR EACH ROW trigger calling \
             update_updated_at_column(): updated_at keeps its insert time"
                .into(),
            fix,
        )
    })
    .await
}

async fn table_comment(
    client: &Client,
    schema: Option<&str>,
) -> Result<Vec<AuditFinding>, AuditError> {
    let sql = format!(
        "WITH t AS ({TABLES})
         SELECT t.display, t.qualified FROM t
         WHERE coalesce(btrim(obj_description(t.oid, 'pg_class')), '') = ''"
    );
    check(client, "table comment", &sql, &[&schema], |row| {
        let qualified: String = row.get(1);
        AuditFinding::new(
            row.get(0),
            AuditRule::TableComment,
            "table has no comment: the next person cannot tell what one row is".into(),
            format!("COMMENT ON TABLE {qualified} IS '<what one row is, and who writes it>';"),
        )
    })
    .await
}

async fn jsonb_column_comment(
    client: &Client,
    schema: Option<&str>,
) -> Result<Vec<AuditFinding>, AuditError> {
    let sql = format!(
        "WITH t AS ({TABLES})
         SELECT t.display || '.' || a.attname, t.qualified || '.' || format('%I', a.attname)
         FROM t
         JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE a.atttypid = 'pg_catalog.jsonb'::regtype
           AND coalesce(btrim(col_description(t.oid, a.attnum)), '') = ''"
    );
    check(client, "JSONB column comment", &sql, &[&schema], |row| {
        let column: String = row.get(1);
        AuditFinding::new(
            row.get(0),
            AuditRule::JsonbColumnComment,
            "JSONB column has no comment: its shape is written down nowhere else".into(),
            format!("COMMENT ON COLUMN {column} IS '<the JSON it holds: object keys, limits>';"),
        )
    })
    .await
}

async fn foreign_key_index(
    client: &Client,
    schema: Option<&str>,
) -> Result<Vec<AuditFinding>, AuditError> {
    // An index supports the key when its first key columns are exactly the
    // key's columns, in any order; partial and invalid indexes do not count.
    let sql = format!(
        "WITH t AS ({TABLES}),
         fk AS (
             SELECT t.display, t.qualified, t.rel, con.conname::text AS conname, con.conkey,
                    format('%I.%I', fn.nspname, f.relname) AS referenced,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                          ORDER BY k.ord) AS cols,
                    con.conrelid
             FROM t
             JOIN pg_catalog.pg_constraint con ON con.conrelid = t.oid AND con.contype = 'f'
             JOIN pg_catalog.pg_class f ON f.oid = con.confrelid
             JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace)
         SELECT fk.display, fk.qualified, fk.conname, fk.referenced,
                array_to_string(fk.cols, ', '),
                (SELECT string_agg(format('%I', c), ', ') FROM unnest(fk.cols) AS c),
                format('%I', left('idx_' || fk.rel || '_' || array_to_string(fk.cols, '_'), 63))
         FROM fk
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_catalog.pg_index i
             WHERE i.indrelid = fk.conrelid AND i.indpred IS NULL AND i.indisvalid
               AND i.indnkeyatts >= cardinality(fk.conkey)
               AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(fk.conkey)] @> fk.conkey)"
    );
    check(client, "foreign key index", &sql, &[&schema], |row| {
        let (qualified, conname, referenced): (String, String, String) =
            (row.get(1), row.get(2), row.get(3));
        let (cols, quoted_cols, index): (String, String, String) =
            (row.get(4), row.get(5), row.get(6));
        AuditFinding::new(
            row.get(0),
            AuditRule::ForeignKeyIndex,
            format!(
                "foreign key {conname} ({cols}) -> {referenced} has no index leading with its \
                 columns: each delete or key update in {referenced} scans this whole table"
            ),
            // CONCURRENTLY cannot run in a transaction: the migration
            // runner needs the file marked, or it refuses it (issue 14).
            format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {qualified} ({quoted_cols}); \
                 {FK_INDEX_PLACEMENT}"
            ),
        )
    })
    .await
}

/// Where the foreign-key index fix goes: `CREATE INDEX CONCURRENTLY` runs
/// only outside a transaction block, so `pgkit migrate` needs it alone in a
/// file marked `-- pgkit:no-transaction`. A SQL comment, so the line stays
/// SQL that can be pasted.
pub const FK_INDEX_PLACEMENT: &str =
    "-- alone in a migration file with `-- pgkit:no-transaction` in its header, no BEGIN/COMMIT";

async fn primary_key(
    client: &Client,
    schema: Option<&str>,
) -> Result<Vec<AuditFinding>, AuditError> {
    let sql = format!(
        "WITH t AS ({TABLES})
         SELECT t.display, t.qualified FROM t
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con
                           WHERE con.conrelid = t.oid AND con.contype = 'p')"
    );
    check(client, "primary key", &sql, &[&schema], |row| {
        let qualified: String = row.get(1);
        AuditFinding::new(
            row.get(0),
            AuditRule::PrimaryKey,
            "table has no primary key: a row cannot be addressed reliably, and logical \
             replication (Database Migration Service, pglogical) cannot carry its UPDATEs and DELETEs"
                .into(),
            format!(
                "ALTER TABLE {qualified} ADD PRIMARY KEY (<unique, NOT NULL columns>); \
                 or ALTER TABLE {qualified} ADD COLUMN id UUID PRIMARY KEY DEFAULT gen_random_uuid();"
            ),
        )
    })
    .await
}

/// Objects owned by the schema's owner in other schemas. Sequences and types
/// that belong to a table (serial, identity, row types) go with their table.
/// Not reported: pgkit's own tracking table (`pgkit_migrations`, wherever a
/// runner's `--schema` put it) and the standard's shared
/// `update_updated_at_column()`, which every service's triggers call from
/// `public` by design.
async fn object_outside_schema(
    client: &Client,
    schema: &str,
) -> Result<Vec<AuditFinding>, AuditError> {
    let sql = "
        WITH s AS (SELECT oid, nspowner, nspname::text AS nspname
                   FROM pg_catalog.pg_namespace WHERE nspname = $1),
        objs AS (
            SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                  WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                  WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
                   n.nspname::text AS nsp, n.nspname || '.' || c.relname AS display,
                   format('%I.%I', n.nspname, c.relname) AS qualified,
                   c.relowner AS owner, 'pg_catalog.pg_class'::regclass AS classid, c.oid,
                   c.relname = $2 AS shared
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND NOT c.relispartition
            UNION ALL
            SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                   n.nspname::text,
                   n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                   format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   p.proowner, 'pg_catalog.pg_proc'::regclass, p.oid,
                   p.proname = 'update_updated_at_column' AND p.pronargs = 0
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            UNION ALL
            SELECT CASE ty.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                   n.nspname::text, n.nspname || '.' || ty.typname,
                   format('%I.%I', n.nspname, ty.typname),
                   ty.typowner, 'pg_catalog.pg_type'::regclass, ty.oid, false
            FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
            WHERE ty.typtype IN ('e', 'd', 'r'))
        SELECT o.kind, o.display, o.qualified, pg_get_userbyid(o.owner)::text, format('%I', s.nspname)
        FROM objs o, s
        WHERE o.owner = s.nspowner
          AND o.nsp <> s.nspname
          AND NOT o.shared
          AND o.nsp NOT IN ('pg_catalog', 'information_schema')
          AND o.nsp !~ '^pg_(toast|temp_)'
          AND NOT EXISTS (
              SELECT 1 FROM pg_catalog.pg_depend d
              WHERE d.classid = o.classid AND d.objid = o.oid
                AND (d.deptype = 'e' OR (d.deptype IN ('a', 'i')
                                         AND d.refclassid = 'pg_catalog.pg_class'::regclass)))
        ORDER BY o.display";
    check(
        client,
        "objects outside the schema",
        sql,
        &[&schema, &crate::migrate::TABLE],
        |row| {
            let (kind, qualified, owner, target): (String, String, String, String) =
                (row.get(0), row.get(2), row.get(3), row.get(4));
            AuditFinding::new(
                row.get(1),
                AuditRule::ObjectOutsideSchema,
                format!(
                    "{} owned by {owner}, the owner of schema {schema}, lives outside it: the \
                     service's grants, search_path and backups by schema miss it",
                    kind.to_lowercase()
                ),
                format!(
                    "ALTER {kind} {qualified} SET SCHEMA {target}; (or, if it belongs to another \
                     service: ALTER {kind} {qualified} OWNER TO <that service's owner>;)"
                ),
            )
        },
    )
    .await
}

/// Privileges inside the schema held by roles other than the owners and
/// the service's own roles. EXECUTE for PUBLIC on functions is PostgreSQL's
/// default and needs USAGE on the schema to matter, so it is not reported.
async fn foreign_grant(
    client: &Client,
    schema: &str,
    roles: &[String],
) -> Result<Vec<AuditFinding>, AuditError> {
    let sql = "
        WITH s AS (SELECT oid, nspowner, nspname::text AS nspname, nspacl
                   FROM pg_catalog.pg_namespace WHERE nspname = $1),
        objs AS (
            SELECT 'schema' AS kind, 'schema ' || s.nspname AS display,
                   format('REVOKE ALL ON SCHEMA %I', s.nspname) AS revoke,
                   s.nspacl AS acl, s.nspowner AS owner
            FROM s
            UNION ALL
            SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
                                  WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                                  ELSE 'table' END,
                   s.nspname || '.' || c.relname,
                   format('REVOKE ALL ON %s %I.%I',
                          CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, s.nspname, c.relname),
                   c.relacl, c.relowner
            FROM pg_catalog.pg_class c JOIN s ON c.relnamespace = s.oid
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
            UNION ALL
            SELECT 'function',
                   s.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                   format('REVOKE ALL ON %s %I.%I(%s)',
                          CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                          s.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   p.proacl, p.proowner
            FROM pg_catalog.pg_proc p JOIN s ON p.pronamespace = s.oid
            UNION ALL
            SELECT 'default privileges',
                   'schema ' || s.nspname,
                   format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I REVOKE ALL ON %s',
                          pg_get_userbyid(d.defaclrole), s.nspname,
                          CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                                               WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES'
                                               ELSE 'SCHEMAS' END),
                   d.defaclacl, d.defaclrole
            FROM pg_catalog.pg_default_acl d JOIN s ON d.defaclnamespace = s.oid)
        SELECT o.kind, o.display, o.revoke,
               CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee)::text END,
               CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE format('%I', pg_get_userbyid(x.grantee)) END,
               string_agg(DISTINCT x.privilege_type, ', ' ORDER BY x.privilege_type)
        FROM s, objs o CROSS JOIN LATERAL aclexplode(o.acl) AS x
        WHERE x.grantee <> o.owner
          AND x.grantee <> s.nspowner
          AND (x.grantee = 0 OR pg_get_userbyid(x.grantee)::text <> ALL ($2::text[]))
          AND NOT (o.kind = 'function' AND x.grantee = 0 AND x.privilege_type = 'EXECUTE')
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 2, 4";
    check(client, "grants", sql, &[&schema, &roles], |row| {
        let (kind, revoke, grantee, quoted, privileges): (String, String, String, String, String) =
            (row.get(0), row.get(2), row.get(3), row.get(4), row.get(5));
        let who = if grantee == "PUBLIC" {
            "every role (PUBLIC)".to_string()
        } else {
            format!("role {grantee}")
        };
        let on = if kind == "default privileges" {
            "future objects (default privileges)".to_string()
        } else {
            format!("this {kind}")
        };
        let mut fix = format!("{revoke} FROM {quoted};");
        if grantee != "PUBLIC" {
            fix.push_str(&format!(
                " (if {grantee} is this service's own role, pass --role {grantee})"
            ));
        }
        AuditFinding::new(
            row.get(1),
            AuditRule::ForeignGrant,
            format!(
                "{who} holds {privileges} on {on} in schema {schema}: only the service's own \
                 roles belong inside its schema"
            ),
            fix,
        )
    })
    .await
}
