//! A local PostgreSQL of one test's own, with its own `pg_hba.conf`, for the
//! TLS and IAM tests: the shared harness cluster trusts every socket
//! connection, so a wrong password or a plain-text connection could not fail
//! there.

#![allow(dead_code)] // each test binary uses part of it

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgkit::connect::SessionParams;
use pgkit::local::{LocalCluster, LocalOptions, LocalStatus};
use pgkit::testing::{TestCluster, TestDatabase};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

/// A supervised cluster in a temp dir; stopped and removed on drop.
pub struct OwnCluster {
    cluster: Option<LocalCluster>,
    data_dir: PathBuf,
    dir: TempDir,
}

impl OwnCluster {
    /// A temp dir for the cluster and the files its settings name: `prepare`
    /// writes them into the directory it is given and returns the settings.
    /// Then the server, reading `hba` as its `pg_hba.conf` (after a line that
    /// trusts the superuser on the socket, which the harness needs).
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
            dir,
        }
    }

    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

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
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(
            LocalCluster::status(&self.data_dir),
            LocalStatus::Running { .. }
        ) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Makes `path` the server user's own with `mode`: PostgreSQL refuses a key
/// file that others may read, and runs as `postgres` when we are root.
pub fn give_to_server(path: &Path, mode: u32) {
    set_mode(path, mode);
    if rustix::process::geteuid().is_root() {
        let uid = id_of("-u");
        let gid = id_of("-g");
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
    }
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("id of the postgres user")
}

/// A plain connection to `url` (test set-up and checks, not the code under
/// test); the error is the driver's, for tests that expect a refusal.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let dsn = pgkit::dsn::Dsn::parse(url).unwrap();
    let (client, conn) = dsn.pg_config().connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The test database's URL, logging in as `user` (with `password`).
pub fn url_as(db: &TestDatabase, user: &str, password: Option<&str>) -> String {
    let rest = db.url().strip_prefix("postgresql://postgres@").unwrap();
    let user = user.replace('@', "%40");
    match password {
        Some(p) => format!("postgresql://{user}:{p}@{rest}"),
        None => format!("postgresql://{user}@{rest}"),
    }
}

/// Makes the cluster ask every role but `postgres` for a SCRAM password on
/// its socket, and waits until the server uses the new rules.
pub async fn require_scram(cluster: &TestCluster, db: &TestDatabase, probe_role: &str) {
    let hba = cluster.data_dir().join("pg_hba.conf");
    // Overwriting keeps the file's owner (postgres) and mode.
    std::fs::write(
        &hba,
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .unwrap();
    let admin = connect(db.url()).await.unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&url_as(db, probe_role, None)).await {
            Err(e) if full_message(&e).contains("password missing") => return,
            _ if Instant::now() > deadline => panic!("pg_hba.conf reload not seen within 10 s"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Session settings for test connections.
pub fn session() -> SessionParams {
    SessionParams {
        application_name: "pgkit-test".to_string(),
        statement_timeout: Duration::from_secs(30),
        idle_in_transaction_timeout: Duration::from_secs(30),
        environment: "test".to_string(),
        connect_timeout: Duration::from_secs(10),
        pooler: Default::default(),
    }
}

/// An error with all its causes, as a person reading a log would see it.
pub use pgkit::error::error_chain as full_message;

/// Polls `check` until it holds or `bound` passes.
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
