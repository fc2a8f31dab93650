//! More pools than the server has slots: 4 instances with pools of 15
//! against `max_connections = 40`. Under a concurrent load every answer is
//! a success or a 503 `unavailable` with `Retry-After` (the server refusing
//! a connection for lack of slots is a capacity limit, not an outage and
//! never a 500), and every instance serves again once the load is gone.

use std::time::Duration;

use dave::config::Config;

use crate::helpers::{
    client, eventually, fixture_conversation, instance, load, migrated_database_on, USER_KEY, WAIT,
};

const INSTANCES: usize = 4;
const CLIENTS_PER_INSTANCE: usize = 16;
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_pools_of_fifteen_on_forty_slots_answer_2xx_or_503_and_recover() {
    let cluster = pgkit::testing::dedicated_cluster_with(&[("max_connections", "40")]).await;
    let database = migrated_database_on(&cluster).await;
    let mut config = Config::for_tests(database.url());
    config.db.pool_min_size = 2;
    config.db.pool_max_size = 15;
    config.db.pool_timeout = Duration::from_secs(2);
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(instance(config.clone()).await);
    }
    let addresses: Vec<String> = instances.iter().map(|(a, _)| a.clone()).collect();
    let id = fixture_conversation(&addresses[0], "crowded").await;
    let answers = load(&addresses, CLIENTS_PER_INSTANCE, ROUNDS, &id).await;
    assert_eq!(answers.len(), INSTANCES * CLIENTS_PER_INSTANCE * ROUNDS);
    for a in &answers {
        let ok = (200..300).contains(&a.status);
        let unavailable = a.status == 503 && a.retry_after && a.code == "unavailable";
        assert!(ok || unavailable, "{a:?}");
    }
    let served = answers
        .iter()
        .filter(|a| (200..300).contains(&a.status))
        .count();
    let refused = answers.len() - served;
    eprintln!(
        "connection budget: {served} served, {refused} answered 503 (4 pools of 15 on 37 slots)"
    );

    let http = client();
    for address in &addresses {
        eventually("the instance serves again", WAIT, || async {
            let status = http
                .get(format!("{address}/api/v1/conversations/{id}"))
                .header("X-API-Key", USER_KEY)
                .send()
                .await
                .ok()?
                .status();
            (status == 200).then_some(())
        })
        .await;
    }
    drop(instances);
}
