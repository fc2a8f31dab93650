//! Many instances, one transaction pooler: 4 dave instances with pools of
//! 15 (60 client connections) share a PgBouncer whose server pool is 10,
//! as Cloud Run instances share Managed Connection Pooling. Under a
//! concurrent load every answer is a success: callers queue in PgBouncer
//! for a server, not in front of a refusal.

use std::time::Duration;

use dave::config::Config;
use futures_util::future::join_all;
use pgkit::testing::pgbouncer::PgBouncer;
use serde_json::{json, Value};

use crate::helpers::{client, instance, migrated_database, set_session_defaults, USER_KEY};

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
    let http = client();
    let created: Value = http
        .post(format!("{}/api/v1/conversations", instances[0].0))
        .header("X-API-Key", USER_KEY)
        .json(&json!({"title": "shared"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let load = instances.iter().flat_map(|(address, _)| {
        (0..CLIENTS_PER_INSTANCE).map(|c| {
            let (http, address, id) = (http.clone(), address.clone(), id.clone());
            async move {
                let mut statuses = Vec::new();
                for round in 0..ROUNDS {
                    let reply = if round % 2 == 0 {
                        http.get(format!("{address}/api/v1/conversations/{id}"))
                            .header("X-API-Key", USER_KEY)
                            .send()
                            .await
                    } else {
                        http.post(format!("{address}/api/v1/conversations/{id}/messages"))
                            .header("X-API-Key", USER_KEY)
                            .json(&json!({"role": "user", "content": format!("client {c} round {round}")}))
                            .send()
                            .await
                    };
                    statuses.push(reply.map(|r| r.status().as_u16()).unwrap_or(0));
                }
                statuses
            }
        })
    });
    let statuses: Vec<u16> = join_all(load).await.into_iter().flatten().collect();
    let failed: Vec<&u16> = statuses
        .iter()
        .filter(|s| !(200..300).contains(*s))
        .collect();
    assert_eq!(statuses.len(), INSTANCES * CLIENTS_PER_INSTANCE * ROUNDS);
    assert!(failed.is_empty(), "not every answer was 2xx: {failed:?}");
    drop(instances);
}
