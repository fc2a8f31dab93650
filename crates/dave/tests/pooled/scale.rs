//! Many instances, one transaction pooler: 4 dave instances with pools of
//! 15 (60 client connections) share a PgBouncer whose server pool is 10,
//! as Cloud Run instances share Managed Connection Pooling. Under a
//! concurrent load every answer is a success: callers queue in PgBouncer
//! for a server, not in front of a refusal.

use std::time::Duration;

use dave::config::Config;
use pgkit::testing::pgbouncer::PgBouncer;

use crate::helpers::{
    fixture_conversation, instance, load, migrated_database, set_session_defaults, Answer,
};

const INSTANCES: usize = 4;
const CLIENTS_PER_INSTANCE: usize = 16;
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_through_a_server_pool_of_ten_answer_every_request() {
    let database = migrated_database().await;
    let mut config = Config::for_tests(database.url());
    config.db.pool_min_size = 2;
    config.db.pool_max_size = 15;
    config.db.pool_timeout = Duration::from_secs(10);
    set_session_defaults(&config, &database).await;
    let bouncer = PgBouncer::start(database.socket_dir(), 10).await;
    config.db.dsn = Some(pgkit::dsn::Dsn::parse(&bouncer.url(database.name())).unwrap());
    config.db.pooler = pgkit::pooler::Pooler::Transaction;

    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(instance(config.clone()).await);
    }
    let addresses: Vec<String> = instances.iter().map(|(a, _)| a.clone()).collect();
    let id = fixture_conversation(&addresses[0], "shared").await;
    let answers = load(&addresses, CLIENTS_PER_INSTANCE, ROUNDS, &id).await;
    assert_eq!(answers.len(), INSTANCES * CLIENTS_PER_INSTANCE * ROUNDS);
    let failed: Vec<&Answer> = answers
        .iter()
        .filter(|a| !(200..300).contains(&a.status))
        .collect();
    assert!(failed.is_empty(), "not every answer was 2xx: {failed:?}");
    drop(instances);
}
