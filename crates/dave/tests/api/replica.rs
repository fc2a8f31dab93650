//! `DB_READ_DSN` with a real streaming replica (`pg_basebackup -R` by the
//! harness), issue 11 §2: with replay paused, a caller that just wrote
//! reads, lists and pages through what it wrote, every time; with replay
//! running, token-carrying reads and knowledge search are served by the
//! replica (counted); stopping the replica changes no answer and readiness
//! stays 200.

use std::time::Duration;

use pgkit::dsn::Dsn;
use pgkit::testing::{replica::Replica, replicable_cluster};
use reqwest::RequestBuilder;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{eventually, migrated_database_on, start, TestApp, WAIT};

const TOKEN: &str = "X-Consistency-Token";

/// A caller with its last consistency token, as a client library keeps it.
struct Caller<'a> {
    app: &'a TestApp,
    bearer: String,
    token: Option<String>,
}

impl Caller<'_> {
    fn with_auth(&self, request: RequestBuilder) -> RequestBuilder {
        let request = request.bearer_auth(&self.bearer);
        match &self.token {
            Some(token) => request.header(TOKEN, token),
            None => request,
        }
    }

    /// A write; keeps the token its answer carries.
    async fn post(&mut self, path: &str, body: Value) -> Value {
        let answer = self
            .with_auth(self.app.client.post(self.app.url(path)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        let token = answer
            .headers()
            .get(TOKEN)
            .expect("a write carries a token");
        self.token = Some(token.to_str().unwrap().to_owned());
        answer.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self
            .with_auth(self.app.client.get(self.app.url(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        answer.json().await.unwrap()
    }
}

fn replica_reads(app: &TestApp) -> u64 {
    app.db.replica_status().expect("a replica").reads_replica
}

async fn app_with_replica() -> (pgkit::testing::DedicatedCluster, Replica, TestApp) {
    let primary = replicable_cluster().await;
    let database = migrated_database_on(&primary).await;
    let replica = Replica::start(&primary).await;
    let mut config = dave::config::Config::for_tests(database.url());
    config.db.read_dsn = Some(Dsn::parse(&replica.url(database.name())).unwrap());
    let app = start(config, database).await;
    (primary, replica, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reads_its_writes_while_replay_is_paused_and_the_replica_serves_once_it_caught_up()
{
    let (primary, replica, app) = app_with_replica().await;
    let mut caller = Caller {
        app: &app,
        bearer: app.bearer(Uuid::new_v4(), false),
        token: None,
    };

    replica.pause_replay().await;
    let created = caller
        .post("/api/v1/conversations", json!({ "title": "paused" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        caller
            .post(
                &format!("/api/v1/conversations/{id}/messages"),
                json!({ "role": "user", "content": format!("message {n}") }),
            )
            .await;
    }
    let before = replica_reads(&app);
    for _ in 0..10 {
        let read = caller.get(&format!("/api/v1/conversations/{id}")).await;
        assert_eq!(read["title"], "paused");
        let listed = caller.get("/api/v1/conversations").await;
        assert_eq!(listed["items"][0]["id"], id.as_str());
        let mut seen = Vec::new();
        let mut path = format!("/api/v1/conversations/{id}/messages?limit=1");
        loop {
            let page = caller.get(&path).await;
            seen.push(page["items"][0]["content"].as_str().unwrap().to_owned());
            match page["next_cursor"].as_str() {
                Some(next) => {
                    path = format!("/api/v1/conversations/{id}/messages?limit=1&cursor={next}")
                }
                None => break,
            }
        }
        assert_eq!(seen, ["message 0", "message 1", "message 2"]);
    }
    assert_eq!(
        replica_reads(&app),
        before,
        "the paused replica served none of the caller's reads"
    );

    replica.resume_replay().await;
    replica.wait_caught_up(&primary).await;
    let served = eventually("a token-carrying read served by the replica", WAIT, || {
        let caller = &caller;
        let app = &app;
        let id = id.clone();
        async move {
            let before = replica_reads(app);
            let read = caller.get(&format!("/api/v1/conversations/{id}")).await;
            assert_eq!(read["title"], "paused");
            (replica_reads(app) > before).then_some(read)
        }
    })
    .await;
    assert_eq!(served["id"], id.as_str());
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["checks"]["replica"]["state"], "ok", "{ready}");
    assert!(
        ready["checks"]["replica"]["reads_replica"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let served_line = metrics
        .lines()
        .find(|l| l.starts_with("dave_db_replica_routed_reads_total{served_by=\"replica\"}"))
        .unwrap_or_else(|| panic!("replica reads in /metrics:\n{metrics}"));
    let served_count: f64 = served_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(served_count >= 1.0, "{served_line}");
    assert!(
        metrics.contains("dave_db_replica_state{state=\"ok\"} 1"),
        "{metrics}"
    );
    eventually("knowledge search served by the replica", WAIT, || {
        let caller = &caller;
        let app = &app;
        async move {
            let before = replica_reads(app);
            caller.get("/api/v1/knowledge?q=postgres").await;
            (replica_reads(app) > before).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_replica_changes_no_answer() {
    let (primary, mut replica, app) = app_with_replica().await;
    let mut caller = Caller {
        app: &app,
        bearer: app.bearer(Uuid::new_v4(), false),
        token: None,
    };
    let created = caller
        .post("/api/v1/conversations", json!({ "title": "kept" }))
        .await;
    let path = format!("/api/v1/conversations/{}", created["id"].as_str().unwrap());
    replica.wait_caught_up(&primary).await;
    eventually("the replica serves the caller", WAIT, || {
        let (caller, app, path) = (&caller, &app, path.clone());
        async move {
            let before = replica_reads(app);
            caller.get(&path).await;
            (replica_reads(app) > before).then_some(())
        }
    })
    .await;

    replica.stop();
    for _ in 0..20 {
        assert_eq!(caller.get(&path).await["title"], "kept");
        caller.get("/api/v1/knowledge?q=postgres").await;
    }
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200, "the replica is optional");
    let body: Value = ready.json().await.unwrap();
    eventually("the replica shown down", Duration::from_secs(10), || {
        let app = &app;
        async move {
            let status = app.db.replica_status().unwrap();
            (status.state == "down").then_some(())
        }
    })
    .await;
    assert_eq!(body["status"], "ready", "{body}");
    let body: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["replica"]["state"], "down", "{body}");
}

#[tokio::test]
async fn without_a_replica_writes_carry_no_token() {
    let app = crate::helpers::spawn_app().await;
    let answer = app
        .client
        .post(app.url("/api/v1/conversations"))
        .bearer_auth(app.bearer(Uuid::new_v4(), false))
        .json(&json!({ "title": "direct" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    assert!(answer.headers().get(TOKEN).is_none());
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert!(ready["checks"].get("replica").is_none(), "{ready}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("dave_db_replica"), "{metrics}");
}

#[tokio::test]
async fn a_forged_token_is_a_422_naming_the_header() {
    let app = crate::helpers::spawn_app().await;
    let answer = app
        .client
        .get(app.url("/api/v1/conversations"))
        .bearer_auth(app.bearer(Uuid::new_v4(), false))
        .header(TOKEN, "0000000000001000.AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Consistency-Token"),
        "{body}"
    );
}
