//! The acknowledged-writes ledger: 16 writers post messages with unique
//! markers while PostgreSQL is restarted 10 times, alternating a fast
//! shutdown and an immediate one (a crash, then WAL recovery). Every 201 is a
//! promise that the marker is stored; everything else must be a clean 503.
//!
//! Restarts happen at moments decided by progress (a number of 201s since the
//! last restart), not by the clock, so a slow machine runs the same scenario.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::{
    serial, timed, Answer, Service, BREAKER_RESET, CONNECT_TIMEOUT, QUERY_TIMEOUT,
};

const WRITERS: usize = 16;
const RESTARTS: usize = 10;
/// 201s between two restarts: the service must be writing when it is hit.
const ACKS_PER_ROUND: u64 = 50;
/// The longest a round may take to reach its 201s before the test fails: a
/// service that does not recover must not hang the suite.
const ROUND_BOUND: Duration = Duration::from_secs(20);
/// What a request may take beyond connect timeout + query timeout.
const MARGIN: Duration = Duration::from_secs(1);
/// A writer that got no 201 paces itself, so 16 writers spinning on fast
/// 503s do not starve the restarting server of the 2 cores.
const PACE: Duration = Duration::from_millis(50);

/// What every writer reports into.
#[derive(Default)]
struct Ledger {
    acked: Mutex<HashSet<String>>,
    /// Every answer that was not a 201, with its marker and duration.
    others: Mutex<Vec<(String, Answer, Duration)>>,
    slowest: Mutex<Duration>,
    acks_this_round: AtomicU64,
    /// When the server last came back, and when the first 201 after it did.
    round: Mutex<Round>,
}

#[derive(Default)]
struct Round {
    up_at: Option<Instant>,
    first_ack: Option<Duration>,
}

impl Ledger {
    fn record(&self, marker: String, answer: Answer, took: Duration) {
        {
            let mut slowest = self.slowest.lock().unwrap();
            *slowest = (*slowest).max(took);
        }
        match answer {
            Answer::Ok => {
                self.acked.lock().unwrap().insert(marker);
                self.acks_this_round.fetch_add(1, Ordering::SeqCst);
                let mut round = self.round.lock().unwrap();
                if let (Some(up_at), None) = (round.up_at, round.first_ack) {
                    round.first_ack = Some(up_at.elapsed());
                }
            }
            other => self.others.lock().unwrap().push((marker, other, took)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_ten_restarts() {
    let _serial = serial().await;
    run(
        RESTARTS,
        BREAKER_RESET,
        BREAKER_RESET + Duration::from_secs(1),
    )
    .await;
}

/// A restart is one event, not a streak of failures: with the breaker's
/// production reset (30 s), service must come back as soon as PostgreSQL
/// accepts connections again, not 30 s later. The bound is a connect timeout
/// and a second, far below the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_hold_the_breaker_open_for_its_reset() {
    let _serial = serial().await;
    run(
        2,
        Duration::from_secs(30),
        CONNECT_TIMEOUT + Duration::from_secs(1),
    )
    .await;
}

/// The ledger with `restarts` restarts (fast and immediate in turn), the
/// breaker's reset set to `breaker_reset`, and `recovery_bound` for the first
/// 201 after each restart.
async fn run(restarts: usize, breaker_reset: Duration, recovery_bound: Duration) {
    let reset = format!("{}", breaker_reset.as_secs_f64());
    let service = Arc::new(
        Service::start(&[
            ("DB_POOL_MIN_SIZE", "2"),
            ("DB_POOL_MAX_SIZE", "8"),
            ("DB_BREAKER_RESET", &reset),
        ])
        .await,
    );
    let mut conversations = Vec::new();
    for writer in 0..WRITERS {
        conversations.push(service.conversation(&format!("ledger {writer}")).await);
    }

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(writer, &conversation)| {
            let (service, ledger, stop, sent) = (
                Arc::clone(&service),
                Arc::clone(&ledger),
                Arc::clone(&stop),
                Arc::clone(&sent),
            );
            tokio::spawn(write(writer, conversation, service, ledger, stop, sent))
        })
        .collect();

    let mut recoveries: Vec<Option<Duration>> = Vec::new();
    let mut stalled = None;
    for restart in 0..=restarts {
        // Progress first: the writers must be acknowledged before each hit
        // (and once more after the last one, which measures its recovery).
        let round_started = Instant::now();
        while ledger.acks_this_round.load(Ordering::SeqCst) < ACKS_PER_ROUND {
            if round_started.elapsed() > ROUND_BOUND {
                stalled = Some(restart);
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if restart > 0 {
            recoveries.push(ledger.round.lock().unwrap().first_ack);
        }
        if stalled.is_some() || restart == restarts {
            break;
        }
        if restart % 2 == 0 {
            service.cluster.stop().await.expect("fast shutdown");
        } else {
            service
                .cluster
                .stop_immediate()
                .await
                .expect("immediate shutdown");
        }
        ledger.acks_this_round.store(0, Ordering::SeqCst);
        *ledger.round.lock().unwrap() = Round::default();
        service.cluster.start().await.expect("the server restarts");
        ledger.round.lock().unwrap().up_at = Some(Instant::now());
    }
    if let Some(round) = stalled {
        // What the service says about itself, to tell the breaker from the pool.
        let ready = match service
            .http
            .get(format!("{}/health/ready", service.url))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        eprintln!("ledger: round {round} stalled; /health/ready says {ready}");
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("writers stop within their request bound")
            .expect("no writer panicked");
    }

    // The ledger against the table, through a fresh pool (the server restarted).
    let side = service.side();
    let stored: HashSet<String> = {
        let mut conn = side.acquire().await.expect("a side connection");
        let rows: Vec<String> = conn
            .client()
            .query(
                "SELECT content FROM ai_messages WHERE content LIKE 'ledger-%'",
                &[],
            )
            .await
            .expect("the markers")
            .iter()
            .map(|row| row.get(0))
            .collect();
        rows.into_iter().collect()
    };
    side.close(Duration::from_secs(1)).await;

    let acked = ledger.acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    let committed_without_201 = stored.difference(&acked).count();
    let others = ledger.others.lock().unwrap().clone();
    let clean_503 = others
        .iter()
        .filter(|(_, a, _)| matches!(a, Answer::Unavailable { retry_after: true }))
        .count();
    let not_clean: Vec<_> = others
        .iter()
        .filter(|(_, a, _)| !matches!(a, Answer::Unavailable { retry_after: true }))
        .collect();
    let request_bound = CONNECT_TIMEOUT + QUERY_TIMEOUT + MARGIN;
    let slow: Vec<_> = others
        .iter()
        .filter(|(_, _, took)| *took > request_bound)
        .collect();
    let slowest = *ledger.slowest.lock().unwrap();
    let recovery_ms: Vec<String> = recoveries
        .iter()
        .map(|r| r.map_or("none".to_owned(), |d| format!("{}", d.as_millis())))
        .collect();

    eprintln!(
        "ledger: {} requests, {} restarts done (breaker reset {} s){}; acked {}, lost {}, \
         committed without 201 {}, 503 unavailable with Retry-After {}, other answers {}, \
         slowest answer {} ms (bound {} ms), first 201 after each restart (ms): [{}] (bound {} ms)",
        sent.load(Ordering::SeqCst),
        recoveries.len(),
        breaker_reset.as_secs_f64(),
        stalled.map_or(String::new(), |r| format!(
            " (stalled: round {r} got fewer than {ACKS_PER_ROUND} 201s in {} s)",
            ROUND_BOUND.as_secs()
        )),
        acked.len(),
        lost.len(),
        committed_without_201,
        clean_503,
        not_clean.len(),
        slowest.as_millis(),
        request_bound.as_millis(),
        recovery_ms.join(", "),
        recovery_bound.as_millis(),
    );
    for (marker, answer, took) in not_clean.iter().take(10) {
        eprintln!("ledger: not a clean 503: {marker} after {took:?}: {answer}");
    }

    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(stalled, None, "the service stopped acknowledging writes");
    assert!(
        not_clean.is_empty(),
        "{} answers were neither 201 nor 503 unavailable with Retry-After, e.g. {:?}",
        not_clean.len(),
        not_clean.first()
    );
    assert!(
        slow.is_empty() && slowest <= request_bound,
        "answers slower than {request_bound:?}: slowest {slowest:?}, e.g. {:?}",
        slow.first()
    );
    for (restart, recovery) in recoveries.iter().enumerate() {
        let recovery = recovery.expect("a 201 after every restart");
        assert!(
            recovery <= recovery_bound,
            "restart {}: first 201 after {recovery:?}, bound {recovery_bound:?}",
            restart + 1
        );
    }
}

/// One writer: posts `ledger-<writer>-<n>` until told to stop.
async fn write(
    writer: usize,
    conversation: Uuid,
    service: Arc<Service>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        sent.fetch_add(1, Ordering::SeqCst);
        let marker = format!("ledger-{writer}-{n}");
        let (answer, took) = timed(service.post_message(conversation, &marker), 201).await;
        let acked = matches!(answer, Answer::Ok);
        ledger.record(marker, answer, took);
        if !acked {
            tokio::time::sleep(PACE).await;
        }
    }
}
