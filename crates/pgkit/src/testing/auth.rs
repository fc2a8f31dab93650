//! Clusters and databases that check who logs in, for tests of passwords,
//! SCRAM, TLS and IAM login: the shared harness cluster trusts every socket
//! connection, so a wrong password or a plain-text connection could not fail
//! there.
//!
//! These were a `tests/support/mod.rs` compiled into several of pgkit's test
//! binaries, each using part of it, which needed `#[allow(dead_code)]`; as
//! public items of the harness nothing is dead, and a service's own auth or
//! TLS tests can use them too. See docs/testing.md.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::check::connect;
use super::{TestCluster, TestDatabase};
use crate::local::{LocalCluster, LocalOptions, LocalStatus, ServerUser};

/// A supervised cluster in a temp dir with a `pg_hba.conf` of the test's
/// own; stopped and removed on drop.
#[derive(Debug)]
pub struct OwnCluster {
    cluster: Option<LocalCluster>,
    data_dir: PathBuf,
    // Last: removed after the server has stopped.
    _dir: TempDir,
}

impl OwnCluster {
    /// A temp dir for the cluster and the files its settings name: `prepare`
    /// writes them (certificates, keys) into the directory it is given and
    /// returns the settings. Then the server, reading `hba` as its
    /// `pg_hba.conf` after a line that trusts the superuser on the socket,
    /// which [`OwnCluster::admin`] needs.
    ///
    /// Panics (failing the test) when the server does not start.
    pub async fn start(
        hba: &str,
        prepare: impl FnOnce(&Path) -> Vec<(&'static str, String)>,
    ) -> OwnCluster {
        let dir = tempfile::Builder::new()
            .prefix("pgkit-own-cluster-")
            .tempdir()
            .expect("temp dir");
        // The server may run as `postgres` (we are root): let it pass through.
        set_mode(dir.path(), 0o711);
        let files = dir.path().join("files");
        std::fs::create_dir(&files).expect("files dir");
        set_mode(&files, 0o755);
        let hba_file = files.join("pg_hba.conf");
        std::fs::write(&hba_file, format!("local all postgres trust\n{hba}")).expect("pg_hba");
        set_mode(&hba_file, 0o644);
        let settings = prepare(&files);

        let data_dir = dir.path().join("data");
        let mut opts = LocalOptions::new(&data_dir)
            .setting("fsync", "off")
            .setting("hba_file", hba_file.display().to_string());
        for (name, value) in settings {
            opts = opts.setting(name, value);
        }
        let cluster = match LocalCluster::start_supervised(opts).await {
            Ok(c) => c,
            Err(e) => panic!("test cluster did not start: {e}"),
        };
        OwnCluster {
            data_dir: cluster.data_dir().to_path_buf(),
            cluster: Some(cluster),
            _dir: dir,
        }
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.local().socket_dir().to_path_buf()
    }

    fn local(&self) -> &LocalCluster {
        self.cluster.as_ref().expect("cluster runs until drop")
    }

    /// Runs SQL as the superuser over the socket (test set-up only).
    pub async fn admin(&self, sql: &str) {
        let (client, conn) = self
            .local()
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("superuser connection");
        let driver = tokio::spawn(conn);
        client.batch_execute(sql).await.expect("admin SQL");
        drop(client);
        let _ = driver.await;
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // Dropping a supervised cluster makes its watchdog stop the server;
        // wait (bounded) until it is gone so the temp dir can go with it.
        drop(self.cluster.take());
        crate::local::wait_until(Duration::from_secs(30), || {
            !matches!(
                LocalCluster::status(&self.data_dir),
                LocalStatus::Running { .. }
            )
        });
    }
}

/// Sets `path`'s permission bits; panics when it cannot.
pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Makes `path` the server user's own with `mode`: PostgreSQL refuses a key
/// file that others may read, and runs as `postgres` when we are root.
pub fn give_to_server(path: &Path, mode: u32) {
    set_mode(path, mode);
    let user = ServerUser::for_this_process().expect("the postgres system user");
    if let Some(user) = user {
        user.chown(path).expect("chown to postgres");
    }
}

/// The test database's URL, logging in as `user` (with `password`).
pub fn url_as(db: &TestDatabase, user: &str, password: Option<&str>) -> String {
    let rest = db
        .url()
        .strip_prefix("postgresql://postgres@")
        .expect("a harness URL logs in as postgres");
    let user = user.replace('@', "%40");
    match password {
        Some(p) => format!("postgresql://{user}:{p}@{rest}"),
        None => format!("postgresql://{user}@{rest}"),
    }
}

/// Makes `cluster` (a dedicated one: this changes who may log in) ask every
/// role but `postgres` for a SCRAM password on its socket, and waits until
/// the server uses the new rules, probing as `probe_role` (a role that exists
/// and has no password) in `db`.
pub async fn require_scram(cluster: &TestCluster, db: &TestDatabase, probe_role: &str) {
    let hba = cluster.data_dir().join("pg_hba.conf");
    // Overwriting keeps the file's owner (postgres) and mode.
    std::fs::write(
        &hba,
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .expect("write pg_hba.conf");
    let admin = connect(db.url()).await.expect("superuser connection");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload the configuration");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&url_as(db, probe_role, None)).await {
            Err(e) if crate::error::error_chain(&e).contains("password missing") => return,
            _ if Instant::now() > deadline => panic!("pg_hba.conf reload not seen within 10 s"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
