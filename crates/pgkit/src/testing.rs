//! The throwaway-PostgreSQL harness for tests (feature `testing`): one local
//! cluster per test process, one database per test.
//!
//! [`cluster`] starts the cluster on first use, in a temp dir, tuned for speed
//! (fsync off) and reached only through its Unix socket. Every test takes a
//! database of its own ([`TestCluster::database`]), or a clone of a template
//! built once per process ([`TestCluster::database_from`], e.g. migrated), and
//! the database is dropped when the [`TestDatabase`] is, panics included.
//!
//! Each `#[tokio::test]` has its own runtime, so nothing here lives on one: the
//! server is a plain child process reaped by a thread, and SQL runs on
//! short-lived connections. The server stops and its temp dir goes when the
//! test process ends, however it ends: a watchdog process waits on a pipe that
//! only this process holds (see [`crate::local`]). Leftovers of runs killed
//! before their watchdog could act are swept when the next cluster starts.
//! See docs/testing.md.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres_protocol::escape::escape_identifier;
use rand::Rng;
use tokio::sync::OnceCell;

pub mod auth;
pub mod check;
pub mod pgbouncer;
pub mod replica;

use crate::local::{
    describe_pg_error, is_live_postgres, Lifetime, LocalCluster, LocalError, LocalOptions,
};
use crate::rt::{block_on_own_runtime, off_runtime};

/// Temp dirs are named `pgkit-test-<pid>-<start time>-<random>`, so a later
/// run can tell whether their owner still lives.
const DIR_PREFIX: &str = "pgkit-test-";
/// Where admin connections go.
const ADMIN_DB: &str = "postgres";

/// Settings that trade durability for speed; the data is thrown away anyway.
const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("autovacuum", "off"),
    // Parallel tests each hold a pool.
    ("max_connections", "300"),
    ("shared_buffers", "64MB"),
];

/// Settings for fault tests ([`durable_cluster`]): every acknowledged commit
/// survives a crash, so a write lost across a restart is the service's fault,
/// never the harness's.
const DURABLE_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("autovacuum", "off"),
    ("max_connections", "100"),
    ("shared_buffers", "64MB"),
];

/// How long a signalled server may take to exit or to show as stopped.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(15);

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// The binary `name` of this package, as cargo built it for the running
/// test: tests run from `target/<profile>/deps/`, binaries sit in
/// `target/<profile>/`. For harness code in a library, where
/// `env!("CARGO_BIN_EXE_<name>")` (known only when compiling an integration
/// test) is not available; the test must make cargo build the binary, which
/// `cargo test` does for the integration tests of its package.
pub fn cargo_bin(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(Path::parent)
        .expect("a test binary under target/<profile>/deps");
    profile.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The process's shared test cluster, started on first use.
///
/// Panics (failing the test) when PostgreSQL cannot be started, e.g. when its
/// binaries are missing; the message says how to install them.
pub async fn cluster() -> &'static TestCluster {
    let started = CLUSTER
        .get_or_try_init(|| TestCluster::start(FAST_SETTINGS))
        .await;
    match started {
        Ok(cluster) => cluster,
        Err(e) => panic!("pgkit test harness: {}", crate::error::error_chain(&e)),
    }
}

/// A throwaway cluster: the shared one ([`cluster`]) or, through `Deref`, a
/// [`DedicatedCluster`].
#[derive(Debug)]
pub struct TestCluster {
    local: LocalCluster,
    root: PathBuf,
    next_db: AtomicU64,
    templates: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
}

impl TestCluster {
    async fn start(settings: &[(&str, &str)]) -> Result<TestCluster, LocalError> {
        // Best effort: a failure to sweep must not stop the tests.
        let _ = off_runtime(sweep_leftovers).await;
        let root = create_root()?;
        let mut opts = LocalOptions::new(root.join("data"));
        for (name, value) in settings {
            opts = opts.setting(*name, *value);
        }
        let lifetime = Lifetime::Supervised {
            remove_on_exit: Some(root.clone()),
        };
        let local = match LocalCluster::start_with(opts, lifetime).await {
            Ok(local) => local,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        Ok(TestCluster {
            local,
            root,
            next_db: AtomicU64::new(1),
            templates: Mutex::new(HashMap::new()),
        })
    }

    /// `postgresql://postgres@/DATABASE?host=<socket dir>`.
    pub fn url(&self, database: &str) -> String {
        self.local.url(database)
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.local.socket_dir()
    }

    /// The cluster's data directory, inside its temp dir.
    pub fn data_dir(&self) -> &Path {
        self.local.data_dir()
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.local.pid()
    }

    /// The server log, for a test that wants to see what the server said.
    pub fn log_file(&self) -> PathBuf {
        self.local.log_file()
    }

    /// A new empty database of its own.
    pub async fn database(&self) -> TestDatabase {
        self.create_database(None).await
    }

    /// A new database cloned from template `name`, which is built once per
    /// process by running `setup(url_of_template)` (e.g. running migrations).
    /// Concurrent callers wait for the one build. Setup must have closed its
    /// connections when it returns (any left over are terminated).
    ///
    /// Panics when `name` is not a plain identifier or `setup` fails; a later
    /// caller then tries the build again.
    pub async fn database_from<F, Fut>(&self, template: &str, setup: F) -> TestDatabase
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        if !is_plain_identifier(template) {
            panic!(
                "pgkit test harness: template name {template:?} must be 1..40 lowercase ASCII \
                 letters, digits or underscores, starting with a letter"
            );
        }
        let cell = {
            let mut templates = self
                .templates
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(templates.entry(template.to_owned()).or_default())
        };
        let built = cell
            .get_or_try_init(|| self.build_template(template, setup))
            .await;
        match built {
            Ok(template_db) => self.create_database(Some(template_db.as_str())).await,
            Err(e) => panic!("pgkit test harness: building template {template:?} failed: {e}"),
        }
    }

    async fn build_template<F, Fut>(
        &self,
        template: &str,
        setup: F,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let name = format!("template_{template}");
        let quoted = escape_identifier(&name);
        // A failed earlier attempt may have left it half built.
        self.admin(Admin::Sql(format!(
            "DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"
        )))
        .await?;
        self.admin(Admin::Sql(format!("CREATE DATABASE {quoted}")))
            .await?;
        setup(self.url(&name)).await?;
        // Cloning needs the template to have no sessions; lock it and end any
        // that setup left behind.
        self.admin(Admin::Sql(format!(
            "ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )))
        .await?;
        self.admin(Admin::EndSessionsOf(name.clone())).await?;
        Ok(name)
    }

    async fn create_database(&self, template: Option<&str>) -> TestDatabase {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let sql = match template {
            Some(t) => format!(
                "CREATE DATABASE {} TEMPLATE {}",
                escape_identifier(&name),
                escape_identifier(t)
            ),
            None => format!("CREATE DATABASE {}", escape_identifier(&name)),
        };
        if let Err(e) = self.admin(Admin::Sql(sql.clone())).await {
            panic!("pgkit test harness: {sql} failed: {e}");
        }
        TestDatabase {
            url: self.url(&name),
            name,
            admin: self.local.config(ADMIN_DB),
            socket: self.socket_dir().join(".s.PGSQL.5432"),
        }
    }

    /// Runs one admin statement, on a thread and runtime of its own so that
    /// no test's runtime (or paused clock) is involved.
    async fn admin(&self, statement: Admin) -> Result<(), String> {
        let config = self.local.config(ADMIN_DB);
        off_runtime(move || run_admin(&config, &statement))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// An admin statement of the harness.
enum Admin {
    /// SQL built only from names the harness made or validated.
    Sql(String),
    /// Ends every session on the named database.
    EndSessionsOf(String),
}

/// Runs `statement` on a connection of its own, closed before returning;
/// blocking.
fn run_admin(config: &tokio_postgres::Config, statement: &Admin) -> Result<(), String> {
    let outcome = block_on_own_runtime(async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| describe_pg_error(&e))?;
        let driver = tokio::spawn(connection);
        let result = match statement {
            Admin::Sql(sql) => client.batch_execute(sql).await,
            Admin::EndSessionsOf(database) => client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    &[database],
                )
                .await
                .map(drop),
        };
        drop(client);
        let _ = driver.await;
        result.map_err(|e| describe_pg_error(&e))
    });
    outcome.map_err(|e| format!("could not start a runtime: {e}"))?
}

/// A database of one test's own; dropped (`WITH (FORCE)`) with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: tokio_postgres::Config,
    socket: PathBuf,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A libpq URL for it, as the superuser over the Unix socket.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding its server's Unix socket (for a proxy or
    /// pooler put in front of it).
    pub fn socket_dir(&self) -> &Path {
        self.socket.parent().unwrap_or(&self.socket)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.socket.exists() {
            // The cluster is stopped or gone (outage test, dedicated cluster
            // dropped first); the database goes with it.
            return;
        }
        // Drop cannot await, and may run inside a runtime or during a panic's
        // unwind: drop the database from a thread with a runtime of its own.
        let admin = self.admin.clone();
        let drop_sql = Admin::Sql(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            escape_identifier(&self.name)
        ));
        let worker = std::thread::spawn(move || run_admin(&admin, &drop_sql));
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "pgkit test harness: could not drop database {}: {e}",
                self.name
            ),
            Err(_) => eprintln!(
                "pgkit test harness: dropping database {} panicked",
                self.name
            ),
        }
    }
}

/// A cluster of one test's own, for tests that stop and restart the server
/// (outage tests). Derefs to [`TestCluster`] for `url`, `database`, ...;
/// dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct DedicatedCluster {
    cluster: TestCluster,
}

/// Starts a [`DedicatedCluster`]; panics (failing the test) when it cannot.
pub async fn dedicated_cluster() -> DedicatedCluster {
    dedicated_with(FAST_SETTINGS).await
}

/// A [`DedicatedCluster`] with full durability (`fsync`, `synchronous_commit`
/// and `full_page_writes` on), for fault tests that crash the server and then
/// count what survived; panics (failing the test) when it cannot start.
pub async fn durable_cluster() -> DedicatedCluster {
    dedicated_with(DURABLE_SETTINGS).await
}

/// A [`DedicatedCluster`] with `settings` over the harness's fast ones
/// (a small `max_connections`, say); panics (failing the test) when it
/// cannot start.
pub async fn dedicated_cluster_with(settings: &[(&str, &str)]) -> DedicatedCluster {
    let mut all: Vec<(&str, &str)> = FAST_SETTINGS
        .iter()
        .filter(|(name, _)| !settings.iter().any(|(n, _)| n == name))
        .copied()
        .collect();
    all.extend_from_slice(settings);
    dedicated_with(&all).await
}

/// A [`DedicatedCluster`] that can have streaming replicas
/// ([`replica::Replica::start`]): `wal_level = replica` and room for WAL
/// senders and slots, over the harness's fast settings.
pub async fn replicable_cluster() -> DedicatedCluster {
    dedicated_cluster_with(&[
        ("wal_level", "replica"),
        ("max_wal_senders", "4"),
        ("max_replication_slots", "4"),
    ])
    .await
}

async fn dedicated_with(settings: &[(&str, &str)]) -> DedicatedCluster {
    match TestCluster::start(settings).await {
        Ok(cluster) => DedicatedCluster { cluster },
        Err(e) => panic!("pgkit test harness: {}", crate::error::error_chain(&e)),
    }
}

impl DedicatedCluster {
    /// Stops the server (fast shutdown) and waits until it is gone.
    pub async fn stop(&self) -> Result<(), LocalError> {
        self.cluster.local.stop().await
    }

    /// Starts the stopped server again and waits until it accepts connections.
    pub async fn start(&self) -> Result<(), LocalError> {
        self.cluster.local.start_again().await
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`: SIGQUIT, no
    /// checkpoint), i.e. a crash: the next [`start`](Self::start) runs WAL
    /// recovery. Waits until the postmaster is gone.
    pub async fn stop_immediate(&self) -> Result<(), LocalError> {
        let Some(pid) = self.cluster.pid() else {
            return Ok(());
        };
        let data_dir = self.cluster.data_dir().to_owned();
        off_runtime(move || {
            send_signal(pid, rustix::process::Signal::QUIT, &data_dir)?;
            if crate::local::wait_until(SIGNAL_TIMEOUT, || !is_live_postgres(pid)) {
                Ok(())
            } else {
                Err(LocalError::Stop {
                    data_dir,
                    reason: format!(
                        "process {pid} still runs {} s after SIGQUIT",
                        SIGNAL_TIMEOUT.as_secs()
                    ),
                })
            }
        })
        .await
        .map_err(|source| LocalError::Io {
            action: "run a thread to stop",
            path: self.cluster.data_dir().to_owned(),
            source,
        })?
    }

    /// Freezes the server (SIGSTOP to the postmaster, then to each of its
    /// children: backends call `setsid()`, so the process group does not
    /// reach them) and returns once every one of them shows as stopped. The
    /// returned guard sends SIGCONT when dropped, panics included, so a
    /// failing test never leaves a frozen cluster behind.
    pub fn freeze(&self) -> Result<Frozen, LocalError> {
        let data_dir = self.cluster.data_dir().to_owned();
        let Some(postmaster) = self.cluster.pid() else {
            return Err(LocalError::Stop {
                data_dir,
                reason: "no server runs to freeze".to_owned(),
            });
        };
        let mut frozen = Frozen {
            pids: Vec::new(),
            data_dir,
        };
        // Stopped first, the postmaster forks no new backend while the
        // children are collected; a child forked just before shows up in a
        // later pass.
        frozen.stop(postmaster)?;
        loop {
            let new: Vec<u32> = children_of(postmaster)
                .into_iter()
                .filter(|pid| !frozen.pids.contains(pid))
                .collect();
            if new.is_empty() {
                break;
            }
            for pid in new {
                frozen.stop(pid)?;
            }
        }
        let all_stopped = crate::local::wait_until(SIGNAL_TIMEOUT, || {
            frozen
                .pids
                .iter()
                // A backend that exited just before (Z: a zombie the stopped
                // postmaster cannot reap, X: dead) counts as frozen too.
                .all(|&pid| matches!(process_state(pid), None | Some('T' | 't' | 'Z' | 'X')))
        });
        if !all_stopped {
            return Err(LocalError::Stop {
                data_dir: frozen.data_dir.clone(),
                reason: "its processes did not show as stopped after SIGSTOP".to_owned(),
            });
        }
        Ok(frozen)
    }
}

/// A frozen cluster ([`DedicatedCluster::freeze`]); dropping it thaws it.
#[derive(Debug)]
pub struct Frozen {
    pids: Vec<u32>,
    data_dir: PathBuf,
}

impl Frozen {
    /// The stopped processes: the postmaster first, then its children.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Sends SIGCONT to every frozen process (what dropping does).
    pub fn thaw(self) {}

    fn stop(&mut self, pid: u32) -> Result<(), LocalError> {
        send_signal(pid, rustix::process::Signal::STOP, &self.data_dir)?;
        self.pids.push(pid);
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if let Err(e) = send_signal(pid, rustix::process::Signal::CONT, &self.data_dir) {
                eprintln!("pgkit test harness: could not thaw process {pid}: {e}");
            }
        }
    }
}

/// Signals `pid`; one that is already gone is fine.
fn send_signal(pid: u32, sig: rustix::process::Signal, data_dir: &Path) -> Result<(), LocalError> {
    let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
        return Ok(());
    };
    match rustix::process::kill_process(target, sig) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        Err(e) => Err(LocalError::Io {
            action: "signal a server process of",
            path: data_dir.to_owned(),
            source: e.into(),
        }),
    }
}

/// The pids whose parent is `parent` (Linux `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat_fields(pid).and_then(|f| f.get(1)?.parse().ok()) == Some(parent))
        .collect()
}

/// The state letter of `pid` (`T` when stopped), `None` when it is gone.
fn process_state(pid: u32) -> Option<char> {
    proc_stat_fields(pid)?.first()?.chars().next()
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ...
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(str::to_owned).collect())
}

impl Deref for DedicatedCluster {
    type Target = TestCluster;
    fn deref(&self) -> &TestCluster {
        &self.cluster
    }
}

impl Drop for DedicatedCluster {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.local.stop_blocking() {
            eprintln!("pgkit test harness: {e}");
        }
        let socket_dir = self.cluster.socket_dir();
        if !socket_dir.starts_with(&self.cluster.root) {
            let _ = std::fs::remove_dir_all(socket_dir);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.cluster.root) {
            eprintln!(
                "pgkit test harness: could not remove {}: {e}",
                self.cluster.root.display()
            );
        }
    }
}

/// Creates this cluster's temp dir, named after this process (see `DIR_PREFIX`).
fn create_root() -> Result<PathBuf, LocalError> {
    let me = std::process::id();
    let started = process_start_time(me).unwrap_or(0);
    let suffix: u32 = rand::thread_rng().gen();
    let root = std::env::temp_dir().join(format!("{DIR_PREFIX}{me}-{started}-{suffix:08x}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .map_err(|source| LocalError::Io {
            action: "create the test cluster directory",
            path: root.clone(),
            source,
        })?;
    // The server may run as another user (`postgres` when we are root): let
    // it pass through, but not list.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).map_err(|source| {
        LocalError::Io {
            action: "set the permissions of",
            path: root.clone(),
            source,
        }
    })?;
    // Canonical, so it compares equal to the paths PostgreSQL reports.
    std::fs::canonicalize(&root).map_err(|source| LocalError::Io {
        action: "resolve the path",
        path: root.clone(),
        source,
    })
}

/// Removes the dirs of earlier test processes that are gone, stopping any
/// server still running in them. Best effort: errors are skipped.
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(parse_owner) else {
            continue;
        };
        if owner_is_alive(owner) {
            continue;
        }
        let dir = entry.path();
        stop_leftover_server(&dir.join("data"));
        if std::fs::remove_dir_all(&dir).is_ok() {
            eprintln!(
                "pgkit test harness: removed {} left by an earlier run",
                dir.display()
            );
        }
    }
}

/// `(pid, start time)` from `pgkit-test-<pid>-<start>-<random>`.
fn parse_owner(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix(DIR_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let started = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, started))
}

fn owner_is_alive((pid, started): (u32, u64)) -> bool {
    match process_start_time(pid) {
        Some(now) => started == 0 || now == started,
        None => false,
    }
}

/// A process's start time (clock ticks after boot), which tells a reused pid
/// from the original.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after comm start at field 3 (state); start time is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn stop_leftover_server(data_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return;
    };
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        return;
    };
    // Only a postgres serving exactly this directory is ours to stop.
    if !is_live_postgres(pid) || cwd != data_dir {
        return;
    }
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::QUIT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while is_live_postgres(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_plain_identifier(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_parsed_from_the_dir_name() {
        assert_eq!(parse_owner("pgkit-test-123-456-0000abcd"), Some((123, 456)));
        assert_eq!(parse_owner("pgkit-test-123"), None);
        assert_eq!(parse_owner("other-123-456-x"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_start_time_is_not() {
        let me = std::process::id();
        let started = process_start_time(me).expect("linux /proc");
        assert!(owner_is_alive((me, started)));
        assert!(!owner_is_alive((me, started + 1)));
    }

    #[test]
    fn children_and_stopped_state_are_read_from_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        assert!(children_of(std::process::id()).contains(&pid));
        send_signal(pid, rustix::process::Signal::STOP, Path::new("/")).unwrap();
        assert!(crate::local::wait_until(SIGNAL_TIMEOUT, || process_state(
            pid
        ) == Some('T')));
        send_signal(pid, rustix::process::Signal::CONT, Path::new("/")).unwrap();
        assert!(crate::local::wait_until(SIGNAL_TIMEOUT, || process_state(
            pid
        ) != Some('T')));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_state(pid), None, "reaped");
    }

    #[test]
    fn template_names_are_plain_identifiers() {
        assert!(is_plain_identifier("dave_migrated"));
        assert!(!is_plain_identifier("Dave"));
        assert!(!is_plain_identifier("x\"; DROP"));
        assert!(!is_plain_identifier(""));
    }
}
