//! TLS for direct TCP connections, one rustls verifier per sslmode.
//!
//! tokio-postgres knows only "TLS or not"; libpq's sslmodes differ in what
//! they check of the server's certificate, so each mode gets its own rustls
//! verifier here:
//!
//! - `prefer` and `require` encrypt but accept any certificate (as libpq does
//!   without a root certificate). Given `sslrootcert`, they check the chain
//!   like `verify-ca`, as libpq does when it finds a root certificate file.
//! - `verify-ca` checks that the CA in `sslrootcert` signed the certificate,
//!   whatever name it carries (Cloud SQL's per-instance CA certificates name
//!   the instance, not its IP address).
//! - `verify-full` also checks that the certificate names the host of the
//!   DSN. Cloud SQL puts absolute DNS names with a trailing dot in its
//!   certificates, which webpki refuses as malformed, so those names are
//!   compared here after dropping the dot. A certificate without any
//!   subject alternative name is matched on its common name, like libpq.
//!
//! `prefer` falls back to plain text only when the server refuses TLS
//! (tokio-postgres does that); a failed handshake is an error. A client
//! certificate and key (PEM) are sent when the DSN names `sslcert` and
//! `sslkey`. The ring provider is used explicitly, so no process-wide
//! default provider has to be installed.

use std::fmt;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::dsn::{Dsn, SslMode};

/// TLS could not be set up from the DSN's files and mode. Messages name the
/// DSN parameter and the file, never a key's contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {param}={}: {source}", path.display())]
    ReadFile {
        param: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{param}={} holds no PEM certificate (a block starting with -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { param: &'static str, path: PathBuf },

    #[error("no certificate in sslrootcert={} can serve as a CA ({ignored} could not be parsed)", path.display())]
    UnusableRootCert { path: PathBuf, ignored: usize },

    #[error("sslkey={} holds no PEM private key (PKCS#8, PKCS#1 or SEC1 block)", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("sslmode={} needs sslrootcert=/path/to/server-ca.pem, the CA that signed the server's certificate", mode.as_str())]
    MissingRootCert { mode: SslMode },

    #[error(
        "sslcert and sslkey go together: give both (client certificate and its key) or neither"
    )]
    IncompleteClientCert,

    #[error("the client certificate sslcert={} and key sslkey={} were refused: {source}", cert.display(), key.display())]
    ClientCert {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error("cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
}

/// A connector for this DSN's sslmode, with its root and client certificates.
///
/// Files are read on every call, so a rotated certificate is picked up by
/// the next connection. `sslmode=disable` never reaches the connector
/// (tokio-postgres does not start TLS then); it gets the `require` verifier.
pub fn make_connector(dsn: &Dsn) -> Result<MakeRustlsConnect, TlsError> {
    Ok(MakeRustlsConnect::new(client_config(dsn)?))
}

/// The rustls configuration for this DSN; [`make_connector`] wraps it.
pub fn client_config(dsn: &Dsn) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = ModeVerifier::for_dsn(dsn, provider.signature_verification_algorithms)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match (&dsn.sslcert, &dsn.sslkey) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs("sslcert", cert)?;
            let private_key = read_private_key(key)?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|source| TlsError::ClientCert {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })
        }
        _ => Err(TlsError::IncompleteClientCert),
    }
}

fn read_pem(param: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        param,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(param: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(param, path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ReadFile {
            param,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            param,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(read_certs("sslrootcert", path)?);
    if added == 0 {
        return Err(TlsError::UnusableRootCert {
            path: path.to_path_buf(),
            ignored,
        });
    }
    Ok(roots)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem("sslkey", path)?;
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice()))
        .map_err(|source| TlsError::ReadFile {
            param: "sslkey",
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        })
}

/// What a verifier checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: encryption against passive listeners only.
    Nothing,
    /// The chain up to `sslrootcert`.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

/// The server certificate verifier for one sslmode.
#[derive(Debug)]
struct ModeVerifier {
    check: Check,
    mode: SslMode,
    roots: RootCertStore,
    rootcert: Option<PathBuf>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ModeVerifier {
    fn for_dsn(dsn: &Dsn, algorithms: WebPkiSupportedAlgorithms) -> Result<Self, TlsError> {
        let roots = match &dsn.sslrootcert {
            Some(path) => read_roots(path)?,
            None => RootCertStore::empty(),
        };
        let has_roots = dsn.sslrootcert.is_some();
        let check = match dsn.sslmode {
            SslMode::VerifyFull if has_roots => Check::ChainAndName,
            SslMode::VerifyCa if has_roots => Check::Chain,
            SslMode::VerifyFull | SslMode::VerifyCa => {
                return Err(TlsError::MissingRootCert { mode: dsn.sslmode })
            }
            SslMode::Disable | SslMode::Prefer | SslMode::Require if has_roots => Check::Chain,
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Check::Nothing,
        };
        Ok(ModeVerifier {
            check,
            mode: dsn.sslmode,
            roots,
            rootcert: dsn.sslrootcert.clone(),
            algorithms,
        })
    }

    fn verify_chain(
        &self,
        cert: &ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        verify_server_cert_signed_by_trust_anchor(
            cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )
        .map_err(|e| {
            let path = self
                .rootcert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mode = self.mode.as_str();
            rejected(match e {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                    "the server's certificate was not issued by the CA in sslrootcert={path} (sslmode={mode}); \
                     point sslrootcert at the CA certificate of this server"
                ),
                other => format!(
                    "the server's certificate failed verification against sslrootcert={path} (sslmode={mode}): {other}"
                ),
            })
        })
    }

    fn verify_name(
        &self,
        cert: &ParsedCertificate<'_>,
        der: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
    ) -> Result<(), rustls::Error> {
        if verify_server_name(cert, server_name).is_ok() {
            return Ok(());
        }
        let names = CertNames::parse(der);
        if let ServerName::DnsName(host) = server_name {
            if names.matches_host(host.as_ref()) {
                return Ok(());
            }
        }
        Err(rejected(format!(
            "the server's certificate is not valid for host \"{}\" (sslmode=verify-full); it names {}; \
             connect by one of those names, or use sslmode=verify-ca to check only the CA",
            server_name.to_str(),
            names.describe()
        )))
    }
}

impl ServerCertVerifier for ModeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        self.verify_chain(&cert, intermediates, now)?;
        if self.check == Check::ChainAndName {
            self.verify_name(&cert, end_entity, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A certificate refusal whose message says what to change.
#[derive(Debug)]
struct Rejected(String);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejected {}

/// rustls shows `Error::Other` with our text (a `CertificateError::Other`
/// would be shown in Debug form).
fn rejected(message: String) -> rustls::Error {
    rustls::Error::Other(rustls::OtherError(Arc::new(Rejected(message))))
}

/// The names a certificate is valid for, as libpq reads them.
#[derive(Debug, Default, PartialEq, Eq)]
struct CertNames {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    common_name: Option<String>,
}

impl CertNames {
    /// Reads the subject alternative names and the common name. A
    /// certificate that does not parse names nothing (and so matches nothing).
    fn parse(der: &CertificateDer<'_>) -> CertNames {
        use x509_cert::der::Decode;
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::SubjectAltName;

        let Ok(cert) = x509_cert::Certificate::from_der(der.as_ref()) else {
            return CertNames::default();
        };
        let mut names = CertNames::default();
        if let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() {
            for name in san.0 {
                match name {
                    GeneralName::DnsName(dns) => names.dns.push(dns.to_string()),
                    GeneralName::IpAddress(ip) => {
                        let bytes = ip.as_bytes();
                        if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
                            names.ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
                            names.ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        names.common_name = common_name(&cert.tbs_certificate.subject);
        names
    }

    /// Whether `host` is one of the DNS names, ignoring a trailing dot on
    /// either side and case, with a `*` allowed as the whole leftmost label.
    /// The common name counts only when there is no alternative name at all.
    fn matches_host(&self, host: &str) -> bool {
        if self.dns.is_empty() && self.ips.is_empty() {
            return self
                .common_name
                .as_deref()
                .is_some_and(|cn| dns_name_matches(cn, host));
        }
        self.dns.iter().any(|name| dns_name_matches(name, host))
    }

    fn describe(&self) -> String {
        let mut all: Vec<String> = self.dns.clone();
        all.extend(self.ips.iter().map(IpAddr::to_string));
        if all.is_empty() {
            return match &self.common_name {
                Some(cn) => format!("only the common name \"{cn}\""),
                None => "no host name".to_string(),
            };
        }
        all.join(", ")
    }
}

fn common_name(subject: &x509_cert::name::Name) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    use x509_cert::der::oid::db::rfc4519::CN;

    subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == CN)
        .find_map(|atv| {
            let value = &atv.value;
            value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    value
                        .decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
}

/// Compares a name from a certificate with the host connected to.
fn dns_name_matches(presented: &str, host: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    let host = host.strip_suffix('.').unwrap_or(host);
    if presented.is_empty() || host.is_empty() {
        return false;
    }
    if let Some(parent) = presented.strip_prefix("*.") {
        // A wildcard stands for exactly one whole label, and needs at least
        // two labels after it (no `*.com`).
        return parent.contains('.')
            && host.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            });
    }
    !presented.contains('*') && presented.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_trailing_dots_and_case() {
        assert!(dns_name_matches("db.example.com.", "db.example.com"));
        assert!(dns_name_matches("db.example.com", "db.example.com."));
        assert!(dns_name_matches("DB.Example.com", "db.example.COM"));
        assert!(!dns_name_matches("db.example.com", "other.example.com"));
        assert!(!dns_name_matches("db.example.com.", "db.example.co"));
        assert!(!dns_name_matches(".", "."));
    }

    #[test]
    fn wildcards_cover_exactly_one_leftmost_label() {
        assert!(dns_name_matches("*.sql.goog.", "abc.sql.goog"));
        assert!(!dns_name_matches("*.sql.goog", "a.b.sql.goog"));
        assert!(!dns_name_matches("*.sql.goog", "sql.goog"));
        assert!(!dns_name_matches("*.goog", "sql.goog"));
        assert!(!dns_name_matches("db*.sql.goog", "db1.sql.goog"));
    }

    #[test]
    fn common_name_counts_only_without_alternative_names() {
        let cn_only = CertNames {
            common_name: Some("db.internal".into()),
            ..CertNames::default()
        };
        assert!(cn_only.matches_host("db.internal"));
        let with_san = CertNames {
            dns: vec!["other.internal".into()],
            common_name: Some("db.internal".into()),
            ..CertNames::default()
        };
        assert!(!with_san.matches_host("db.internal"));
        assert_eq!(with_san.describe(), "other.internal");
        assert_eq!(cn_only.describe(), "only the common name \"db.internal\"");
    }

    #[test]
    fn verify_modes_without_a_root_certificate_are_refused() {
        // Dsn::parse refuses this too; the connector must not rely on it.
        let dsn = Dsn::parse("postgresql://u@db.example.com/d?sslmode=require").unwrap();
        let mut dsn = dsn;
        dsn.sslmode = SslMode::VerifyFull;
        let err = client_config(&dsn).unwrap_err();
        assert!(
            err.to_string()
                .contains("sslmode=verify-full needs sslrootcert"),
            "{err}"
        );
    }

    #[test]
    fn missing_files_are_named_with_their_parameter() {
        let dsn = Dsn::parse(
            "postgresql://u@db.example.com/d?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let err = client_config(&dsn).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read sslrootcert=/nonexistent/ca.pem: "),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let dsn = Dsn::parse(&format!(
            "postgresql://u@db.example.com/d?sslmode=verify-full&sslrootcert={}",
            path.display()
        ))
        .unwrap();
        let err = client_config(&dsn).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(
            err.contains(&format!("sslrootcert={}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn require_without_root_certificate_builds() {
        let dsn = Dsn::parse("postgresql://u@10.0.0.3/d?sslmode=require").unwrap();
        assert!(make_connector(&dsn).is_ok());
    }
}
