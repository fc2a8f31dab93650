//! The command line's shape: clap types only, no behaviour.
//!
//! One variant of [`Command`] per subcommand, each with its own args struct,
//! so adding `lint`, `audit`, `doctor` or `provision` is one variant, one
//! struct and one module under `commands/`. Every flag can also come from
//! the environment variable named in its help; the database URL's value is
//! never shown in `--help`.
//!
//! [`MigrateAction`] and [`SeedRunArgs`] are also what a service binary
//! mounts (`dave migrate`, `dave seed`): generic over how the database is
//! named, [`DbArgs`] for pgkit, [`ServiceDb`] (no flag) for a service that
//! finds its database itself.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// pgkit: the operator's tool for the standard's PostgreSQL patterns.
#[derive(Debug, Parser)]
#[command(name = "pgkit", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply, inspect and record numbered SQL migrations (NNN_description.sql).
    Migrate(MigrateArgs),
    /// Apply seeds/*.sql (every run; must be idempotent) and, with APP_ENVIRONMENT=test, data/*.sql.
    Seed(SeedArgs),
    /// Write one SQL file that applies and records the migrations, for psql -f or gcloud sql import sql.
    Bundle(BundleArgs),
    /// Start, stop or inspect the embedded local PostgreSQL for development.
    Local(LocalArgs),
    /// Check migration files against the standard's rules (header, BEGIN/COMMIT, IF NOT EXISTS, triggers, comments, seeds, data guards).
    Lint(LintArgs),
    /// Check a live database's catalog against the standard (triggers, comments, foreign key indexes, primary keys, schema boundary).
    Audit(AuditArgs),
    /// Diagnose a DSN step by step (socket or TCP, TLS, login, database, grants, pool size) and name the fix.
    Doctor(DoctorArgs),
    /// Create a service's schema and role with grants that also cover tables created later.
    Provision(ProvisionArgs),
}

/// Which database, and the session's environment.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL, e.g. postgresql://user:pass@/db?host=/cloudsql/PROJECT:REGION:INSTANCE
    /// (DATABASE_URL_FILE and .env are read too when the flag and variable are absent).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

/// How long to wait for other runners, and for each statement.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seconds to wait for another runner holding the lock before giving up.
    #[arg(
        long,
        env = "PGKIT_LOCK_TIMEOUT",
        default_value_t = 300.0,
        value_name = "SECS"
    )]
    pub lock_timeout: f64,

    /// statement_timeout in seconds for the runner's session; 0 means none
    /// (DB_QUERY_TIMEOUT does not apply to migrations).
    #[arg(
        long,
        env = "PGKIT_STATEMENT_TIMEOUT",
        default_value_t = 0.0,
        value_name = "SECS"
    )]
    pub statement_timeout: f64,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Directory holding the NNN_description.sql files.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_DIR",
        default_value = "migrations",
        value_name = "DIR",
        global = true
    )]
    pub dir: PathBuf,

    #[command(subcommand)]
    pub action: PgkitMigrateAction,
}

/// `pgkit migrate`'s actions: the ones that talk to the database, and `new`,
/// which writes a file into the folder.
#[derive(Debug, Subcommand)]
pub enum PgkitMigrateAction {
    #[command(flatten)]
    Run(MigrateAction<DbArgs>),
    /// Write the next numbered file from the standard's template.
    New(NewArgs),
}

/// No database flag: the service binary finds its database itself (dave:
/// `DAVE_DB_DSN`, or its local cluster).
#[derive(Debug, Clone, Args)]
pub struct ServiceDb {}

/// What the actions that talk to the database share (`new` does not: its
/// help lists only what it uses).
#[derive(Debug, Args)]
pub struct RunnerArgs<D: Args> {
    /// Schema of the tracking table pgkit_migrations.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_SCHEMA",
        default_value = "public",
        value_name = "SCHEMA"
    )]
    pub schema: String,

    /// The session's app.environment, which files may read with
    /// current_setting('app.environment', true).
    #[arg(long, env = "APP_ENVIRONMENT", value_enum)]
    pub environment: Option<Environment>,

    #[command(flatten)]
    pub db: D,

    #[command(flatten)]
    pub run: RunArgs,
}

/// How long a migration statement may wait for a table or row lock. Unset
/// flags fall back to the variables in .env, then to the defaults.
#[derive(Debug, Args)]
pub struct DdlLockArgs {
    /// lock_timeout in seconds for each migration statement [default: 5]: an ALTER TABLE
    /// waiting longer behind another session's lock (while every query on the table queues
    /// behind it) is rolled back and the file retried.
    #[arg(long, env = "DB_MIGRATE_LOCK_TIMEOUT", value_name = "SECS")]
    pub ddl_lock_timeout: Option<f64>,

    /// How many times a file that hit --ddl-lock-timeout is tried again, with backoff [default: 3].
    #[arg(long, env = "DB_MIGRATE_LOCK_RETRIES", value_name = "N")]
    pub ddl_lock_retries: Option<u32>,
}

/// The actions on a database, whatever holds the files: `pgkit migrate`'s
/// folder or a service binary's embedded files.
#[derive(Debug, Subcommand)]
pub enum MigrateAction<D: Args> {
    /// List applied, pending, changed and missing migrations.
    Status {
        #[command(flatten)]
        runner: RunnerArgs<D>,
        /// text (a table) or json, on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// The same as --format json (kept for scripts written before --format).
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Apply every pending migration, in order, under an advisory lock; Ctrl-C cancels and
    /// rolls back the running file (exit 130).
    Up {
        #[command(flatten)]
        runner: RunnerArgs<D>,
        #[command(flatten)]
        ddl: DdlLockArgs,
    },
    /// Accept the current checksum of the applied files named, after showing what changed;
    /// an edit beyond comments and whitespace is refused unless --force.
    Repair {
        #[command(flatten)]
        runner: RunnerArgs<D>,
        /// The edited migration files (names or paths), at least one.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<String>,
        /// Accept edits of statements too (the database must already match the file).
        #[arg(long)]
        force: bool,
    },
    /// Record migrations up to --to as applied without running them (adopt an existing database).
    Baseline {
        #[command(flatten)]
        runner: RunnerArgs<D>,
        /// The number of the last migration the database already has.
        #[arg(long, value_name = "N")]
        to: i64,
    },
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, in a few words: "add user email".
    pub name: String,
    /// Issue or ticket for the header.
    #[arg(long, env = "PGKIT_ISSUE")]
    pub issue: Option<String>,
    /// Author for the header.
    #[arg(long, env = "PGKIT_AUTHOR")]
    pub author: Option<String>,
    /// One-line description for the header (defaults to NAME).
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Migrations directory holding seeds/ and data/.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_DIR",
        default_value = "migrations",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    #[command(flatten)]
    pub seed: SeedRunArgs<DbArgs>,
}

/// What `seed` takes besides where the files are.
#[derive(Debug, Args)]
pub struct SeedRunArgs<D: Args> {
    /// The session's app.environment: data/ runs only for test.
    #[arg(long, env = "APP_ENVIRONMENT", value_enum)]
    pub environment: Option<Environment>,

    #[command(flatten)]
    pub db: D,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Directory holding the NNN_description.sql files.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_DIR",
        default_value = "migrations",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// File to write; - for standard output.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Schema of the tracking table pgkit_migrations.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_SCHEMA",
        default_value = "public",
        value_name = "SCHEMA"
    )]
    pub schema: String,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The cluster's data directory (created on first start).
    #[arg(
        long,
        env = "PGKIT_DATA_DIR",
        default_value = ".pgkit/pgdata",
        value_name = "DIR",
        global = true
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub action: LocalAction,
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Start the cluster (initialising it first); does nothing when it already runs.
    Start,
    /// Stop the cluster; does nothing when it is not running.
    Stop,
    /// Say whether the cluster runs, and its URL.
    Status,
}

/// How a report is printed on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document for tools.
    Json,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The migrations folder: NNN_*.sql, with optional seeds/ and data/ subfolders
    /// (the same as --dir).
    #[arg(value_name = "DIR")]
    pub path: Option<PathBuf>,

    /// The migrations folder, as every other command takes it.
    #[arg(
        long,
        env = "PGKIT_MIGRATIONS_DIR",
        default_value = "migrations",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// text (`file:line:col: severity[rule] message` and the fix) or json.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The service's schema: audit only it, and check its boundary (the owner's objects
    /// outside it, other roles' privileges inside it).
    #[arg(long, env = "PGKIT_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// A role of the service itself (runtime role, IAM user) that may hold privileges in
    /// --schema; repeat the flag, or separate with commas in the variable.
    #[arg(
        long = "role",
        env = "PGKIT_AUDIT_ROLES",
        value_name = "ROLE",
        value_delimiter = ',',
        requires = "schema"
    )]
    pub roles: Vec<String>,

    /// text (`object: severity[rule] message` and the fix) or json.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// The database URL as psql takes it (`pgkit doctor postgresql://…`); the same as
    /// --database-url, which it overrides.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Cloud Run instances that each run a pool of DB_POOL_MAX_SIZE (the service's
    /// --max-instances); checked against the server's max_connections.
    #[arg(long, env = "MAX_INSTANCES", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub instances: Option<u32>,

    /// The service's schema, whose privileges are checked (default: the role's current schema).
    #[arg(long, env = "PGKIT_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// text (one ok/FAIL line per step) or json.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// The app.environment the service's sessions carry (APP_ENVIRONMENT).
    #[arg(long, env = "APP_ENVIRONMENT", value_enum)]
    pub environment: Option<Environment>,

    /// The database URL as psql takes it (`pgkit doctor postgresql://…`); the same as
    /// --database-url, which it overrides.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("login").required(true).args(["password_env", "iam_user"])))]
pub struct ProvisionArgs {
    /// The service's schema (created if missing, owned by --owner).
    #[arg(long, env = "PGKIT_SCHEMA", value_name = "SCHEMA")]
    pub schema: String,

    /// The service's runtime role (created if missing): data privileges only.
    #[arg(long, env = "PGKIT_ROLE", value_name = "ROLE")]
    pub role: String,

    /// Name of the environment variable holding the role's password (VAR_FILE works too);
    /// the password itself is never a flag, never printed.
    #[arg(long, env = "PGKIT_PASSWORD_ENV", value_name = "VAR")]
    pub password_env: Option<String>,

    /// Cloud SQL IAM login: --role becomes a group role granted to this IAM user
    /// (service account email or user email).
    #[arg(long, env = "PGKIT_IAM_USER", value_name = "EMAIL")]
    pub iam_user: Option<String>,

    /// The role that runs migrations and so owns the tables (default: the role provision
    /// connects as); default privileges are set for it.
    #[arg(long, env = "PGKIT_MIGRATION_OWNER", value_name = "ROLE")]
    pub owner: Option<String>,

    /// Print the SQL instead of running it (passwords show as '***').
    #[arg(long)]
    pub dry_run: bool,

    /// With DB_POOLER=transaction, the app.environment written as the role's default
    /// (APP_ENVIRONMENT).
    #[arg(long, env = "APP_ENVIRONMENT", value_enum)]
    pub environment: Option<Environment>,

    /// The database URL as psql takes it (`pgkit doctor postgresql://…`); the same as
    /// --database-url, which it overrides.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_may_follow_the_action() {
        let cli =
            Cli::try_parse_from(["pgkit", "migrate", "up", "--dir", "db/m", "--schema", "ops"])
                .unwrap();
        let Command::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!(m.dir, PathBuf::from("db/m"));
        let PgkitMigrateAction::Run(MigrateAction::Up { runner, ddl }) = m.action else {
            panic!("not up")
        };
        assert_eq!(runner.schema, "ops");
        assert_eq!(ddl.ddl_lock_timeout, None);

        let cli = Cli::try_parse_from([
            "pgkit",
            "migrate",
            "up",
            "--ddl-lock-timeout",
            "0.5",
            "--ddl-lock-retries",
            "0",
        ])
        .unwrap();
        let Command::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        let PgkitMigrateAction::Run(MigrateAction::Up { ddl, .. }) = m.action else {
            panic!("not up")
        };
        assert_eq!(ddl.ddl_lock_timeout, Some(0.5));
        assert_eq!(ddl.ddl_lock_retries, Some(0));
    }
}
