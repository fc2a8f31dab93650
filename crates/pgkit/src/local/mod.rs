//! The embedded local PostgreSQL cluster: `initdb` + `postgres` from the machine,
//! reached only through a Unix socket.
//!
//! It backs the test harness ([`crate::testing`]), `dave serve` without a DSN
//! (data under `.dave/pgdata`) and `pgkit local start|stop|status`. The cluster
//! trusts every connection on its socket, so the socket lives in the data
//! directory itself (mode 0700, owned by the server's user): only that user and
//! root can reach it, and there is no TCP listener at all
//! (`listen_addresses = ''`). When the data directory's path is too long for a
//! Unix socket (107 bytes, including `/.s.PGSQL.5432`), the socket goes to
//! `/tmp/pgkit-<hash of the data dir>` instead, created with the same owner and
//! mode.
//!
//! PostgreSQL refuses to run as root. When this process is root, `initdb` and
//! `postgres` run as the `postgres` system user (created by the Debian package
//! `postgresql`), the data directory is handed to that user, and the
//! directories above it are made traversable (o+x) when they are not.
//!
//! Two lifetimes: [`LocalCluster::start`] starts the server with `pg_ctl`, so it
//! outlives this process (`pgkit local start`); [`LocalCluster::start_supervised`]
//! makes it a child of this process, watched by a tiny `sh` watchdog that stops
//! it as soon as this process is gone, however it ended (the watchdog reads a
//! pipe whose only writer is this process; end-of-file means we are gone).
//!
//! pgkit writes its settings to `pgkit.conf` in the data directory at every
//! start (included from `postgresql.conf`), so they are visible and the user's
//! own `postgresql.conf` stays untouched apart from that one include line.
//!
//! The parts: `binaries.rs` finds and runs the server programs, `os_user.rs`
//! hands files to the `postgres` user when we are root, `conf.rs` validates
//! and writes the settings, `process.rs` starts, supervises and stops the
//! server. This file holds the public API ([`LocalCluster`], [`LocalOptions`],
//! [`LocalError`]) and the cluster's set-up (paths, `initdb`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

mod binaries;
mod conf;
mod os_user;
mod process;

pub use binaries::find_pg_bin;
use conf::{validate_setting, validate_superuser};
pub(crate) use os_user::ServerUser;
pub(crate) use process::is_live_postgres;
#[cfg(feature = "testing")]
pub(crate) use process::wait_until;
use process::{read_pid_file, Supervision};

use crate::rt::off_runtime;

/// The port only names the socket file (`.s.PGSQL.5432`); there is no TCP.
const PORT: u16 = 5432;
const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;
const LOG_FILE: &str = "server.log";
const LOG_TAIL_BYTES: u64 = 4000;

/// Characters kept as they are in URL components; everything else is escaped.
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What to start: where the data lives and how the server is tuned.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The cluster's data directory; created (and initialized) when missing.
    pub data_dir: PathBuf,
    /// The superuser `initdb` creates and connections use ("postgres").
    pub superuser: String,
    /// Extra `postgresql.conf` lines, e.g. `("fsync", "off")` for tests.
    /// They come after pgkit's own lines, so they win over them.
    pub settings: Vec<(String, String)>,
}

impl LocalOptions {
    /// Options with the `postgres` superuser and no extra settings.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            superuser: "postgres".to_owned(),
            settings: Vec::new(),
        }
    }

    /// Adds one `postgresql.conf` setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// What a data directory holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    /// No cluster there yet (no `PG_VERSION`).
    NotInitialized,
    /// A cluster that no live server is running.
    Stopped,
    /// A live postmaster holds the cluster.
    Running { pid: u32 },
}

/// Why the local cluster could not be set up, started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// No directory holds `initdb`, `postgres` and `pg_ctl`.
    #[error(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) were not found on PATH nor in \
         /usr/lib/postgresql/<version>/bin; install the Debian package `postgresql` \
         (`apt-get install postgresql`) or put the directory holding them on PATH"
    )]
    NoBinaries,
    /// Running as root, and the `postgres` system user does not exist.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` \
         system user to run it as ({detail}); install the Debian package `postgresql`, which \
         creates that user, or run as an ordinary user"
    )]
    NoServerUser { detail: String },
    /// A setting name or value that cannot go into `postgresql.conf`.
    #[error("invalid local PostgreSQL setting {name:?}: {reason}")]
    InvalidSetting { name: String, reason: String },
    /// The data directory (or socket directory) cannot be used as it is.
    #[error("cannot use {path} for the local PostgreSQL cluster: {reason}")]
    DataDir { path: PathBuf, reason: String },
    /// `initdb` failed; carries its output.
    #[error("initdb failed for {data_dir} ({status}):\n{output}")]
    Initdb {
        data_dir: PathBuf,
        status: String,
        output: String,
    },
    /// The server did not come up; carries the end of its log.
    #[error(
        "local PostgreSQL in {data_dir} did not start: {reason}; the end of its log {log}:\n{log_tail}"
    )]
    Start {
        data_dir: PathBuf,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },
    /// The server did not stop in time.
    #[error("local PostgreSQL in {data_dir} did not stop: {reason}")]
    Stop { data_dir: PathBuf, reason: String },
    /// A file-system or process operation failed.
    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LocalError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// How long the server lives.
#[derive(Debug, Clone)]
pub(crate) enum Lifetime {
    /// Started by `pg_ctl`; outlives this process.
    Detached,
    /// A child of this process, stopped when the cluster value is dropped or
    /// this process ends; then `remove_on_exit` (if any) is deleted too.
    Supervised { remove_on_exit: Option<PathBuf> },
}

/// A running local cluster. See the module docs for the two lifetimes.
#[derive(Debug)]
pub struct LocalCluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    superuser: String,
    bin_dir: PathBuf,
    server_user: Option<ServerUser>,
    settings: Vec<(String, String)>,
    supervision: Option<Supervision>,
    /// False when the server was already running and this handle attached.
    started_here: bool,
}

impl LocalCluster {
    /// Starts (initializing first if needed) a server that outlives this
    /// process, as `pgkit local start` wants. When a server already runs on
    /// `data_dir`, this attaches to it instead. Returns once it accepts
    /// connections (at most 30 s).
    pub async fn start(opts: LocalOptions) -> Result<LocalCluster, LocalError> {
        Self::start_with(opts, Lifetime::Detached).await
    }

    /// Like [`start`](Self::start), but the server is a child of this process:
    /// it stops when the returned value is dropped or this process ends, even
    /// by a crash or SIGKILL. Attaching to an already running server does not
    /// take ownership of it.
    pub async fn start_supervised(opts: LocalOptions) -> Result<LocalCluster, LocalError> {
        Self::start_with(
            opts,
            Lifetime::Supervised {
                remove_on_exit: None,
            },
        )
        .await
    }

    /// The cluster whose server already runs on `opts.data_dir`, or `None`
    /// when none runs; never starts one (`pgkit local stop|status`).
    pub async fn attach(opts: LocalOptions) -> Result<Option<LocalCluster>, LocalError> {
        let inner = blocking(move || {
            let mut inner = Inner::new(opts)?;
            Ok(inner.attach().then_some(inner))
        })
        .await?;
        Ok(inner.map(|inner| LocalCluster {
            inner: Arc::new(inner),
        }))
    }

    pub(crate) async fn start_with(
        opts: LocalOptions,
        lifetime: Lifetime,
    ) -> Result<LocalCluster, LocalError> {
        let inner = blocking(move || {
            let inner = Inner::prepare(opts, lifetime)?;
            inner.wait_ready()?;
            Ok(inner)
        })
        .await?;
        Ok(LocalCluster {
            inner: Arc::new(inner),
        })
    }

    /// What `data_dir` holds: nothing, a stopped cluster or a running one.
    /// A `postmaster.pid` whose process is gone (or is no postgres) counts as
    /// stopped.
    pub fn status(data_dir: &Path) -> LocalStatus {
        if !data_dir.join("PG_VERSION").is_file() {
            return LocalStatus::NotInitialized;
        }
        match read_pid_file(data_dir) {
            Some(pid_file) if is_live_postgres(pid_file.pid) => {
                LocalStatus::Running { pid: pid_file.pid }
            }
            _ => LocalStatus::Stopped,
        }
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.inner.socket_dir
    }

    /// The cluster's data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The superuser connections use.
    pub fn superuser(&self) -> &str {
        &self.inner.superuser
    }

    /// The server log, where start-up failures are explained.
    pub fn log_file(&self) -> PathBuf {
        self.inner.data_dir.join(LOG_FILE)
    }

    /// `postgresql://postgres@/DB?host=<socket dir>` (percent-encoded).
    pub fn url(&self, database: &str) -> String {
        url(&self.inner.superuser, database, &self.inner.socket_dir)
    }

    /// A connection config for `database` as the superuser over the socket.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        self.inner.config(database)
    }

    /// Whether this handle started the server, rather than finding it
    /// running: a command that only attached must not stop someone else's.
    pub fn started_here(&self) -> bool {
        self.inner.started_here
    }

    /// The running server's pid, if it runs.
    pub fn pid(&self) -> Option<u32> {
        match Self::status(&self.inner.data_dir) {
            LocalStatus::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// Stops the server (fast shutdown: open sessions are ended, then a
    /// checkpoint) and waits until the process is gone and `postmaster.pid`
    /// removed. Stopping a stopped cluster succeeds.
    pub async fn stop(&self) -> Result<(), LocalError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.stop_blocking()).await
    }

    /// Starts the server again after [`stop`](Self::stop) (for outage tests),
    /// with the same lifetime it had; a running server is left as it is.
    pub async fn start_again(&self) -> Result<(), LocalError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.start_server_if_stopped()?;
            inner.wait_ready()
        })
        .await
    }

    /// The blocking form of [`stop`](Self::stop), for the test harness's `Drop` impls.
    #[cfg(feature = "testing")]
    pub(crate) fn stop_blocking(&self) -> Result<(), LocalError> {
        self.inner.stop_blocking()
    }
}

/// Runs blocking process and file work off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, LocalError>
where
    F: FnOnce() -> Result<T, LocalError> + Send + 'static,
    T: Send + 'static,
{
    off_runtime(f).await.unwrap_or_else(|e| {
        Err(LocalError::Io {
            action: "run a thread for",
            path: PathBuf::from("the local PostgreSQL cluster"),
            source: e,
        })
    })
}

/// The server's own words for a database error ("db error" alone says nothing).
pub(crate) fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub(crate) fn url(user: &str, database: &str, socket_dir: &Path) -> String {
    format!(
        "postgresql://{}@/{}?host={}",
        utf8_percent_encode(user, URL_SAFE),
        utf8_percent_encode(database, URL_SAFE),
        utf8_percent_encode(&socket_dir.to_string_lossy(), URL_SAFE),
    )
}

impl Inner {
    /// Validated options, binaries and paths; touches nothing.
    fn new(opts: LocalOptions) -> Result<Inner, LocalError> {
        validate_superuser(&opts.superuser)?;
        for (name, value) in &opts.settings {
            validate_setting(name, value)?;
        }
        let bin_dir = find_pg_bin()?;
        let server_user = ServerUser::for_this_process()?;
        let data_dir = absolute_path(&opts.data_dir)?;
        Ok(Inner {
            socket_dir: default_socket_dir(&data_dir),
            data_dir,
            superuser: opts.superuser,
            bin_dir,
            server_user,
            settings: opts.settings,
            supervision: None,
            started_here: false,
        })
    }

    /// Takes the socket dir of the server running on the data dir, if one
    /// runs; says whether one does.
    fn attach(&mut self) -> bool {
        let Some(pid_file) = read_pid_file(&self.data_dir) else {
            return false;
        };
        if !is_live_postgres(pid_file.pid) {
            return false;
        }
        if let Some(socket_dir) = pid_file.socket_dir {
            self.socket_dir = socket_dir;
        }
        true
    }

    /// Everything up to a started (or attached) server; blocking.
    fn prepare(opts: LocalOptions, lifetime: Lifetime) -> Result<Inner, LocalError> {
        let mut inner = Inner::new(opts)?;
        if inner.attach() {
            return Ok(inner);
        }
        inner.started_here = true;
        if LocalCluster::status(&inner.data_dir) == LocalStatus::NotInitialized {
            inner.initdb()?;
            // Canonical from here on, so the socket path is the real one.
            inner.data_dir = absolute_path(&inner.data_dir)?;
            inner.socket_dir = default_socket_dir(&inner.data_dir);
        }
        if let Lifetime::Supervised { remove_on_exit } = lifetime {
            inner.supervision = Some(inner.spawn_watchdog(remove_on_exit.as_deref())?);
        }
        inner.start_server_if_stopped()?;
        Ok(inner)
    }

    fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.superuser)
            .dbname(database)
            .host_path(&self.socket_dir)
            .port(PORT)
            .application_name("pgkit-local")
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// Creates the data directory for the server's user and runs `initdb`.
    fn initdb(&self) -> Result<(), LocalError> {
        let dir = &self.data_dir;
        self.create_owned_dir(dir)?;
        let not_empty = fs::read_dir(dir)
            .map_err(LocalError::io("read the directory", dir))?
            .next()
            .is_some();
        if not_empty {
            return Err(LocalError::DataDir {
                path: dir.clone(),
                reason: "it is not empty and holds no PostgreSQL cluster (no PG_VERSION); \
                         choose a new or empty directory"
                    .to_owned(),
            });
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(dir)
            .args(["-U", &self.superuser])
            .args(["--auth-local=trust", "--auth-host=reject"])
            .args(["--encoding=UTF8", "--locale=C"]);
        if self.setting_is("fsync", "off") {
            cmd.arg("--no-sync");
        }
        let out = cmd
            .output()
            .map_err(LocalError::io("run initdb from", &self.bin_dir))?;
        if !out.status.success() {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(LocalError::Initdb {
                data_dir: dir.clone(),
                status: out.status.to_string(),
                output: tail_of(&output, LOG_TAIL_BYTES as usize),
            });
        }
        self.include_pgkit_conf()
    }
}

/// The canonical path when it exists (symlinks resolved, so the socket path
/// is the real one), else the absolute one.
fn absolute_path(path: &Path) -> Result<PathBuf, LocalError> {
    match fs::canonicalize(path) {
        Ok(path) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::path::absolute(path).map_err(LocalError::io("resolve the path", path))
        }
        Err(e) => Err(LocalError::io("resolve the path", path)(e)),
    }
}

fn default_socket_dir(data_dir: &Path) -> PathBuf {
    let len = data_dir.as_os_str().len() + 1 + SOCKET_FILE.len();
    if len <= SOCKET_PATH_MAX {
        return data_dir.to_owned();
    }
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/pgkit-{}", &hex::encode(digest)[..16]))
}

fn tail_of(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_percent_encodes_the_socket_dir() {
        let url = url("postgres", "my_db", Path::new("/tmp/a b/data"));
        assert_eq!(
            url,
            "postgresql://postgres@/my_db?host=%2Ftmp%2Fa%20b%2Fdata"
        );
        let parsed: tokio_postgres::Config = url.parse().expect("tokio-postgres parses it");
        assert_eq!(parsed.get_dbname(), Some("my_db"));
        assert_eq!(
            parsed.get_hosts(),
            &[tokio_postgres::config::Host::Unix(PathBuf::from(
                "/tmp/a b/data"
            ))]
        );
    }

    #[test]
    fn long_data_dirs_get_a_short_socket_dir() {
        let short = Path::new("/srv/app/.dave/pgdata");
        assert_eq!(default_socket_dir(short), short);
        let long = PathBuf::from(format!("/srv/{}/pgdata", "x".repeat(100)));
        let socket = default_socket_dir(&long);
        assert!(socket.starts_with("/tmp"));
        assert!(socket.as_os_str().len() + 1 + SOCKET_FILE.len() <= SOCKET_PATH_MAX);
        assert_eq!(socket, default_socket_dir(&long), "stable per data dir");
    }

    #[test]
    fn a_cluster_can_be_shared_across_tasks_and_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalCluster>();
    }

    #[test]
    fn no_binaries_error_names_the_debian_package() {
        let text = LocalError::NoBinaries.to_string();
        assert!(text.contains("`postgresql`"), "{text}");
        assert!(text.contains("apt-get install postgresql"), "{text}");
    }
}
