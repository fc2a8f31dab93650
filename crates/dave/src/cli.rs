//! The `dave` command line: `serve`, `migrate up|status|repair|baseline`,
//! `seed`, `apikey create|revoke`.
//!
//! Every command finds its database the same way: `DAVE_DB_DSN` (or
//! `DAVE_DB_DSN_FILE`) when set; otherwise, outside production, the embedded
//! local PostgreSQL under `.dave/pgdata` (started for the command, and
//! stopped after it unless it was already running). `migrate` and `seed` are
//! pgkit's commands (the `pgkit_cli` library) over the files built into the
//! binary: the same table, progress lines, errors and Ctrl-C handling as
//! `pgkit migrate`, with hints that say `dave`. Progress goes to stderr, one
//! line per file; a failure returns an error that `main` reports with
//! [`pgkit_cli::report`]: one `error:` line (plus a `hint:` line when there
//! is a fix to suggest) and exit code 1, or 130/143 when `migrate up` was
//! stopped by SIGINT/SIGTERM after rolling back the running file.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};
use pgkit::connect::SessionParams;
use pgkit::dsn::Dsn;
use pgkit::local::{LocalCluster, LocalOptions};
use pgkit::migrate::{Event, MigrateOptions, MigrationSource, Migrator};
use pgkit::pool::Database;
use pgkit::seed::{SeedFiles, SeedOptions};
use pgkit::settings::{DbSettings, Env, Environment};
use pgkit_cli::cli::{MigrateAction, SeedRunArgs, ServiceDb};
use pgkit_cli::Program;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::auth::api_key::NewApiKey;
use crate::config::{Config, DSN_VAR, POOL_CLOSE_WAIT, SERVICE};
use crate::state::AppState;
use crate::{app, embedded, server, telemetry};

/// Where the embedded local cluster keeps its data, relative to the working directory.
pub const LOCAL_DATA_DIR: &str = ".dave/pgdata";
/// The database dave uses in the local cluster.
pub const LOCAL_DATABASE: &str = "dave";

/// dave, as its errors' hints name it.
pub const PROGRAM: Program = Program {
    name: "dave",
    database: "DAVE_DB_DSN, or DB_MIGRATE_DSN for migrations and seeds",
    fallback_hint: None,
};

#[derive(Debug, Parser)]
#[command(
    name = "dave",
    version,
    about = "The reference service on pgkit: conversations, messages, knowledge base, versioned prompts, API keys.",
    long_about = "The reference service on pgkit.\n\nConfiguration comes from the environment (and .env): DAVE_DB_DSN, PORT, HOST, JWT_SECRET, SESSION_SECRET, LOG_FORMAT, APP_ENVIRONMENT, DB_POOL_* and the others listed in the README. Without DAVE_DB_DSN (outside production) every command uses an embedded local PostgreSQL under .dave/pgdata."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Apply or inspect the migrations built into this binary (`pgkit migrate`'s actions).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction<ServiceDb>,
    },
    /// Apply the seeds (and test data when APP_ENVIRONMENT=test).
    Seed(SeedRunArgs<ServiceDb>),
    /// Create or revoke API keys.
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Apply migrations and seeds before serving (with a DSN; also DAVE_MIGRATE_ON_START=true).
    /// Without a DSN the local database is always migrated and seeded.
    #[arg(long)]
    pub migrate: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyAction {
    /// Create a key; it is printed once, on stdout, and only its hash is stored.
    Create {
        /// The user the key acts as.
        #[arg(long, value_name = "UUID")]
        user_id: Uuid,
        /// Give the key admin rights.
        #[arg(long)]
        admin: bool,
        /// The key's tier (free, pro, enterprise, ...).
        #[arg(long, value_name = "T", default_value = "free")]
        tier: String,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a key by its id (printed when it was created); requests with it then get 401.
    Revoke {
        /// The key's id.
        #[arg(value_name = "ID")]
        id: Uuid,
    },
}

/// Runs one command on a new runtime.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Migrate { action } => migrate(action).await,
            Command::Seed(args) => seed_command(args).await,
            Command::Apikey { action } => apikey(action).await,
        }
    })
}

fn read_env() -> anyhow::Result<Env> {
    Ok(Env::from_process()?)
}

/// A quiet stderr logger for the one-shot commands (pgkit's warnings).
fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
}

/// The database a command works on, and the local cluster behind it if any.
struct Target {
    settings: DbSettings,
    dsn: Dsn,
    local: Option<LocalCluster>,
    env: Env,
}

impl Target {
    /// `DAVE_DB_DSN`, or the local cluster outside production.
    async fn from_settings(mut settings: DbSettings, env: Env) -> anyhow::Result<Target> {
        let local = match &settings.dsn {
            Some(_) => None,
            None if settings.environment == Environment::Production => bail!(
                "{DSN_VAR} is not set, and APP_ENVIRONMENT=production never uses the embedded local PostgreSQL; set {DSN_VAR} (or {DSN_VAR}_FILE)"
            ),
            None => {
                let cluster = start_local().await?;
                settings.dsn = Some(Dsn::parse(&cluster.url(LOCAL_DATABASE))?);
                Some(cluster)
            }
        };
        let mut dsn = settings.dsn.clone().expect("set above");
        if settings.iam_auth {
            let token = pgkit::iam::token_source_from_env(&env)?
                .token()
                .await
                .context("cannot get an IAM access token for the database login")?;
            dsn = dsn.with_password(Some(token));
        }
        Ok(Target {
            settings,
            dsn,
            local,
            env,
        })
    }

    /// The database for migrations, seeds and keys: `DB_MIGRATE_DSN` (a
    /// direct connection) when set, else the service's.
    async fn from_env() -> anyhow::Result<Target> {
        let env = read_env()?;
        let settings = DbSettings::from_env(&env, DSN_VAR, SERVICE)?.for_migrations();
        Target::from_settings(settings, env).await
    }

    fn params(&self) -> SessionParams {
        SessionParams::from_settings(&self.settings)
    }

    /// A small pool for one-shot commands.
    fn database(&self) -> anyhow::Result<Database> {
        let mut settings = self.settings.clone();
        settings.pool_min_size = 0;
        settings.pool_max_size = 2;
        open_database(settings, &self.env)
    }

    /// Stops the local cluster if this command started it (another
    /// command, such as a running `dave serve`, may be using it).
    async fn finish(self) -> anyhow::Result<()> {
        stop_if_started_here(self.local).await
    }
}

/// The pool, with IAM login when `DB_IAM_AUTH` is on.
fn open_database(settings: DbSettings, env: &Env) -> anyhow::Result<Database> {
    Ok(Database::from_settings(settings, env)?)
}

async fn stop_if_started_here(local: Option<LocalCluster>) -> anyhow::Result<()> {
    match local {
        Some(cluster) if cluster.started_here() => Ok(cluster.stop().await?),
        _ => Ok(()),
    }
}

/// Starts (or attaches to) the local cluster and makes sure dave's database exists.
async fn start_local() -> anyhow::Result<LocalCluster> {
    let data_dir = std::env::current_dir()
        .context("cannot read the working directory")?
        .join(LOCAL_DATA_DIR);
    eprintln!(
        "{DSN_VAR} is not set: using the local PostgreSQL in {}",
        data_dir.display()
    );
    let cluster = LocalCluster::start_supervised(LocalOptions::new(data_dir))
        .await
        .context("cannot start the local PostgreSQL")?;
    create_local_database(&cluster).await?;
    Ok(cluster)
}

async fn create_local_database(cluster: &LocalCluster) -> anyhow::Result<()> {
    let mut settings = DbSettings::for_dsn(Dsn::parse(&cluster.url("postgres"))?, SERVICE);
    settings.pool_min_size = 0;
    settings.pool_max_size = 1;
    let admin = Database::new(settings)?;
    let result = async {
        let mut conn = admin.acquire().await?;
        let exists: bool = conn
            .fetch_val(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&LOCAL_DATABASE],
            )
            .await?;
        if !exists {
            // A fixed, plain identifier: nothing from outside goes into this SQL.
            conn.batch(&format!("CREATE DATABASE {LOCAL_DATABASE}"))
                .await?;
            eprintln!("created database {LOCAL_DATABASE}");
        }
        Ok::<_, pgkit::error::DbError>(())
    }
    .await;
    admin.close(Duration::from_secs(1)).await;
    result.context("cannot create the local database")
}

/// The migrator over the embedded files, with the lock timeout and retries
/// of the environment (DB_MIGRATE_LOCK_TIMEOUT, DB_MIGRATE_LOCK_RETRIES).
fn migrator() -> anyhow::Result<Migrator> {
    let options = MigrateOptions::from_env(&read_env()?)?;
    Ok(Migrator::new(
        MigrationSource::Embedded(embedded::MIGRATIONS),
        options,
    ))
}

fn seed_files() -> SeedFiles {
    SeedFiles {
        seeds: MigrationSource::Embedded(embedded::SEEDS),
        data: MigrationSource::Embedded(embedded::DATA),
    }
}

fn log_event(event: &Event) {
    tracing::info!("{event}");
}

/// Migrations then seeds, reporting each file with `report`.
async fn migrate_and_seed(
    dsn: &Dsn,
    params: &SessionParams,
    report: fn(&Event),
) -> anyhow::Result<()> {
    migrator()?.up(dsn, params, report).await?;
    pgkit::seed::run(dsn, params, &seed_files(), &SeedOptions::default(), report).await?;
    Ok(())
}

/// `dave migrate ACTION`: pgkit's, over the embedded files.
async fn migrate(action: MigrateAction<ServiceDb>) -> anyhow::Result<()> {
    init_cli_logging();
    let mut target = None;
    let source = MigrationSource::Embedded(embedded::MIGRATIONS);
    let result = pgkit_cli::migrate(source, action, |_, environment| {
        connect(&mut target, environment)
    })
    .await;
    finish(target).await?;
    result
}

/// `dave seed`: pgkit's, over the embedded seeds and test data.
async fn seed_command(args: SeedRunArgs<ServiceDb>) -> anyhow::Result<()> {
    init_cli_logging();
    let mut target = None;
    let result = pgkit_cli::seed(seed_files(), args, |_, environment| {
        connect(&mut target, environment)
    })
    .await;
    finish(target).await?;
    result
}

/// How pgkit's commands find dave's database: [`Target::from_env`], kept
/// in `slot` so the command can stop a local cluster it started.
async fn connect(
    slot: &mut Option<Target>,
    environment: Option<pgkit_cli::cli::Environment>,
) -> anyhow::Result<(Dsn, SessionParams)> {
    let target = slot.insert(Target::from_env().await?);
    let mut params = target.params();
    if let Some(e) = environment {
        params.environment = pgkit_cli::environment_name(e).into();
    }
    Ok((target.dsn.clone(), params))
}

async fn finish(target: Option<Target>) -> anyhow::Result<()> {
    match target {
        Some(target) => target.finish().await,
        None => Ok(()),
    }
}

async fn apikey(action: ApikeyAction) -> anyhow::Result<()> {
    init_cli_logging();
    let target = Target::from_env().await?;
    let db = target.database()?;
    let result = match action {
        ApikeyAction::Create {
            user_id,
            admin,
            tier,
            name,
        } => create_key(&db, user_id, admin, &tier, name.as_deref()).await,
        ApikeyAction::Revoke { id } => revoke_key(&db, id).await,
    };
    db.close(Duration::from_secs(1)).await;
    target.finish().await?;
    result
}

async fn create_key(
    db: &Database,
    user_id: Uuid,
    admin: bool,
    tier: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let tier = tier.trim();
    if tier.is_empty() || tier.len() > 50 {
        bail!("--tier must be 1 to 50 characters, such as free, pro or enterprise");
    }
    let key = NewApiKey::generate();
    let stored = crate::repo::api_keys::insert(
        db,
        &crate::repo::api_keys::NewKey {
            key_hash: key.hash(),
            user_id,
            name,
            is_admin: admin,
            tier,
        },
    )
    .await
    .context("cannot store the API key")?;
    eprintln!(
        "created API key {} for user {user_id} (admin: {}, tier: {tier}); it is shown only now, store it safely:",
        stored.id,
        if admin { "yes" } else { "no" }
    );
    println!("{}", key.key());
    Ok(())
}

async fn revoke_key(db: &Database, id: Uuid) -> anyhow::Result<()> {
    match crate::repo::api_keys::revoke(db, id)
        .await
        .context("cannot revoke the API key")?
    {
        Some(at) => {
            eprintln!(
                "API key {id} is revoked (since {})",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            Ok(())
        }
        None => Err(anyhow!(
            "no API key has id {id}; the id was printed by `dave apikey create`"
        )),
    }
}

/// Why the service stopped.
#[derive(Debug, Clone)]
enum StopReason {
    Signal,
    DatabaseUnreachable(String),
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let env = read_env()?;
    let mut config = Config::from_env(&env)?;
    config.migrate_on_start |= args.migrate;
    telemetry::init(&config).map_err(|e| anyhow!("cannot set up logging: {e}"))?;
    log_start(&config);

    let target = Target::from_settings(config.db.clone(), env.clone()).await?;
    config.db = target.settings.clone();
    if target.local.is_some() {
        migrate_and_seed(&target.dsn, &target.params(), log_event)
            .await
            .context("cannot prepare the local database")?;
    } else if config.migrate_on_start {
        let direct = Target::from_settings(config.db.for_migrations(), env.clone()).await?;
        migrate_and_seed(&direct.dsn, &direct.params(), log_event)
            .await
            .context("migrating at start-up failed")?;
    }

    let listener = server::bind(config.host, config.port)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (HOST, PORT)",
                config.host, config.port
            )
        })?;
    let addr = listener.local_addr()?;
    let db = open_database(config.db.clone(), &env)?;
    let grace = config.shutdown_grace;
    let state = AppState::new(db.clone(), config)?;
    let stop_signals = server::stop_signals();
    tracing::info!(url = %server::display_url(addr), "dave is serving on {}", server::display_url(addr));

    let (stop_tx, mut stop_rx) = watch::channel::<Option<StopReason>>(None);
    let warm_up = spawn_warm_up(db.clone(), stop_tx.clone());
    let signals = tokio::spawn(async move {
        stop_signals.recv().await;
        let _ = stop_tx.send(Some(StopReason::Signal));
    });
    let stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    };
    let drained = server::serve(listener, app::app(state), stop, grace).await?;
    // One budget for the rest, so the exit stays inside Cloud Run's 10 s.
    // Every connection task has ended, so nothing should be in use; then
    // the cancel requests of statements cut at the deadline (the pool sends
    // them from tasks of their own) get to finish, since dropping the
    // runtime would cancel them.
    let closing = Instant::now();
    warm_up.abort();
    signals.abort();
    db.close(POOL_CLOSE_WAIT).await;
    server::settle(POOL_CLOSE_WAIT.saturating_sub(closing.elapsed())).await;
    let reason = stop_rx.borrow_and_update().clone();
    stop_if_started_here(target.local).await?;
    tracing::info!(?drained, "stopped");
    match reason {
        Some(StopReason::DatabaseUnreachable(e)) => Err(anyhow!(
            "the database was not reachable within DB_CONNECT_RETRY: {e}"
        )),
        _ => Ok(()),
    }
}

/// Opens the first connections in the background, so liveness answers while
/// the proxy or database is still starting; readiness turns 200 when done.
/// Giving up (after `DB_CONNECT_RETRY`) stops the service with exit code 1,
/// so the platform restarts it instead of keeping an instance that never
/// becomes ready.
fn spawn_warm_up(db: Database, stop: watch::Sender<Option<StopReason>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        match db.warm_up().await {
            Ok(()) => tracing::info!(pool = ?db.status(), "database reachable; ready"),
            Err(e) => {
                tracing::error!(error = %e, "database not reachable within DB_CONNECT_RETRY; stopping");
                let _ = stop.send(Some(StopReason::DatabaseUnreachable(e.to_string())));
            }
        }
    })
}

fn log_start(config: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        environment = %config.environment(),
        service = config.k_service.as_deref().unwrap_or(SERVICE),
        revision = config.k_revision.as_deref().unwrap_or("-"),
        database = %config.db.dsn.as_ref().map(Dsn::redacted).unwrap_or_else(|| "local".to_owned()),
        pool_max = config.db.pool_max_size,
        bearer_auth = config.jwt_secret.is_some(),
        access_log = config.access_log,
        "starting dave"
    );
    if config.session_secret_is_random {
        tracing::warn!(
            "SESSION_SECRET is not set: anonymous sessions last only as long as this process"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("dave").chain(args.iter().copied()))
        };
        assert!(matches!(
            parse(&["serve"]).unwrap().command,
            Command::Serve(ServeArgs { migrate: false })
        ));
        assert!(matches!(
            parse(&["serve", "--migrate"]).unwrap().command,
            Command::Serve(ServeArgs { migrate: true })
        ));
        match parse(&["migrate", "up"]).unwrap().command {
            Command::Migrate {
                action: MigrateAction::Up { ddl, .. },
            } => {
                assert_eq!(ddl.ddl_lock_timeout, None);
                assert_eq!(ddl.ddl_lock_retries, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "migrate",
            "up",
            "--ddl-lock-timeout",
            "2.5",
            "--ddl-lock-retries",
            "1",
        ])
        .unwrap()
        .command
        {
            Command::Migrate {
                action: MigrateAction::Up { ddl, .. },
            } => {
                assert_eq!(ddl.ddl_lock_timeout, Some(2.5));
                assert_eq!(ddl.ddl_lock_retries, Some(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["migrate", "baseline", "--to", "6"])
                .unwrap()
                .command,
            Command::Migrate {
                action: MigrateAction::Baseline { to: 6, .. }
            }
        ));
        assert!(matches!(
            parse(&["migrate", "repair", "003_x.sql", "--force"])
                .unwrap()
                .command,
            Command::Migrate {
                action: MigrateAction::Repair { force: true, .. }
            }
        ));
        // pgkit's `new` and `--dir` are not dave's: its files are built in.
        assert!(parse(&["migrate", "new", "x"]).is_err());
        assert!(parse(&["migrate", "--dir", "m", "up"]).is_err());
        assert!(matches!(
            parse(&["seed"]).unwrap().command,
            Command::Seed(_)
        ));
        let user = "6f1c1a70-0000-4000-8000-000000000001";
        match parse(&[
            "apikey",
            "create",
            "--user-id",
            user,
            "--admin",
            "--tier",
            "pro",
        ])
        .unwrap()
        .command
        {
            Command::Apikey {
                action:
                    ApikeyAction::Create {
                        user_id,
                        admin,
                        tier,
                        name,
                    },
            } => {
                assert_eq!(user_id.to_string(), user);
                assert!(admin);
                assert_eq!(tier, "pro");
                assert_eq!(name, None);
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["apikey", "create", "--user-id", "nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--user-id"), "{err}");
    }
}
