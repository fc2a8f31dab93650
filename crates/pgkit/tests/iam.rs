//! IAM database login against a fake Google (metadata server, OAuth2 token
//! endpoint, IAM credentials API) on 127.0.0.1 and a real PostgreSQL whose
//! role's password is set to the current token.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use pgkit::connect::connect;
use pgkit::dsn::Dsn;
use pgkit::error::error_chain;
use pgkit::iam::{
    discover, iam_user_name, CachedTokenSource, FetchToken, IamError, MetadataServer,
    SharedTokenSource, TokenSource, SQL_LOGIN_SCOPE,
};
use pgkit::settings::Env;
use pgkit::testing::auth::OwnCluster;
use pgkit::testing::check::session_params;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const EMAIL: &str = "app-sa@my-proj.iam.gserviceaccount.com";
const TOKEN_A: &str = "ya29.token-A-Distinctive-7f3a9c";
const TOKEN_B: &str = "ya29.token-B-Distinctive-2d8e41";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const EMAIL_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/email";
const REFRESH_TOKEN: &str = "1//refresh-Distinctive-55aa";
const USER_TOKEN: &str = "ya29.user-token-Distinctive-99cc";

// A fake of the Google endpoints, hand-rolled HTTP/1.1 (one request per
// connection).

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

#[derive(Default)]
struct State {
    token: String,
    expires_in: u64,
    /// Serve a token response without `expires_in`.
    broken: bool,
    hits: HashMap<String, usize>,
}

#[derive(Clone)]
struct FakeGoogle {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeGoogle {
    async fn start(token: &str, expires_in: u64) -> FakeGoogle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeGoogle {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                token: token.to_string(),
                expires_in,
                ..State::default()
            })),
        };
        let serving = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().handle(stream));
            }
        });
        fake
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn rotate(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_string();
    }

    fn hits(&self, path: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.hits.get(path).copied().unwrap_or(0)
    }

    async fn handle(self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let (status, body) = self.answer(&request);
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn answer(&self, r: &Request) -> (&'static str, String) {
        let mut state = self.state.lock().unwrap();
        *state.hits.entry(r.path.clone()).or_default() += 1;
        let header = |name: &str| r.headers.get(name).map(String::as_str);
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", TOKEN_PATH | EMAIL_PATH) if header("metadata-flavor") != Some("Google") => (
                "403 Forbidden",
                "Missing Metadata-Flavor:Google header.".into(),
            ),
            ("GET", TOKEN_PATH) if state.broken => (
                "200 OK",
                format!(
                    r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
                    state.token
                ),
            ),
            ("GET", TOKEN_PATH) => (
                "200 OK",
                format!(
                    r#"{{"access_token":"{}","expires_in":{},"token_type":"Bearer"}}"#,
                    state.token, state.expires_in
                ),
            ),
            ("GET", EMAIL_PATH) => ("200 OK", EMAIL.into()),
            ("POST", "/token")
                if r.body.contains("grant_type=refresh_token")
                    && r.body.contains(&format!(
                        "refresh_token={}",
                        REFRESH_TOKEN.replace('/', "%2F")
                    )) =>
            {
                (
                    "200 OK",
                    format!(
                        r#"{{"access_token":"{USER_TOKEN}","expires_in":3599,"token_type":"Bearer"}}"#
                    ),
                )
            }
            ("POST", "/token") => ("400 Bad Request", r#"{"error":"invalid_grant"}"#.into()),
            ("POST", path)
                if path.ends_with(&format!("/serviceAccounts/{EMAIL}:generateAccessToken")) =>
            {
                let bearer = format!("Bearer {USER_TOKEN}");
                if header("authorization") != Some(bearer.as_str())
                    || !r.body.contains(SQL_LOGIN_SCOPE)
                {
                    return ("401 Unauthorized", r#"{"error":{"code":401}}"#.into());
                }
                let expire = chrono::Utc::now() + chrono::Duration::seconds(3600);
                (
                    "200 OK",
                    format!(
                        r#"{{"accessToken":"{}","expireTime":"{}"}}"#,
                        state.token,
                        expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                )
            }
            _ => ("404 Not Found", "not found".into()),
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

// Log capture: every tracing event and `log` record (bridged) emitted on the
// capturing test's thread, at every level. #[tokio::test] runs the test and
// its spawned tasks on that one thread.

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct ThreadWriter {
    buffer: Option<Captured>,
}

impl Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(b) = &self.buffer {
            b.0.lock().unwrap().extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static CAPTURE: OnceLock<Mutex<HashMap<ThreadId, Captured>>> = OnceLock::new();

/// Starts capturing the logs of this thread.
fn capture_logs_of_this_thread() -> Captured {
    let registry = CAPTURE.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadWriter {
                buffer: CAPTURE
                    .get()
                    .and_then(|r| r.lock().unwrap().get(&std::thread::current().id()).cloned()),
            })
            .finish()
            .try_init()
            .expect("the only global subscriber of this test binary");
        Mutex::new(HashMap::new())
    });
    let captured = Captured::default();
    registry
        .lock()
        .unwrap()
        .insert(std::thread::current().id(), captured.clone());
    captured
}

/// Sets a role's password on another thread, so the SQL that carries the
/// token is not in the captured logs: only what pgkit does is.
fn set_password(cluster: &OwnCluster, role: &str, password: &str) {
    let sql = format!(
        "ALTER ROLE \"{}\" PASSWORD '{}'",
        role.replace('"', "\"\""),
        password.replace('\'', "''")
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cluster.admin(&sql))
        })
        .join()
        .unwrap()
    });
}

#[tokio::test]
async fn iam_login_uses_the_current_token_and_follows_its_rotation() {
    let logs = capture_logs_of_this_thread();
    let google = FakeGoogle::start(TOKEN_A, 3600).await;
    let cluster = OwnCluster::start("local all all scram-sha-256\n", |_| Vec::new()).await;

    let metadata = MetadataServer::new(&google.url()).unwrap();
    let email = metadata
        .account_email()
        .await
        .unwrap()
        .expect("the fake names the account");
    let user = iam_user_name(&email);
    assert_eq!(user, "app-sa@my-proj.iam");
    cluster
        .admin(&format!("CREATE ROLE \"{user}\" LOGIN"))
        .await;
    set_password(&cluster, &user, TOKEN_A);

    let source: SharedTokenSource = Arc::new(CachedTokenSource::new(Box::new(metadata)));
    let dsn = Dsn::parse(&format!(
        "postgresql://{}@/postgres?host={}",
        user.replace('@', "%40"),
        cluster.socket_dir().display()
    ))
    .unwrap();

    let token = source.token().await.unwrap();
    let client = connect(&dsn, &session_params(), Some(&token), None)
        .await
        .unwrap_or_else(|e| panic!("login with the token: {}", error_chain(&e)));
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), user);
    // The next connection reuses the cached token.
    let again = source.token().await.unwrap();
    assert_eq!(again.expose(), TOKEN_A);
    assert_eq!(google.hits(TOKEN_PATH), 1);

    // The account's token rotates; ours is refreshed on the first call
    // within five minutes of its expiry (no timer).
    google.rotate(TOKEN_B);
    set_password(&cluster, &user, TOKEN_B);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3600 - 200)).await;
    tokio::time::resume();
    let token = source.token().await.unwrap();
    assert_eq!(token.expose(), TOKEN_B);
    assert_eq!(google.hits(TOKEN_PATH), 2);
    let client = connect(&dsn, &session_params(), Some(&token), None)
        .await
        .unwrap_or_else(|e| panic!("login with the new token: {}", error_chain(&e)));
    client.query_one("SELECT 1", &[]).await.unwrap();
    let old = pgkit::secret::Secret::new(TOKEN_A);
    let err = match connect(&dsn, &session_params(), Some(&old), None).await {
        Ok(_) => panic!("the old token must no longer log in"),
        Err(e) => error_chain(&e),
    };
    assert!(err.contains("password authentication failed"), "{err}");

    let text = logs.text();
    assert!(
        text.contains("fetched a new database login token"),
        "{text}"
    );
    assert!(
        text.contains("tokio_postgres"),
        "driver logs are captured too: {text}"
    );
    for secret in [TOKEN_A, TOKEN_B] {
        assert!(!text.contains(secret), "a token is in the logs:\n{text}");
    }
}

#[tokio::test]
async fn metadata_errors_name_the_endpoint_and_never_the_token() {
    let google = FakeGoogle::start(TOKEN_A, 3600).await;
    google.state.lock().unwrap().broken = true;
    let metadata = MetadataServer::new(&google.url()).unwrap();
    let err = metadata.fetch().await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "the metadata server at {}{TOKEN_PATH} answered with something other than the expected JSON ({{access_token, expires_in}})",
            google.url()
        )
    );
    assert!(!err.contains(TOKEN_A));

    // Nothing listens on a port we just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metadata = MetadataServer::new(&format!("http://{closed}")).unwrap();
    let err = CachedTokenSource::new(Box::new(metadata))
        .token()
        .await
        .unwrap_err();
    assert!(matches!(err, IamError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "could not reach the metadata server at http://{closed}{TOKEN_PATH}: "
        )),
        "{err}"
    );
}

#[tokio::test]
async fn gcloud_credentials_with_impersonation_get_a_login_token_for_the_service_account() {
    let google = FakeGoogle::start(TOKEN_A, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("application_default_credentials.json");
    let user = format!(
        r#"{{"type":"authorized_user","client_id":"cid.apps.googleusercontent.com","client_secret":"secret-Distinctive","refresh_token":"{REFRESH_TOKEN}","token_uri":"{}/token"}}"#,
        google.url()
    );
    let impersonated = format!(
        r#"{{"type":"impersonated_service_account","delegates":[],
            "service_account_impersonation_url":"{}/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken",
            "source_credentials":{user}}}"#,
        google.url()
    );
    std::fs::write(&file, impersonated).unwrap();
    let env = Env::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string())]);
    let fetcher = discover(&env).unwrap();
    assert_eq!(
        fetcher.account_email().await.unwrap().as_deref(),
        Some(EMAIL)
    );
    let token = fetcher.fetch().await.unwrap();
    assert_eq!(token.secret.expose(), TOKEN_A);
    let left = token.expires_at - tokio::time::Instant::now();
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
    assert_eq!(google.hits("/token"), 1);

    // A plain user login (no impersonation) uses the user's own token.
    std::fs::write(&file, &user).unwrap();
    let token = discover(&env).unwrap().fetch().await.unwrap();
    assert_eq!(token.secret.expose(), USER_TOKEN);

    // A refused refresh token says so, without echoing it.
    std::fs::write(&file, user.replace(REFRESH_TOKEN, "1//revoked")).unwrap();
    let err = discover(&env)
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "the OAuth2 token endpoint at {}/token answered HTTP 400: {{\"error\":\"invalid_grant\"}}",
            google.url()
        )
    );
}
