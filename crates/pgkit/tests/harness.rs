//! The throwaway-PostgreSQL harness and the local cluster, against real
//! PostgreSQL: isolation between parallel tests, one template build, cleanup
//! (drop, panic, process death, leftovers), restarts, and `LocalCluster`'s
//! idempotent start and clean stop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgkit::local::{LocalCluster, LocalOptions, LocalStatus};
use pgkit::testing::{self, TestCluster, TestDatabase};
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to `url`; the connection's driver runs on this test's runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn table_exists(client: &Client, table: &str) -> bool {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .expect("to_regclass");
    row.get(0)
}

async fn database_exists(cluster: &TestCluster, name: &str) -> bool {
    let client = connect(&cluster.url("postgres"))
        .await
        .expect("admin connection");
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("pg_database");
    row.get::<_, i64>(0) == 1
}

/// Polls `done` until it holds, for at most `timeout`.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}

/// Whether `pid` is a process that still runs (a zombie does not).
fn process_runs(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Each of these runs in parallel with the others on the one shared cluster;
/// all create the same table name, which only works if databases differ.
async fn own_database_roundtrip(marker: &str) {
    let db = testing::cluster().await.database().await;
    let client = connect(db.url()).await.expect("connect to own database");
    client
        .batch_execute("CREATE TABLE probe (marker text NOT NULL)")
        .await
        .expect("the table is new in this database");
    client
        .execute("INSERT INTO probe VALUES ($1)", &[&marker])
        .await
        .expect("insert");
    let rows = client
        .query("SELECT marker FROM probe", &[])
        .await
        .expect("select");
    let markers: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(markers, vec![marker.to_owned()]);
}

#[tokio::test]
async fn parallel_test_one_has_its_own_database() {
    own_database_roundtrip("one").await;
}

#[tokio::test]
async fn parallel_test_two_has_its_own_database() {
    own_database_roundtrip("two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_test_three_has_its_own_database() {
    own_database_roundtrip("three").await;
}

/// The harness keeps off the test's runtime, so a paused clock (which would
/// fire every timeout at once) does not matter.
#[tokio::test(start_paused = true)]
async fn the_harness_works_in_a_test_with_paused_time() {
    own_database_roundtrip("paused").await;
    let db = clone_of_counted().await;
    assert_template_content(&db).await;
}

#[tokio::test]
async fn a_table_created_in_one_database_is_invisible_in_another() {
    let cluster = testing::cluster().await;
    let (a, b) = tokio::join!(cluster.database(), cluster.database());
    assert_ne!(a.name(), b.name());
    let client_a = connect(a.url()).await.expect("connect a");
    let client_b = connect(b.url()).await.expect("connect b");
    client_a
        .batch_execute("CREATE TABLE only_in_a (id int)")
        .await
        .expect("create");
    assert!(table_exists(&client_a, "only_in_a").await);
    assert!(!table_exists(&client_b, "only_in_a").await);
}

#[tokio::test]
async fn the_url_is_a_unix_socket_url_and_there_is_no_tcp_listener() {
    let cluster = testing::cluster().await;
    let url = cluster.url("postgres");
    assert!(
        url.starts_with("postgresql://postgres@/postgres?host=%2F"),
        "{url}"
    );
    assert!(cluster.socket_dir().join(".s.PGSQL.5432").exists());
    let client = connect(&url).await.expect("connect by url");
    let row = client
        .query_one(
            "SELECT current_setting('listen_addresses'), current_setting('fsync')",
            &[],
        )
        .await
        .expect("settings");
    assert_eq!(row.get::<_, String>(0), "");
    assert_eq!(row.get::<_, String>(1), "off");
}

static SETUP_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Stands in for running migrations: builds a schema, then closes its
/// connection as the contract asks.
async fn counted_setup(url: String) -> Result<(), BoxError> {
    SETUP_CALLS.fetch_add(1, Ordering::SeqCst);
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE migrated (id int PRIMARY KEY, note text);
             INSERT INTO migrated VALUES (1, 'from the template');",
        )
        .await?;
    drop(client);
    driver.await??;
    Ok(())
}

async fn clone_of_counted() -> TestDatabase {
    testing::cluster()
        .await
        .database_from("counted", counted_setup)
        .await
}

async fn assert_template_content(db: &TestDatabase) {
    let client = connect(db.url()).await.expect("connect to clone");
    let note: String = client
        .query_one("SELECT note FROM migrated WHERE id = 1", &[])
        .await
        .expect("the clone has the template's table and row")
        .get(0);
    assert_eq!(note, "from the template");
}

#[tokio::test]
async fn the_template_is_built_once_for_concurrent_callers() {
    let (a, b, c) = tokio::join!(clone_of_counted(), clone_of_counted(), clone_of_counted());
    for db in [&a, &b, &c] {
        assert_template_content(db).await;
    }
    assert_eq!(SETUP_CALLS.load(Ordering::SeqCst), 1);

    // Clones are independent of each other.
    let client_a = connect(a.url()).await.expect("connect a");
    client_a
        .batch_execute("DELETE FROM migrated")
        .await
        .expect("delete");
    assert_template_content(&b).await;
}

#[tokio::test]
async fn another_test_reuses_the_built_template() {
    let db = clone_of_counted().await;
    assert_template_content(&db).await;
    assert_eq!(SETUP_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_template_setup_fails_the_caller_and_is_retried() {
    let cluster = testing::cluster().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let first_calls = Arc::clone(&calls);
    let failed = tokio::spawn(async move {
        cluster
            .database_from("fails_first", move |_url| async move {
                first_calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), BoxError>("migration 002 is broken".into())
            })
            .await
    })
    .await;
    let panic = failed.expect_err("a failed setup panics in the caller");
    let message = panic.into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(message.contains("fails_first"), "{message}");
    assert!(message.contains("migration 002 is broken"), "{message}");

    let retry_calls = Arc::clone(&calls);
    let db = cluster
        .database_from("fails_first", move |url| async move {
            retry_calls.fetch_add(1, Ordering::SeqCst);
            counted_setup_without_count(url).await
        })
        .await;
    assert_template_content(&db).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn counted_setup_without_count(url: String) -> Result<(), BoxError> {
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE migrated (id int PRIMARY KEY, note text);
             INSERT INTO migrated VALUES (1, 'from the template');",
        )
        .await?;
    drop(client);
    driver.await??;
    Ok(())
}

#[tokio::test]
async fn a_dropped_database_disappears_even_when_its_test_panics() {
    let cluster = testing::cluster().await;

    let db = cluster.database().await;
    let name = db.name().to_owned();
    // An open session must not keep it alive: the drop is WITH (FORCE).
    let client = connect(db.url()).await.expect("connect");
    assert!(database_exists(cluster, &name).await);
    drop(db);
    assert!(!database_exists(cluster, &name).await);
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "session was ended"
    );

    let seen = Arc::new(Mutex::new(None));
    let seen_in_task = Arc::clone(&seen);
    let outcome = tokio::spawn(async move {
        let db = testing::cluster().await.database().await;
        *seen_in_task.lock().unwrap() = Some(db.name().to_owned());
        panic!("a failing test");
    })
    .await;
    assert!(outcome.is_err(), "the task panicked");
    let name = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the task made a database");
    assert!(!database_exists(cluster, &name).await);
}

#[tokio::test]
async fn invalid_template_names_are_refused_with_a_clear_message() {
    let outcome = tokio::spawn(async {
        testing::cluster()
            .await
            .database_from("Bad-Name", |_url| async { Ok(()) })
            .await
    })
    .await;
    let panic = outcome.expect_err("refused").into_panic();
    let message = panic.downcast_ref::<String>().expect("String panic");
    assert!(message.contains("\"Bad-Name\""), "{message}");
    assert!(message.contains("lowercase"), "{message}");
}

#[tokio::test]
async fn a_dedicated_cluster_stops_and_restarts_with_its_data() {
    let cluster = testing::dedicated_cluster().await;
    let shared = testing::cluster().await;
    assert_ne!(cluster.socket_dir(), shared.socket_dir());
    let root = cluster.data_dir().parent().unwrap().to_owned();

    let db = cluster.database().await;
    let client = connect(db.url()).await.expect("connect");
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42);")
        .await
        .expect("write");
    let pid = cluster.pid().expect("running");

    cluster.stop().await.expect("stop");
    assert!(!process_runs(pid), "postmaster {pid} is gone");
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(
        connect(db.url()).await.is_err(),
        "nothing listens while stopped"
    );
    assert_eq!(
        LocalCluster::status(cluster.data_dir()),
        LocalStatus::Stopped
    );
    // Stopping twice is fine.
    cluster.stop().await.expect("second stop");

    cluster.start().await.expect("start again");
    let client = connect(db.url()).await.expect("connect after restart");
    let v: i32 = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .expect("data survived")
        .get(0);
    assert_eq!(v, 42);

    let pid = cluster.pid().expect("running again");
    drop(client);
    drop(db);
    drop(cluster);
    assert!(!process_runs(pid), "dropping the cluster stops its server");
    assert!(
        !root.exists(),
        "dropping the cluster removes {}",
        root.display()
    );
}

#[tokio::test]
async fn leftovers_of_dead_test_processes_are_swept_at_start() {
    // Named after this very process but with another start time: a process
    // that died and whose pid was reused.
    let tmp = std::env::temp_dir();
    let leftover = tmp.join(format!("pgkit-test-{}-1-deadbeef", std::process::id()));
    std::fs::create_dir_all(leftover.join("data")).unwrap();
    std::fs::write(leftover.join("data/PG_VERSION"), "15\n").unwrap();
    // One whose owner lives (us, right start time) must stay.
    let cluster = testing::dedicated_cluster().await;
    let live = cluster.data_dir().parent().unwrap().to_owned();
    assert!(!leftover.exists(), "{} was swept", leftover.display());
    let other = testing::dedicated_cluster().await;
    assert!(live.exists(), "a live process's cluster is kept");
    drop(other);
}

/// A guard that stops a detached local cluster even when the test fails.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.0.join("postmaster.pid")) {
            if let Some(pid) = text.lines().next().and_then(|l| l.parse::<i32>().ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
                }
            }
        }
    }
}

#[tokio::test]
async fn local_cluster_start_is_idempotent_and_stop_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    make_traversable(tmp.path());
    let data_dir = tmp.path().join("pgdata");
    let _guard = StopOnDrop(data_dir.clone());
    assert_eq!(LocalCluster::status(&data_dir), LocalStatus::NotInitialized);

    let opts = LocalOptions::new(&data_dir).setting("fsync", "off");
    let first = LocalCluster::start(opts.clone())
        .await
        .expect("first start");
    let LocalStatus::Running { pid } = LocalCluster::status(&data_dir) else {
        panic!("running after start");
    };
    let second = LocalCluster::start(opts.clone())
        .await
        .expect("second start");
    assert_eq!(second.pid(), Some(pid), "the second start attached");
    assert_eq!(first.url("postgres"), second.url("postgres"));
    let client = connect(&second.url("postgres")).await.expect("connect");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);

    let attached = LocalCluster::attach(opts.clone()).await.expect("attach");
    assert_eq!(attached.and_then(|c| c.pid()), Some(pid));

    first.stop().await.expect("stop");
    assert!(!process_runs(pid), "postmaster {pid} is gone");
    assert!(LocalCluster::attach(opts.clone())
        .await
        .expect("attach")
        .is_none());
    assert!(!data_dir.join("postmaster.pid").exists());
    assert_eq!(LocalCluster::status(&data_dir), LocalStatus::Stopped);
    second
        .stop()
        .await
        .expect("stopping a stopped cluster succeeds");

    // A start after a stop brings the same cluster back.
    let again = LocalCluster::start(opts).await.expect("start after stop");
    assert!(again.pid().is_some());
    again.stop().await.expect("stop again");
}

#[tokio::test]
async fn a_stale_postmaster_pid_from_a_crash_does_not_block_start() {
    let tmp = tempfile::tempdir().unwrap();
    make_traversable(tmp.path());
    let data_dir = tmp.path().join("pgdata");
    let _guard = StopOnDrop(data_dir.clone());
    let opts = LocalOptions::new(&data_dir).setting("fsync", "off");
    let cluster = LocalCluster::start(opts.clone()).await.expect("start");
    let pid = cluster.pid().expect("running");
    // A crash: the postmaster dies without cleaning up.
    let killed = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    killed.expect("kill -9");
    assert!(wait_until(Duration::from_secs(10), || !process_runs(pid)));
    // Make the stale file name a live process that is no postgres (pid reuse).
    let pid_file = data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).expect("left behind by the crash");
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(
        &pid_file,
        format!("{}\n{}\n", std::process::id(), rest.join("\n")),
    )
    .unwrap();
    assert_eq!(LocalCluster::status(&data_dir), LocalStatus::Stopped);
    // Its children notice the postmaster's death and exit; until they have,
    // PostgreSQL itself refuses to start (shared memory still in use).
    assert!(wait_until(Duration::from_secs(10), || processes_in(
        &data_dir
    )
    .is_empty()));
    let restarted = LocalCluster::start(opts)
        .await
        .expect("start over the stale file");
    assert_ne!(restarted.pid(), Some(std::process::id()));
    restarted.stop().await.expect("stop");
    assert!(!pid_file.exists());
}

#[tokio::test]
async fn a_supervised_cluster_stops_when_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    make_traversable(tmp.path());
    let data_dir = tmp.path().join("pgdata");
    let _guard = StopOnDrop(data_dir.clone());
    let cluster =
        LocalCluster::start_supervised(LocalOptions::new(&data_dir).setting("fsync", "off"))
            .await
            .expect("start");
    let pid = cluster.pid().expect("running");
    drop(cluster);
    assert!(
        wait_until(Duration::from_secs(30), || !process_runs(pid)),
        "the watchdog stopped postmaster {pid}"
    );
    assert!(wait_until(Duration::from_secs(5), || !data_dir
        .join("postmaster.pid")
        .exists()));
}

/// Processes working in `dir` (a postgres server and its children chdir there).
fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_runs(*pid))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

#[tokio::test]
async fn a_data_dir_too_long_for_a_socket_path_gets_a_short_socket_dir() {
    let tmp = tempfile::tempdir().unwrap();
    make_traversable(tmp.path());
    let mut data_dir = tmp.path().to_owned();
    for _ in 0..4 {
        data_dir.push("a-rather-long-directory-name");
    }
    data_dir.push("pgdata");
    assert!(data_dir.as_os_str().len() > 107);
    let _guard = StopOnDrop(data_dir.clone());
    let opts = LocalOptions::new(&data_dir).setting("fsync", "off");
    let cluster = LocalCluster::start_supervised(opts).await.expect("start");
    let socket_dir = cluster.socket_dir().to_owned();
    assert!(
        socket_dir.to_string_lossy().starts_with("/tmp/pgkit-"),
        "{}",
        socket_dir.display()
    );
    let client = connect(&cluster.url("postgres")).await.expect("connect");
    let dir: String = client
        .query_one("SELECT current_setting('unix_socket_directories')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(Path::new(&dir), socket_dir);
    drop(client);
    cluster.stop().await.expect("stop");
    std::fs::remove_dir_all(&socket_dir).unwrap();
}

fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
}

/// Run only as a child of the test below: starts the shared cluster, says
/// where it is, and waits to be killed.
#[tokio::test]
#[ignore = "helper process for the_cluster_goes_when_the_test_process_is_killed"]
async fn helper_start_cluster_and_wait_to_be_killed() {
    let cluster = testing::cluster().await;
    let pid = cluster.pid().expect("running");
    println!(
        "CLUSTER pid={pid} root={}",
        cluster.data_dir().parent().unwrap().display()
    );
    std::future::pending::<()>().await;
}

#[test]
fn the_cluster_goes_when_the_test_process_is_killed() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_cluster_and_wait_to_be_killed",
            "--nocapture",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the helper");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("CLUSTER "))
        .expect("the helper reports its cluster");
    let mut fields = line.split_whitespace().skip(1);
    let pid: u32 = fields.next().unwrap()["pid=".len()..].parse().unwrap();
    let root = PathBuf::from(&fields.next().unwrap()["root=".len()..]);
    assert!(process_runs(pid) && root.exists());

    child.kill().expect("SIGKILL the test process");
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !process_runs(pid)),
        "postmaster {pid} outlived its test process"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !root.exists()),
        "{} outlived its test process",
        root.display()
    );
}
