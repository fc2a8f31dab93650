//! Running behind a transaction pooler: PgBouncer in transaction mode, or
//! Cloud SQL Managed Connection Pooling (which is PgBouncer).
//!
//! A transaction pooler hands each transaction to whichever server
//! connection is free, so nothing may outlive a transaction: not a named
//! prepared statement (the next call may land on a server that never saw
//! it), not a setting given in the start-up packet (PgBouncer refuses
//! unknown start-up options), not a session advisory lock. With
//! `DB_POOLER=transaction` the pool therefore runs every query as an
//! unnamed statement (Parse, Bind and Execute under one Sync: still one
//! round trip), sends no session options, and checks at start-up that the
//! role's own defaults (`ALTER ROLE … SET`, which `pgkit provision` writes)
//! give each session the settings the service was configured with.
//! [`detect`] tells a transaction pooler from a direct connection from
//! outside, for `pgkit doctor`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::connect::SessionParams;
/// The setting itself (`DB_POOLER`) is read with the others.
pub use crate::settings::Pooler;

/// Parameter types of each query text, learnt once per process: an
/// unnamed statement must be sent with its parameter types, and the
/// repository API takes values without them.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParamTypes(Arc<RwLock<HashMap<String, Vec<Type>>>>);

impl ParamTypes {
    pub(crate) fn get(&self, sql: &str) -> Option<Vec<Type>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned()
    }

    /// Asks the server for `sql`'s parameter types. The statement is
    /// prepared and closed inside one transaction (the caller's, or a
    /// short one of its own), so through a transaction pooler it lives
    /// and dies on one server connection.
    pub(crate) async fn learn(
        &self,
        client: &Client,
        sql: &str,
        in_transaction: bool,
    ) -> Result<Vec<Type>, tokio_postgres::Error> {
        if !in_transaction {
            client.batch_execute("BEGIN").await?;
        }
        // Dropping the statement queues its Close before the COMMIT below.
        let described = client.prepare(sql).await.map(|s| s.params().to_vec());
        if !in_transaction {
            client.batch_execute("COMMIT").await?;
        }
        let types = described?;
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql.to_owned(), types.clone());
        Ok(types)
    }
}

/// The role's defaults do not give sessions the configured settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "behind a transaction pooler (DB_POOLER=transaction) sessions take their settings from the role, and {}; \
     fix: run `pgkit provision` with these settings, or run {}",
    .mismatches.join(", "),
    .fixes.join(" ")
)]
pub struct SessionDefaultsError {
    pub mismatches: Vec<String>,
    pub fixes: Vec<String>,
}

/// Checks that a session opened through the pooler has the settings the
/// service would otherwise send at connect: `statement_timeout`,
/// `idle_in_transaction_session_timeout` and `app.environment`.
pub(crate) async fn verify_session_defaults(
    client: &Client,
    params: &SessionParams,
) -> Result<Result<(), SessionDefaultsError>, tokio_postgres::Error> {
    const SQL: &str = "SELECT current_user::text, \
        (SELECT setting FROM pg_settings WHERE name = 'statement_timeout'), \
        (SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'), \
        coalesce(current_setting('app.environment', true), '')";
    let rows = client.simple_query(SQL).await?;
    let Some(row) = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    }) else {
        return Ok(Ok(()));
    };
    let user = row.get(0).unwrap_or_default();
    let role = postgres_protocol::escape::escape_identifier(user);
    let wanted = [
        (
            "statement_timeout",
            "DB_QUERY_TIMEOUT",
            millis(params.statement_timeout),
            row.get(1),
        ),
        (
            "idle_in_transaction_session_timeout",
            "DB_IDLE_IN_TRANSACTION_TIMEOUT",
            millis(params.idle_in_transaction_timeout),
            row.get(2),
        ),
        (
            "app.environment",
            "APP_ENVIRONMENT",
            params.environment.clone(),
            row.get(3),
        ),
    ];
    let mut mismatches = Vec::new();
    let mut fixes = Vec::new();
    for (name, variable, want, have) in wanted {
        let have = have.unwrap_or_default();
        if have != want {
            let unit = if name == "app.environment" { "" } else { " ms" };
            let have = if have.is_empty() { "unset" } else { have };
            mismatches.push(format!(
                "{name} is {have}{unit}, not {want}{unit} ({variable})"
            ));
            let value = postgres_protocol::escape::escape_literal(&if unit.is_empty() {
                want.clone()
            } else {
                format!("{want}ms")
            });
            fixes.push(format!("ALTER ROLE {role} SET {name} = {value};"));
        }
    }
    if mismatches.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(SessionDefaultsError { mismatches, fixes }))
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// What [`detect`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Each client connection has its own server session.
    Direct,
    /// Two transactions of one client connection ran in different server
    /// sessions: a transaction pooler.
    TransactionPooler,
}

/// Tells a transaction pooler from a direct connection, from outside.
/// `a` runs a transaction and notes its server's `pg_backend_pid()`; each of
/// `others` (more connections to the same DSN) then holds a transaction
/// open. Directly, every connection is its own session, so none of them can
/// see `a`'s pid and `a`'s next transaction sees it again. Through a
/// transaction pooler, one of them may be handed the server `a` just freed
/// (proof enough), or `a`'s next transaction runs on another server, or
/// waits for one (a server pool smaller than the connections held).
pub async fn detect(
    a: &Client,
    others: &[Client],
    bound: Duration,
) -> Result<Detected, tokio_postgres::Error> {
    let first = pid(a).await?;
    let mut held = Vec::new();
    let mut shared = false;
    for other in others {
        // Bounded: a pooler with fewer servers than connections makes
        // the later ones wait.
        let Ok(begun) = tokio::time::timeout(bound, other.batch_execute("BEGIN")).await else {
            break;
        };
        begun?;
        held.push(other);
        if tokio::time::timeout(bound, pid(other))
            .await
            .ok()
            .transpose()?
            .flatten()
            == first
        {
            shared = true;
            break;
        }
    }
    let again = if shared {
        None
    } else {
        tokio::time::timeout(bound, pid(a)).await.ok()
    };
    for other in held {
        let _ = tokio::time::timeout(bound, other.batch_execute("COMMIT")).await;
    }
    let again = again.transpose()?;
    Ok(match again {
        Some(again) if again == first => Detected::Direct,
        _ => Detected::TransactionPooler,
    })
}

/// The server process serving `client`'s current transaction.
async fn pid(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let rows = client.simple_query("SELECT pg_backend_pid()").await?;
    Ok(rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    }))
}
