//! `pgkit doctor` on a real PostgreSQL (issue 5, part 3): each broken
//! connection stops at the right step, names the cause in the standard's
//! words and gives the fix; a healthy one passes every step.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use pgkit::connect::SessionParams;
use pgkit::doctor::{diagnose, Diagnosis, DoctorInput, Outcome, StepName};
use pgkit::secret::Secret;
use pgkit::settings::{DbSettings, Env};
use pgkit::testing;
use pgkit::testing::auth::{give_to_server, require_scram, set_mode, url_as, OwnCluster};
use rand::Rng;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_postgres::Client;

fn input(url: &str) -> DoctorInput {
    let settings =
        DbSettings::from_env(&Env::default(), "DATABASE_URL", "pgkit-doctor-test").unwrap();
    DoctorInput {
        dsn: Secret::new(url),
        session: SessionParams::from_settings(&settings),
        pool_max_size: settings.pool_max_size,
        instances: None,
        schema: None,
        token_source: None,
    }
}

async fn run(input: &DoctorInput) -> Diagnosis {
    let mut seen = Vec::new();
    let diagnosis = diagnose(input, &mut |step| seen.push(step.name)).await;
    let names: Vec<StepName> = diagnosis.steps().iter().map(|s| s.name).collect();
    assert_eq!(seen, names, "every step is reported as it finishes");
    diagnosis
}

fn names(d: &Diagnosis) -> Vec<&'static str> {
    d.steps().iter().map(|s| s.name.as_str()).collect()
}

/// The failing step's name, problem and fix.
fn failure(d: &Diagnosis) -> (&'static str, &str, &str) {
    let step = d
        .failure()
        .unwrap_or_else(|| panic!("no failure:\n{}", d.to_text()));
    match &step.outcome {
        Outcome::Fail { problem, fix } => (step.name.as_str(), problem, fix),
        Outcome::Ok(_) => unreachable!(),
    }
}

async fn connect(url: &str) -> Client {
    testing::check::connect(url).await.unwrap()
}

#[tokio::test]
async fn a_healthy_connection_passes_every_step() {
    let db = testing::cluster().await.database().await;
    let mut healthy = input(db.url());
    healthy.instances = Some(4);
    let d = run(&healthy).await;
    assert!(d.passed(), "{}", d.to_text());
    assert_eq!(
        names(&d),
        [
            "parse",
            "socket",
            "tls",
            "authentication",
            "database",
            "query",
            "pooler",
            "privileges",
            "server"
        ]
    );
    let text = d.to_text();
    // The test cluster trusts local connections: doctor says so (issue 14 §5).
    assert!(
        text.contains("ok   authentication: logged in as postgres without a password: the server trusts this connection (trust, peer or cert in pg_hba.conf)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok   database: {} exists\n", db.name())),
        "{text}"
    );
    assert!(
        text.contains("ok   privileges: USAGE on schema public; no tables in it yet\n"),
        "{text}"
    );
    assert!(text.contains("ok   server: PostgreSQL 15"), "{text}");
    assert!(
        text.contains("max_connections 300 (297 for applications) covers DB_POOL_MAX_SIZE 15 × 4 instances = 60 connections"),
        "{text}"
    );
    assert!(text.ends_with("all 9 checks passed\n"), "{text}");
}

#[tokio::test]
async fn a_dsn_that_does_not_parse_stops_at_parse_without_the_password() {
    let d = run(&input("postgresql://u:Hidden-Pw-1@db:port/x")).await;
    let (step, problem, fix) = failure(&d);
    assert_eq!(step, "parse");
    assert!(
        problem.starts_with("the DSN does not parse: the port after the host is not a number"),
        "{problem}"
    );
    assert!(fix.starts_with("write it as postgresql://"), "{fix}");
    assert!(!d.to_text().contains("Hidden-Pw-1"));
}

#[tokio::test]
async fn a_socket_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let d = run(&input(&format!(
        "postgresql://u:pw@/d?host={}",
        missing.display()
    )))
    .await;
    assert_eq!(names(&d), ["parse", "socket"]);
    let (_, problem, fix) = failure(&d);
    assert_eq!(
        problem,
        format!("socket directory {} does not exist", missing.display())
    );
    assert!(fix.starts_with("start PostgreSQL"), "{fix}");
    assert!(fix.contains("/var/run/postgresql"), "{fix}");
    assert!(
        d.steps()[0]
            .to_text()
            .contains("postgresql://u:***@/d?host="),
        "parse shows it redacted"
    );
}

#[tokio::test]
async fn a_missing_cloud_sql_socket_names_the_cloud_sql_fixes() {
    let d = run(&input(
        "postgresql://dave:pw@/dave?host=/cloudsql/my-proj:europe-west1:main",
    ))
    .await;
    let (step, problem, fix) = failure(&d);
    assert_eq!(step, "socket");
    assert_eq!(
        problem,
        "socket directory /cloudsql/my-proj:europe-west1:main does not exist"
    );
    assert!(
        fix.contains("--add-cloudsql-instances my-proj:europe-west1:main"),
        "{fix}"
    );
    assert!(
        fix.contains("cloud-sql-proxy --unix-socket /cloudsql my-proj:europe-west1:main"),
        "{fix}"
    );
}

#[tokio::test]
async fn a_socket_directory_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = run(&input(&format!(
        "postgresql://u@/d?host={}&port=5999",
        dir.path().display()
    )))
    .await;
    let (step, problem, _) = failure(&d);
    assert_eq!(step, "socket");
    assert_eq!(
        problem,
        format!(
            "no socket .s.PGSQL.5999 in {}: nothing listens there on port 5999",
            dir.path().display()
        )
    );
}

#[tokio::test]
async fn a_tcp_port_where_nothing_listens_is_connection_refused() {
    // A port that was free a moment ago, on loopback only.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = run(&input(&format!("postgresql://u:pw@127.0.0.1:{port}/d"))).await;
    assert_eq!(names(&d), ["parse", "resolve", "tcp"]);
    let (_, problem, fix) = failure(&d);
    assert_eq!(
        problem,
        format!("connection refused by 127.0.0.1:{port}: nothing listens on port {port}")
    );
    assert!(
        fix.contains(&format!("cloud-sql-proxy --port {port}")),
        "{fix}"
    );
}

#[tokio::test]
async fn an_unknown_database() {
    let db = testing::cluster().await.database().await;
    let url = db
        .url()
        .replace(&format!("/{}?", db.name()), "/no_such_db?");
    let d = run(&input(&url)).await;
    assert_eq!(
        names(&d),
        ["parse", "socket", "tls", "authentication", "database"]
    );
    let (_, problem, fix) = failure(&d);
    assert_eq!(problem, "database \"no_such_db\" does not exist");
    assert_eq!(
        fix,
        "create it: CREATE DATABASE no_such_db; or fix the database name at the end of the DSN"
    );
}

#[tokio::test]
async fn a_role_without_grants_on_the_schema() {
    let db = testing::cluster().await.database().await;
    let admin = connect(db.url()).await;
    admin
        .batch_execute(
            "CREATE ROLE doc_nogrants LOGIN;
             CREATE SCHEMA svc;
             CREATE TABLE svc.items (id serial PRIMARY KEY);",
        )
        .await
        .unwrap();
    let mut no_grants = input(&url_as(&db, "doc_nogrants", None));
    no_grants.schema = Some("svc".into());
    let d = run(&no_grants).await;
    assert_eq!(names(&d).last(), Some(&"privileges"));
    let (_, problem, fix) = failure(&d);
    assert_eq!(
        problem,
        "role doc_nogrants has no USAGE on schema svc: every query on its tables fails with \
         \"permission denied for schema svc\""
    );
    assert!(
        fix.contains("GRANT USAGE ON SCHEMA svc TO doc_nogrants;"),
        "{fix}"
    );
    assert!(
        fix.contains("pgkit provision --schema svc --role doc_nogrants"),
        "{fix}"
    );

    // USAGE alone is not enough: the tables need their privileges too.
    admin
        .batch_execute("GRANT USAGE ON SCHEMA svc TO doc_nogrants")
        .await
        .unwrap();
    let d = run(&no_grants).await;
    let (_, problem, fix) = failure(&d);
    assert!(
        problem.starts_with("role doc_nogrants lacks SELECT, INSERT, UPDATE, DELETE on 1 of 1 tables in schema svc (items)"),
        "{problem}"
    );
    assert!(
        fix.contains("ALTER DEFAULT PRIVILEGES FOR ROLE <migration owner> IN SCHEMA svc"),
        "{fix}"
    );

    // The serial column's sequence too, or inserts fail.
    admin
        .batch_execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA svc TO doc_nogrants",
        )
        .await
        .unwrap();
    let d = run(&no_grants).await;
    let (_, problem, fix) = failure(&d);
    assert!(
        problem.starts_with(
            "role doc_nogrants has no USAGE on 1 sequence(s) in schema svc (items_id_seq)"
        ),
        "{problem}"
    );
    assert!(
        fix.contains("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA svc TO doc_nogrants;"),
        "{fix}"
    );

    // And with them, it passes.
    admin
        .batch_execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA svc TO doc_nogrants")
        .await
        .unwrap();
    let d = run(&no_grants).await;
    assert!(d.passed(), "{}", d.to_text());
}

#[tokio::test]
async fn an_unknown_schema_is_named() {
    let db = testing::cluster().await.database().await;
    let mut wrong = input(db.url());
    wrong.schema = Some("nope".into());
    let d = run(&wrong).await;
    let (step, problem, _) = failure(&d);
    assert_eq!(step, "privileges");
    assert_eq!(
        problem,
        format!("schema nope does not exist in database {}", db.name())
    );
}

#[tokio::test]
async fn a_pool_larger_than_the_connection_budget() {
    let db = testing::cluster().await.database().await;
    let mut big = input(db.url());
    big.instances = Some(100);
    let d = run(&big).await;
    assert_eq!(names(&d).last(), Some(&"server"));
    let (_, problem, fix) = failure(&d);
    assert!(
        problem.starts_with(
            "pool exhausted at full scale: DB_POOL_MAX_SIZE 15 × 100 instances = 1500 connections, \
             but the server accepts 297 (max_connections 300 minus 3 reserved for superusers)"
        ),
        "{problem}"
    );
    assert!(
        problem.contains("\"too many clients already\""),
        "{problem}"
    );
    assert!(
        fix.starts_with("lower DB_POOL_MAX_SIZE to 2 or less, or cap Cloud Run's --max-instances at 19, or raise max_connections"),
        "{fix}"
    );
}

#[tokio::test]
async fn a_wrong_password_with_scram_authentication() {
    let cluster = testing::dedicated_cluster().await;
    let db = cluster.database().await;
    let admin = connect(db.url()).await;
    admin
        .batch_execute("SET password_encryption = 'scram-sha-256'; CREATE ROLE doc_app LOGIN PASSWORD 'right-pw'")
        .await
        .unwrap();
    require_scram(&cluster, &db, "doc_app").await;

    let d = run(&input(&url_as(&db, "doc_app", Some("wrong-pw")))).await;
    assert_eq!(names(&d), ["parse", "socket", "tls", "authentication"]);
    let (_, problem, fix) = failure(&d);
    assert_eq!(
        problem,
        "password authentication failed for user \"doc_app\""
    );
    assert!(fix.contains("ALTER ROLE doc_app PASSWORD"), "{fix}");
    assert!(!d.to_text().contains("wrong-pw"));

    let d = run(&input(&url_as(&db, "doc_app", None))).await;
    let (step, problem, _) = failure(&d);
    assert_eq!(step, "authentication");
    assert_eq!(
        problem,
        "the server asks doc_app for a password and the DSN has none"
    );

    let d = run(&input(&url_as(&db, "doc_app", Some("right-pw")))).await;
    assert!(d.passed(), "{}", d.to_text());
    // A server that asked for the password is not called trusting.
    assert!(
        d.to_text()
            .contains("ok   authentication: logged in as doc_app\n"),
        "{}",
        d.to_text()
    );
}

/// A loopback address (127.0.0.0/8) whose port 5432 is free, so parallel
/// runs do not collide.
fn free_loopback_address() -> IpAddr {
    let mut rng = rand::thread_rng();
    loop {
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            rng.gen_range(100..=250),
            rng.gen(),
            rng.gen_range(1..=254),
        ));
        if TcpListener::bind((ip, 5432)).is_ok() {
            return ip;
        }
    }
}

/// A CA's certificate (PEM) and, when `leaf_for` names an address, a server
/// certificate and key for it signed by that CA.
fn make_ca(name: &str, leaf_for: Option<IpAddr>) -> (String, Option<(String, String)>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = params.self_signed(&key).unwrap().pem();
    let issuer = Issuer::new(params, key);
    let leaf = leaf_for.map(|ip| {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![ip.to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    });
    (ca_pem, leaf)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    set_mode(&path, 0o644);
    path
}

/// PostgreSQL on a loopback address over TCP, TLS on or off; `app` logs in
/// with a SCRAM password (only over TLS when it is on).
async fn tcp_server(tls: bool) -> (OwnCluster, IpAddr, Option<(PathBuf, PathBuf)>) {
    let ip = free_loopback_address();
    let hba = if tls {
        "hostssl all all 127.0.0.0/8 scram-sha-256\n"
    } else {
        "host all all 127.0.0.0/8 scram-sha-256\n"
    };
    let mut cas = None;
    let cluster = OwnCluster::start(hba, |files| {
        let mut settings = vec![("listen_addresses", ip.to_string())];
        if tls {
            let (ca, leaf) = make_ca("doctor test CA", Some(ip));
            let (other, _) = make_ca("some other CA", None);
            let (crt, key) = leaf.unwrap();
            let crt = write(files, "server.crt", &crt);
            let key = write(files, "server.key", &key);
            give_to_server(&key, 0o600);
            cas = Some((
                write(files, "ca.pem", &ca),
                write(files, "other-ca.pem", &other),
            ));
            settings.push(("ssl", "on".into()));
            settings.push(("ssl_cert_file", crt.display().to_string()));
            settings.push(("ssl_key_file", key.display().to_string()));
        }
        settings
    })
    .await;
    cluster
        .admin("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
        .await;
    (cluster, ip, cas)
}

#[tokio::test]
async fn tls_as_the_sslmode_asks() {
    let (_server, ip, cas) = tcp_server(true).await;
    let (ca, other_ca) = cas.unwrap();
    let url = |query: &str| format!("postgresql://app:app-pw@{ip}:5432/postgres?{query}");

    let d = run(&input(&url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))))
    .await;
    assert!(d.passed(), "{}", d.to_text());
    assert_eq!(
        names(&d),
        [
            "parse",
            "resolve",
            "tcp",
            "tls",
            "authentication",
            "database",
            "query",
            "pooler",
            "privileges",
            "server"
        ]
    );
    assert!(
        d.to_text().contains(&format!(
            "ok   tls: encrypted; the certificate is signed by the CA in sslrootcert={} and names the host (sslmode=verify-full)",
            ca.display()
        )),
        "{}",
        d.to_text()
    );

    let d = run(&input(&url("sslmode=require"))).await;
    assert!(
        d.to_text()
            .contains("ok   tls: encrypted (sslmode=require); the certificate is not checked"),
        "{}",
        d.to_text()
    );

    let d = run(&input(&url(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        other_ca.display()
    ))))
    .await;
    let (step, problem, fix) = failure(&d);
    assert_eq!(step, "tls");
    assert!(
        problem.contains("not issued by the CA in sslrootcert="),
        "{problem}"
    );
    assert!(
        fix.contains("gcloud sql instances describe INSTANCE --format='value(serverCaCert.cert)'"),
        "{fix}"
    );

    // The server takes logins over TLS only.
    let d = run(&input(&url("sslmode=disable"))).await;
    let (step, problem, fix) = failure(&d);
    assert_eq!(step, "authentication");
    assert!(
        problem.contains("no pg_hba.conf entry") && problem.contains("no encryption"),
        "{problem}"
    );
    assert!(
        fix.contains("it asks for TLS: use sslmode=require or stricter"),
        "{fix}"
    );
}

#[tokio::test]
async fn a_server_without_tls() {
    let (_server, ip, _) = tcp_server(false).await;
    let url = |mode: &str| format!("postgresql://app:app-pw@{ip}:5432/postgres?sslmode={mode}");

    let d = run(&input(&url("require"))).await;
    assert_eq!(names(&d), ["parse", "resolve", "tcp", "tls"]);
    let (_, problem, _) = failure(&d);
    assert_eq!(
        problem,
        "the server does not offer TLS, and sslmode=require demands it"
    );

    let d = run(&input(&url("prefer"))).await;
    assert!(d.passed(), "{}", d.to_text());
    assert!(
        d.to_text()
            .contains("ok   tls: the server offers no TLS; sslmode=prefer goes on in plain text"),
        "{}",
        d.to_text()
    );
}
