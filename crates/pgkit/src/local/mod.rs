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

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The port only names the socket file (`.s.PGSQL.5432`); there is no TCP.
const PORT: u16 = 5432;
const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);
const SERVER_USER: &str = "postgres";
const LOG_FILE: &str = "server.log";
const CONF_FILE: &str = "pgkit.conf";
const PID_FILE: &str = "postmaster.pid";
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

/// Finds the directory holding `initdb`, `postgres` and `pg_ctl`: the first
/// PATH entry that has all three, else `/usr/lib/postgresql/<highest>/bin`
/// (where Debian installs them without putting them on PATH).
pub fn find_pg_bin() -> Result<PathBuf, LocalError> {
    // The executable search path, read the way a shell reads it; not a setting.
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .filter(|d| d.is_absolute())
        .chain(debian_bin_dirs())
        .find(|d| has_server_binaries(d))
        .ok_or(LocalError::NoBinaries)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl"].iter().all(|name| {
        fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `/usr/lib/postgresql/<N>/bin`, highest version first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// The system user the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl ServerUser {
    /// `None` when not root: then the server runs as we do.
    pub(crate) fn for_this_process() -> Result<Option<Self>, LocalError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        let uid = id_of(SERVER_USER, "-u")?;
        let gid = id_of(SERVER_USER, "-g")?;
        Ok(Some(Self { uid, gid }))
    }

    /// Whether this user may pass through `meta`'s directory.
    fn can_traverse(&self, meta: &fs::Metadata) -> bool {
        let mode = meta.mode();
        mode & 0o001 != 0
            || (meta.uid() == self.uid && mode & 0o100 != 0)
            || (meta.gid() == self.gid && mode & 0o010 != 0)
    }

    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(LocalError::io("change the owner of", path))
    }
}

/// Looks a user up with `id`, which goes through NSS like every other tool.
fn id_of(user: &str, flag: &str) -> Result<u32, LocalError> {
    let out = Command::new("id")
        .args([flag, user])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalError::NoServerUser {
            detail: format!("could not run `id`: {e}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse() {
        Ok(id) if out.status.success() => Ok(id),
        _ => Err(LocalError::NoServerUser {
            detail: format!(
                "`id {flag} {user}` said: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
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

/// State of a cluster whose server is our child.
#[derive(Debug)]
struct Supervision {
    /// The watchdog's stdin: dropping it (or our death) makes it stop the server.
    watchdog: Mutex<Option<ChildStdin>>,
    /// The current server process, until it is stopped.
    server: Mutex<Option<Arc<ServerChild>>>,
}

/// A server process we spawned; the reaper thread fills in its exit.
#[derive(Debug)]
struct ServerChild {
    pid: u32,
    exit: Mutex<Option<io::Result<ExitStatus>>>,
}

impl ServerChild {
    fn has_exited(&self) -> bool {
        lock(&self.exit).is_some()
    }

    fn exit_description(&self) -> Option<String> {
        lock(&self.exit).as_ref().map(|r| match r {
            Ok(status) => status.to_string(),
            Err(e) => format!("could not wait for it: {e}"),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Runs `f` on a thread of its own and awaits its result, so the work
/// belongs to no caller's runtime: it neither blocks the caller's threads nor
/// depends on its clock (a test with paused time still gets a real 30 s
/// start-up bound). A panic in `f` resumes in the caller.
pub(crate) async fn off_runtime<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgkit-local".to_owned())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = send.send(outcome);
        })?;
    match receive.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(io::Error::other("the worker thread ended without a result")),
    }
}

/// Runs `future` to completion on a current-thread runtime of its own.
pub(crate) fn block_on_own_runtime<T>(
    future: impl std::future::Future<Output = T>,
) -> io::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
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

    /// A command for a PostgreSQL program, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The caller's cwd may be unreadable for the server's user.
        cmd.current_dir("/").stdin(Stdio::null());
        for var in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        if let Some(user) = self.server_user {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
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
        let conf = dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "\n# pgkit writes its settings there at every start.\ninclude_if_exists = '{CONF_FILE}'"
                )
            })
            .map_err(LocalError::io("append to", conf))
    }

    fn setting_is(&self, name: &str, value: &str) -> bool {
        self.settings
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
    }

    /// Creates `dir` (mode 0700) and its parents, hands it to the server's
    /// user, and makes its parents traversable for that user.
    fn create_owned_dir(&self, dir: &Path) -> Result<(), LocalError> {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(LocalError::io("create the directory", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(LocalError::io("create the directory", dir)(e)),
        }
        if let Some(user) = self.server_user {
            user.chown(dir)?;
            make_parents_traversable(dir, user)?;
        }
        Ok(())
    }

    /// Starts the server unless it runs; blocking, does not wait for readiness.
    fn start_server_if_stopped(&self) -> Result<(), LocalError> {
        if let LocalStatus::Running { .. } = LocalCluster::status(&self.data_dir) {
            return Ok(());
        }
        self.remove_stale_lock_files();
        self.prepare_socket_dir()?;
        self.write_conf()?;
        match &self.supervision {
            None => self.pg_ctl_start(),
            Some(supervision) => {
                let child = self.spawn_server()?;
                *lock(&supervision.server) = Some(child);
                Ok(())
            }
        }
    }

    /// A crashed server leaves `postmaster.pid` (and the socket's lock file);
    /// if its pid now belongs to another process, PostgreSQL would refuse to
    /// start, so we remove files whose process is no live postgres.
    fn remove_stale_lock_files(&self) {
        let candidates = [
            self.data_dir.join(PID_FILE),
            self.socket_dir.join(format!("{SOCKET_FILE}.lock")),
        ];
        for file in candidates {
            let stale = match fs::read_to_string(&file) {
                Ok(text) => text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i64>().ok())
                    .is_none_or(|pid| !is_live_postgres(pid.unsigned_abs() as u32)),
                Err(_) => false,
            };
            if stale {
                tracing::info!(file = %file.display(), "removing stale PostgreSQL lock file");
                let _ = fs::remove_file(&file);
            }
        }
    }

    /// The data directory holds the socket unless its path is too long; then
    /// a private directory under /tmp does.
    fn prepare_socket_dir(&self) -> Result<(), LocalError> {
        if self.socket_dir == self.data_dir {
            return Ok(());
        }
        let dir = &self.socket_dir;
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                if let Some(user) = self.server_user {
                    user.chown(dir)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.check_private_dir(dir),
            Err(e) => Err(LocalError::io("create the socket directory", dir)(e)),
        }
    }

    /// Anyone who can reach the socket is superuser, so a reused socket
    /// directory must be the server user's own and closed to everyone else.
    fn check_private_dir(&self, dir: &Path) -> Result<(), LocalError> {
        let meta = fs::symlink_metadata(dir).map_err(LocalError::io("inspect", dir))?;
        let owner = self
            .server_user
            .map_or_else(|| rustix::process::geteuid().as_raw(), |u| u.uid);
        if meta.is_dir() && meta.uid() == owner && meta.mode() & 0o077 == 0 {
            return Ok(());
        }
        Err(LocalError::DataDir {
            path: dir.to_owned(),
            reason: format!(
                "the socket directory exists but is not a directory of uid {owner} with mode 0700; \
                 remove it and start again"
            ),
        })
    }

    /// pgkit's own settings, rewritten at every start.
    fn write_conf(&self) -> Result<(), LocalError> {
        let mut text = String::from(
            "# Written by pgkit at every start of this local cluster; edits here are lost.\n\
             # Put your own settings in postgresql.conf before the include line.\n",
        );
        text.push_str("listen_addresses = ''\n");
        text.push_str(&format!(
            "unix_socket_directories = {}\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        ));
        for (name, value) in &self.settings {
            text.push_str(&format!("{name} = {}\n", conf_quote(value)));
        }
        let path = self.data_dir.join(CONF_FILE);
        fs::write(&path, text).map_err(LocalError::io("write", &path))?;
        if let Some(user) = self.server_user {
            user.chown(&path)?;
        }
        Ok(())
    }

    /// The server log, opened for appending and owned by the server's user.
    fn open_log(&self) -> Result<fs::File, LocalError> {
        let path = self.data_dir.join(LOG_FILE);
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(LocalError::io("open the server log", &path))?;
        if let Some(user) = self.server_user {
            user.chown(&path)?;
        }
        Ok(file)
    }

    fn pg_ctl_start(&self) -> Result<(), LocalError> {
        drop(self.open_log()?);
        let timeout = START_TIMEOUT.as_secs().to_string();
        let out = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join(LOG_FILE))
            .args(["-w", "-t", &timeout, "-s"])
            .output()
            .map_err(LocalError::io("run pg_ctl from", &self.bin_dir))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(self.start_error(format!("pg_ctl start failed ({}): {said}", out.status)))
    }

    /// Spawns `postgres` as our child and a thread that reaps it.
    fn spawn_server(&self) -> Result<Arc<ServerChild>, LocalError> {
        let log = self.open_log()?;
        let log_err = log.try_clone().map_err(LocalError::io(
            "open the server log",
            self.data_dir.join(LOG_FILE),
        ))?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for us must not reach it;
            // we (or the watchdog) decide when it stops.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(LocalError::io("run postgres from", &self.bin_dir))?;
        let server = Arc::new(ServerChild {
            pid: child.id(),
            exit: Mutex::new(None),
        });
        let for_reaper = Arc::clone(&server);
        std::thread::Builder::new()
            .name("pgkit-postgres-reaper".to_owned())
            .spawn(move || {
                let mut child = child;
                let status = child.wait();
                *lock(&for_reaper.exit) = Some(status);
            })
            .map_err(LocalError::io("start a thread for", &self.data_dir))?;
        Ok(server)
    }

    /// Starts the watchdog that stops the server once this process is gone.
    fn spawn_watchdog(&self, remove_on_exit: Option<&Path>) -> Result<Supervision, LocalError> {
        let mut child: Child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgkit-watchdog")
            .arg(&self.data_dir)
            .arg(remove_on_exit.unwrap_or(Path::new("")))
            .arg(match remove_on_exit {
                Some(_) if self.socket_dir != self.data_dir => self.socket_dir.as_path(),
                _ => Path::new(""),
            })
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(LocalError::io(
                "start the watchdog (/bin/sh) for",
                &self.data_dir,
            ))?;
        let stdin = child.stdin.take();
        std::thread::Builder::new()
            .name("pgkit-watchdog-reaper".to_owned())
            .spawn(move || {
                let _ = child.wait();
            })
            .map_err(LocalError::io("start a thread for", &self.data_dir))?;
        Ok(Supervision {
            watchdog: Mutex::new(stdin),
            server: Mutex::new(None),
        })
    }

    /// Waits (bounded) until the server accepts connections; blocking.
    fn wait_ready(&self) -> Result<(), LocalError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let config = self.config("postgres");
        loop {
            let attempt = block_on_own_runtime(async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                drop(client);
                connection.await
            })
            .map_err(LocalError::io(
                "run a runtime to connect to",
                &self.socket_dir,
            ))?;
            let last_error = match attempt {
                Ok(()) => return Ok(()),
                Err(e) => describe_pg_error(&e),
            };
            if let Some(exit) = self.current_server().and_then(|s| s.exit_description()) {
                return Err(self.start_error(format!("postgres exited ({exit})")));
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!(
                    "it did not accept connections on {} within {} s (last error: {last_error})",
                    self.socket_dir.display(),
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(POLL * 2);
        }
    }

    fn current_server(&self) -> Option<Arc<ServerChild>> {
        self.supervision
            .as_ref()
            .and_then(|s| lock(&s.server).clone())
    }

    fn start_error(&self, reason: String) -> LocalError {
        let log = self.data_dir.join(LOG_FILE);
        LocalError::Start {
            data_dir: self.data_dir.clone(),
            reason,
            log_tail: read_tail(&log).unwrap_or_else(|e| format!("(could not read it: {e})")),
            log,
        }
    }

    /// Signals the postmaster; a process that is already gone is fine.
    fn signal(&self, pid: u32, sig: rustix::process::Signal) -> Result<(), LocalError> {
        let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
            return Ok(());
        };
        match rustix::process::kill_process(target, sig) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(LocalError::Stop {
                data_dir: self.data_dir.clone(),
                reason: format!(
                    "could not signal its server process {pid} ({e}); stop it as the user who \
                     started it"
                ),
            }),
        }
    }

    /// Fast shutdown, bounded; then immediate shutdown; then an error.
    fn stop_blocking(&self) -> Result<(), LocalError> {
        let ours = self.current_server();
        let pid = match read_pid_file(&self.data_dir) {
            Some(p) if is_live_postgres(p.pid) => Some(p.pid),
            _ => None,
        };
        if let Some(pid) = pid {
            let running = || {
                is_live_postgres(pid)
                    || ours
                        .as_ref()
                        .is_some_and(|s| s.pid == pid && !s.has_exited())
            };
            self.signal(pid, rustix::process::Signal::INT)?;
            if !wait_until(STOP_TIMEOUT, || !running()) {
                tracing::warn!(
                    pid,
                    "local PostgreSQL ignored fast shutdown; using immediate shutdown"
                );
                self.signal(pid, rustix::process::Signal::QUIT)?;
                if !wait_until(KILL_TIMEOUT, || !running()) {
                    return Err(LocalError::Stop {
                        data_dir: self.data_dir.clone(),
                        reason: format!(
                            "process {pid} still runs {} s after fast and immediate shutdown",
                            (STOP_TIMEOUT + KILL_TIMEOUT).as_secs()
                        ),
                    });
                }
            }
        }
        if let Some(server) = &ours {
            // Our child, if it died on its own, still needs reaping to vanish.
            wait_until(KILL_TIMEOUT, || server.has_exited());
        }
        if let Some(supervision) = &self.supervision {
            *lock(&supervision.server) = None;
        }
        self.remove_stale_lock_files();
        Ok(())
    }
}

impl Drop for Supervision {
    fn drop(&mut self) {
        // End-of-file on its stdin makes the watchdog stop the server (and
        // remove the directory it was given); it does so off our thread.
        lock(&self.watchdog).take();
    }
}

/// The watchdog: `$1` data directory, `$2` and `$3` directories to remove
/// afterwards (or empty: the cluster's root and a socket dir outside it). `cat` returns when the pipe's writer, this process, is gone (closed
/// on exit, crash or SIGKILL alike). Signals from the terminal are ignored so
/// that a Ctrl-C of the test run still gets its cleanup. The server is found
/// through `postmaster.pid` at that moment, so a stopped cluster is left alone.
const WATCHDOG_SCRIPT: &str = r#"
trap '' HUP INT QUIT TERM PIPE
cat >/dev/null 2>&1
alive() {
  [ -e "/proc/$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = postgres ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
wait_gone() {
  i=0
  while [ "$i" -lt "$2" ] && alive "$1"; do sleep 0.1; i=$((i + 1)); done
}
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && alive "$pid"; then
  kill -INT "$pid" 2>/dev/null
  wait_gone "$pid" 300
  if alive "$pid"; then kill -QUIT "$pid" 2>/dev/null; wait_gone "$pid" 50; fi
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; wait_gone "$pid" 50; fi
fi
if [ -n "$2" ]; then rm -rf -- "$2"; fi
if [ -n "$3" ]; then rm -rf -- "$3"; fi
"#;

/// Polls `done` until it holds or `timeout` passes; says whether it held.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` is a running (not zombie) postgres process. Without /proc
/// (not Linux) any live process counts, which errs on the safe side.
pub(crate) fn is_live_postgres(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        return match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => proc_stat_is_live_postgres(&stat),
            Err(_) => false,
        };
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// `/proc/<pid>/stat` is `pid (comm) state ...`; comm may hold spaces.
fn proc_stat_is_live_postgres(stat: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
    matches!(comm, "postgres" | "postmaster") && !matches!(state, "Z" | "X" | "x")
}

/// The parts of `postmaster.pid` we use.
struct PidFile {
    pid: u32,
    socket_dir: Option<PathBuf>,
}

fn read_pid_file(data_dir: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(data_dir.join(PID_FILE)).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse::<i64>().ok()?.unsigned_abs() as u32;
    // Line 5 is the first socket directory.
    let socket_dir = lines
        .nth(3)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Some(PidFile { pid, socket_dir })
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

/// Gives every directory above `dir` the o+x bit the server's user lacks.
fn make_parents_traversable(dir: &Path, user: ServerUser) -> Result<(), LocalError> {
    for parent in dir.ancestors().skip(1) {
        let meta = fs::metadata(parent).map_err(LocalError::io("inspect", parent))?;
        if user.can_traverse(&meta) {
            continue;
        }
        let mode = meta.permissions().mode() | 0o001;
        fs::set_permissions(parent, fs::Permissions::from_mode(mode))
            .map_err(LocalError::io("make traversable", parent))?;
        // Said at info: `pgkit local start` prints its own line for it.
        tracing::info!(
            dir = %parent.display(),
            "made the directory traversable (o+x) so the `postgres` user can reach the data directory"
        );
    }
    Ok(())
}

fn validate_superuser(name: &str) -> Result<(), LocalError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        return Ok(());
    }
    Err(LocalError::InvalidSetting {
        name: "superuser".to_owned(),
        reason: format!("{name:?} must be 1..63 ASCII letters, digits or underscores"),
    })
}

fn validate_setting(name: &str, value: &str) -> Result<(), LocalError> {
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !name_ok {
        return Err(LocalError::InvalidSetting {
            name: name.to_owned(),
            reason: "a setting name is ASCII letters, digits, '_' and '.', e.g. fsync".to_owned(),
        });
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(LocalError::InvalidSetting {
            name: name.to_owned(),
            reason: "the value must be one line".to_owned(),
        });
    }
    Ok(())
}

/// A `postgresql.conf` string literal.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn read_tail(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
    fn settings_are_validated_and_quoted() {
        assert!(validate_setting("fsync", "off").is_ok());
        assert!(validate_setting("auto_explain.log_min_duration", "0").is_ok());
        assert!(validate_setting("fsync = on\nssl", "off").is_err());
        assert!(validate_setting("ssl", "on\nlisten_addresses='*'").is_err());
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conf_quote(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn proc_stat_zombies_and_other_programs_are_not_live() {
        assert!(proc_stat_is_live_postgres("42 (postgres) S 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (postgres) Z 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (bash) S 1 42 42 0"));
        assert!(!proc_stat_is_live_postgres("42 (post gres) S 1"));
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
