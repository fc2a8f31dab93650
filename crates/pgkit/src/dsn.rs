//! libpq connection URLs, parsed by us and mapped onto the driver's config.
//!
//! Cloud SQL is reached two ways: through a Unix socket directory mounted at
//! `/cloudsql/PROJECT:REGION:INSTANCE` (the socket file `.s.PGSQL.5432` is
//! inside it), or over TCP to a private IP with an `sslmode`. tokio-postgres'
//! own URL parser rejects `sslmode=verify-ca|verify-full`, so this module
//! parses the URL itself, keeps the TLS wishes for [`crate::tls`], and builds a
//! `tokio_postgres::Config` without them. The password lives in a
//! [`Secret`]; [`Dsn::redacted`] is the only form ever displayed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

use crate::secret::Secret;

/// The socket directory libpq uses on Debian when a URL names no host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

const ACCEPTED_FORM: &str = "postgresql://USER[:PASSWORD]@[HOST][:PORT]/DBNAME[?host=/cloudsql/PROJECT:REGION:INSTANCE&sslmode=...]";

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A directory holding the socket file `.s.PGSQL.<port>`.
    Socket(PathBuf),
    /// A host name or IP address reached over TCP.
    Tcp(String),
}

/// libpq's sslmode values. Only TCP connections use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, DsnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq accepts "allow" too; we refuse it: it silently falls back to plain text.
            other => {
                return Err(DsnError::new(format!(
                    "unknown sslmode {other:?}; use one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }
}

/// A DSN that could not be parsed. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct DsnError {
    problem: String,
}

impl DsnError {
    fn new(problem: impl Into<String>) -> Self {
        DsnError {
            problem: problem.into(),
        }
    }

    /// What a user should write instead.
    pub fn accepted_form() -> &'static str {
        ACCEPTED_FORM
    }
}

/// A parsed libpq URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    pub user: String,
    password: Option<Secret>,
    pub host: Host,
    pub port: u16,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
}

impl Dsn {
    /// Parses a libpq URL.
    ///
    /// Generated passwords (base64 has `/`; password managers add `?`, `#`,
    /// `@`) get pasted in unencoded, so the user information does not end at
    /// the first `/` or `?` as RFC 3986 would have it. Each `@` is tried in
    /// turn as its end, earliest first, and the first reading that leaves no
    /// `@` in the host or database name and parses wins: the password runs to
    /// the last `@` of the authority. An `@` in a query value therefore
    /// stays there. Errors never quote the authority, which may hold a piece
    /// of the password.
    pub fn parse(url: &str) -> Result<Dsn, DsnError> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| DsnError::new("a DSN must start with postgresql:// (or postgres://)"))?;
        // The last reading's error is the one reported: it keeps the most
        // text in the (never quoted) user information.
        let mut error = None;
        for reading in readings(rest) {
            match Dsn::from_reading(&reading) {
                Ok(dsn) => return Ok(dsn),
                Err(e) => error = Some(e),
            }
        }
        Err(error.unwrap_or_else(|| {
            DsnError::new(format!(
                "cannot tell where the user name and password end and the host begins; {ENCODE_HINT}"
            ))
        }))
    }

    fn from_reading(reading: &Reading<'_>) -> Result<Dsn, DsnError> {
        let mut dsn = Dsn::from_authority(reading.userinfo, reading.hostport)?;
        if !reading.path.is_empty() {
            dsn.dbname = decode(reading.path, "database name")?;
        }
        if let Some(query) = reading.query {
            // A password given as a query parameter may hold `&` or `=`
            // unencoded; then any odd piece of the query may be a piece of it.
            let has_password = query
                .split('&')
                .any(|p| p == "password" || p.starts_with("password="));
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(DsnError::new(if is_known_param(pair) {
                        format!("query parameter {pair} has no value; write {pair}=VALUE")
                    } else {
                        format!("a query parameter has no value; write KEY=VALUE pairs joined by &; {QUERY_HINT}; {ENCODE_HINT}")
                    }));
                };
                if !is_known_param(key) {
                    return Err(DsnError::new(if has_password {
                        format!("the query has an unknown parameter (not shown: this query carries a password); accepted: {KNOWN_PARAMS}; {QUERY_HINT}")
                    } else {
                        format!("unknown query parameter {key:?}; accepted: {KNOWN_PARAMS}")
                    }));
                }
                dsn.apply_param(key, &decode(value, key)?)?;
            }
        }
        dsn.check()?;
        Ok(dsn)
    }

    fn from_authority(userinfo: Option<&str>, hostport: &str) -> Result<Dsn, DsnError> {
        let (user, password) = match userinfo.map(|u| u.split_once(':').ok_or(u)) {
            Some(Ok((u, p))) => (u, Some(p)),
            Some(Err(u)) => (u, None),
            None => ("", None),
        };
        let mut dsn = Dsn {
            user: decode(user, "user name")?,
            password: match password {
                Some(p) => Some(Secret::new(decode(p, "password")?)),
                None => None,
            },
            host: Host::Socket(PathBuf::from(DEFAULT_SOCKET_DIR)),
            port: 5432,
            dbname: String::new(),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            application_name: None,
            connect_timeout: None,
        };
        if !hostport.is_empty() {
            let (host, port) = split_host_port(hostport)?;
            if !host.is_empty() {
                dsn.set_host(&decode(host, "host")?);
            }
            if let Some(port) = port {
                dsn.port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    DsnError::new(format!(
                        "the port after the host is not a number from 1 to 65535; {ENCODE_HINT}"
                    ))
                })?;
            }
        }
        Ok(dsn)
    }

    fn apply_param(&mut self, key: &str, value: &str) -> Result<(), DsnError> {
        match key {
            "host" => self.set_host(value),
            "port" => {
                self.port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        DsnError::new(format!("port={value:?} is not a number from 1 to 65535"))
                    })?
            }
            "user" => self.user = value.to_string(),
            "password" => self.password = Some(Secret::new(value)),
            "dbname" => self.dbname = value.to_string(),
            "sslmode" => self.sslmode = value.parse()?,
            "sslrootcert" => self.sslrootcert = Some(PathBuf::from(value)),
            "sslcert" => self.sslcert = Some(PathBuf::from(value)),
            "sslkey" => self.sslkey = Some(PathBuf::from(value)),
            "application_name" => self.application_name = Some(value.to_string()),
            "connect_timeout" => {
                let secs: u64 = value.parse().map_err(|_| {
                    DsnError::new(format!(
                        "connect_timeout {value:?} is not a whole number of seconds"
                    ))
                })?;
                self.connect_timeout = Some(Duration::from_secs(secs));
            }
            // `from_reading` refuses unknown keys first, with a better message.
            _ => {
                return Err(DsnError::new(format!(
                    "unknown query parameter; accepted: {KNOWN_PARAMS}"
                )))
            }
        }
        Ok(())
    }

    fn set_host(&mut self, host: &str) {
        self.host = if host.starts_with('/') {
            Host::Socket(PathBuf::from(host))
        } else {
            Host::Tcp(host.to_string())
        };
    }

    fn check(&mut self) -> Result<(), DsnError> {
        if self.user.is_empty() {
            return Err(DsnError::new(
                "the DSN names no user; write postgresql://USER@.../DBNAME",
            ));
        }
        if self.dbname.is_empty() {
            self.dbname = self.user.clone();
        }
        if let Host::Tcp(h) = &self.host {
            if h.is_empty() {
                return Err(DsnError::new("the DSN's host is empty"));
            }
        }
        if matches!(self.sslmode, SslMode::VerifyCa | SslMode::VerifyFull)
            && self.sslrootcert.is_none()
        {
            return Err(DsnError::new(format!(
                "sslmode={} needs sslrootcert=/path/to/server-ca.pem (the CA that signed the server's certificate)",
                self.sslmode.as_str()
            )));
        }
        if self.sslcert.is_some() != self.sslkey.is_some() {
            return Err(DsnError::new(
                "sslcert and sslkey go together: give both (client certificate and its key) or neither",
            ));
        }
        Ok(())
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The same DSN with another password (IAM login puts a token here).
    pub fn with_password(&self, password: Option<Secret>) -> Dsn {
        Dsn {
            password,
            ..self.clone()
        }
    }

    /// The same DSN pointing at another database on the same server.
    pub fn with_dbname(&self, dbname: &str) -> Dsn {
        Dsn {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The socket file this DSN connects to, for socket hosts.
    pub fn socket_file(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Socket(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            Host::Tcp(_) => None,
        }
    }

    /// Whether the socket directory looks like a Cloud SQL mount.
    pub fn is_cloud_sql_socket(&self) -> bool {
        matches!(&self.host, Host::Socket(dir) if dir.starts_with("/cloudsql"))
    }

    /// The URL with the password replaced by `***`: the only form to display.
    pub fn redacted(&self) -> String {
        self.to_url(true)
    }

    /// The full URL including the password, for handing to a child process
    /// (never for display).
    pub fn to_url_with_password(&self) -> String {
        self.to_url(false)
    }

    fn to_url(&self, redact: bool) -> String {
        let mut url = format!("postgresql://{}", encode(&self.user));
        if let Some(p) = &self.password {
            url.push(':');
            url.push_str(&if redact {
                "***".to_string()
            } else {
                encode(p.expose())
            });
        }
        url.push('@');
        let mut params: Vec<(String, String)> = Vec::new();
        match &self.host {
            Host::Tcp(h) if h.contains(':') => url.push_str(&format!(
                "[{}]:{}",
                utf8_percent_encode(h, IPV6_HOST),
                self.port
            )),
            Host::Tcp(h) => url.push_str(&format!("{}:{}", encode(h), self.port)),
            Host::Socket(dir) => {
                params.push(("host".into(), dir.display().to_string()));
                if self.port != 5432 {
                    params.push(("port".into(), self.port.to_string()));
                }
            }
        }
        url.push('/');
        url.push_str(&encode(&self.dbname));
        if self.sslmode != SslMode::Prefer {
            params.push(("sslmode".into(), self.sslmode.as_str().into()));
        }
        for (key, path) in [
            ("sslrootcert", &self.sslrootcert),
            ("sslcert", &self.sslcert),
            ("sslkey", &self.sslkey),
        ] {
            if let Some(p) = path {
                params.push((key.into(), p.display().to_string()));
            }
        }
        if let Some(a) = &self.application_name {
            params.push(("application_name".into(), a.clone()));
        }
        if let Some(t) = self.connect_timeout {
            params.push(("connect_timeout".into(), t.as_secs().to_string()));
        }
        for (i, (k, v)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{k}={}", encode_param(v)));
        }
        url
    }

    /// The driver's config: host, port, user, password, database and the
    /// connect timeout. TLS is decided by [`crate::connect`] from `sslmode`.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Host::Socket(dir) => config.host_path(dir),
            Host::Tcp(h) => config.host(h),
        };
        config.port(self.port).user(&self.user).dbname(&self.dbname);
        if let Some(p) = &self.password {
            config.password(p.expose());
        }
        if let Some(a) = &self.application_name {
            config.application_name(a);
        }
        if let Some(t) = self.connect_timeout {
            config.connect_timeout(t);
        }
        config.ssl_mode(match self.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        config
    }

    /// The socket directory, if this is a socket DSN.
    pub fn socket_dir(&self) -> Option<&Path> {
        match &self.host {
            Host::Socket(dir) => Some(dir),
            Host::Tcp(_) => None,
        }
    }
}

impl FromStr for Dsn {
    type Err = DsnError;
    fn from_str(s: &str) -> Result<Self, DsnError> {
        Dsn::parse(s)
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({})", self.redacted())
    }
}

/// One way of cutting the text after `postgresql://` into its parts.
struct Reading<'a> {
    userinfo: Option<&'a str>,
    hostport: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

/// The plausible readings, earliest end of the user information first: none
/// at all, then each `@` in turn. A reading is dropped when its host or
/// database name would hold an `@` (the password did not end there), when
/// its user name would hold `/ ? #` (it ended too late), or when a
/// `#fragment` follows the host (libpq URLs have none).
fn readings(rest: &str) -> impl Iterator<Item = Reading<'_>> {
    std::iter::once(None)
        .chain(rest.match_indices('@').map(|(i, _)| Some(i)))
        .filter_map(move |at| {
            let (userinfo, after) = match at {
                Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
                None => (None, rest),
            };
            if let Some(userinfo) = userinfo {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                if user.contains(['/', '?', '#']) {
                    return None;
                }
            }
            let host_end = after.find(['/', '?', '#', '@']).unwrap_or(after.len());
            let (hostport, tail) = after.split_at(host_end);
            if tail.starts_with(['@', '#']) {
                return None;
            }
            let (path, query) = match tail.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (tail, None),
            };
            let path = path.strip_prefix('/').unwrap_or(path);
            if path.contains('@') {
                return None;
            }
            Some(Reading {
                userinfo,
                hostport,
                path,
                query,
            })
        })
}

/// Said wherever the user information may have been cut in the wrong place.
const ENCODE_HINT: &str = "if the user name or password contains @ / ? # or :, percent-encode them (@ as %40, / as %2F, ? as %3F, # as %23, : as %3A)";

/// Said when a query may have been cut in the wrong place.
const QUERY_HINT: &str = "percent-encode & = # in query values (as %26 %3D %23)";

const KNOWN_PARAMS: &str = "host, port, user, password, dbname, sslmode, sslrootcert, sslcert, sslkey, application_name, connect_timeout";

fn is_known_param(key: &str) -> bool {
    KNOWN_PARAMS.split(", ").any(|k| k == key)
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), DsnError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        // [ipv6]:port
        let (host, after) = rest.split_once(']').ok_or_else(|| {
            DsnError::new(format!(
                "an IPv6 host must be closed with ] (postgresql://USER@[::1]:5432/DBNAME); {ENCODE_HINT}"
            ))
        })?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(DsnError::new(format!(
                    "only :PORT may follow an IPv6 host's ]; {ENCODE_HINT}"
                ))),
            },
        };
    }
    if hostport.contains(',') {
        return Err(DsnError::new(format!(
            "several hosts in one DSN are not supported; name one host ({ENCODE_HINT})"
        )));
    }
    Ok(match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    })
}

fn decode(s: &str, what: &str) -> Result<String, DsnError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| DsnError::new(format!("the {what} is not valid percent-encoded UTF-8")))
}

/// Everything but RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An IPv6 address between brackets keeps its colons.
const IPV6_HOST: &percent_encoding::AsciiSet = &UNRESERVED.remove(b':');

/// Percent-encodes a URL part, keeping RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Query values keep `/` and `:` readable (socket paths such as
/// `/cloudsql/proj:region:inst`), escaping only what would break the URL.
fn encode_param(s: &str) -> String {
    const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'&')
        .add(b'#')
        .add(b'%')
        .add(b'=')
        .add(b'+')
        .add(b'?');
    utf8_percent_encode(s, QUERY).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_sql_socket_form() {
        let dsn =
            Dsn::parse("postgresql://dave:s3cr%40t@/dave?host=/cloudsql/my-proj:europe-west1:main")
                .unwrap();
        assert_eq!(dsn.user, "dave");
        assert_eq!(dsn.password().unwrap().expose(), "s3cr@t");
        assert_eq!(dsn.dbname, "dave");
        assert_eq!(
            dsn.socket_file().unwrap(),
            PathBuf::from("/cloudsql/my-proj:europe-west1:main/.s.PGSQL.5432")
        );
        assert!(dsn.is_cloud_sql_socket());
        assert_eq!(
            dsn.redacted(),
            "postgresql://dave:***@/dave?host=/cloudsql/my-proj:europe-west1:main"
        );
    }

    #[test]
    fn tcp_form_with_tls_options() {
        let dsn = Dsn::parse("postgresql://app:pw@10.1.2.3:6432/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=svc&connect_timeout=7").unwrap();
        assert_eq!(dsn.host, Host::Tcp("10.1.2.3".into()));
        assert_eq!(dsn.port, 6432);
        assert_eq!(dsn.sslmode, SslMode::VerifyFull);
        assert_eq!(dsn.sslrootcert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(dsn.application_name.as_deref(), Some("svc"));
        assert_eq!(dsn.connect_timeout, Some(Duration::from_secs(7)));
        let again = Dsn::parse(&dsn.to_url_with_password()).unwrap();
        assert_eq!(again, dsn);
    }

    #[test]
    fn every_sslmode_parses_and_unknown_is_refused() {
        for mode in ["disable", "prefer", "require"] {
            let dsn = Dsn::parse(&format!("postgresql://u@h/d?sslmode={mode}")).unwrap();
            assert_eq!(dsn.sslmode.as_str(), mode);
        }
        let err = Dsn::parse("postgresql://u@h/d?sslmode=sometimes").unwrap_err();
        assert!(
            err.to_string().contains("unknown sslmode \"sometimes\""),
            "{err}"
        );
        let err = Dsn::parse("postgresql://u@h/d?sslmode=verify-ca").unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }

    #[test]
    fn malformed_dsns_are_refused_without_echoing_the_password() {
        for bad in [
            "mysql://u:topsecretpw@h/d",
            "postgresql://u:topsecretpw@h:notaport/d",
            "postgresql://:topsecretpw@h/d",
            "postgresql://u:topsecretpw@h/d?colour=blue",
            "postgresql://u:topsecretpw@h/d?sslmode",
        ] {
            let err = Dsn::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("topsecretpw"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let dsn = Dsn::parse("postgresql://u:Distinctive-Pw-42@localhost:5432/d").unwrap();
        assert!(!format!("{dsn}").contains("Distinctive-Pw-42"));
        assert!(!format!("{dsn:?}").contains("Distinctive-Pw-42"));
        assert!(dsn.to_url_with_password().contains("Distinctive-Pw-42"));
    }

    /// Generated passwords (base64, password managers) carry `/ ? # @ :`
    /// unencoded; each must end up whole in the password, never split into
    /// host, port, path or query.
    #[test]
    fn raw_special_characters_in_the_password_stay_in_the_password() {
        for (url, password, host, port, dbname) in [
            (
                "postgresql://user:ab/c?d#e@host:5432/db?sslmode=disable",
                "ab/c?d#e",
                "host",
                5432,
                "db",
            ),
            (
                "postgresql://app:q8Zx/+Yb2kL9vW3n/Tr7Aw==@10.0.0.7:6432/dave",
                "q8Zx/+Yb2kL9vW3n/Tr7Aw==",
                "10.0.0.7",
                6432,
                "dave",
            ),
            (
                "postgresql://app:a?b=c@db.internal/dave?sslmode=require",
                "a?b=c",
                "db.internal",
                5432,
                "dave",
            ),
            (
                "postgresql://app:p@ss/w:rd#1@db.internal:5433/dave",
                "p@ss/w:rd#1",
                "db.internal",
                5433,
                "dave",
            ),
            (
                "postgresql://app:abc/def@db.internal",
                "abc/def",
                "db.internal",
                5432,
                "app",
            ),
        ] {
            let dsn = Dsn::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(dsn.password().map(Secret::expose), Some(password), "{url}");
            assert_eq!(dsn.host, Host::Tcp(host.into()), "{url}");
            assert_eq!(dsn.port, port, "{url}");
            assert_eq!(dsn.dbname, dbname, "{url}");
        }
        let dsn = Dsn::parse("postgresql://dave:ab/cd?ef@/dave?host=/cloudsql/p:r:i").unwrap();
        assert_eq!(dsn.password().unwrap().expose(), "ab/cd?ef");
        assert!(dsn.is_cloud_sql_socket());
    }

    /// The earliest `@` that gives a sound URL wins, so an `@` further on in
    /// a query value does not swallow the host into the password.
    #[test]
    fn an_at_sign_in_a_query_value_is_not_the_end_of_the_password() {
        let dsn =
            Dsn::parse("postgresql://u:pw@h/db?application_name=me@home&password=p@ss").unwrap();
        assert_eq!(dsn.user, "u");
        assert_eq!(dsn.password().unwrap().expose(), "p@ss");
        assert_eq!(dsn.host, Host::Tcp("h".into()));
        assert_eq!(dsn.application_name.as_deref(), Some("me@home"));
        let dsn = Dsn::parse("postgresql://alice@example.com@/db?host=/cloudsql/p:r:i").unwrap();
        assert_eq!(dsn.user, "alice@example.com");
        assert!(dsn.password().is_none());
    }

    #[test]
    fn errors_never_contain_the_password_and_say_to_percent_encode() {
        const PW: &str = "Kx7Qp/9Lr?mN4e#Tk2w";
        for bad in [
            format!("postgresql://u:{PW}@h:notaport/d"),
            format!("postgresql://u:{PW}@h:70000/d"),
            format!("postgresql://u:{PW}@h/d?colour=blue"),
            format!("postgresql://u:{PW}@h/d?sslmode"),
            format!("postgresql://u:{PW}@h/d?sslmode=sometimes"),
            format!("postgresql://u:{PW}@[::1/d"),
            format!("postgresql://u:{PW}@h1,h2/d"),
            format!("postgresql://u:{PW}@h#frag"),
            format!("postgresql://u/x:{PW}@h/d"),
            format!("postgresql://u:{PW}"),
            format!("postgresql://u:{PW}@h/%ff"),
            "postgresql://u:Kx7Qp%2F9Lr%3FmN4e%23Tk2w%ff@h/d".to_string(),
            format!("postgresql://:{PW}@h/d"),
            format!("postgresql://u@h/d?password={PW}&colour=blue"),
            "postgresql://u@h/d?password=Kx7Qp&9Lr?mN4e&Tk2w".to_string(),
            format!("postgres://u:{PW}@h/d?sslmode=verify-full"),
            format!("mysql://u:{PW}@h/d"),
        ] {
            let err = Dsn::parse(&bad).expect_err(&bad);
            for shown in [err.to_string(), format!("{err:?}")] {
                for piece in [PW, "Kx7Qp", "9Lr", "mN4e", "Tk2w"] {
                    assert!(!shown.contains(piece), "{bad}: {shown}");
                }
            }
        }
        for bad in [
            format!("postgresql://u:{PW}@h:notaport/d"),
            format!("postgresql://u:{PW}"),
            format!("postgresql://u/x:{PW}@h/d"),
        ] {
            let err = Dsn::parse(&bad).unwrap_err().to_string();
            assert!(err.contains("percent-encode"), "{bad}: {err}");
            assert!(err.contains("%2F"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_with_odd_hosts_round_trip() {
        for host in ["::1", "fe80::1", "db.example.com", "a-b_c"] {
            let dsn = Dsn::parse("postgresql://u:p@localhost/d").unwrap();
            let dsn = Dsn {
                host: Host::Tcp(host.into()),
                ..dsn
            };
            assert_eq!(Dsn::parse(&dsn.to_url_with_password()).unwrap(), dsn);
        }
    }

    #[test]
    fn missing_dbname_defaults_to_user_like_libpq() {
        let dsn = Dsn::parse("postgres://alice@localhost").unwrap();
        assert_eq!(dsn.dbname, "alice");
        assert_eq!(dsn.host, Host::Tcp("localhost".into()));
    }
}
