//! The service's configuration, read once at start-up from the environment
//! (and `.env`) through [`pgkit::settings::Env`].
//!
//! Variables read here, besides pgkit's database settings
//! ([`DbSettings::from_env`] with `DAVE_DB_DSN`): `HOST` (0.0.0.0), `PORT`
//! (8080), `JWT_SECRET` (bearer auth off when unset), `SESSION_SECRET`
//! (random per process outside production, required in production),
//! `CURSOR_SECRET` (derived from the session secret when unset), `LOG_FORMAT`
//! (`json` in production, `pretty` elsewhere), `LOG_LEVEL` (a tracing filter,
//! `info`), `ACCESS_LOG` (true), `GOOGLE_CLOUD_PROJECT`, `K_SERVICE`,
//! `K_REVISION`, `DAVE_MIGRATE_ON_START` (false) and `SHUTDOWN_GRACE` (7
//! seconds, at most 60). Every secret may come from `<NAME>_FILE` instead.
//! Invalid values fail with one line naming the variable; secrets are held as
//! [`Secret`] and never printed. In production each secret given must be at
//! least [`MIN_SECRET_BYTES`] long: an HS256 token or an HMAC-signed session
//! token is enough to brute-force a short key offline, and a forged token is
//! any user's identity.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use pgkit::dsn::Dsn;
use pgkit::settings::{DbSettings, Env, Environment, SettingsError};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use pgkit::secret::Secret;

/// The service's name: `application_name`, log and metric prefix.
pub const SERVICE: &str = "dave";

/// The variable holding the DSN.
pub const DSN_VAR: &str = "DAVE_DB_DSN";

/// The shortest secret accepted in production: 256 bits, the HMAC-SHA256
/// block's security level.
pub const MIN_SECRET_BYTES: usize = 32;

/// The default of `SHUTDOWN_GRACE`: Cloud Run sends SIGKILL 10 s after
/// SIGTERM, and after the grace period the process still cuts the requests
/// left, closes the pool (at most [`POOL_CLOSE_WAIT`]) and exits.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

/// How long closing the pool at shutdown may wait for connections in use.
pub const POOL_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The bearer-token key [`Config::for_tests`] uses, so tests can mint tokens.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-not-for-production-0123456789";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line in Google Cloud Logging's structured format.
    Json,
}

impl LogFormat {
    fn from_env(env: &Env, environment: Environment) -> Result<LogFormat, SettingsError> {
        match env.get("LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
            None if environment == Environment::Production => Ok(LogFormat::Json),
            None => Ok(LogFormat::Pretty),
            Some(v) if v == "json" => Ok(LogFormat::Json),
            Some(v) if v == "pretty" || v == "text" => Ok(LogFormat::Pretty),
            Some(v) => Err(SettingsError::new(
                "LOG_FORMAT",
                format!("{v:?} is not a log format"),
                "json or pretty",
            )),
        }
    }
}

/// Everything `dave serve` needs, typed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: DbSettings,
    pub host: IpAddr,
    pub port: u16,
    /// HS256 key for bearer tokens; `None` turns bearer auth off.
    pub jwt_secret: Option<Secret>,
    /// HMAC key for anonymous session tokens.
    pub session_secret: Secret,
    /// Whether `session_secret` was generated for this process (sessions then
    /// end with it); logged at start-up so nobody is surprised.
    pub session_secret_is_random: bool,
    /// HMAC key for pagination cursors.
    pub cursor_secret: Secret,
    pub log_format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, such as `info` or `dave=debug,info`.
    pub log_level: String,
    /// One INFO line per API request (health and metrics probes excluded).
    pub access_log: bool,
    /// Names the project in Cloud Logging's trace field.
    pub google_cloud_project: Option<String>,
    /// Cloud Run's service and revision names, logged at start-up.
    pub k_service: Option<String>,
    pub k_revision: Option<String>,
    /// Apply migrations before serving (a DSN is given; never implicit).
    pub migrate_on_start: bool,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Reads and checks the whole configuration.
    pub fn from_env(env: &Env) -> Result<Config, SettingsError> {
        let db = DbSettings::from_env(env, DSN_VAR, SERVICE)?;
        let production = db.environment == Environment::Production;
        if production && db.dsn.is_none() {
            return Err(SettingsError::new(
                DSN_VAR,
                "is required when APP_ENVIRONMENT=production (the embedded local PostgreSQL is for development only)",
                "postgresql://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE, or DAVE_DB_DSN_FILE naming a file that holds it",
            ));
        }
        let jwt_secret = env.secret("JWT_SECRET")?;
        let (session_secret, session_secret_is_random) = match env.secret("SESSION_SECRET")? {
            Some(s) => (s, false),
            None if production => {
                return Err(SettingsError::new(
                    "SESSION_SECRET",
                    "is required when APP_ENVIRONMENT=production (a random key would end every anonymous session on restart and differ between instances)",
                    "a long random value, e.g. from `openssl rand -hex 32`, or SESSION_SECRET_FILE naming a file that holds it",
                ))
            }
            None => (random_secret(), true),
        };
        let explicit_cursor_secret = env.secret("CURSOR_SECRET")?;
        if production {
            for (name, secret) in [
                ("JWT_SECRET", jwt_secret.as_ref()),
                ("SESSION_SECRET", Some(&session_secret)),
                ("CURSOR_SECRET", explicit_cursor_secret.as_ref()),
            ] {
                check_secret_length(name, secret)?;
            }
        }
        let cursor_secret = match explicit_cursor_secret {
            Some(s) => s,
            None => derive_secret(&session_secret, "dave pagination cursors"),
        };
        Ok(Config {
            host: env.parse_or(
                "HOST",
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                "an IP address such as 0.0.0.0, 127.0.0.1 or ::",
            )?,
            port: env.parse_or("PORT", 8080, "a port number from 0 to 65535")?,
            jwt_secret,
            session_secret,
            session_secret_is_random,
            cursor_secret,
            log_format: LogFormat::from_env(env, db.environment)?,
            log_level: log_level(env)?,
            access_log: env.bool_or("ACCESS_LOG", true)?,
            google_cloud_project: env.get("GOOGLE_CLOUD_PROJECT").map(|s| s.trim().to_owned()),
            k_service: env.get("K_SERVICE").map(str::to_owned),
            k_revision: env.get("K_REVISION").map(str::to_owned),
            migrate_on_start: env.bool_or("DAVE_MIGRATE_ON_START", false)?,
            shutdown_grace: env.seconds_within(
                "SHUTDOWN_GRACE",
                DEFAULT_SHUTDOWN_GRACE.as_secs_f64(),
                Duration::from_millis(1),
                Duration::from_secs(60),
                "keep it below the platform's kill deadline minus 2 s: 7 on Cloud Run",
            )?,
            db,
        })
    }

    /// A configuration for tests against `db_url`: fixed secrets (see
    /// [`TEST_JWT_SECRET`]), `APP_ENVIRONMENT=test`, a small pool, port 0 on
    /// loopback, no access log.
    ///
    /// Panics when `db_url` is not a valid DSN (a bug in the test).
    pub fn for_tests(db_url: &str) -> Config {
        let dsn = Dsn::parse(db_url).expect("the test harness gives a valid DSN");
        let mut db = DbSettings::for_dsn(dsn, SERVICE);
        db.environment = Environment::Test;
        db.pool_min_size = 1;
        db.pool_max_size = 8;
        db.connect_retry = Duration::from_secs(5);
        let session_secret = Secret::new("test-session-secret-not-for-production");
        Config {
            db,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            jwt_secret: Some(Secret::new(TEST_JWT_SECRET)),
            cursor_secret: derive_secret(&session_secret, "dave pagination cursors"),
            session_secret,
            session_secret_is_random: false,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            access_log: false,
            google_cloud_project: None,
            k_service: None,
            k_revision: None,
            migrate_on_start: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    pub fn environment(&self) -> Environment {
        self.db.environment
    }
}

fn log_level(env: &Env) -> Result<String, SettingsError> {
    let level = env.get("LOG_LEVEL").unwrap_or("info").trim().to_owned();
    match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(_) => Ok(level),
        Err(e) => Err(SettingsError::new(
            "LOG_LEVEL",
            format!("{level:?} is not a filter: {e}"),
            "error, warn, info, debug or trace, optionally per target (dave=debug,info)",
        )),
    }
}

/// Refuses a production secret shorter than [`MIN_SECRET_BYTES`], naming
/// the variable and never the value (nor its length, a hint to an attacker).
fn check_secret_length(name: &str, secret: Option<&Secret>) -> Result<(), SettingsError> {
    match secret {
        Some(s) if s.expose().len() < MIN_SECRET_BYTES => Err(SettingsError::new(
            name,
            format!("is shorter than {MIN_SECRET_BYTES} bytes, which APP_ENVIRONMENT=production refuses (a short HMAC key can be brute-forced offline from one signed token)"),
            format!("at least {MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32` (64 characters), or {name}_FILE naming a file that holds it"),
        )),
        _ => Ok(()),
    }
}

/// 32 random bytes, hex: a per-process key.
fn random_secret() -> Secret {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    Secret::new(hex::encode(key))
}

/// A key for another purpose derived from `base`, so one configured secret
/// gives instances the same keys without reusing the same key twice.
fn derive_secret(base: &Secret, purpose: &str) -> Secret {
    let mut hasher = Sha256::new();
    hasher.update(purpose.as_bytes());
    hasher.update([0u8]);
    hasher.update(base.expose().as_bytes());
    Secret::new(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, SettingsError> {
        Config::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_outside_production() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(c.jwt_secret.is_none());
        assert!(c.session_secret_is_random);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert!(c.access_log);
        assert!(!c.migrate_on_start);
        assert_eq!(c.shutdown_grace, Duration::from_secs(7));
        assert!(c.db.dsn.is_none());
    }

    #[test]
    fn random_session_secrets_differ_per_process_start() {
        let a = config(&[]).unwrap().session_secret;
        let b = config(&[]).unwrap().session_secret;
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn production_needs_a_dsn_and_a_session_secret() {
        let err = config(&[("APP_ENVIRONMENT", "production"), ("SESSION_SECRET", "s")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid DAVE_DB_DSN: is required"), "{err}");
        let err = config(&[
            ("APP_ENVIRONMENT", "production"),
            ("DAVE_DB_DSN", "postgresql://u:pw@/d?host=/tmp"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("invalid SESSION_SECRET: is required"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn production_as_the_benchmark_runs_it() {
        let c = config(&[
            ("APP_ENVIRONMENT", "production"),
            ("HOST", "127.0.0.1"),
            ("PORT", "18080"),
            ("DAVE_DB_DSN", "postgresql://app@/bench?host=/tmp/x"),
            ("JWT_SECRET", LONG_JWT),
            ("SESSION_SECRET", LONG_SESSION),
        ])
        .unwrap();
        assert_eq!(c.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.port, 18080);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.session_secret_is_random);
        assert!(!c.migrate_on_start, "never implicit in production");
    }

    const LONG_JWT: &str = "jwt-secret-of-exactly-32-bytes!!";
    const LONG_SESSION: &str = "session-secret-0123456789abcdef0123456789";
    const PROD_DSN: &str = "postgresql://app@/d?host=/tmp/x";

    #[test]
    fn production_refuses_short_secrets_naming_the_variable_only() {
        let base = [
            ("APP_ENVIRONMENT", "production"),
            ("DAVE_DB_DSN", PROD_DSN),
            ("JWT_SECRET", LONG_JWT),
            ("SESSION_SECRET", LONG_SESSION),
            ("CURSOR_SECRET", LONG_SESSION),
        ];
        assert_eq!(LONG_JWT.len(), MIN_SECRET_BYTES);
        config(&base).unwrap();
        let short = "short-secret-31-bytes-long-xxxx";
        assert_eq!(short.len(), MIN_SECRET_BYTES - 1);
        for name in ["JWT_SECRET", "SESSION_SECRET", "CURSOR_SECRET"] {
            let pairs: Vec<(&str, &str)> = base
                .iter()
                .map(|&(k, v)| if k == name { (k, short) } else { (k, v) })
                .collect();
            let err = config(&pairs).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid {name}: is shorter than 32 bytes")),
                "{err}"
            );
            assert!(err.contains("openssl rand -hex 32"), "{err}");
            assert!(!err.contains(short), "{err}");
            assert!(!err.contains("31"), "no hint of the length: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn short_secrets_are_fine_outside_production() {
        for environment in ["development", "test", "staging"] {
            config(&[
                ("APP_ENVIRONMENT", environment),
                ("JWT_SECRET", "j"),
                ("SESSION_SECRET", "s"),
                ("CURSOR_SECRET", "c"),
            ])
            .unwrap();
        }
    }

    #[test]
    fn cursor_secret_is_derived_and_stable() {
        let a = config(&[("SESSION_SECRET", "same")]).unwrap();
        let b = config(&[("SESSION_SECRET", "same")]).unwrap();
        assert_eq!(a.cursor_secret.expose(), b.cursor_secret.expose());
        assert_ne!(a.cursor_secret.expose(), a.session_secret.expose());
    }

    #[test]
    fn bad_values_name_the_variable_in_one_line() {
        for (pairs, expected) in [
            (&[("PORT", "eighty")][..], "invalid PORT"),
            (&[("PORT", "70000")][..], "invalid PORT"),
            (&[("HOST", "localhost")][..], "invalid HOST"),
            (&[("LOG_FORMAT", "xml")][..], "invalid LOG_FORMAT"),
            (&[("LOG_LEVEL", "dave=loud")][..], "invalid LOG_LEVEL"),
            (&[("ACCESS_LOG", "maybe")][..], "invalid ACCESS_LOG"),
            (&[("SHUTDOWN_GRACE", "0")][..], "invalid SHUTDOWN_GRACE"),
            (
                &[("SHUTDOWN_GRACE", "600")][..],
                "invalid SHUTDOWN_GRACE: 600 is above the maximum of 60",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "2147484")][..],
                "invalid DB_QUERY_TIMEOUT: 2147484 is above the maximum",
            ),
            (
                &[("DAVE_MIGRATE_ON_START", "2")][..],
                "invalid DAVE_MIGRATE_ON_START",
            ),
        ] {
            let err = config(pairs).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{pairs:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = config(&[
            ("JWT_SECRET", "jwt-distinctive-value"),
            ("SESSION_SECRET", "session-distinctive-value"),
            (
                "DAVE_DB_DSN",
                "postgresql://u:dsn-distinctive-pw@/d?host=/tmp",
            ),
        ])
        .unwrap();
        let text = format!("{c:?}");
        for secret in [
            "jwt-distinctive-value",
            "session-distinctive-value",
            "dsn-distinctive-pw",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
