//! A caller that hangs up mid-statement (a client gives up; Cloud Run's
//! request timeout fires) must not delay the next caller, even with a pool of
//! one connection: the abandoned connection may not go back to the pool with
//! its statement still running, nor with a transaction open in which later
//! callers' writes would ride and be lost.

use std::time::Duration;

use crate::helpers::{eventually, WAIT};
use crate::support::{
    committed, lock_conversation, serial, timed, wait_for_blocked, waiting_on_locks, Answer,
    Service, POOL_TIMEOUT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_hangs_up_does_not_delay_the_next_one() {
    let _serial = serial().await;
    let service = Service::start(&[
        ("DB_POOL_MIN_SIZE", "1"),
        ("DB_POOL_MAX_SIZE", "1"),
        // A's statement must still be running when B arrives: only the
        // hang-up may end it, not the server's statement timeout.
        ("DB_QUERY_TIMEOUT", "30"),
    ])
    .await;
    let locked = service.conversation("locked").await;
    let free = service.conversation("free").await;
    let side = service.side();
    let mut lock = lock_conversation(&side, locked).await;

    // A: its insert waits on the row lock; then its client hangs up.
    let a = tokio::spawn(service.post_message(locked, "cancel-a").send());
    wait_for_blocked(&side, 1).await;
    a.abort();
    let _ = a.await;

    // B, while the test still holds the lock: a read, then a write elsewhere.
    let bound = POOL_TIMEOUT + Duration::from_secs(1);
    let read = service
        .http
        .get(format!("{}/api/v1/conversations/{free}", service.url))
        .bearer_auth(service.token());
    let (read_answer, read_took) = timed(read, 200).await;
    let (write_answer, write_took) = timed(service.post_message(free, "cancel-b"), 201).await;
    let still_waiting = waiting_on_locks(&side).await;
    let b_visible = committed(&side, "cancel-b").await;
    eprintln!(
        "cancel: B's read {read_answer} after {} ms, B's write {write_answer} after {} ms \
         (bound {} ms); service sessions still waiting on the lock: {still_waiting:?}; \
         B's write visible to another session: {b_visible}",
        read_took.as_millis(),
        write_took.as_millis(),
        bound.as_millis()
    );
    assert!(
        matches!(read_answer, Answer::Ok) && read_took <= bound,
        "B's read: {read_answer} after {read_took:?} (bound {bound:?})"
    );
    assert!(
        matches!(write_answer, Answer::Ok) && write_took <= bound,
        "B's write: {write_answer} after {write_took:?} (bound {bound:?})"
    );
    // Acknowledged means committed now, not riding in a transaction that A
    // left open.
    assert_eq!(b_visible, 1, "B's acknowledged write is not committed");

    // Nor does A's statement run on after its caller left: the service sends
    // a cancel request for it before discarding its connection.
    eventually("A's abandoned statement to be cancelled", WAIT, || async {
        (waiting_on_locks(&side).await? == 0).then_some(())
    })
    .await;

    lock.batch("COMMIT").await.expect("release the lock");
    drop(lock);
    // A was never acknowledged: stored or not is fine; B's write stays.
    let a_stored = committed(&side, "cancel-a").await;
    assert_eq!(committed(&side, "cancel-b").await, 1);
    eprintln!("cancel: A (hung up) stored after the lock went: {a_stored}");
    side.close(Duration::from_secs(1)).await;
}
