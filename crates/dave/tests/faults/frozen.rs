//! A frozen database (SIGSTOP on the postmaster and every backend): the host
//! stalls, the network holds the connections open, nothing answers. Only a
//! client-side bound on each database call turns that into a prompt 503;
//! after SIGCONT the same process must serve again, without a restart.

use std::time::{Duration, Instant};

use crate::helpers::{eventually, WAIT};
use crate::support::{serial, timed, Answer, Service, BREAKER_RESET, QUERY_TIMEOUT};

/// Beyond the query timeout: the client-side margin plus scheduling.
const MARGIN: Duration = Duration::from_secs(2);
/// Readiness answers within 2 s (DESIGN.md §3).
const READY_BUDGET: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_gives_prompt_503s_and_service_resumes_after_sigcont() {
    let _serial = serial().await;
    let service = Service::start(&[("DB_POOL_MIN_SIZE", "2"), ("DB_POOL_MAX_SIZE", "4")]).await;
    let conversation = service.conversation("frozen").await;
    let read = || {
        service
            .http
            .get(format!(
                "{}/api/v1/conversations/{conversation}",
                service.url
            ))
            .bearer_auth(service.token())
    };
    let ready = || service.http.get(format!("{}/health/ready", service.url));
    let (answer, _) = timed(read(), 200).await;
    assert!(matches!(answer, Answer::Ok), "before the freeze: {answer}");

    let frozen = service.cluster.freeze().expect("the cluster freezes");
    eprintln!("frozen: stopped {} server processes", frozen.pids().len());
    // Two reads in a row: the first meets pooled connections, the second
    // whatever the first left behind (a new connection attempt, or the breaker).
    let api_bound = QUERY_TIMEOUT + MARGIN;
    let mut frozen_answers = Vec::new();
    for _ in 0..2 {
        frozen_answers.push(("GET conversation", api_bound, timed(read(), 200).await));
    }
    let ready_bound = READY_BUDGET + Duration::from_secs(1);
    frozen_answers.push(("GET /health/ready", ready_bound, timed(ready(), 200).await));
    for (what, bound, (answer, took)) in &frozen_answers {
        eprintln!(
            "frozen: {what}: {answer} after {} ms (bound {} ms)",
            took.as_millis(),
            bound.as_millis()
        );
    }

    frozen.thaw();
    let thawed = Instant::now();
    let recovery_bound = BREAKER_RESET + QUERY_TIMEOUT + MARGIN;
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            let (answer, _) = timed(read(), 200).await;
            if matches!(answer, Answer::Ok) {
                return thawed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!(
        "frozen: first 200 after SIGCONT: {recovered:?} (bound {} ms)",
        recovery_bound.as_millis()
    );

    for (what, bound, (answer, took)) in &frozen_answers {
        let is_503 = match *what {
            "GET /health/ready" => matches!(answer, Answer::Other(503, _)),
            _ => matches!(answer, Answer::Unavailable { retry_after: true }),
        };
        assert!(
            is_503 && took <= bound,
            "{what} while frozen: {answer} after {took:?}, want a 503 within {bound:?}"
        );
    }
    let recovered = recovered.expect("a 200 after SIGCONT");
    assert!(recovered <= recovery_bound, "recovered after {recovered:?}");
    eventually("readiness 200 after the thaw", WAIT, || async {
        let response = ready().send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    // Still the same process: nothing restarted it.
    let mut service = service;
    assert!(
        service.child.child.try_wait().unwrap().is_none(),
        "dave exited:\n{}",
        service.child.output()
    );
}
