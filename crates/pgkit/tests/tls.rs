//! TLS by sslmode: against a real PostgreSQL with `ssl=on` and certificates
//! made here, and, for host names that need DNS, rustls handshakes in memory
//! with the same client configuration pgkit connects with.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgkit::connect::connect;
use pgkit::dsn::Dsn;
use pgkit::error::error_chain;
use pgkit::testing::auth::{give_to_server, set_mode, OwnCluster};
use pgkit::testing::check::session_params;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConfig, ServerConnection};

const APP_PASSWORD: &str = "tls-test-password";

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (IP addresses become IP names) and its key.
    fn issue(&self, names: &[&str], common_name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, key)
    }

    fn sign(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    pem: String,
    der: CertificateDer<'static>,
    key_pem: String,
    key_der: Vec<u8>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    set_mode(&path, 0o644);
    path
}

/// Two loopback addresses whose port 5432 is free: the server listens on
/// both, its certificate names only the first. (Loopback is all of
/// 127.0.0.0/8 on Linux, so parallel runs do not collide on one port.)
fn two_free_loopback_addresses() -> (IpAddr, IpAddr) {
    let mut rng = rand::thread_rng();
    let mut pick = || loop {
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            rng.gen_range(100..=250),
            rng.gen(),
            rng.gen_range(1..=254),
        ));
        if TcpListener::bind((ip, 5432)).is_ok() {
            return ip;
        }
    };
    let first = pick();
    loop {
        let second = pick();
        if second != first {
            return (first, second);
        }
    }
}

struct TlsServer {
    cluster: OwnCluster,
    named: IpAddr,
    unnamed: IpAddr,
    /// The CA that signed the server's and the client's certificates.
    ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl TlsServer {
    /// PostgreSQL with ssl=on on two loopback addresses; TCP only with TLS
    /// (hostssl), `app` logs in with a password, `certuser` with a client
    /// certificate.
    async fn start() -> TlsServer {
        let (named, unnamed) = two_free_loopback_addresses();
        let ca = Ca::new("pgkit test CA");
        let other = Ca::new("some other CA");
        // Cloud SQL style: an absolute DNS name, plus the address we connect to.
        let server = ca.issue(
            &["pg.test.internal.", &named.to_string()],
            "pg.test.internal",
        );
        let client = ca.issue(&[], "certuser");
        let hba = "hostssl all certuser 127.0.0.0/8 cert\n\
                   hostssl all all 127.0.0.0/8 scram-sha-256\n";
        let mut paths = Vec::new();
        let cluster = OwnCluster::start(hba, |files| {
            let crt = write(files, "server.crt", &server.pem);
            let key = write(files, "server.key", &server.key_pem);
            give_to_server(&key, 0o600);
            let ca_path = write(files, "ca.pem", &ca.pem);
            paths.push(ca_path.clone());
            paths.push(write(files, "other-ca.pem", &other.pem));
            paths.push(write(files, "client.crt", &client.pem));
            paths.push(write(files, "client.key", &client.key_pem));
            vec![
                ("listen_addresses", format!("{named},{unnamed}")),
                ("ssl", "on".into()),
                ("ssl_cert_file", crt.display().to_string()),
                ("ssl_key_file", key.display().to_string()),
                ("ssl_ca_file", ca_path.display().to_string()),
            ]
        })
        .await;
        cluster
            .admin(&format!(
                "CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'; CREATE ROLE certuser LOGIN;"
            ))
            .await;
        let [ca, other_ca, client_cert, client_key] = <[PathBuf; 4]>::try_from(paths).unwrap();
        TlsServer {
            cluster,
            named,
            unnamed,
            ca,
            other_ca,
            client_cert,
            client_key,
        }
    }

    fn dsn(&self, user: &str, host: IpAddr, query: &str) -> Dsn {
        let password = if user == "app" {
            format!(":{APP_PASSWORD}")
        } else {
            String::new()
        };
        Dsn::parse(&format!(
            "postgresql://{user}{password}@{host}:5432/postgres?{query}"
        ))
        .unwrap()
    }
}

/// Connects and says whether the session runs over TLS.
async fn session_uses_tls(dsn: &Dsn) -> Result<bool, String> {
    let client = connect(dsn, &session_params(), None, None)
        .await
        .map_err(|e| error_chain(&e))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(row.get(0))
}

async fn refused(dsn: &Dsn) -> String {
    match connect(dsn, &session_params(), None, None).await {
        Ok(_) => panic!("{dsn} connected, but must be refused"),
        Err(e) => error_chain(&e),
    }
}

#[tokio::test]
async fn sslmodes_against_postgres_with_ssl_on() {
    let server = TlsServer::start().await;
    let ca = server.ca.display();
    let other_ca = server.other_ca.display();

    for mode in ["require", "prefer"] {
        let dsn = server.dsn("app", server.unnamed, &format!("sslmode={mode}"));
        assert_eq!(session_uses_tls(&dsn).await, Ok(true), "sslmode={mode}");
    }

    let dsn = server.dsn(
        "app",
        server.named,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(
        session_uses_tls(&dsn).await,
        Ok(true),
        "verify-full, right CA and name"
    );

    let dsn = server.dsn(
        "app",
        server.unnamed,
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_eq!(
        session_uses_tls(&dsn).await,
        Ok(true),
        "verify-ca ignores the name"
    );

    let dsn = server.dsn(
        "app",
        server.named,
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let err = refused(&dsn).await;
    assert!(
        err.contains(&format!("the server's certificate was not issued by the CA in sslrootcert={other_ca} (sslmode=verify-full)")),
        "{err}"
    );

    let dsn = server.dsn(
        "app",
        server.named,
        &format!("sslmode=require&sslrootcert={other_ca}"),
    );
    let err = refused(&dsn).await;
    assert!(
        err.contains("not issued by the CA in sslrootcert="),
        "require checks a given root: {err}"
    );

    let dsn = server.dsn(
        "app",
        server.unnamed,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = refused(&dsn).await;
    assert!(
        err.contains(&format!(
            "the server's certificate is not valid for host \"{}\" (sslmode=verify-full); it names pg.test.internal., {}",
            server.unnamed, server.named
        )),
        "{err}"
    );

    let dsn = server.dsn("app", server.named, "sslmode=disable");
    let err = refused(&dsn).await;
    assert!(
        err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
        "{err}"
    );

    let with_cert = format!(
        "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        server.client_cert.display(),
        server.client_key.display()
    );
    let dsn = server.dsn("certuser", server.named, &with_cert);
    assert_eq!(
        session_uses_tls(&dsn).await,
        Ok(true),
        "client certificate login"
    );
    let dsn = server.dsn(
        "certuser",
        server.named,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = refused(&dsn).await;
    assert!(err.contains("certificate"), "no client certificate: {err}");
    drop(server.cluster);
}

// In memory: names that would need DNS to reach a real server.

/// A rustls handshake between pgkit's client configuration for `dsn` and a
/// server presenting `leaf`; the client's verdict.
fn handshake(dsn: &Dsn, host: &str, leaf: &Leaf) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
        )
        .unwrap();
    let client_config = pgkit::tls::client_config(dsn).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            server.read_tls(&mut to_server.as_slice()).unwrap();
            let _ = server.process_new_packets();
        }
        let mut to_client = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut to_client).unwrap();
        }
        if !to_client.is_empty() {
            client.read_tls(&mut to_client.as_slice()).unwrap();
            client.process_new_packets().map_err(|e| e.to_string())?;
        }
        if !client.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
}

fn files(ca: &Ca) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem);
    let other_ca = write(dir.path(), "other.pem", &Ca::new("other").pem);
    Files {
        ca: ca_path,
        other_ca,
        _dir: dir,
    }
}

fn dsn_for(host: &str, query: &str) -> Dsn {
    Dsn::parse(&format!("postgresql://app@{host}:5432/db?{query}")).unwrap()
}

#[test]
fn verify_full_accepts_cloud_sql_names_with_a_trailing_dot() {
    let ca = Ca::new("Cloud SQL style CA");
    let f = files(&ca);
    let host = "1a2b3c.europe-west1.sql.goog";
    let leaf = ca.issue(&["1a2b3c.europe-west1.sql.goog."], "instance");
    let dsn = dsn_for(
        host,
        &format!("sslmode=verify-full&sslrootcert={}", f.ca.display()),
    );
    assert_eq!(handshake(&dsn, host, &leaf), Ok(()));
    // The dot is dropped only for the comparison: another name still fails.
    let other = "9z9z9z.europe-west1.sql.goog";
    let err = handshake(
        &dsn_for(
            other,
            &format!("sslmode=verify-full&sslrootcert={}", f.ca.display()),
        ),
        other,
        &leaf,
    )
    .unwrap_err();
    assert!(
        err.contains(&format!("not valid for host \"{other}\"")),
        "{err}"
    );
}

#[test]
fn verify_full_matches_wildcards_plain_names_and_the_common_name_alone() {
    let ca = Ca::new("CA");
    let f = files(&ca);
    let query = format!("sslmode=verify-full&sslrootcert={}", f.ca.display());
    let wildcard = ca.issue(&["*.db.example.com."], "wild");
    assert_eq!(
        handshake(
            &dsn_for("a.db.example.com", &query),
            "a.db.example.com",
            &wildcard
        ),
        Ok(())
    );
    assert!(handshake(
        &dsn_for("a.b.db.example.com", &query),
        "a.b.db.example.com",
        &wildcard
    )
    .is_err());
    let plain = ca.issue(&["db.example.com"], "plain");
    assert_eq!(
        handshake(&dsn_for("DB.example.com", &query), "DB.example.com", &plain),
        Ok(())
    );
    let cn_only = ca.issue(&[], "db.example.com");
    assert_eq!(
        handshake(
            &dsn_for("db.example.com", &query),
            "db.example.com",
            &cn_only
        ),
        Ok(())
    );
    let err = handshake(&dsn_for("x.example.com", &query), "x.example.com", &cn_only).unwrap_err();
    assert!(
        err.contains("it names only the common name \"db.example.com\""),
        "{err}"
    );
}

#[test]
fn each_mode_checks_what_it_promises() {
    let ca = Ca::new("CA");
    let f = files(&ca);
    let leaf = ca.issue(&["db.example.com"], "db");
    let host = "elsewhere.example.com";
    let root = f.ca.display();
    let other = f.other_ca.display();
    // require: any certificate, any name.
    assert_eq!(
        handshake(&dsn_for(host, "sslmode=require"), host, &leaf),
        Ok(())
    );
    // verify-ca: the chain, not the name.
    assert_eq!(
        handshake(
            &dsn_for(host, &format!("sslmode=verify-ca&sslrootcert={root}")),
            host,
            &leaf
        ),
        Ok(())
    );
    let err = handshake(
        &dsn_for(host, &format!("sslmode=verify-ca&sslrootcert={other}")),
        host,
        &leaf,
    )
    .unwrap_err();
    assert!(
        err.contains(&format!(
            "not issued by the CA in sslrootcert={other} (sslmode=verify-ca)"
        )),
        "{err}"
    );
    // verify-full: both.
    let err = handshake(
        &dsn_for(host, &format!("sslmode=verify-full&sslrootcert={root}")),
        host,
        &leaf,
    )
    .unwrap_err();
    assert!(
        err.contains(
            "it names db.example.com; connect by one of those names, or use sslmode=verify-ca"
        ),
        "{err}"
    );
}

#[test]
fn an_expired_server_certificate_is_refused_with_the_reason() {
    let ca = Ca::new("CA");
    let f = files(&ca);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["db.example.com".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let leaf = ca.sign(params, key);
    let host = "db.example.com";
    let err = handshake(
        &dsn_for(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", f.ca.display()),
        ),
        host,
        &leaf,
    )
    .unwrap_err();
    assert!(
        err.contains("failed verification against sslrootcert="),
        "{err}"
    );
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[test]
fn a_client_key_that_does_not_match_its_certificate_is_refused_at_setup() {
    let ca = Ca::new("CA");
    let dir = tempfile::tempdir().unwrap();
    let one = ca.issue(&[], "app");
    let two = ca.issue(&[], "app");
    let cert = write(dir.path(), "client.crt", &one.pem);
    let key = write(dir.path(), "client.key", &two.key_pem);
    let dsn = dsn_for(
        "db.example.com",
        &format!(
            "sslmode=require&sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        ),
    );
    let err = pgkit::tls::client_config(&dsn).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "the client certificate sslcert={} and key sslkey={} were refused",
            cert.display(),
            key.display()
        )),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}
