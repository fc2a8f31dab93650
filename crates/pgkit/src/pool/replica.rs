//! Read replicas: which reads a streaming replica may serve, and proof that
//! it has already replayed what the caller wrote.
//!
//! With `DB_READ_DSN` set, a [`Database`] holds a second pool on the
//! replica (its own breaker, counters and pool status). A read is routed
//! with [`Database::read`] and a [`ReadAfter`] saying what it must see:
//! `Nothing` (data every caller sees alike, like a knowledge base: any
//! replica within `DB_REPLICA_MAX_LAG` will do), `Position` (the caller's
//! last write, as a WAL position from [`Database::write_position`]: only a
//! replica that has replayed it), or `Unknown` (a caller-scoped read with
//! no position: always the primary, so nobody ever misses their own write).
//!
//! The replica's state (replayed WAL position, lag) is learnt the way the
//! rest of the pool learns things: by a check that a read starts when the
//! state it has is older than [`REFRESH_EVERY`], never by a timer, since
//! Cloud Run throttles CPU between requests. Staleness only ever errs
//! towards the primary: the replayed position can only grow, so a position
//! seen earlier is a lower bound of today's, and the lag counts the age of
//! the observation on top of the lag observed. A replica read that fails
//! for a reason the primary may not share (the replica is down, a recovery
//! conflict cancelled the statement) is run again on the primary, so a
//! replica that stops changes no answer.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::error::DbError;
use crate::pool::{Database, PoolStatus};

/// How old the replica's observed state may get before a read starts a new
/// check (in a task of its own; that read uses the state it has).
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// A position in the write-ahead log, as `pg_lsn` prints it (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A text that is not `HEX/HEX` with each half at most 32 bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (expected two hexadecimal numbers like 16/B374D848)")]
pub struct LsnParseError;

impl FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Lsn, LsnParseError> {
        let (hi, lo) = s.split_once('/').ok_or(LsnParseError)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 {
                return Err(LsnParseError);
            }
            u32::from_str_radix(h, 16).map_err(|_| LsnParseError)
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

/// What a read must see; decides whether the replica may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAfter {
    /// No particular write: shared data, served by a replica within
    /// `DB_REPLICA_MAX_LAG`.
    Nothing,
    /// Every write up to this position (the caller's last write).
    Position(Lsn),
    /// The caller may have written, and we do not know where: the primary.
    Unknown,
}

/// The replica pool and what was last learnt about it.
pub(crate) struct Replica {
    db: Database,
    max_lag: Duration,
    seen: Mutex<Observed>,
    refreshing: AtomicBool,
    served: AtomicU64,
    to_primary: AtomicU64,
    fallbacks: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct Observed {
    at: Option<Instant>,
    replayed: Option<Lsn>,
    /// `None` when it could not be told (nothing replayed since start).
    lag: Option<Duration>,
    /// Why the replica may not serve reads, from the last check.
    problem: Option<String>,
}

/// The replica as `/health/ready` details and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// `ok`, `lagging`, `down` or `unknown` (not checked yet).
    pub state: &'static str,
    /// Seconds behind the primary at the last check (plus the check's age).
    pub lag_seconds: Option<f64>,
    pub replayed_lsn: Option<String>,
    /// The last check's reason when the state is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Routed reads the replica answered.
    pub reads_replica: u64,
    /// Routed reads sent to the primary (no position, lag, replica down).
    pub reads_primary: u64,
    /// Replica reads that failed and were answered by the primary.
    pub fallbacks: u64,
    pub circuit_breaker: &'static str,
    pub pool: PoolStatus,
}

impl Replica {
    pub(crate) fn new(db: Database, max_lag: Duration) -> Replica {
        Replica {
            db,
            max_lag,
            seen: Mutex::new(Observed::default()),
            refreshing: AtomicBool::new(false),
            served: AtomicU64::new(0),
            to_primary: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    pub(crate) fn pool(&self) -> &Database {
        &self.db
    }

    fn observed(&self) -> Observed {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, seen: Observed) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }

    /// The lag now, at worst: the lag seen plus the age of the sighting.
    fn lag_now(seen: &Observed) -> Option<Duration> {
        Some(seen.lag? + seen.at?.elapsed())
    }

    /// May the replica serve a read that must see `after`?
    fn serves(&self, after: ReadAfter) -> bool {
        if after == ReadAfter::Unknown || self.db.breaker().state() == BreakerState::Open {
            return false;
        }
        let seen = self.observed();
        if seen.problem.is_some() || Self::lag_now(&seen).is_none_or(|l| l > self.max_lag) {
            return false;
        }
        match after {
            ReadAfter::Position(wrote) => seen.replayed.is_some_and(|r| r >= wrote),
            _ => true,
        }
    }

    fn state(seen: &Observed, max_lag: Duration) -> &'static str {
        match (seen.at, &seen.problem, Self::lag_now(seen)) {
            (None, _, _) => "unknown",
            (_, Some(_), _) => "down",
            (_, None, Some(lag)) if lag <= max_lag => "ok",
            _ => "lagging",
        }
    }
}

/// What the replica reports of itself, and the primary's position.
const REPLICA_CHECK: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     pg_last_wal_receive_lsn()::text, \
     extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8";
const PRIMARY_POSITION: &str = "SELECT pg_current_wal_lsn()::text";
/// After a commit has been answered, the insert position is at or past the
/// commit record on every session.
const WRITE_POSITION: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// Read-replica routing on the pool; see the module documentation.
impl Database {
    /// Whether `DB_READ_DSN` configured a replica.
    pub fn has_replica(&self) -> bool {
        self.replica().is_some()
    }

    /// A WAL position at or past every commit answered before this call:
    /// what a caller's next read must see. One round trip on the primary;
    /// services ask only when [`Database::has_replica`].
    pub async fn write_position(&self) -> Result<Lsn, DbError> {
        let text: String = self.fetch_val(WRITE_POSITION, &[]).await?;
        text.parse()
            .map_err(|e: LsnParseError| DbError::Decode(format!("{text:?}: {e}")))
    }

    /// Runs `read` on the replica when it may serve what `after` asks for,
    /// on the primary otherwise, and again on the primary when the replica
    /// fails it for a reason of its own (down, overloaded, a recovery
    /// conflict). `read` gets the chosen pool.
    pub async fn read<T, F, Fut>(&self, after: ReadAfter, read: F) -> Result<T, DbError>
    where
        F: Fn(Database) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let Some(replica) = self.replica() else {
            return read(self.clone()).await;
        };
        self.refresh_if_due(replica);
        if !replica.serves(after) {
            replica.to_primary.fetch_add(1, Ordering::Relaxed);
            return read(self.clone()).await;
        }
        match read(replica.db.clone()).await {
            Err(e) if replica_specific(&e) => {
                tracing::warn!(error = %e, "replica read failed; answered by the primary");
                replica.fallbacks.fetch_add(1, Ordering::Relaxed);
                replica.record(Observed::default());
                read(self.clone()).await
            }
            result => {
                replica.served.fetch_add(1, Ordering::Relaxed);
                result
            }
        }
    }

    /// The replica's state from the last check, without any I/O; starts a
    /// new check when that one is old (a readiness probe keeps it fresh).
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        let replica = self.replica()?;
        self.refresh_if_due(replica);
        let seen = replica.observed();
        Some(ReplicaStatus {
            state: Replica::state(&seen, replica.max_lag),
            lag_seconds: Replica::lag_now(&seen).map(|l| l.as_secs_f64()),
            replayed_lsn: seen.replayed.map(|l| l.to_string()),
            problem: seen.problem.clone(),
            reads_replica: replica.served.load(Ordering::Relaxed),
            reads_primary: replica.to_primary.load(Ordering::Relaxed),
            fallbacks: replica.fallbacks.load(Ordering::Relaxed),
            circuit_breaker: replica.db.breaker().state().as_str(),
            pool: replica.db.status(),
        })
    }

    /// Starts a check of the replica in a task of its own when the last
    /// one is older than [`REFRESH_EVERY`] and none is running.
    fn refresh_if_due(&self, replica: &Replica) {
        // Only the time of the last check: no copy of the sighting.
        let fresh = replica
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .at
            .is_some_and(|at| at.elapsed() < REFRESH_EVERY);
        if fresh || replica.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            replica.refreshing.store(false, Ordering::Release);
            return;
        };
        let primary = self.clone();
        rt.spawn(async move {
            if let Some(replica) = primary.replica() {
                let seen = check(&primary, &replica.db).await;
                replica.record(seen);
                replica.refreshing.store(false, Ordering::Release);
            }
        });
    }
}

/// Errors a read might not get from the primary.
fn replica_specific(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. } | DbError::Timeout | DbError::Query(_)
    )
}

/// One check: the primary's position first, then the replica's. A replica
/// that has replayed the position the primary had a moment before is not
/// behind; otherwise its lag is the age of the last commit it replayed.
async fn check(primary: &Database, replica: &Database) -> Observed {
    let primary_at: Option<Lsn> = match primary.fetch_val::<String>(PRIMARY_POSITION, &[]).await {
        Ok(text) => text.parse().ok(),
        Err(_) => None,
    };
    let row: tokio_postgres::Row = match replica.fetch_one(REPLICA_CHECK, &[]).await {
        Ok(row) => row,
        Err(e) => return problem(e.to_string()),
    };
    let in_recovery: bool = row.get(0);
    if !in_recovery {
        return problem(
            "DB_READ_DSN is not a standby (pg_is_in_recovery() is false): promoted, or the primary's DSN; reads stay on the primary".into(),
        );
    }
    let lsn = |i: usize| row.get::<_, Option<String>>(i).and_then(|t| t.parse().ok());
    let (replayed, received): (Option<Lsn>, Option<Lsn>) = (lsn(1), lsn(2));
    let since_commit: Option<f64> = row.get(3);
    let caught_up = match (primary_at, replayed) {
        (Some(p), Some(r)) => r >= p,
        // The primary did not answer: judge by what reached the replica.
        (None, Some(r)) => received.is_some_and(|got| r >= got),
        _ => false,
    };
    let lag = if caught_up {
        Some(Duration::ZERO)
    } else {
        since_commit.map(|s| Duration::from_secs_f64(s.max(0.0)))
    };
    Observed {
        at: Some(Instant::now()),
        replayed,
        lag,
        problem: None,
    }
}

fn problem(reason: String) -> Observed {
    Observed {
        at: Some(Instant::now()),
        problem: Some(reason),
        ..Observed::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_through_its_text() {
        for text in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/1"] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
    }

    #[test]
    fn lsn_refuses_what_is_not_one() {
        for bad in [
            "",
            "/",
            "16",
            "16/",
            "/1",
            "G/0",
            "1/2/3",
            "100000000/0",
            "-1/0",
        ] {
            assert_eq!(bad.parse::<Lsn>(), Err(LsnParseError), "{bad:?}");
        }
    }

    #[test]
    fn lsns_order_by_position() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
    }

    #[test]
    fn the_state_errs_towards_the_primary() {
        let max = Duration::from_secs(5);
        assert_eq!(Replica::state(&Observed::default(), max), "unknown");
        let fresh = Observed {
            at: Some(Instant::now()),
            replayed: Some(Lsn(10)),
            lag: Some(Duration::ZERO),
            problem: None,
        };
        assert_eq!(Replica::state(&fresh, max), "ok");
        let unknown_lag = Observed {
            lag: None,
            ..fresh.clone()
        };
        assert_eq!(Replica::state(&unknown_lag, max), "lagging");
        let old = Observed {
            at: Instant::now().checked_sub(Duration::from_secs(6)),
            ..fresh.clone()
        };
        assert_eq!(Replica::state(&old, max), "lagging");
        let down = Observed {
            problem: Some("refused".into()),
            ..fresh
        };
        assert_eq!(Replica::state(&down, max), "down");
    }
}
