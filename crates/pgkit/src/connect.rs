//! Opening one connection: TLS by sslmode, session settings, notices.
//!
//! Every connection the pool, the migration runner or a tool opens comes from
//! here, so every one of them carries `application_name`,
//! `statement_timeout`, `idle_in_transaction_session_timeout` and
//! `app.environment`. These travel in the start-up packet (`options`), so
//! setting them costs no extra round trip. The driver's connection task is
//! spawned here; NOTICEs from the server can be forwarded to a channel (the
//! migration runner shows them to the user). TCP connections get keepalives
//! and `TCP_USER_TIMEOUT`, so a peer that vanished (a black-holed network,
//! a frozen host) is given up by the kernel in seconds, not minutes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tokio_postgres::{AsyncMessage, CancelToken, Client, Connection, NoTls};

use crate::dsn::{Dsn, Host, SslMode};
use crate::error::DbError;
use crate::secret::Secret;
use crate::settings::DbSettings;
use crate::tls::TlsError;

/// The per-session settings every connection starts with.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub application_name: String,
    pub statement_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
    pub environment: String,
    pub connect_timeout: Duration,
    /// Behind a transaction pooler no options go in the start-up packet
    /// (see [`crate::pooler`]).
    pub pooler: crate::settings::Pooler,
}

impl SessionParams {
    pub fn from_settings(s: &DbSettings) -> SessionParams {
        SessionParams {
            application_name: s.application_name.clone(),
            statement_timeout: s.query_timeout,
            idle_in_transaction_timeout: s.idle_in_transaction_timeout,
            environment: s.environment.as_str().to_string(),
            connect_timeout: s.connect_timeout,
            pooler: s.pooler,
        }
    }

    /// The `options` start-up parameter: `-c name=value` pairs. Values are
    /// backslash-escaped as libpq requires for spaces.
    fn options(&self) -> String {
        let pairs = [
            ("statement_timeout", millis(self.statement_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis(self.idle_in_transaction_timeout),
            ),
            ("app.environment", self.environment.clone()),
        ];
        pairs
            .iter()
            .map(|(k, v)| format!("-c {k}={}", escape_option(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How long past `statement_timeout` a client waits for an answer before
/// it stops trusting the connection: the server cancels a slow statement
/// itself at `statement_timeout` and answers at once, so silence beyond
/// this margin means the server or the path to it no longer answers.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

impl SessionParams {
    /// The most a database call may take on the client's clock.
    pub fn call_bound(&self) -> Duration {
        self.statement_timeout + ANSWER_MARGIN
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

fn escape_option(v: &str) -> String {
    v.replace('\\', "\\\\").replace(' ', "\\ ")
}

/// Opening a connection failed. Never carries the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Shown with its whole cause chain: tokio-postgres' own message is
    /// only "db error" or "error performing TLS handshake".
    #[error("{}", error_chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("connecting took longer than {0:?} (DB_CONNECT_TIMEOUT)")]
    Timeout(Duration),
    #[error("could not get a database login token: {0}")]
    Token(String),
    /// The server refused a connection for lack of slots a moment ago;
    /// the pool does not ask again until the time given.
    #[error("the server has no connection slot free (53300 too_many_connections); not asking for another for {0:.1?}")]
    BackingOff(Duration),
}

impl ConnectError {
    /// The server is up but out of connection slots (`max_connections`, a
    /// role's or database's `CONNECTION LIMIT`): a capacity limit, not an
    /// outage, so the breaker is not told.
    pub fn is_out_of_slots(&self) -> bool {
        match self {
            ConnectError::BackingOff(_) => true,
            ConnectError::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS)
            }
            _ => false,
        }
    }

    /// The same failure, classified for callers (always connection-level).
    pub fn to_db_error(&self) -> DbError {
        DbError::Unavailable {
            reason: self.to_string(),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Kept at its old path for callers of `pgkit::connect::error_chain`.
pub use crate::error::error_chain;

/// A notice the server sent (RAISE NOTICE, warnings).
#[derive(Debug, Clone)]
pub struct Notice {
    pub severity: String,
    pub message: String,
}

/// Opens one connection with the session settings. `password` overrides the
/// DSN's (IAM login passes a fresh token here).
pub async fn connect(
    dsn: &Dsn,
    params: &SessionParams,
    password: Option<&Secret>,
    notices: Option<UnboundedSender<Notice>>,
) -> Result<Client, ConnectError> {
    connect_driven(dsn, params, password, notices)
        .await
        .map(|(client, _driver)| client)
}

/// [`connect`], also returning the handle of the task that drives the
/// connection: the pool aborts it when it discards a connection whose call
/// was abandoned, so the socket closes now instead of when the server
/// finally answers.
pub(crate) async fn connect_driven(
    dsn: &Dsn,
    params: &SessionParams,
    password: Option<&Secret>,
    notices: Option<UnboundedSender<Notice>>,
) -> Result<(Client, AbortHandle), ConnectError> {
    let mut config = dsn.pg_config();
    config
        .application_name(&params.application_name)
        .connect_timeout(params.connect_timeout);
    if params.pooler == crate::settings::Pooler::None {
        config.options(params.options());
    }
    if let Some(p) = password {
        config.password(p.expose());
    }
    if matches!(dsn.host, Host::Tcp(_)) {
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(60))
            .tcp_user_timeout(params.call_bound());
    }
    let open = open(&config, dsn, notices);
    match tokio::time::timeout(params.connect_timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(params.connect_timeout)),
    }
}

async fn open(
    config: &tokio_postgres::Config,
    dsn: &Dsn,
    notices: Option<UnboundedSender<Notice>>,
) -> Result<(Client, AbortHandle), ConnectError> {
    let wants_tls = matches!(dsn.host, Host::Tcp(_)) && dsn.sslmode != SslMode::Disable;
    if wants_tls {
        let tls = crate::tls::make_connector(dsn)?;
        let (client, conn) = config.connect(tls).await?;
        Ok((client, tokio::spawn(drive(conn, notices)).abort_handle()))
    } else {
        let (client, conn) = config.connect(NoTls).await?;
        Ok((client, tokio::spawn(drive(conn, notices)).abort_handle()))
    }
}

/// Asks the server to stop whatever `client`'s session is running (a
/// CancelRequest on a new connection, as libpq's `PQcancel`), bounded by
/// `DB_CONNECT_TIMEOUT`; a server that does not answer is not waited for.
pub(crate) async fn cancel(dsn: &Dsn, token: CancelToken, bound: Duration) {
    let sent = async {
        let wants_tls = matches!(dsn.host, Host::Tcp(_)) && dsn.sslmode != SslMode::Disable;
        if wants_tls {
            let tls = crate::tls::make_connector(dsn).map_err(|e| e.to_string())?;
            token.cancel_query(tls).await.map_err(|e| e.to_string())
        } else {
            token.cancel_query(NoTls).await.map_err(|e| e.to_string())
        }
    };
    match tokio::time::timeout(bound, sent).await {
        Ok(Ok(())) => tracing::debug!("cancel request sent for an abandoned statement"),
        Ok(Err(e)) => tracing::debug!(error = %e, "could not send a cancel request"),
        Err(_) => tracing::debug!("no answer to a cancel request within DB_CONNECT_TIMEOUT"),
    }
}

/// `DROP … IF EXISTS` and `CREATE … IF NOT EXISTS` say "… does not exist,
/// skipping" / "… already exists, skipping" on every run of a re-runnable
/// migration, which lint requires them to be: they go to the debug log, so
/// the notices a user sees are the ones a file raised on purpose.
fn is_idempotence_chatter(n: &tokio_postgres::error::DbError) -> bool {
    n.severity() == "NOTICE"
        && *n.code() == tokio_postgres::error::SqlState::SUCCESSFUL_COMPLETION
        && (n.message().ends_with("does not exist, skipping")
            || n.message().ends_with("already exists, skipping"))
}

/// Runs the driver's connection until it closes, forwarding notices.
fn drive<S, T>(
    mut conn: Connection<S, T>,
    notices: Option<UnboundedSender<Notice>>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) if is_idempotence_chatter(&n) => {
                    tracing::debug!(message = n.message(), "notice");
                }
                Some(Ok(AsyncMessage::Notice(n))) => {
                    if let Some(tx) = &notices {
                        let _ = tx.send(Notice {
                            severity: n.severity().to_string(),
                            message: n.message().to_string(),
                        });
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "database connection closed with an error");
                    break;
                }
                None => break,
            }
        }
    })
}
