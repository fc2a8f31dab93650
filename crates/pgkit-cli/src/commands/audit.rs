//! `pgkit audit`: the standard's rules on a live database's catalog. The
//! report goes to stdout (text or JSON, the shapes lint uses); any error
//! finding makes the exit code 1, as with lint.

use pgkit::audit::{audit, AuditError, AuditOptions};
use pgkit::connect::{Notice, SessionParams};
use pgkit::dsn::Dsn;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::Client;

use super::{connection, print_report, UserError};
use crate::cli::AuditArgs;

pub async fn run(mut args: AuditArgs) -> anyhow::Result<()> {
    if let Some(url) = args.url.take() {
        args.db.database_url = Some(url);
    }
    let (dsn, params) = connection(&args.db, None).await?;
    let client = open(&dsn, &params, None).await?;
    let options = AuditOptions {
        schema: args.schema.clone(),
        roles: args.roles.clone(),
    };
    let report = audit(&client, &options).await.map_err(|e| match e {
        AuditError::SchemaNotFound { .. } => UserError::new(
            e.to_string(),
            "pass the schema that holds the service's tables (psql's \\dn lists them)",
        ),
        other => UserError::new(
            other.to_string(),
            "run pgkit doctor to check the connection and the role's privileges",
        ),
    })?;
    print_report(
        "audit",
        args.format,
        || report.to_text(),
        || report.to_json(),
        report.has_errors().then(|| report.summary()),
        "fix each finding with the SQL under it (in a new migration), then run pgkit audit again",
    )
}

/// Connects for a tool; a failure points at `pgkit doctor`.
pub(super) async fn open(
    dsn: &Dsn,
    params: &SessionParams,
    notices: Option<UnboundedSender<Notice>>,
) -> anyhow::Result<Client> {
    pgkit::connect::connect(dsn, params, None, notices)
        .await
        .map_err(|e| {
            UserError::new(
                format!("cannot connect to {}: {}", dsn.redacted(), one_line(&e)),
                "run pgkit doctor to find out why, step by step",
            )
            .into()
        })
}

/// An error and its causes on one line (the driver's Display leaves the
/// server's message in the cause).
pub(super) fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    pgkit::connect::error_chain(e).replace('\n', " ")
}
