//! The harness of dave's integration tests, as a library module so that the
//! `api`, `pooled` and `faults` test binaries each take what they use from
//! one public API, instead of compiling one shared file into every binary and
//! hiding the parts a binary leaves unused. It runs the service in-process on
//! a free port ([`spawn_app`]) against a database of the test's own,
//! cloned from a template migrated once per test process, optionally through
//! a PgBouncer of its own ([`pooled`]), and the real `dave` binary as a child
//! process ([`spawn_binary`]) for what only a process shows (signals, log
//! lines on stdout, exit codes). The template holds dave's migrations, seeds
//! and test data (`migrations/data/`, built with `APP_ENVIRONMENT=test`), so
//! the fixture API keys [`ADMIN_KEY`] and [`USER_KEY`] work in every test
//! database. Behind the cargo feature `testing`, never in the service.

pub mod calls;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, TEST_JWT_SECRET};
use crate::state::AppState;
use pgkit::dsn::Dsn;
use pgkit::pool::Database;
use pgkit::settings::DbSettings;
use pgkit::testing::pgbouncer::PgBouncer;
use pgkit::testing::{TestCluster, TestDatabase};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Fixture keys from `migrations/data/001_test_fixtures.sql`.
pub const ADMIN_KEY: &str = "dave_test_admin_key_0000000000000000000000";
pub const USER_KEY: &str = "dave_test_user_key_00000000000000000000000";
pub const REVOKED_KEY: &str = "dave_test_revoked_key_000000000000000000000";

/// How long any wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The service running in this test's runtime.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    pub client: reqwest::Client,
    /// The service's own pool, for direct SQL in tests.
    pub db: Database,
    pub state: AppState,
    /// Dropped with the app: the server stops.
    _stop: oneshot::Sender<()>,
    _bouncer: Option<PgBouncer>,
    // Last: dropped after the pool above.
    _database: TestDatabase,
}

impl TestApp {
    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the request reaches the service")
    }

    /// A bearer token for `user_id`, signed with the test JWT secret.
    pub fn bearer(&self, user_id: Uuid, admin: bool) -> String {
        bearer_token(user_id, admin)
    }
}

/// A bearer token for `user_id`, valid for an hour, with the test JWT secret.
pub fn bearer_token(user_id: Uuid, admin: bool) -> String {
    crate::auth::jwt::issue(
        TEST_JWT_SECRET.as_bytes(),
        user_id,
        admin,
        Duration::from_secs(3600),
    )
    .expect("the test secret signs")
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("a plain HTTP client")
}

/// A database of its own with dave's migrations, seeds and test data.
pub async fn migrated_database() -> TestDatabase {
    let cluster = pgkit::testing::cluster().await;
    migrated_database_on(cluster).await
}

/// Like [`migrated_database`], on another cluster (a dedicated one).
pub async fn migrated_database_on(cluster: &TestCluster) -> TestDatabase {
    cluster.database_from("dave", migrate).await
}

/// Runs dave's embedded migrations, seeds and test data on `url`.
async fn migrate(url: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dsn = Dsn::parse(&url)?;
    let mut settings = DbSettings::for_dsn(dsn.clone(), "dave-tests");
    settings.environment = pgkit::settings::Environment::Test;
    let params = pgkit::connect::SessionParams::from_settings(&settings);
    let migrator = pgkit::migrate::Migrator::new(
        pgkit::migrate::MigrationSource::Embedded(crate::embedded::MIGRATIONS),
        pgkit::migrate::MigrateOptions::default(),
    );
    migrator.up(&dsn, &params, |_| {}).await?;
    let files = pgkit::seed::SeedFiles {
        seeds: pgkit::migrate::MigrationSource::Embedded(crate::embedded::SEEDS),
        data: pgkit::migrate::MigrationSource::Embedded(crate::embedded::DATA),
    };
    pgkit::seed::run(
        &dsn,
        &params,
        &files,
        &pgkit::seed::SeedOptions::default(),
        |_| {},
    )
    .await?;
    Ok(())
}

/// How the service under test reaches its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Over the test cluster's Unix socket.
    Direct,
    /// Through a PgBouncer of its own in transaction mode, with
    /// `DB_POOLER=transaction` (the `pooled` test binary).
    Pooled,
}

/// The service on a free port of 127.0.0.1, on a fresh migrated database,
/// with [`Config::for_tests`], reaching it directly (see [`pooled`] for the
/// same through PgBouncer).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the configuration changed by `adjust` first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_via(Route::Direct, adjust).await
}

/// Serves `config` on its own database (already prepared by the caller),
/// reaching it directly.
pub async fn start(config: Config, database: TestDatabase) -> TestApp {
    start_via(Route::Direct, config, database).await
}

/// [`spawn_app`], [`spawn_app_with`] and [`start`] with the service reaching
/// its database through a PgBouncer of its own ([`Route::Pooled`]). The
/// `pooled` test binary imports these over the direct ones, so the API tests
/// it shares with the `api` binary run a second time through the pooler.
pub mod pooled {
    use super::{spawn_app_via, start_via, Config, Route, TestApp, TestDatabase};

    /// [`super::spawn_app`] through PgBouncer.
    pub async fn spawn_app() -> TestApp {
        spawn_app_with(|_| {}).await
    }

    /// [`super::spawn_app_with`] through PgBouncer.
    pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        spawn_app_via(Route::Pooled, adjust).await
    }

    /// [`super::start`] through PgBouncer.
    pub async fn start(config: Config, database: TestDatabase) -> TestApp {
        start_via(Route::Pooled, config, database).await
    }
}

async fn spawn_app_via(route: Route, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = migrated_database().await;
    let mut config = Config::for_tests(database.url());
    adjust(&mut config);
    start_via(route, config, database).await
}

async fn start_via(route: Route, mut config: Config, database: TestDatabase) -> TestApp {
    let bouncer = match route {
        Route::Direct => None,
        Route::Pooled => Some(through_pgbouncer(&mut config, &database).await),
    };
    let db = Database::new(config.db.clone()).expect("valid pool settings");
    let state = AppState::new(db.clone(), config).expect("valid test secrets");
    let (address, stop) = serve(state.clone()).await;
    TestApp {
        address,
        client: client(),
        db,
        state,
        _stop: stop,
        _bouncer: bouncer,
        _database: database,
    }
}

/// Serves `state` on a free port of 127.0.0.1 once its pool answers:
/// the address, and the sender whose drop stops the server (as SIGTERM
/// would, draining within the configured grace).
async fn serve(state: AppState) -> (String, oneshot::Sender<()>) {
    let listener = crate::server::bind(state.config.host, 0)
        .await
        .expect("a free port on loopback");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    state.db.warm_up().await.expect("the test database answers");
    let grace = state.config.shutdown_grace;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(crate::server::serve(
        listener,
        crate::app::app(state),
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    (address, stop)
}

/// Puts a PgBouncer (transaction mode, a server pool of 4, below the
/// service's pool of 8) between `config` and `database`, with the session
/// settings as the database's defaults, as `pgkit provision` writes them
/// for the role: set before PgBouncer opens a server session.
async fn through_pgbouncer(config: &mut Config, database: &TestDatabase) -> PgBouncer {
    set_session_defaults(config, database).await;
    let bouncer = PgBouncer::start(database.socket_dir(), 4).await;
    config.db.dsn = Some(Dsn::parse(&bouncer.url(database.name())).expect("PgBouncer's URL"));
    config.db.pooler = pgkit::pooler::Pooler::Transaction;
    bouncer
}

/// `config`'s session settings as `database`'s defaults, which is what a
/// session opened through a transaction pooler gets.
pub async fn set_session_defaults(config: &Config, database: &TestDatabase) {
    let admin = admin_client(database.url()).await;
    let name = postgres_protocol::escape::escape_identifier(database.name());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET statement_timeout = '{}ms'; \
             ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '{}ms'; \
             ALTER DATABASE {name} SET app.environment = '{}';",
            config.db.query_timeout.as_millis(),
            config.db.idle_in_transaction_timeout.as_millis(),
            config.db.environment.as_str()
        ))
        .await
        .expect("database defaults");
}

/// A plain client on `url` (a harness URL: superuser over the Unix socket),
/// for SQL a test runs outside the service's pool.
pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    pgkit::testing::check::connect(url)
        .await
        .expect("the test database answers")
}

/// One more in-process instance of the service on a free port, for tests
/// of several instances on one database; stops when the sender drops.
pub async fn instance(config: Config) -> (String, oneshot::Sender<()>) {
    let db = Database::new(config.db.clone()).expect("valid pool settings");
    serve(AppState::new(db, config).expect("valid test secrets")).await
}

/// One answer of a [`load`] run.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: bool,
    /// `error.code` of an error body (`null` for a success).
    pub code: Value,
}

/// A conversation of the fixture user, made through `address`; its id.
pub async fn fixture_conversation(address: &str, title: &str) -> String {
    let created: Value = client()
        .post(format!("{address}/api/v1/conversations"))
        .header("X-API-Key", USER_KEY)
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("a JSON body");
    created["id"].as_str().expect("an id").to_owned()
}

/// `clients` concurrent callers per address, each making `rounds` requests
/// on conversation `id` as the fixture user: a page of its messages and a
/// new message in turn. A dropped connection fails the test.
pub async fn load(addresses: &[String], clients: usize, rounds: usize, id: &str) -> Vec<Answer> {
    let http = client();
    let callers = addresses.iter().flat_map(|address| {
        (0..clients).map(|c| {
            let (http, address) = (http.clone(), address.clone());
            async move {
                let mut answers = Vec::new();
                for round in 0..rounds {
                    let request = if round % 2 == 0 {
                        http.get(format!(
                            "{address}/api/v1/conversations/{id}/messages?limit=100"
                        ))
                    } else {
                        http.post(format!("{address}/api/v1/conversations/{id}/messages"))
                            .json(&serde_json::json!({
                                "role": "user",
                                "content": format!("client {c} round {round}")
                            }))
                    };
                    let reply = request
                        .header("X-API-Key", USER_KEY)
                        .send()
                        .await
                        .expect("an answer, not a dropped connection");
                    let status = reply.status().as_u16();
                    let retry_after = reply.headers().contains_key("retry-after");
                    let body: Value = reply.json().await.unwrap_or(Value::Null);
                    answers.push(Answer {
                        status,
                        retry_after,
                        code: body["error"]["code"].clone(),
                    });
                }
                answers
            }
        })
    });
    futures_util::future::join_all(callers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The real `dave` binary, as a child process, with its output collected.
pub struct ChildApp {
    pub child: Child,
    pub pid: u32,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// The environment every child starts from: nothing of ours leaks in.
fn base_env() -> HashMap<String, String> {
    let mut env = HashMap::new();
    // PATH finds initdb/postgres for the local cluster; the binary itself
    // reads no other variable of the test process.
    if let Some(path) = std::env::var_os("PATH") {
        env.insert("PATH".into(), path.to_string_lossy().into_owned());
    }
    env
}

/// Runs `dave ARGS` in `dir` with only `vars` (and PATH) set.
pub async fn spawn_binary(args: &[&str], vars: &[(&str, &str)], dir: &Path) -> ChildApp {
    let mut command = Command::new(pgkit::testing::cargo_bin("dave"));
    command
        .args(args)
        .env_clear()
        .envs(base_env())
        .envs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the dave binary runs");
    let pid = child.id().expect("a running child has a pid");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        collect_lines(child.stdout.take().expect("piped"), Arc::clone(&stdout)),
        collect_lines(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
    ];
    ChildApp {
        child,
        pid,
        stdout,
        stderr,
        readers,
    }
}

fn collect_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().expect("no reader panicked").push(line);
        }
    })
}

impl ChildApp {
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("no reader panicked").clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("no reader panicked").clone()
    }

    /// Everything it wrote so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }

    /// The JSON log lines on stdout; panics on a line that is not JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The URL from the "dave is serving on URL" log line (JSON or pretty).
    pub async fn wait_for_url(&mut self) -> String {
        self.wait_for_url_within(WAIT).await
    }

    /// [`ChildApp::wait_for_url`] with another bound (a first initdb is slow).
    pub async fn wait_for_url_within(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            for line in self.stdout_lines() {
                if let Some(at) = line.find("dave is serving on http://") {
                    let rest = &line[at + "dave is serving on ".len()..];
                    let url: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    return url;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain().await;
                panic!("dave exited ({status}) before serving:\n{}", self.output());
            }
            if Instant::now() >= deadline {
                panic!(
                    "dave did not start serving within {within:?}:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends a signal to the child (by its pid).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("a real pid");
        rustix::process::kill_process(pid, signal).expect("the child can be signalled");
    }

    /// Waits (at most `within`) for the child to exit; then its output is complete.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the child works"),
            Err(_) => panic!("dave did not exit within {within:?}:\n{}", self.output()),
        };
        self.drain().await;
        status
    }

    /// Lets the readers reach end-of-file (the child has exited).
    async fn drain(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }
}

/// Runs `dave ARGS` to completion (bounded), returning (status, stdout, stderr).
pub async fn run_binary(
    args: &[&str],
    vars: &[(&str, &str)],
    dir: &Path,
) -> (ExitStatus, String, String) {
    let mut child = spawn_binary(args, vars, dir).await;
    let status = child.wait_exit(Duration::from_secs(120)).await;
    (
        status,
        child.stdout_lines().join("\n"),
        child.stderr_lines().join("\n"),
    )
}

/// Secrets the child services get (test values).
pub const CHILD_JWT_SECRET: &str = "child-jwt-secret-for-tests-0123456789abcdef";
pub const CHILD_SESSION_SECRET: &str = "child-session-secret-for-tests-0123456789";

/// A `dave serve` child as the benchmark and Cloud Run run it: production,
/// JSON logs, 127.0.0.1 on a free port, `db_url` as the DSN; `extra` adds or
/// overrides variables. Returns the child and its base URL, once it listens.
pub async fn serve_binary(db_url: &str, extra: &[(&str, &str)], dir: &Path) -> (ChildApp, String) {
    let mut vars: Vec<(&str, &str)> = vec![
        ("APP_ENVIRONMENT", "production"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DAVE_DB_DSN", db_url),
        ("JWT_SECRET", CHILD_JWT_SECRET),
        ("SESSION_SECRET", CHILD_SESSION_SECRET),
        ("LOG_FORMAT", "json"),
        ("DB_POOL_MIN_SIZE", "2"),
        ("DB_POOL_MAX_SIZE", "5"),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    let mut child = spawn_binary(&["serve"], &vars, dir).await;
    let url = child.wait_for_url().await;
    (child, url)
}

/// A bearer token for the child services' JWT secret.
pub fn child_bearer(user_id: Uuid) -> String {
    crate::auth::jwt::issue(
        CHILD_JWT_SECRET.as_bytes(),
        user_id,
        false,
        Duration::from_secs(3600),
    )
    .expect("the test secret signs")
}

/// Waits until `url/health/ready` answers 200.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    eventually("readiness 200", WAIT, || async {
        let response = client
            .get(format!("{url}/health/ready"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// A small pool on `url` for SQL the test runs itself.
pub fn side_pool(url: &str) -> Database {
    let mut settings = DbSettings::for_dsn(Dsn::parse(url).expect("a valid URL"), "dave-tests");
    settings.pool_min_size = 0;
    settings.pool_max_size = 2;
    Database::new(settings).expect("valid settings")
}
