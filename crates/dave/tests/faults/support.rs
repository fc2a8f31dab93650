//! What the scenarios share: a durable cluster and a `dave serve` child of
//! their own, direct SQL on the side, and waits on conditions the database
//! reports (`pg_stat_activity`), never on elapsed time.

use std::time::{Duration, Instant};

use pgkit::pool::{Database, PooledConn};
use pgkit::testing::{DedicatedCluster, TestDatabase};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    child_bearer, client, eventually, migrated_database_on, serve_binary, side_pool, wait_ready,
    ChildApp, WAIT,
};

/// Short bounds, so a scenario that waits for one of them stays fast; the
/// timing assertions are stated in terms of these.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
pub const POOL_TIMEOUT: Duration = Duration::from_secs(2);
pub const BREAKER_RESET: Duration = Duration::from_secs(2);

/// The service's environment for the fault scenarios, as strings.
pub fn fault_env() -> Vec<(&'static str, String)> {
    vec![
        ("DB_CONNECT_TIMEOUT", secs(CONNECT_TIMEOUT)),
        ("DB_QUERY_TIMEOUT", secs(QUERY_TIMEOUT)),
        ("DB_POOL_TIMEOUT", secs(POOL_TIMEOUT)),
        ("DB_BREAKER_RESET", secs(BREAKER_RESET)),
        // Start-up must not spend long on a first connection in these tests.
        ("DB_CONNECT_RETRY", "10".to_owned()),
        ("ACCESS_LOG", "false".to_owned()),
    ]
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for a whole scenario: see the crate docs for why they run one by one.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A durable cluster, a migrated database on it and `dave serve` on that.
/// Fields drop in order: the service first, the cluster last.
pub struct Service {
    pub child: ChildApp,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub http: reqwest::Client,
    pub user: Uuid,
    pub db: TestDatabase,
    _dir: tempfile::TempDir,
    pub cluster: DedicatedCluster,
}

impl Service {
    /// Starts it all; `env` adds to or overrides [`fault_env`].
    pub async fn start(env: &[(&str, &str)]) -> Service {
        let cluster = pgkit::testing::durable_cluster().await;
        let db = migrated_database_on(&cluster).await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut vars: Vec<(&str, String)> = fault_env();
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            vars.push((k, (*v).to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (child, url) = serve_binary(db.url(), &borrowed, dir.path()).await;
        let http = client();
        wait_ready(&http, &url).await;
        Service {
            child,
            url,
            http,
            user: Uuid::new_v4(),
            db,
            _dir: dir,
            cluster,
        }
    }

    pub fn token(&self) -> String {
        child_bearer(self.user)
    }

    /// A small pool of the test's own, for locks and checks.
    pub fn side(&self) -> Database {
        side_pool(self.db.url())
    }

    /// A conversation of the test's user; panics unless it gets a 201.
    pub async fn conversation(&self, title: &str) -> Uuid {
        let response = self
            .http
            .post(format!("{}/api/v1/conversations", self.url))
            .bearer_auth(self.token())
            .json(&json!({ "title": title }))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.expect("JSON");
        body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("an id")
    }

    /// `POST` a message with `content` to `conversation`, as a request that
    /// can be spawned or dropped.
    pub fn post_message(&self, conversation: Uuid, content: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/api/v1/conversations/{conversation}/messages",
                self.url
            ))
            .bearer_auth(self.token())
            .json(&json!({ "role": "user", "content": content }))
    }

    /// `host:port` for raw TCP checks.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }
}

/// Holds `FOR UPDATE` on one conversation row in an open transaction: the
/// service's message insert (which updates that row) waits on it, while
/// plain reads of the row and writes elsewhere do not.
pub async fn lock_conversation(side: &Database, conversation: Uuid) -> PooledConn {
    let mut conn = side.acquire().await.expect("a side connection");
    conn.batch("BEGIN").await.expect("BEGIN");
    conn.execute(
        "SELECT 1 FROM ai_conversations WHERE id = $1 FOR UPDATE",
        &[&conversation],
    )
    .await
    .expect("the row lock");
    conn
}

/// The service's sessions that wait for a lock right now.
pub async fn waiting_on_locks(side: &Database) -> Option<i64> {
    let mut conn = side.acquire().await.ok()?;
    conn.fetch_val(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND application_name = 'dave'",
        &[],
    )
    .await
    .ok()
}

/// Waits until exactly `n` of the service's statements wait on a lock.
pub async fn wait_for_blocked(side: &Database, n: i64) {
    eventually(
        &format!("{n} statements waiting on the lock"),
        WAIT,
        || async { (waiting_on_locks(side).await? == n).then_some(()) },
    )
    .await;
}

/// How many messages with exactly this content are committed.
pub async fn committed(side: &Database, content: &str) -> i64 {
    let mut conn = side.acquire().await.expect("a side connection");
    conn.fetch_val(
        "SELECT count(*) FROM ai_messages WHERE content = $1",
        &[&content],
    )
    .await
    .expect("the count")
}

/// One answer, told apart the way the scenarios judge it; failure messages
/// show it with `Display`, payloads included.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The expected status.
    Ok,
    /// 503 `unavailable`, and whether it carried `Retry-After`.
    Unavailable { retry_after: bool },
    /// Anything else that came back: status and body.
    Other(u16, String),
    /// No HTTP answer at all (connection reset or closed, client timeout).
    Dropped(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Ok => f.write_str("the expected status"),
            Answer::Unavailable { retry_after: true } => {
                f.write_str("503 unavailable with Retry-After")
            }
            Answer::Unavailable { retry_after: false } => {
                f.write_str("503 unavailable without Retry-After")
            }
            Answer::Other(status, body) => write!(f, "{status} {body}"),
            Answer::Dropped(why) => write!(f, "no answer ({why})"),
        }
    }
}

impl Answer {
    pub async fn of(result: reqwest::Result<reqwest::Response>, ok: u16) -> Answer {
        let response = match result {
            Ok(r) => r,
            Err(e) => return Answer::Dropped(e.to_string()),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let body = match response.text().await {
            Ok(b) => b,
            Err(e) => return Answer::Dropped(format!("body: {e}")),
        };
        if status == ok {
            return Answer::Ok;
        }
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        if status == 503 && code.as_deref() == Some("unavailable") {
            Answer::Unavailable { retry_after }
        } else {
            Answer::Other(status, body)
        }
    }
}

/// Runs `request` and says how long its answer took.
pub async fn timed(request: reqwest::RequestBuilder, ok: u16) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = Answer::of(request.send().await, ok).await;
    (answer, started.elapsed())
}
