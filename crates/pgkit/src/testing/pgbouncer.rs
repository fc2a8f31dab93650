//! A real PgBouncer in transaction mode in front of a test cluster, for the
//! tests of `DB_POOLER=transaction`.
//!
//! Debian's `pgbouncer` package provides the binary (`.ci/run` installs it).
//! Each [`PgBouncer`] is a process of its own, listening only on a Unix
//! socket in a private temp directory, with a small server pool so tests
//! see transactions of one client land on different server connections.
//! PgBouncer refuses to run as root, so as root it runs as the same system
//! user as the test server, through `setpriv`, which also ties its life to
//! the test's thread (`--pdeathsig`): a killed test leaves none behind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::local::ServerUser;

/// The port in the socket file's name; no TCP port is opened.
const PORT: u16 = 6432;

/// A running PgBouncer; stopped and removed when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: tempfile::TempDir,
}

/// Where to find the binary: `PATH`, then Debian's location.
fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pgbouncer"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/pgbouncer")])
        .find(|p| p.is_file())
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with `pool_size` server
    /// connections per database and user, in front of the server whose
    /// socket is in `server_socket_dir` (a test cluster's or a test
    /// database's `socket_dir()`). Panics (failing the test) with what to
    /// install when it cannot.
    pub async fn start(server_socket_dir: &Path, pool_size: u32) -> PgBouncer {
        Self::start_with(server_socket_dir, pool_size, &[]).await
    }

    /// [`PgBouncer::start`] with more `[pgbouncer]` settings (a small
    /// `max_client_conn`, say), written after the harness's own.
    pub async fn start_with(
        server_socket_dir: &Path,
        pool_size: u32,
        settings: &[(&str, &str)],
    ) -> PgBouncer {
        match Self::try_start(server_socket_dir, pool_size, settings).await {
            Ok(b) => b,
            Err(e) => panic!("pgkit test harness: cannot start PgBouncer: {e}"),
        }
    }

    async fn try_start(
        server_socket_dir: &Path,
        pool_size: u32,
        settings: &[(&str, &str)],
    ) -> Result<PgBouncer, String> {
        let bin =
            binary().ok_or("no pgbouncer binary; install it with `apt-get install pgbouncer`")?;
        let dir = tempfile::Builder::new()
            .prefix("pgkit-pgbouncer")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let user = ServerUser::for_this_process().map_err(|e| e.to_string())?;
        let ini = write_config(dir.path(), server_socket_dir, pool_size, settings)
            .map_err(|e| format!("config: {e}"))?;
        if let Some(u) = user {
            u.chown(dir.path()).map_err(|e| e.to_string())?;
            for entry in fs::read_dir(dir.path()).map_err(|e| e.to_string())? {
                let path = entry.map_err(|e| e.to_string())?.path();
                u.chown(&path).map_err(|e| e.to_string())?;
            }
        }
        let log = fs::File::create(dir.path().join("stderr.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("setpriv");
        cmd.arg("--pdeathsig").arg("KILL");
        if let Some(u) = user {
            cmd.args(["--reuid", &u.uid.to_string(), "--regid", &u.gid.to_string()])
                .arg("--clear-groups");
        }
        let child = cmd
            .arg(bin)
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not run setpriv (util-linux): {e}"))?;
        let mut bouncer = PgBouncer { child, dir };
        bouncer.wait_ready().await?;
        Ok(bouncer)
    }

    /// Waits until the socket accepts a login, or says why not.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status}: {}", self.log_tail()));
            }
            let probe = self.config("postgres").connect(tokio_postgres::NoTls).await;
            if let Ok((client, conn)) = probe {
                drop(client);
                let _ = conn.await;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 15 s: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The directory holding PgBouncer's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq URL for `database` through PgBouncer, as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@/{database}?host={}&port={PORT}",
            self.dir.path().display()
        )
    }

    /// The driver's config for the same.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(PORT)
            .user("postgres")
            .dbname(database);
        config
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(
    dir: &Path,
    server_socket: &Path,
    pool_size: u32,
    settings: &[(&str, &str)],
) -> std::io::Result<PathBuf> {
    let users = dir.join("users.txt");
    fs::write(&users, "\"postgres\" \"\"\n")?;
    let ini = dir.join("pgbouncer.ini");
    let mut f = fs::File::create(&ini)?;
    writeln!(f, "[databases]")?;
    writeln!(f, "* = host={} port=5432", server_socket.display())?;
    writeln!(f, "[pgbouncer]")?;
    writeln!(f, "listen_addr =")?;
    writeln!(f, "listen_port = {PORT}")?;
    writeln!(f, "unix_socket_dir = {}", dir.display())?;
    writeln!(f, "auth_type = trust")?;
    writeln!(f, "auth_file = {}", users.display())?;
    writeln!(f, "pool_mode = transaction")?;
    writeln!(f, "default_pool_size = {pool_size}")?;
    writeln!(f, "max_client_conn = 2000")?;
    // A query waiting for a server connection (the database is down, or
    // every server is busy) gets an error after 5 s instead of PgBouncer's
    // default 120 s: the pooler's side of DB_POOL_TIMEOUT (docs/deploy.md).
    writeln!(f, "query_wait_timeout = 5")?;
    writeln!(f, "pidfile = {}", dir.join("pgbouncer.pid").display())?;
    writeln!(f, "logfile = {}", dir.join("pgbouncer.log").display())?;
    // Managed Connection Pooling and a default PgBouncer alike refuse the
    // `options` start-up parameter; nothing is ignored here, so a client
    // that sends it fails as it would in production.
    writeln!(f, "server_reset_query =")?;
    for (name, value) in settings {
        writeln!(f, "{name} = {value}")?;
    }
    drop(f);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(ini)
}
