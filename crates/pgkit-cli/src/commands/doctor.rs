//! `pgkit doctor`: the DSN diagnosed step by step, each step printed as it
//! finishes (`ok` or `FAIL` with the fix); exit 1 at the first failure.
//!
//! The DSN is read raw (`--database-url`, `DATABASE_URL`, `DATABASE_URL_FILE`,
//! `.env`) because a DSN that does not parse is the doctor's first finding,
//! not a start-up error; the pool and timeout settings are read the way the
//! service reads them.

use clap::ValueEnum;
use pgkit::connect::SessionParams;
use pgkit::doctor::{diagnose, DoctorInput, Outcome, Step};
use pgkit::secret::Secret;
use pgkit::settings::{DbSettings, Env};

use super::{out, outln, ClosedPipe, UserError};
use crate::cli::{DoctorArgs, OutputFormat};

/// The variables the service's pool reads besides its DSN.
const POOL_SETTINGS: &[&str] = &[
    "DB_POOL_MIN_SIZE",
    "DB_POOL_MAX_SIZE",
    "DB_POOL_TIMEOUT",
    "DB_QUERY_TIMEOUT",
    "DB_CONNECT_TIMEOUT",
    "DB_CONNECT_RETRY",
    "DB_MAX_LIFETIME",
    "DB_IDLE_TIMEOUT",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT",
    "DB_BREAKER_THRESHOLD",
    "DB_BREAKER_RESET",
    "DB_IAM_AUTH",
    "APP_ENVIRONMENT",
    "MAX_INSTANCES",
    "K_REVISION",
];

pub async fn run(mut args: DoctorArgs) -> anyhow::Result<()> {
    if let Some(url) = args.url.take() {
        args.db.database_url = Some(url);
    }
    let env = Env::from_process()?;
    let dsn = match &args.db.database_url {
        Some(url) => Secret::new(url.clone()),
        None => match env.secret("DATABASE_URL")? {
            Some(url) => url,
            None => super::standard_dsn(&env)?.ok_or_else(super::no_database_url)?,
        },
    };
    let pool_env = Env::from_pairs(
        POOL_SETTINGS
            .iter()
            .filter_map(|name| env.get(name).map(|value| (*name, value))),
    );
    let settings = DbSettings::from_env(&pool_env, "DATABASE_URL", "pgkit-doctor")?;
    let mut session = SessionParams::from_settings(&settings);
    if let Some(value) = args.environment.and_then(|e| e.to_possible_value()) {
        session.environment = value.get_name().to_string();
    }
    let token_source = if settings.iam_auth {
        Some(pgkit::iam::token_source_from_env(&env).map_err(|e| {
            UserError::new(
                format!("DB_IAM_AUTH is on, but no IAM credentials were found: {e}"),
                "run gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS",
            )
        })?)
    } else {
        None
    };
    let input = DoctorInput {
        dsn,
        session,
        pool_max_size: settings.pool_max_size,
        instances: args.instances.or(settings.max_instances),
        schema: args.schema.clone(),
        token_source,
    };

    let text = args.format == OutputFormat::Text;
    // Steps print as they finish; once the reader of stdout has gone the
    // rest is not printed, and the run ends quietly after the diagnosis.
    let mut closed = false;
    let mut print_step = |step: &Step| {
        if text && !closed {
            closed = out(step.to_text()).is_err();
        }
    };
    let diagnosis = diagnose(&input, &mut print_step).await;
    if closed {
        return Err(ClosedPipe.into());
    }
    if text {
        out(diagnosis.verdict())?;
    } else {
        outln(serde_json::to_string_pretty(&diagnosis.to_json())?)?;
    }
    match diagnosis.failure().map(|s| (s.name, &s.outcome)) {
        Some((name, Outcome::Fail { fix, .. })) => {
            Err(UserError::new(format!("doctor: the {name} step failed"), fix.clone()).into())
        }
        _ => Ok(()),
    }
}
