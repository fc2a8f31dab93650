//! SIGTERM with requests in flight. Cloud Run sends SIGTERM on every
//! scale-in and kills 10 s later: requests already inside the database must
//! still get their answer when they finish within the grace period, new
//! connections must be refused at once, and the process must exit 0 before
//! the kill, even when a request is still stuck when the grace period ends.
//!
//! "In flight" is made exact with a row lock the test holds: the five
//! inserts are seen waiting on it in `pg_stat_activity` before the signal,
//! and finish only when the test lets them.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::helpers::{eventually, WAIT};
use crate::support::{
    committed, lock_conversation, serial, timed, wait_for_blocked, Answer, Service,
};

/// Cloud Run's SIGKILL comes 10 s after SIGTERM.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_requests_blocked_at_sigterm_all_get_their_201() {
    let _serial = serial().await;
    // Statements must outlive the lock the test holds, so no short query
    // timeout here.
    let mut service = Service::start(&[
        ("SHUTDOWN_GRACE", "8"),
        ("DB_QUERY_TIMEOUT", "30"),
        ("DB_POOL_MAX_SIZE", "8"),
    ])
    .await;
    let conversation = service.conversation("sigterm").await;
    let side = service.side();
    let mut lock = lock_conversation(&side, conversation).await;

    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            let request = service.post_message(conversation, &format!("sigterm-{i}"));
            tokio::spawn(timed(request, 201))
        })
        .collect();
    wait_for_blocked(&side, 5).await;

    let signalled = Instant::now();
    service.child.signal(Signal::TERM);
    let addr = service.addr();
    eventually("the listener to refuse connections", WAIT, || async {
        tokio::net::TcpStream::connect(&addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        service.child.child.try_wait().unwrap().is_none(),
        "dave exited with requests in flight:\n{}",
        service.child.output()
    );
    assert!(in_flight.iter().all(|r| !r.is_finished()));

    lock.batch("COMMIT").await.expect("release the lock");
    drop(lock);
    for (i, request) in in_flight.into_iter().enumerate() {
        let (answer, took) = tokio::time::timeout(WAIT, request)
            .await
            .expect("an answer within the bound")
            .expect("the request task did not panic");
        assert!(
            matches!(answer, Answer::Ok),
            "request {i} after {took:?}: {answer}"
        );
    }
    let status = service.child.wait_exit(WAIT).await;
    let exited = signalled.elapsed();
    eprintln!(
        "sigterm: five 201s, exit {status} {} ms after SIGTERM",
        exited.as_millis()
    );
    assert_eq!(status.code(), Some(0), "{}", service.child.output());
    assert!(exited < KILL_DEADLINE, "exit took {exited:?}");
    for i in 0..5 {
        assert_eq!(committed(&side, &format!("sigterm-{i}")).await, 1);
    }
    side.close(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_blocked_when_the_grace_period_ends_is_cut() {
    let _serial = serial().await;
    let grace = Duration::from_secs(2);
    let mut service = Service::start(&[("SHUTDOWN_GRACE", "2"), ("DB_QUERY_TIMEOUT", "30")]).await;
    let conversation = service.conversation("stuck at sigterm").await;
    let side = service.side();
    let mut lock = lock_conversation(&side, conversation).await;
    let stuck = tokio::spawn(timed(service.post_message(conversation, "stuck"), 201));
    wait_for_blocked(&side, 1).await;

    let signalled = Instant::now();
    service.child.signal(Signal::TERM);
    let status = service.child.wait_exit(KILL_DEADLINE).await;
    let exited = signalled.elapsed();
    let (answer, _) = tokio::time::timeout(WAIT, stuck)
        .await
        .expect("the cut request ends")
        .expect("the request task did not panic");
    eprintln!(
        "sigterm past grace: exit {status} {} ms after SIGTERM (grace {} ms); the stuck request: {answer}",
        exited.as_millis(),
        grace.as_millis()
    );
    assert_eq!(status.code(), Some(0), "{}", service.child.output());
    assert!(
        exited >= grace,
        "the grace period was not waited: {exited:?}"
    );
    // The remaining tasks are aborted at the end of the grace period and
    // the pool closes within a second, so the exit follows the grace period
    // closely: `SHUTDOWN_GRACE` can then be set close to Cloud Run's 10 s.
    assert!(
        exited < grace + Duration::from_millis(1500),
        "exit {exited:?} after SIGTERM, grace {grace:?}"
    );
    assert!(
        !matches!(answer, Answer::Ok),
        "a request cut at the end of the grace period got a 201"
    );
    lock.batch("ROLLBACK").await.expect("release the lock");
    drop(lock);
    side.close(Duration::from_secs(1)).await;
}
