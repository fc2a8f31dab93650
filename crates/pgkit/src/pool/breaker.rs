//! A circuit breaker that really trips.
//!
//! When the database is down, every request that waits for a connection
//! timeout holds a client and a worker for seconds. The breaker counts
//! consecutive connection-level failures (refused, reset, authentication,
//! connect timeout, no answer within the call bound); at
//! `DB_BREAKER_THRESHOLD` it opens and every call fails at once with a
//! retry-after. "Consecutive" means one after another, not side by side: a
//! restart kills every call in flight at once, and those casualties of one
//! event count as one failure. Each call carries the failure count's epoch
//! from when it entered; its failure counts only if no other failure was
//! counted since (the way resilience4j and HikariCP users expect a restart
//! to cost a few seconds, not `DB_BREAKER_RESET`). Any success — a call, or
//! a new connection opened — sets the count back to zero. After `DB_BREAKER_RESET` exactly one caller
//! gets through as a trial (half-open): its success closes the breaker, its
//! failure re-opens it. Query errors (constraint violations, syntax, a
//! single statement's timeout) say nothing about the connection and are not
//! counted. Recovery is checked on the next call, never on a timer, because
//! Cloud Run throttles CPU between requests: besides the half-open trial
//! after `DB_BREAKER_RESET`, a call refused while the breaker is open lets
//! the pool try one new connection in the background, at most once a
//! second ([`Breaker::probe_due`]); a connection that opens closes the
//! breaker at once ([`Breaker::probe_succeeded`]). A restart of a few
//! seconds so costs a few seconds of 503s, not the whole reset, while a
//! database that stays down sees one connection attempt a second.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The breaker's state as health and metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Counts of transitions into each state since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Transitions {
    pub opened: u64,
    pub half_opened: u64,
    pub closed: u64,
}

/// A call was refused because the breaker is open (or its one trial is out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

/// What a caller holds while its call runs: whether it is the half-open
/// trial, and the failure epoch it entered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ticket {
    pub trial: bool,
    epoch: u64,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    reset: Duration,
    /// Fast path: readers check this without the lock.
    state: AtomicU8,
    failures: AtomicU32,
    /// Bumped by every counted failure; see the module doc.
    epoch: AtomicU64,
    slow: Mutex<Slow>,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
}

#[derive(Debug)]
struct Slow {
    opened_at: Option<Instant>,
    trial_out: bool,
    last_probe: Option<Instant>,
}

/// How often a refused caller may start a connection probe.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

impl Breaker {
    pub fn new(threshold: u32, reset: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            reset,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
            slow: Mutex::new(Slow {
                opened_at: None,
                trial_out: false,
                last_probe: None,
            }),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// The state now. An open breaker whose reset time has passed reports
    /// half-open: the next call will be its trial.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => {
                let slow = self.lock();
                match slow.opened_at {
                    Some(at) if at.elapsed() >= self.reset => BreakerState::HalfOpen,
                    _ => BreakerState::Open,
                }
            }
        }
    }

    pub fn transitions(&self) -> Transitions {
        Transitions {
            opened: self.opened.load(Ordering::Relaxed),
            half_opened: self.half_opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }

    /// Consecutive connection-level failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Asks to make a call. Closed: yes. Open: no, with the time left.
    /// Half-open: yes for exactly one caller at a time (the trial).
    pub fn enter(&self) -> Result<Ticket, Rejected> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(Ticket {
                trial: false,
                epoch,
            });
        }
        let mut slow = self.lock();
        let state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return Ok(Ticket {
                trial: false,
                epoch,
            });
        }
        let opened_at = slow.opened_at.unwrap_or_else(Instant::now);
        let elapsed = opened_at.elapsed();
        if state == OPEN && elapsed < self.reset {
            return Err(Rejected {
                retry_after: self.reset - elapsed,
            });
        }
        if slow.trial_out {
            return Err(Rejected {
                retry_after: Duration::from_secs(1),
            });
        }
        if state == OPEN {
            self.state.store(HALF_OPEN, Ordering::Release);
            self.half_opened.fetch_add(1, Ordering::Relaxed);
            tracing::info!("circuit breaker half-open: letting one trial call through");
        }
        slow.trial_out = true;
        Ok(Ticket { trial: true, epoch })
    }

    /// The call reached the database and the connection worked.
    pub fn success(&self, ticket: Ticket) {
        if !ticket.trial
            && self.state.load(Ordering::Acquire) == CLOSED
            && self.failures.load(Ordering::Relaxed) == 0
        {
            return;
        }
        let mut slow = self.lock();
        self.failures.store(0, Ordering::Relaxed);
        if ticket.trial {
            slow.trial_out = false;
        }
        if ticket.trial && self.state.load(Ordering::Acquire) != CLOSED {
            slow.opened_at = None;
            self.state.store(CLOSED, Ordering::Release);
            self.closed.fetch_add(1, Ordering::Relaxed);
            tracing::info!("circuit breaker closed: the database answers again");
        }
    }

    /// Closes the breaker from outside a call: start-up retries (which do
    /// not go through the breaker) have reached the database.
    pub fn reset(&self) {
        self.success(Ticket {
            trial: true,
            epoch: 0,
        });
    }

    /// A new connection was opened: the database answers, whatever calls
    /// in flight before may still report. Closes a breaker that was not
    /// open (an open one waits for its trial, so `DB_BREAKER_RESET` keeps
    /// its meaning).
    pub fn connected(&self) {
        if self.state.load(Ordering::Acquire) == CLOSED {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Whether a refused caller should have the pool try one connection
    /// now: the breaker is open and no probe started in the last second.
    pub fn probe_due(&self) -> bool {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return false;
        }
        let mut slow = self.lock();
        let due = slow
            .last_probe
            .is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
        if due {
            slow.last_probe = Some(Instant::now());
        }
        due
    }

    /// A probe opened a new connection: the database answers again.
    pub fn probe_succeeded(&self) {
        let mut slow = self.lock();
        self.failures.store(0, Ordering::Relaxed);
        if self.state.load(Ordering::Acquire) != CLOSED {
            slow.opened_at = None;
            slow.last_probe = None;
            self.state.store(CLOSED, Ordering::Release);
            self.closed.fetch_add(1, Ordering::Relaxed);
            tracing::info!("circuit breaker closed: a new connection opened");
        }
    }

    /// The call failed at the connection level.
    pub fn failure(&self, ticket: Ticket) {
        let mut slow = self.lock();
        if !ticket.trial && ticket.epoch != self.epoch.load(Ordering::Acquire) {
            // Another failure was counted after this call entered: the
            // same event (a restart) seen by one more call in flight.
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if ticket.trial {
            slow.trial_out = false;
        }
        let state = self.state.load(Ordering::Acquire);
        let trips = (state == CLOSED && failures >= self.threshold) || ticket.trial;
        if trips {
            slow.opened_at = Some(Instant::now());
            self.state.store(OPEN, Ordering::Release);
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                failures,
                reset_secs = self.reset.as_secs_f64(),
                "circuit breaker open: database calls fail fast until the reset time"
            );
        }
    }

    /// The call ended without saying anything about the connection (it was
    /// cancelled, or failed for its own reasons): free the trial slot.
    pub fn neutral(&self, ticket: Ticket) {
        if ticket.trial {
            self.lock().trial_out = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let b = Breaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            let t = b.enter().unwrap();
            b.failure(t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let t = b.enter().unwrap();
        b.success(t); // a success in between resets the count
        for _ in 0..3 {
            let t = b.enter().unwrap();
            b.failure(t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.enter().unwrap_err();
        assert!(rejected.retry_after > Duration::from_secs(59));
        assert_eq!(b.transitions().opened, 1);
    }

    #[test]
    fn calls_in_flight_when_the_server_goes_away_count_once() {
        let b = Breaker::new(3, Duration::from_secs(60));
        let in_flight: Vec<Ticket> = (0..16).map(|_| b.enter().unwrap()).collect();
        for t in in_flight {
            b.failure(t);
        }
        assert_eq!(b.failures(), 1, "sixteen casualties of one restart");
        assert_eq!(b.state(), BreakerState::Closed);
        // Calls made after that failure count again, one after another.
        b.failure(b.enter().unwrap());
        b.failure(b.enter().unwrap());
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_new_connection_resets_the_count_of_a_closed_breaker() {
        let b = Breaker::new(3, Duration::from_secs(60));
        b.failure(b.enter().unwrap());
        b.failure(b.enter().unwrap());
        b.connected();
        assert_eq!(b.failures(), 0);
        b.failure(b.enter().unwrap());
        b.failure(b.enter().unwrap());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn an_open_breaker_allows_one_probe_a_second_and_a_good_one_closes_it() {
        let b = Breaker::new(1, Duration::from_secs(60));
        assert!(!b.probe_due(), "no probe while closed");
        b.failure(b.enter().unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.probe_due());
        assert!(!b.probe_due(), "one probe at a time a second");
        b.probe_succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.transitions().closed, 1);
        assert!(!b.enter().unwrap().trial);
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through() {
        let b = Breaker::new(1, Duration::from_millis(0));
        let t = b.enter().unwrap();
        b.failure(t);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.enter().unwrap();
        assert!(trial.trial);
        assert!(
            b.enter().is_err(),
            "a second caller must wait for the trial"
        );
        b.failure(trial);
        assert_eq!(b.transitions().opened, 2, "a failed trial re-opens");
        let trial = b.enter().unwrap();
        b.success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.transitions().closed, 1);
        assert!(!b.enter().unwrap().trial);
    }

    #[test]
    fn an_abandoned_trial_frees_the_slot() {
        let b = Breaker::new(1, Duration::from_millis(0));
        b.failure(b.enter().unwrap());
        let trial = b.enter().unwrap();
        b.neutral(trial);
        assert!(b.enter().unwrap().trial);
    }
}
