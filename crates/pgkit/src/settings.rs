//! Typed settings, read once at start-up from the environment and `.env`.
//!
//! The environment is snapshotted into an [`Env`] (process variables win
//! over `.env`), then each area parses what it needs with helpers whose
//! errors name the variable, the problem and the accepted form in one line.
//! Nothing else in pgkit or in a service reads the environment. Secrets may
//! be given as `<NAME>_FILE` (Cloud Run mounts Secret Manager secrets as
//! files) and are held as [`Secret`] so they cannot be printed.
//!
//! Variables read by [`DbSettings::from_env`]: the DSN variable the service
//! names (`DAVE_DB_DSN`, `DATABASE_URL`, ...), `DB_POOL_MIN_SIZE`,
//! `DB_POOL_MAX_SIZE`, `DB_POOL_TIMEOUT`, `DB_QUERY_TIMEOUT`,
//! `DB_CONNECT_TIMEOUT`, `DB_CONNECT_RETRY`, `DB_MAX_LIFETIME`,
//! `DB_IDLE_TIMEOUT`, `DB_IDLE_IN_TRANSACTION_TIMEOUT`,
//! `DB_BREAKER_THRESHOLD`, `DB_BREAKER_RESET`, `DB_IAM_AUTH`,
//! `APP_ENVIRONMENT`, `MAX_INSTANCES`, `K_REVISION`. Durations are bounded
//! at start-up: the two sent to PostgreSQL by what it accepts, the others by
//! caps that catch a unit mistake.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::dsn::{Dsn, DsnError};
use crate::secret::Secret;

/// One invalid setting: which variable, what is wrong, what is accepted.
/// Displays as a single line and never contains a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {problem} (accepted: {accepted})")]
pub struct SettingsError {
    pub variable: String,
    pub problem: String,
    pub accepted: String,
}

impl SettingsError {
    pub fn new(variable: &str, problem: impl Into<String>, accepted: impl Into<String>) -> Self {
        SettingsError {
            variable: variable.to_string(),
            problem: problem.into(),
            accepted: accepted.into(),
        }
    }
}

/// A snapshot of the environment: the process's variables over `.env`.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show names only.
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    /// Reads the process environment, and `.env` in the working directory
    /// when present (without changing the process environment).
    pub fn from_process() -> Result<Env, SettingsError> {
        let mut vars = HashMap::new();
        if Path::new(".env").is_file() {
            let iter = dotenvy::from_path_iter(".env").map_err(|e| {
                SettingsError::new(".env", format!("cannot read: {e}"), "KEY=VALUE lines")
            })?;
            for item in iter {
                let (k, v) = item.map_err(|e| {
                    SettingsError::new(".env", format!("cannot parse: {e}"), "KEY=VALUE lines")
                })?;
                vars.insert(k, v);
            }
        }
        vars.extend(std::env::vars());
        Ok(Env { vars })
    }

    /// An environment made of the given pairs only; for tests and tools.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A secret from `name`, or from the file that `<name>_FILE` names.
    /// Giving both is an error: one of them would be silently ignored.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, SettingsError> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => Err(SettingsError::new(
                name,
                format!("both {name} and {file_var} are set"),
                format!("set only one of {name} or {file_var}"),
            )),
            (Some(v), None) => Ok(Some(Secret::new(v))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SettingsError::new(
                        &file_var,
                        format!("cannot read {path}: {e}"),
                        "a readable file holding the secret",
                    )
                })?;
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(SettingsError::new(
                        &file_var,
                        format!("{path} is empty"),
                        "a file holding the secret",
                    ));
                }
                Ok(Some(Secret::new(value)))
            }
            (None, None) => Ok(None),
        }
    }

    /// A value parsed with `FromStr`, or the default when unset.
    pub fn parse_or<T: FromStr>(
        &self,
        name: &str,
        default: T,
        accepted: &str,
    ) -> Result<T, SettingsError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| SettingsError::new(name, format!("{v:?} is not valid"), accepted)),
        }
    }

    /// Seconds as a decimal number (`30`, `0.5`), or the default when unset.
    pub fn seconds_or(&self, name: &str, default: f64) -> Result<Duration, SettingsError> {
        const ACCEPTED: &str = "a number of seconds greater than 0, such as 30 or 2.5";
        let secs: f64 = self.parse_or(name, default, ACCEPTED)?;
        if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
            return Err(SettingsError::new(
                name,
                format!("{secs} is out of range"),
                ACCEPTED,
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Seconds within `[min, max]` (or the default when unset), where the
    /// bounds come from what the value is handed to: PostgreSQL refuses a
    /// `statement_timeout` above `i32::MAX` milliseconds, and a connection
    /// started with such a value would fail on every attempt, far from the
    /// setting that caused it. `limit` says where `max` comes from.
    pub fn seconds_within(
        &self,
        name: &str,
        default: f64,
        min: Duration,
        max: Duration,
        limit: &str,
    ) -> Result<Duration, SettingsError> {
        let accepted = format!(
            "a number of seconds from {} to {} ({limit})",
            min.as_secs_f64(),
            max.as_secs_f64()
        );
        let secs: f64 = self.parse_or(name, default, &accepted)?;
        if !secs.is_finite() || secs <= 0.0 {
            return Err(SettingsError::new(
                name,
                format!("{secs} is out of range"),
                accepted,
            ));
        }
        if secs < min.as_secs_f64() {
            return Err(SettingsError::new(
                name,
                format!("{secs} is below the minimum of {}", min.as_secs_f64()),
                accepted,
            ));
        }
        if secs > max.as_secs_f64() {
            return Err(SettingsError::new(
                name,
                format!("{secs} is above the maximum of {}", max.as_secs_f64()),
                accepted,
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A boolean: true/false, 1/0, yes/no, on/off.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(SettingsError::new(
                    name,
                    format!("{v:?} is not a boolean"),
                    "true or false",
                )),
            },
        }
    }
}

/// The deployment environment; every connection sets `app.environment` to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    pub fn from_env(env: &Env) -> Result<Environment, SettingsError> {
        match env.get("APP_ENVIRONMENT").map(str::trim) {
            None | Some("development") => Ok(Environment::Development),
            Some("test") => Ok(Environment::Test),
            Some("staging") => Ok(Environment::Staging),
            Some("production") => Ok(Environment::Production),
            Some(other) => Err(SettingsError::new(
                "APP_ENVIRONMENT",
                format!("{other:?} is not an environment"),
                "development, test, staging or production",
            )),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sits between the service and PostgreSQL (`DB_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// A direct connection, or a pooler in session mode: sessions are ours.
    #[default]
    None,
    /// PgBouncer in transaction mode / Managed Connection Pooling.
    Transaction,
}

impl Pooler {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooler::None => "none",
            Pooler::Transaction => "transaction",
        }
    }

    /// Reads `DB_POOLER`: `none` (the default) or `transaction`.
    pub fn from_env(env: &Env) -> Result<Pooler, SettingsError> {
        match env.get("DB_POOLER").map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Pooler::None),
            Some(v) if v.is_empty() || v == "none" || v == "session" => Ok(Pooler::None),
            Some(v) if v == "transaction" => Ok(Pooler::Transaction),
            Some(other) => Err(SettingsError::new(
                "DB_POOLER",
                format!("{other:?} is not a pooler mode"),
                "none (direct connection or session pooling) or transaction (PgBouncer transaction mode, Cloud SQL Managed Connection Pooling)",
            )),
        }
    }
}

/// Everything the pool, breaker and connections need. Debug never shows
/// the DSN's password (the DSN redacts itself).
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `None` when the variable is unset: a service may then start an
    /// embedded local PostgreSQL (outside production).
    pub dsn: Option<Dsn>,
    pub pool_min_size: usize,
    pub pool_max_size: usize,
    pub pool_timeout: Duration,
    pub query_timeout: Duration,
    pub connect_timeout: Duration,
    pub connect_retry: Duration,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    /// How long an idle connection may sit before it is checked with an
    /// empty query when taken: a proxy or server restart may have cut it.
    pub validate_after_idle: Duration,
    pub idle_in_transaction_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_reset: Duration,
    pub iam_auth: bool,
    pub environment: Environment,
    /// Sent as `application_name`: the service, plus `K_REVISION` when set.
    pub application_name: String,
    pub max_instances: Option<u32>,
    /// `DB_POOLER`: what sits between the service and PostgreSQL.
    pub pooler: Pooler,
    /// `DB_MIGRATE_DSN`: a direct connection for migrations, seeds and
    /// operator tools when the service's DSN goes through a pooler.
    pub migrate_dsn: Option<Dsn>,
    /// `DB_READ_DSN`: a streaming read replica for reads that may be served
    /// from one (see [`crate::replica`]); `None` sends every read to the
    /// primary.
    pub read_dsn: Option<Dsn>,
    /// `DB_REPLICA_MAX_LAG`: how far behind the primary the replica may be
    /// and still serve reads.
    pub replica_max_lag: Duration,
}

impl DbSettings {
    /// Reads the database settings; `dsn_var` is the service's DSN variable.
    pub fn from_env(env: &Env, dsn_var: &str, service: &str) -> Result<DbSettings, SettingsError> {
        let dsn = match env.secret(dsn_var)? {
            None => None,
            Some(url) => Some(Dsn::parse(url.expose()).map_err(|e| dsn_error(dsn_var, &e))?),
        };
        let settings = DbSettings {
            dsn,
            pool_min_size: count(env, "DB_POOL_MIN_SIZE", 5, 0)?,
            pool_max_size: count(env, "DB_POOL_MAX_SIZE", 15, 1)?,
            pool_timeout: bounded(env, "DB_POOL_TIMEOUT", 30.0, MINUTES_5)?,
            query_timeout: pg_timeout(env, "DB_QUERY_TIMEOUT", 60.0)?,
            connect_timeout: bounded(env, "DB_CONNECT_TIMEOUT", 10.0, MINUTES_5)?,
            connect_retry: bounded(env, "DB_CONNECT_RETRY", 30.0, HOUR)?,
            max_lifetime: bounded(env, "DB_MAX_LIFETIME", 1800.0, WEEK)?,
            idle_timeout: bounded(env, "DB_IDLE_TIMEOUT", 600.0, WEEK)?,
            validate_after_idle: Duration::from_secs(10),
            idle_in_transaction_timeout: pg_timeout(env, "DB_IDLE_IN_TRANSACTION_TIMEOUT", 60.0)?,
            breaker_threshold: count(env, "DB_BREAKER_THRESHOLD", 5, 1)? as u32,
            breaker_reset: bounded(env, "DB_BREAKER_RESET", 30.0, HOUR)?,
            iam_auth: env.bool_or("DB_IAM_AUTH", false)?,
            environment: Environment::from_env(env)?,
            application_name: application_name(service, env.get("K_REVISION")),
            max_instances: match env.get("MAX_INSTANCES") {
                None => None,
                Some(_) => Some(count(env, "MAX_INSTANCES", 1, 1)? as u32),
            },
            pooler: Pooler::from_env(env)?,
            migrate_dsn: match env.secret("DB_MIGRATE_DSN")? {
                None => None,
                Some(url) => {
                    Some(Dsn::parse(url.expose()).map_err(|e| dsn_error("DB_MIGRATE_DSN", &e))?)
                }
            },
            read_dsn: match env.secret("DB_READ_DSN")? {
                None => None,
                Some(url) => {
                    Some(Dsn::parse(url.expose()).map_err(|e| dsn_error("DB_READ_DSN", &e))?)
                }
            },
            replica_max_lag: bounded(env, "DB_REPLICA_MAX_LAG", 5.0, HOUR)?,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        if self.pool_min_size > self.pool_max_size {
            return Err(SettingsError::new(
                "DB_POOL_MIN_SIZE",
                format!(
                    "{} is above DB_POOL_MAX_SIZE={}",
                    self.pool_min_size, self.pool_max_size
                ),
                "a number from 0 to DB_POOL_MAX_SIZE",
            ));
        }
        Ok(())
    }

    /// The settings for migrations, seeds and operator tools: those of
    /// `DB_MIGRATE_DSN`, a direct connection, when it is set; the service's
    /// own otherwise (refused by the migration runner behind a transaction
    /// pooler, with this fix in the hint).
    pub fn for_migrations(&self) -> DbSettings {
        let mut s = self.clone();
        if let Some(direct) = &self.migrate_dsn {
            s.dsn = Some(direct.clone());
            s.pooler = Pooler::None;
        }
        // Operator tools write; they never read from a replica.
        s.read_dsn = None;
        s
    }

    /// The settings of the replica pool: the same pool settings with
    /// `DB_READ_DSN` as the DSN, or `None` when no replica is configured.
    pub fn for_replica(&self) -> Option<DbSettings> {
        let dsn = self.read_dsn.clone()?;
        let mut s = self.clone();
        s.dsn = Some(dsn);
        s.read_dsn = None;
        s.migrate_dsn = None;
        Some(s)
    }

    /// Defaults for tests and tools: the documented defaults with this DSN.
    pub fn for_dsn(dsn: Dsn, service: &str) -> DbSettings {
        let mut s = DbSettings::from_env(&Env::default(), "DATABASE_URL", service)
            .expect("defaults are valid");
        s.dsn = Some(dsn);
        s
    }
}

/// `service` or `service-REVISION`, cut to PostgreSQL's 63-byte limit.
pub fn application_name(service: &str, revision: Option<&str>) -> String {
    let mut name = match revision {
        Some(rev) if !rev.starts_with(service) => format!("{service}-{rev}"),
        Some(rev) => rev.to_string(),
        None => service.to_string(),
    };
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// The largest `statement_timeout` / `idle_in_transaction_session_timeout`
/// PostgreSQL accepts: `i32::MAX` milliseconds (24.8 days).
pub const PG_MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
/// The smallest: 1 ms (0 would turn the timeout off).
const PG_MIN_TIMEOUT: Duration = Duration::from_millis(1);
const MINUTES_5: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// A duration sent to PostgreSQL as a timeout setting
/// (`statement_timeout`, `lock_timeout`, ...): 1 ms to [`PG_MAX_TIMEOUT`].
pub fn pg_timeout(env: &Env, name: &str, default: f64) -> Result<Duration, SettingsError> {
    env.seconds_within(
        name,
        default,
        PG_MIN_TIMEOUT,
        PG_MAX_TIMEOUT,
        "PostgreSQL's limit for a timeout",
    )
}

/// A duration of the pool or the breaker. The caps are far above any sane
/// value; they catch a unit mistake (milliseconds given as seconds) that
/// would otherwise make a request or a start-up wait for days.
fn bounded(env: &Env, name: &str, default: f64, max: Duration) -> Result<Duration, SettingsError> {
    let limit = if max == MINUTES_5 {
        "at most 5 minutes"
    } else if max == HOUR {
        "at most an hour"
    } else {
        "at most a week"
    };
    env.seconds_within(name, default, PG_MIN_TIMEOUT, max, limit)
}

fn count(env: &Env, name: &str, default: usize, min: usize) -> Result<usize, SettingsError> {
    let accepted = format!("a whole number from {min} to 10000");
    let n: usize = env.parse_or(name, default, &accepted)?;
    if n < min || n > 10_000 {
        return Err(SettingsError::new(
            name,
            format!("{n} is out of range"),
            accepted,
        ));
    }
    Ok(n)
}

fn dsn_error(var: &str, e: &DsnError) -> SettingsError {
    SettingsError::new(var, e.to_string(), DsnError::accepted_form())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<DbSettings, SettingsError> {
        DbSettings::from_env(
            &Env::from_pairs(pairs.iter().copied()),
            "DAVE_DB_DSN",
            "dave",
        )
    }

    #[test]
    fn defaults_match_the_design() {
        let s = settings(&[]).unwrap();
        assert!(s.dsn.is_none());
        assert_eq!((s.pool_min_size, s.pool_max_size), (5, 15));
        assert_eq!(s.pool_timeout, Duration::from_secs(30));
        assert_eq!(s.query_timeout, Duration::from_secs(60));
        assert_eq!(s.breaker_threshold, 5);
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.application_name, "dave");
    }

    #[test]
    fn bad_values_fail_with_one_line_naming_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("DB_POOL_MAX_SIZE", "0")],
                "invalid DB_POOL_MAX_SIZE: 0 is out of range",
            ),
            (
                &[("DB_POOL_MIN_SIZE", "9"), ("DB_POOL_MAX_SIZE", "3")],
                "invalid DB_POOL_MIN_SIZE: 9 is above DB_POOL_MAX_SIZE=3",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "soon")],
                "invalid DB_QUERY_TIMEOUT: \"soon\" is not valid",
            ),
            (&[("DB_POOL_TIMEOUT", "-1")], "invalid DB_POOL_TIMEOUT"),
            (
                &[("DAVE_DB_DSN", "mysql://u:pw@h/d")],
                "invalid DAVE_DB_DSN: a DSN must start with postgresql://",
            ),
            (
                &[("DAVE_DB_DSN", "postgresql://u:pw@h/d?sslmode=maybe")],
                "invalid DAVE_DB_DSN: unknown sslmode \"maybe\"",
            ),
            (&[("APP_ENVIRONMENT", "prod")], "invalid APP_ENVIRONMENT"),
            (&[("DB_IAM_AUTH", "sure")], "invalid DB_IAM_AUTH"),
            (
                &[("DB_QUERY_TIMEOUT", "2147484")],
                "invalid DB_QUERY_TIMEOUT: 2147484 is above the maximum of 2147483.647",
            ),
            (
                &[("DB_IDLE_IN_TRANSACTION_TIMEOUT", "1e12")],
                "invalid DB_IDLE_IN_TRANSACTION_TIMEOUT: 1000000000000 is above the maximum",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "0.0001")],
                "invalid DB_QUERY_TIMEOUT: 0.0001 is below the minimum of 0.001",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "0")],
                "invalid DB_QUERY_TIMEOUT: 0 is out of range",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "inf")],
                "invalid DB_QUERY_TIMEOUT: inf is out of range",
            ),
            (
                &[("DB_QUERY_TIMEOUT", "NaN")],
                "invalid DB_QUERY_TIMEOUT: NaN is out of range",
            ),
            (
                &[("DB_CONNECT_TIMEOUT", "10000")],
                "invalid DB_CONNECT_TIMEOUT: 10000 is above the maximum of 300",
            ),
            (
                &[("DB_POOL_TIMEOUT", "30000")],
                "invalid DB_POOL_TIMEOUT: 30000 is above the maximum of 300",
            ),
            (&[("DB_CONNECT_RETRY", "86400")], "invalid DB_CONNECT_RETRY"),
            (&[("DB_BREAKER_RESET", "7200")], "invalid DB_BREAKER_RESET"),
            (&[("DB_MAX_LIFETIME", "1e7")], "invalid DB_MAX_LIFETIME"),
            (&[("DB_IDLE_TIMEOUT", "1e7")], "invalid DB_IDLE_TIMEOUT"),
        ];
        for (pairs, expected) in cases {
            let err = settings(pairs).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{pairs:?}: {err}");
            assert!(err.contains("(accepted: "), "{err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn timeouts_up_to_postgresqls_limit_are_accepted() {
        let s = settings(&[
            ("DB_QUERY_TIMEOUT", "2147483.647"),
            ("DB_IDLE_IN_TRANSACTION_TIMEOUT", "0.001"),
            ("DB_CONNECT_TIMEOUT", "300"),
        ])
        .unwrap();
        assert_eq!(s.query_timeout, PG_MAX_TIMEOUT);
        assert_eq!(s.idle_in_transaction_timeout, Duration::from_millis(1));
        assert_eq!(s.connect_timeout, Duration::from_secs(300));
        let err = settings(&[("DB_QUERY_TIMEOUT", "3000000")])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(accepted: a number of seconds from 0.001 to 2147483.647 (PostgreSQL's limit for a timeout))"),
            "{err}"
        );
    }

    #[test]
    fn secrets_come_from_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dsn");
        std::fs::write(&path, "postgresql://u:FilePw-123@/d?host=/cloudsql/p:r:i\n").unwrap();
        let s = settings(&[("DAVE_DB_DSN_FILE", path.to_str().unwrap())]).unwrap();
        let dsn = s.dsn.clone().unwrap();
        assert_eq!(dsn.password().unwrap().expose(), "FilePw-123");
        assert!(!format!("{s:?}").contains("FilePw-123"));
        let both = settings(&[
            ("DAVE_DB_DSN_FILE", path.to_str().unwrap()),
            ("DAVE_DB_DSN", "postgresql://u@h/d"),
        ]);
        assert!(both
            .unwrap_err()
            .to_string()
            .contains("both DAVE_DB_DSN and DAVE_DB_DSN_FILE"));
    }

    #[test]
    fn application_name_carries_the_revision() {
        assert_eq!(
            application_name("dave", Some("dave-00042-abc")),
            "dave-00042-abc"
        );
        assert_eq!(application_name("dave", Some("00042")), "dave-00042");
        assert_eq!(application_name(&"x".repeat(80), None).len(), 63);
    }

    #[test]
    fn db_pooler_accepts_the_modes_and_names_them_when_wrong() {
        let read = |v: &str| Pooler::from_env(&Env::from_pairs([("DB_POOLER", v)]));
        assert_eq!(read("transaction").unwrap(), Pooler::Transaction);
        assert_eq!(read("none").unwrap(), Pooler::None);
        assert_eq!(read("session").unwrap(), Pooler::None);
        assert_eq!(
            Pooler::from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            Pooler::None
        );
        let e = read("statement").unwrap_err().to_string();
        assert!(e.contains("DB_POOLER") && e.contains("transaction"), "{e}");
    }
}
