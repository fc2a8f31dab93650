//! `pgkit provision`: a service's schema and role, with grants that cover
//! tables created later. `--dry-run` prints the SQL (passwords as `'***'`)
//! without connecting. The password comes from the environment variable
//! `--password-env` names, never from a flag, and is never printed.

use pgkit::provision::{Login, Plan, ProvisionError, ProvisionRequest};
use pgkit::secret::Secret;
use pgkit::settings::Env;

use super::audit::open;
use super::{connection, out, outln, UserError};
use crate::cli::ProvisionArgs;

pub async fn run(mut args: ProvisionArgs) -> anyhow::Result<()> {
    if let Some(url) = args.url.take() {
        args.db.database_url = Some(url);
    }
    let login =
        match (&args.password_env, &args.iam_user) {
            (Some(var), None) => Login::Password(password(var, args.dry_run)?),
            (None, Some(email)) => Login::IamUser {
                email: email.clone(),
            },
            _ => return Err(UserError::new(
                "give exactly one of --password-env and --iam-user",
                "--password-env VAR for a password login, --iam-user EMAIL for Cloud SQL IAM login",
            )
            .into()),
        };
    let request = ProvisionRequest {
        schema: args.schema.clone(),
        role: args.role.clone(),
        login,
        owner: args.owner.clone(),
    };
    let mut plan = Plan::new(&request).map_err(user_error)?;
    if let Some(params) = pooled_session(&args)? {
        plan = plan.with_session_defaults(&params);
    }
    if args.dry_run {
        out(plan.to_sql())?;
        return Ok(());
    }

    let (dsn, params) = connection(&args.db, args.environment).await?;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let client = open(&dsn, &params, Some(tx)).await?;
    let applied = plan.apply(&client).await;
    while let Ok(notice) = notices.try_recv() {
        eprintln!("{}: {}", notice.severity, notice.message);
    }
    applied.map_err(user_error)?;
    let owner = args
        .owner
        .as_deref()
        .map_or_else(|| dsn.user.clone(), str::to_string);
    outln(format_args!(
        "provisioned schema {} and role {}; tables and sequences {owner} creates there later are covered too",
        args.schema, args.role
    ))?;
    Ok(())
}

/// With `DB_POOLER=transaction`, the session settings the service will run
/// with, from the same variables it reads (`DB_QUERY_TIMEOUT`,
/// `DB_IDLE_IN_TRANSACTION_TIMEOUT`, `APP_ENVIRONMENT`, or
/// `--environment`), to write as the role's defaults; no DSN needed, so
/// `--dry-run` shows them too. Without a pooler the service sends them
/// itself, and writing `app.environment` as a role default needs a
/// superuser on PostgreSQL 15 (a placeholder setting), so it is not done.
fn pooled_session(args: &ProvisionArgs) -> anyhow::Result<Option<pgkit::connect::SessionParams>> {
    let env = Env::from_process()?;
    let settings = pgkit::settings::DbSettings::from_env(&env, "DATABASE_URL", "pgkit")?;
    if settings.pooler != pgkit::pooler::Pooler::Transaction {
        return Ok(None);
    }
    let mut params = pgkit::connect::SessionParams::from_settings(&settings);
    if let Some(e) = args.environment {
        params.environment = super::environment_name(e).into();
    }
    Ok(Some(params))
}

/// The password from the variable the operator named (or its `_FILE`).
/// A dry run does not need it: the SQL shows `'***'` either way.
fn password(var: &str, dry_run: bool) -> anyhow::Result<Secret> {
    let env = Env::from_process()?;
    match env.secret(var)? {
        Some(secret) => Ok(secret),
        None if dry_run => {
            eprintln!("note: {var} is not set; the real run reads the password from it");
            Ok(Secret::new("unset"))
        }
        None => Err(UserError::new(
            format!("{var} (named by --password-env) is not set"),
            format!("export {var}=<the role's password> (or {var}_FILE=<a file holding it>) and run provision again"),
        )
        .into()),
    }
}

fn user_error(e: ProvisionError) -> UserError {
    // The server's own hint (an IAM user to create first) is the one line
    // of advice: said once, on the hint line, not also inside the error.
    if let ProvisionError::Statement {
        purpose,
        message,
        hint: Some(hint),
    } = &e
    {
        return UserError::new(
            format!("provision failed while {purpose}: {message}; nothing was changed"),
            hint.clone(),
        );
    }
    let how = match &e {
        ProvisionError::InvalidName(_) => "fix the name as the message says",
        ProvisionError::EmptyPassword | ProvisionError::NulInPassword => {
            "put the role's password in the variable --password-env names"
        }
        ProvisionError::UnsafeRole { .. } => {
            "give the service a role of its own that holds nothing else, e.g. --role <schema>_app \
             (provision creates it), and keep the owner and admin roles for migrations"
        }
        _ => {
            "run provision as a role that may create roles and is a member of the migration owner \
             (on Cloud SQL: the postgres user), or pass --owner; see --dry-run for the SQL"
        }
    };
    UserError::new(e.to_string(), how)
}
