//! More pools than the server has slots: 4 instances with pools of 15
//! against `max_connections = 40`. Under a concurrent load every answer is
//! a success or a 503 `unavailable` with `Retry-After` (the server refusing
//! a connection for lack of slots is a capacity limit, not an outage and
//! never a 500), and every instance serves again once the load is gone.

use std::time::Duration;

use dave::config::Config;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{client, eventually, instance, migrated_database_on, USER_KEY, WAIT};

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
    let http = client();
    let created: Value = http
        .post(format!("{}/api/v1/conversations", instances[0].0))
        .header("X-API-Key", USER_KEY)
        .json(&json!({"title": "crowded"}))
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
                let mut answers = Vec::new();
                for round in 0..ROUNDS {
                    // A slow statement holds its connection, so the pools grow.
                    let reply = if round % 2 == 0 {
                        http.get(format!("{address}/api/v1/conversations/{id}/messages?limit=100"))
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
                    let reply = reply.expect("an answer, not a dropped connection");
                    let status = reply.status().as_u16();
                    let retry_after = reply.headers().contains_key("retry-after");
                    let body: Value = reply.json().await.unwrap_or(Value::Null);
                    answers.push((status, retry_after, body["error"]["code"].clone()));
                }
                answers
            }
        })
    });
    let answers: Vec<(u16, bool, Value)> = join_all(load).await.into_iter().flatten().collect();
    assert_eq!(answers.len(), INSTANCES * CLIENTS_PER_INSTANCE * ROUNDS);
    for (status, retry_after, code) in &answers {
        let ok = (200..300).contains(status);
        let unavailable = *status == 503 && *retry_after && code == "unavailable";
        assert!(
            ok || unavailable,
            "{status} {code} (Retry-After: {retry_after})"
        );
    }
    let served = answers.iter().filter(|a| (200..300).contains(&a.0)).count();
    let refused = answers.len() - served;
    eprintln!(
        "connection budget: {served} served, {refused} answered 503 (4 pools of 15 on 37 slots)"
    );

    for (address, _) in &instances {
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
