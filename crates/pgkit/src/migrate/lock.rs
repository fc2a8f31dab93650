//! The advisory lock that lets many runners start at once.
//!
//! Cloud Run starts several instances together and each may run `up`. The
//! runner takes a session-level advisory lock on its own dedicated, direct
//! connection (never a pooled one, never through a transaction-mode pooler,
//! where a "session" lock would stick to whatever server connection the
//! pooler picked). It polls `pg_try_advisory_lock` with a deadline rather
//! than blocking in `pg_advisory_lock`, so a waiting runner can say who holds
//! the lock and give up cleanly. A crashed runner's lock goes with its
//! session; a successful one unlocks explicitly.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::MigrateError;

/// How often a waiting runner retries.
const POLL: Duration = Duration::from_millis(200);
/// How often a waiting runner says it is still waiting.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The lock key for a purpose (such as `pgkit_migrations:public`): the first
/// 8 bytes of its sha256, kept positive. Advisory locks are per database, so
/// the schema in the purpose keeps two services' runners apart.
pub fn lock_key(purpose: &str) -> i64 {
    let digest = Sha256::digest(purpose.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) & 0x7fff_ffff_ffff_ffff) as i64
}

/// A runner is waiting for the lock.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub waited: Duration,
    pub timeout: Duration,
    /// "pid N, application_name" of the session holding it, when visible.
    pub holder: Option<String>,
}

/// Takes the lock, retrying until `timeout`; `on_wait` hears about the wait
/// when it starts and every few seconds after.
pub async fn acquire(
    client: &Client,
    key: i64,
    timeout: Duration,
    mut on_wait: impl FnMut(Waiting),
) -> Result<(), MigrateError> {
    let started = Instant::now();
    let mut last_report: Option<Instant> = None;
    loop {
        if try_lock(client, key).await? {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(MigrateError::LockTimeout {
                waited,
                holder: holder(client, key).await,
            });
        }
        if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            last_report = Some(Instant::now());
            on_wait(Waiting {
                waited,
                timeout,
                holder: holder(client, key).await,
            });
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

async fn try_lock(client: &Client, key: i64) -> Result<bool, MigrateError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| MigrateError::db("cannot take the migration lock", &e))?;
    Ok(row.get(0))
}

/// Releases the lock. Errors are ignored: the lock goes with the session
/// anyway when the connection closes.
pub async fn release(client: &Client, key: i64) {
    if let Err(e) = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .await
    {
        tracing::debug!(error = %e, "advisory unlock failed; the lock ends with the session");
    }
}

/// Who holds the lock: a bigint advisory key shows in pg_locks as
/// classid (high 32 bits), objid (low 32 bits), objsubid 1.
async fn holder(client: &Client, key: i64) -> Option<String> {
    let sql = "SELECT l.pid, coalesce(a.application_name, '') \
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295) \
               LIMIT 1";
    let row = client.query_opt(sql, &[&key]).await.ok()??;
    let pid: i32 = row.get(0);
    let app: String = row.get(1);
    Some(if app.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}, {app}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_positive_and_differ_by_schema() {
        let a = lock_key("pgkit_migrations:public");
        assert_eq!(a, lock_key("pgkit_migrations:public"));
        assert!(a > 0);
        assert_ne!(a, lock_key("pgkit_migrations:dave"));
    }
}
