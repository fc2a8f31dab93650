//! A real streaming replica of a test cluster, for the tests of
//! `DB_READ_DSN`.
//!
//! Made the way an operator makes one: `pg_basebackup -R` (which writes
//! `standby.signal` and `primary_conninfo`) from a primary started by
//! [`super::replicable_cluster`], then `postgres` on the copy with a socket
//! directory of its own. Like the PgBouncer harness it runs through
//! `setpriv` as the server's system user when the tests run as root, tied
//! to the test's thread (`--pdeathsig`), so a killed test leaves no server
//! behind. Replay can be paused and resumed (`pg_wal_replay_pause()`), the
//! lever a read-your-writes test needs: with replay paused, a write on the
//! primary is provably not on the replica.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::local::{find_pg_bin, ServerUser};

use super::TestCluster;

/// The port in the socket file's name; no TCP port is opened.
const PORT: u16 = 5432;
const READY_BOUND: Duration = Duration::from_secs(30);

/// A running streaming replica; stopped and removed when dropped.
#[derive(Debug)]
pub struct Replica {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Replica {
    /// Copies `primary` with `pg_basebackup -R` (through a replication slot,
    /// so the primary keeps the WAL the replica has not received) and
    /// starts the copy as a hot standby. Panics (failing the test) with the
    /// reason when it cannot.
    pub async fn start(primary: &TestCluster) -> Replica {
        match Self::try_start(primary).await {
            Ok(r) => r,
            Err(e) => panic!("pgkit test harness: cannot start a replica: {e}"),
        }
    }

    async fn try_start(primary: &TestCluster) -> Result<Replica, String> {
        static SLOT: AtomicU32 = AtomicU32::new(0);
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("pgkit-replica")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let user = ServerUser::for_this_process().map_err(|e| e.to_string())?;
        if let Some(u) = user {
            u.chown(dir.path()).map_err(|e| e.to_string())?;
        }
        let data = dir.path().join("data");
        let slot = format!(
            "pgkit_test_{}_{}",
            std::process::id(),
            SLOT.fetch_add(1, Ordering::Relaxed)
        );
        let mut backup = Command::new(bin.join("pg_basebackup"));
        backup
            .current_dir("/")
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ])
            .args(["--create-slot", "--slot", &slot])
            .arg("--host")
            .arg(primary.socket_dir())
            .args(["--port", &PORT.to_string(), "--username", "postgres"])
            .stdin(Stdio::null());
        if let Some(u) = user {
            backup.uid(u.uid).gid(u.gid);
        }
        let out = tokio::task::spawn_blocking(move || backup.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("could not run pg_basebackup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_basebackup failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut replica = Replica { child: None, dir };
        replica.spawn(&bin, user)?;
        replica.wait_ready().await?;
        Ok(replica)
    }

    fn spawn(&mut self, bin: &Path, user: Option<ServerUser>) -> Result<(), String> {
        let log = fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        if let Some(u) = user {
            u.chown(&self.log_path()).map_err(|e| e.to_string())?;
        }
        let mut cmd = Command::new("setpriv");
        cmd.current_dir("/").arg("--pdeathsig").arg("KILL");
        if let Some(u) = user {
            cmd.args(["--reuid", &u.uid.to_string(), "--regid", &u.gid.to_string()])
                .arg("--clear-groups");
        }
        let socket = format!("unix_socket_directories={}", self.dir.path().display());
        let child = cmd
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-c", &socket, "-c", "listen_addresses="])
            .args(["-c", &format!("port={PORT}")])
            .args(["-c", "hot_standby=on", "-c", "hot_standby_feedback=on"])
            // The primary's own log settings point into its directory.
            .args(["-c", "logging_collector=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not run setpriv (util-linux): {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the replica accepts a login and is in recovery.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_BOUND;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("it exited with {status}: {}", self.log_tail()));
            }
            if let Ok(client) = self.connect("postgres").await {
                if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if row.get::<_, bool>(0) {
                        return Ok(());
                    }
                    return Err("the copy is not in recovery (no standby.signal?)".into());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready after {} s: {}",
                    READY_BOUND.as_secs(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The replica's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the replica's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq URL for `database` on the replica, as the superuser.
    pub fn url(&self, database: &str) -> String {
        crate::local::url("postgres", database, self.dir.path())
    }

    /// A connection to `database` on the replica (its task is spawned).
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(PORT)
            .user("postgres")
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Pauses WAL replay (WAL still arrives; nothing new becomes visible)
    /// and returns once the replica says it is paused.
    pub async fn pause_replay(&self) {
        self.replay_control("SELECT pg_wal_replay_pause()", "paused")
            .await
    }

    /// Resumes WAL replay.
    pub async fn resume_replay(&self) {
        self.replay_control("SELECT pg_wal_replay_resume()", "not paused")
            .await
    }

    async fn replay_control(&self, sql: &str, want: &str) {
        let client = self
            .connect("postgres")
            .await
            .unwrap_or_else(|e| panic!("pgkit test harness: replica: {e}"));
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("pgkit test harness: {sql}: {e}"));
        let deadline = Instant::now() + READY_BOUND;
        loop {
            let row = client
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await
                .unwrap_or_else(|e| panic!("pgkit test harness: replay state: {e}"));
            if row.get::<_, String>(0) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pgkit test harness: replay not {want} after {} s",
                READY_BOUND.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most 30 s) until the replica has replayed everything the
    /// primary had written when this was called.
    pub async fn wait_caught_up(&self, primary: &TestCluster) {
        let (client, conn) = primary
            .local
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("pgkit test harness: primary: {e}"));
        tokio::spawn(conn);
        let target: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap_or_else(|e| panic!("pgkit test harness: primary position: {e}"))
            .get(0);
        let replica = self
            .connect("postgres")
            .await
            .unwrap_or_else(|e| panic!("pgkit test harness: replica: {e}"));
        let deadline = Instant::now() + READY_BOUND;
        loop {
            let row = replica
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&target],
                )
                .await
                .unwrap_or_else(|e| panic!("pgkit test harness: replay position: {e}"));
            if row.get::<_, Option<bool>>(0) == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pgkit test harness: replica did not reach {target} within {} s",
                READY_BOUND.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the replica (fast shutdown) and waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + READY_BOUND;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The directory of the real `postgres` binary: `PATH` may hold only
/// links to the server binaries, not `pg_basebackup` beside them.
fn server_bin_dir() -> Result<PathBuf, String> {
    let found = find_pg_bin().map_err(|e| e.to_string())?;
    let real = fs::canonicalize(found.join("postgres")).map_err(|e| e.to_string())?;
    let dir = real.parent().map(Path::to_path_buf).unwrap_or(found);
    if dir.join("pg_basebackup").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no pg_basebackup beside {}; install the PostgreSQL 15 client binaries",
            real.display()
        ))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}
