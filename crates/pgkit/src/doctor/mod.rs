//! `pgkit doctor`: a DSN diagnosed step by step, the way the standard's
//! troubleshooting section walks through a connection problem.
//!
//! The steps follow the connection's own path: parse the DSN (shown
//! redacted); for a Unix socket, the directory and its `.s.PGSQL.<port>`; for
//! TCP, name resolution and the port; an IAM token when `DB_IAM_AUTH` is on;
//! TLS as `sslmode` asks; authentication; the database; `SELECT 1`; the
//! role's privileges on the service's schema; and the server's
//! `max_connections` against `DB_POOL_MAX_SIZE × instances` (Cloud Run runs
//! one pool per instance). Each step is `ok` with what it found, or `FAIL`
//! with the cause in words ("connection refused", "password authentication
//! failed", "pool exhausted") and the fix for where the DSN points, Cloud SQL
//! commands included for `/cloudsql/` sockets. The first failure ends the
//! run: later steps cannot be judged past it.

mod probe;
mod report;
mod words;

use std::fmt;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::connect::{connect, error_chain, ConnectError, SessionParams};
use crate::dsn::{Dsn, DsnError, Host, SslMode};
use crate::iam::SharedTokenSource;
use crate::secret::Secret;

pub use report::{Diagnosis, Outcome, Step, StepName};
use words::Place;

/// What to diagnose, and the service's settings to judge it by.
pub struct DoctorInput {
    /// The DSN as the service would read it; it may not even parse.
    pub dsn: Secret,
    /// Connect timeout and session settings, as the service sets them.
    pub session: SessionParams,
    /// `DB_POOL_MAX_SIZE`: connections one instance may open.
    pub pool_max_size: usize,
    /// How many instances run the pool (`--instances`, else
    /// `MAX_INSTANCES`); `None` checks one and says so.
    pub instances: Option<u32>,
    /// The service's schema; `None` means the role's `current_schema()`.
    pub schema: Option<String>,
    /// Set when `DB_IAM_AUTH` is on: the password is a fresh token.
    pub token_source: Option<SharedTokenSource>,
}

impl fmt::Debug for DoctorInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoctorInput")
            .field("dsn", &self.dsn)
            .field("session", &self.session)
            .field("pool_max_size", &self.pool_max_size)
            .field("instances", &self.instances)
            .field("schema", &self.schema)
            .field("iam", &self.token_source.is_some())
            .finish()
    }
}

/// A failed step's words: the cause and the fix.
#[derive(Debug)]
pub(crate) struct Failure {
    problem: String,
    fix: String,
}

impl Failure {
    fn new(problem: String, fix: String) -> Failure {
        Failure { problem, fix }
    }
}

/// Runs the steps in order until one fails; `on_step` sees each step as it
/// finishes, so a caller can print progress before a slow step.
pub async fn diagnose(input: &DoctorInput, on_step: &mut dyn FnMut(&Step)) -> Diagnosis {
    let mut recorder = Recorder {
        steps: Vec::new(),
        on_step,
    };
    // Err only means "stopped at a failure", which the steps already hold.
    let _ = run(input, &mut recorder).await;
    Diagnosis::new(recorder.steps)
}

/// The diagnosis stopped at a recorded failure.
struct Stopped;

struct Recorder<'a> {
    steps: Vec<Step>,
    on_step: &'a mut dyn FnMut(&Step),
}

impl Recorder<'_> {
    fn record(&mut self, name: StepName, outcome: Outcome) {
        let step = Step { name, outcome };
        (self.on_step)(&step);
        self.steps.push(step);
    }

    fn ok(&mut self, name: StepName, detail: String) {
        self.record(name, Outcome::Ok(detail));
    }

    fn fail(&mut self, name: StepName, failure: Failure) -> Stopped {
        self.record(
            name,
            Outcome::Fail {
                problem: failure.problem,
                fix: failure.fix,
            },
        );
        Stopped
    }

    /// Records `result` as step `name`: its detail when ok, its words when not.
    fn step<T>(
        &mut self,
        name: StepName,
        result: Result<(T, String), Failure>,
    ) -> Result<T, Stopped> {
        match result {
            Ok((value, detail)) => {
                self.ok(name, detail);
                Ok(value)
            }
            Err(failure) => Err(self.fail(name, failure)),
        }
    }
}

async fn run(input: &DoctorInput, rec: &mut Recorder<'_>) -> Result<(), Stopped> {
    let dsn = rec.step(StepName::Parse, parse(&input.dsn))?;
    let place = Place::of(&dsn);
    let tls = reach(&dsn, &place, input, rec).await?;
    let password = match &input.token_source {
        Some(source) => Some(rec.step(StepName::Token, token(source).await)?),
        None => None,
    };
    let client = login(&dsn, &place, input, password.as_ref(), tls, rec).await?;
    rec.step(StepName::Query, select_one(&client).await)?;
    let pooler = pooler(&dsn, input, password.as_ref(), &client).await;
    rec.step(StepName::Pooler, pooler)?;
    rec.step(
        StepName::Privileges,
        privileges(&client, &place, input.schema.as_deref()).await,
    )?;
    rec.step(StepName::Server, server(&client, &place, input).await)?;
    Ok(())
}

fn parse(url: &Secret) -> Result<(Dsn, String), Failure> {
    match Dsn::parse(url.expose()) {
        Ok(dsn) => {
            let shown = dsn.redacted();
            Ok((dsn, shown))
        }
        Err(e) => Err(Failure::new(
            format!("the DSN does not parse: {e}"),
            format!("write it as {}", DsnError::accepted_form()),
        )),
    }
}

/// What the TLS step will report once the login shows how TLS went.
#[derive(Debug, Clone, Copy)]
enum Tls {
    Socket,
    Disabled,
    /// The server's answer to the TLS request.
    Offered(bool),
}

/// The network steps: socket, or resolve and TCP; then the TLS request.
async fn reach(
    dsn: &Dsn,
    place: &Place,
    input: &DoctorInput,
    rec: &mut Recorder<'_>,
) -> Result<Tls, Stopped> {
    let timeout = input.session.connect_timeout;
    let host = match &dsn.host {
        Host::Socket(dir) => {
            let file = dir.join(format!(".s.PGSQL.{}", dsn.port));
            let result = probe::socket(place, dir, &file, timeout).await;
            rec.step(StepName::Socket, result.map(|d| ((), d)))?;
            return Ok(Tls::Socket);
        }
        Host::Tcp(host) => host,
    };
    let addrs = probe::resolve(host, dsn.port, timeout).await.map(|addrs| {
        let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        let detail = format!("{host} is {}", list.join(", "));
        (addrs, detail)
    });
    let addrs = rec.step(StepName::Resolve, addrs)?;
    let tcp = probe::tcp(place, &addrs, timeout)
        .await
        .map(|(addr, stream)| (stream, format!("{addr} answers")));
    let stream = rec.step(StepName::Tcp, tcp)?;
    if dsn.sslmode == SslMode::Disable {
        return Ok(Tls::Disabled);
    }
    let offered = match probe::offers_tls(stream, timeout).await {
        Ok(offered) => offered,
        Err(failure) => return Err(rec.fail(StepName::Tls, failure)),
    };
    if !offered && dsn.sslmode != SslMode::Prefer {
        return Err(rec.fail(
            StepName::Tls,
            Failure::new(
                format!(
                    "the server does not offer TLS, and sslmode={} demands it",
                    dsn.sslmode.as_str()
                ),
                "turn ssl on in the server's configuration, or connect through the Cloud SQL \
                 connection or cloud-sql-proxy (a Unix socket, no TLS needed) instead"
                    .into(),
            ),
        ));
    }
    Ok(Tls::Offered(offered))
}

async fn token(source: &SharedTokenSource) -> Result<(Secret, String), Failure> {
    match source.token().await {
        Ok(token) => Ok((token, "got an access token for the IAM login".into())),
        Err(e) => Err(Failure::new(
            format!("could not get an IAM access token: {e}"),
            "on Cloud Run the token comes from the metadata server (check the service's service \
             account); locally run gcloud auth application-default login or set \
             GOOGLE_APPLICATION_CREDENTIALS"
                .into(),
        )),
    }
}

/// Where a failed login went wrong.
enum Stage {
    Tls,
    Authentication,
    Database,
}

/// Connects as the service would, then records TLS, authentication and
/// database: ok up to the stage that failed.
async fn login(
    dsn: &Dsn,
    place: &Place,
    input: &DoctorInput,
    password: Option<&Secret>,
    tls: Tls,
    rec: &mut Recorder<'_>,
) -> Result<Client, Stopped> {
    let iam = password.is_some();
    let failed = match connect(dsn, &input.session, password, None).await {
        Ok(client) => {
            rec.ok(StepName::Tls, describe_tls(dsn, place, tls));
            let trusted = !iam && asks_no_password(dsn, input).await;
            rec.ok(
                StepName::Authentication,
                if trusted {
                    trusted_login(dsn)
                } else {
                    logged_in(dsn, iam)
                },
            );
            rec.ok(StepName::Database, format!("{} exists", dsn.dbname));
            return Ok(client);
        }
        Err(e) => classify(&e, dsn, place, iam),
    };
    let (stage, failure) = failed;
    match stage {
        Stage::Tls => Err(rec.fail(StepName::Tls, failure)),
        Stage::Authentication => {
            rec.ok(StepName::Tls, describe_tls(dsn, place, tls));
            Err(rec.fail(StepName::Authentication, failure))
        }
        Stage::Database => {
            rec.ok(StepName::Tls, describe_tls(dsn, place, tls));
            rec.ok(StepName::Authentication, logged_in(dsn, iam));
            Err(rec.fail(StepName::Database, failure))
        }
    }
}

/// Whether the server let this user in without asking for a password
/// (`trust`, `peer` or `cert` in pg_hba.conf): true when the URL has none,
/// else found by logging in once more without it. A client that has no
/// password to give just closes the connection, which the server does not
/// log as a failed login.
async fn asks_no_password(dsn: &Dsn, input: &DoctorInput) -> bool {
    if dsn.password().is_none() {
        return true;
    }
    let bare = dsn.with_password(None);
    let probe = connect(&bare, &input.session, None, None);
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), probe).await,
        Ok(Ok(_))
    )
}

fn trusted_login(dsn: &Dsn) -> String {
    format!(
        "logged in as {} without a password: the server trusts this connection (trust, peer or \
         cert in pg_hba.conf), so any local user can log in as {0}; production should ask for one \
         (scram-sha-256)",
        dsn.user
    )
}

fn logged_in(dsn: &Dsn, iam: bool) -> String {
    if iam {
        format!("logged in as {} with an IAM token", dsn.user)
    } else {
        format!("logged in as {}", dsn.user)
    }
}

fn describe_tls(dsn: &Dsn, place: &Place, tls: Tls) -> String {
    let mode = dsn.sslmode.as_str();
    match tls {
        Tls::Socket if place.is_cloud_sql() => {
            "not used on a Unix socket: the Cloud SQL connection encrypts the link to the instance".into()
        }
        Tls::Socket => "not used on a Unix socket (a local connection)".into(),
        Tls::Disabled => "off (sslmode=disable): traffic travels in plain text".into(),
        Tls::Offered(false) => {
            "the server offers no TLS; sslmode=prefer goes on in plain text (use verify-ca or \
             verify-full on networks you do not trust)"
                .into()
        }
        Tls::Offered(true) => match (&dsn.sslrootcert, dsn.sslmode) {
            (Some(ca), SslMode::VerifyFull) => format!(
                "encrypted; the certificate is signed by the CA in sslrootcert={} and names the host (sslmode={mode})",
                ca.display()
            ),
            (Some(ca), _) => format!(
                "encrypted; the certificate is signed by the CA in sslrootcert={} (sslmode={mode})",
                ca.display()
            ),
            (None, _) => format!(
                "encrypted (sslmode={mode}); the certificate is not checked, so an active man in \
                 the middle is not stopped: use verify-ca or verify-full with sslrootcert"
            ),
        },
    }
}

/// The stage and the words for a failed connection attempt.
fn classify(e: &ConnectError, dsn: &Dsn, place: &Place, iam: bool) -> (Stage, Failure) {
    let user = &dsn.user;
    match e {
        ConnectError::Postgres(pg) => match pg.as_db_error() {
            Some(db) => classify_db(db.code(), db.message(), db.hint(), dsn, place, iam),
            None => {
                let text = error_chain(pg);
                if text.starts_with("error performing TLS handshake") {
                    (Stage::Tls, Failure::new(text, tls_fix(dsn)))
                } else if text.contains("password missing") {
                    (
                        Stage::Authentication,
                        Failure::new(
                            format!("the server asks {user} for a password and the DSN has none"),
                            "put it in the DSN (postgresql://USER:PASSWORD@...), or set \
                             DB_IAM_AUTH=true for an IAM login"
                                .into(),
                        ),
                    )
                } else {
                    (
                        Stage::Authentication,
                        Failure::new(
                            format!("the connection broke during login: {text}"),
                            "look at the server's (or cloud-sql-proxy's) log for the reason".into(),
                        ),
                    )
                }
            }
        },
        ConnectError::Tls(t) => (Stage::Tls, Failure::new(t.to_string(), tls_fix(dsn))),
        ConnectError::Timeout(d) => (
            Stage::Authentication,
            Failure::new(
                format!(
                    "the login did not finish within {} s (DB_CONNECT_TIMEOUT)",
                    d.as_secs_f64()
                ),
                "the server or proxy took the connection but did not answer: check its load and \
                 log (cloud-sql-proxy logs why it cannot reach the instance)"
                    .into(),
            ),
        ),
        ConnectError::Token(t) => (
            Stage::Authentication,
            Failure::new(
                format!("could not get a login token: {t}"),
                "check DB_IAM_AUTH and the service account's credentials".into(),
            ),
        ),
        // Only the pool backs off; doctor opens its connections directly.
        ConnectError::BackingOff(_) => (
            Stage::Authentication,
            Failure::new(
                e.to_string(),
                "lower DB_POOL_MAX_SIZE × instances, or raise max_connections".into(),
            ),
        ),
    }
}

fn classify_db(
    code: &SqlState,
    message: &str,
    hint: Option<&str>,
    dsn: &Dsn,
    place: &Place,
    iam: bool,
) -> (Stage, Failure) {
    let (user, db) = (&dsn.user, &dsn.dbname);
    let auth = |fix: String| {
        (
            Stage::Authentication,
            Failure::new(message.to_string(), fix),
        )
    };
    if message.starts_with("unsupported startup parameter") {
        // PgBouncer's answer to the `options` pgkit sends in direct mode.
        return auth(
            "this is PgBouncer (or Cloud SQL Managed Connection Pooling), which takes no session \
             options at connect: set DB_POOLER=transaction (session settings then come from the \
             role: run `pgkit provision`)"
                .to_string(),
        );
    }
    if *code == SqlState::INVALID_PASSWORD {
        return auth(place.reset_password(user, iam));
    }
    if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        if message.contains("does not exist") {
            return auth(place.create_user(user));
        }
        if message.contains("not permitted to log in") {
            return auth(format!("allow it: ALTER ROLE {user} LOGIN;"));
        }
        if message.contains("pg_hba.conf") {
            let tls = if message.contains("no encryption") {
                " (it asks for TLS: use sslmode=require or stricter)"
            } else {
                ""
            };
            return auth(format!(
                "the server's pg_hba.conf has no line for this user, database and address{tls}: \
                 add one and reload the server, or connect the way it allows"
            ));
        }
    }
    if *code == SqlState::UNDEFINED_DATABASE {
        return (
            Stage::Database,
            Failure::new(message.to_string(), place.create_database(db)),
        );
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return (
            Stage::Database,
            Failure::new(
                message.to_string(),
                format!(
                    "{}: GRANT CONNECT ON DATABASE {db} TO {user};",
                    place.as_admin()
                ),
            ),
        );
    }
    if *code == SqlState::TOO_MANY_CONNECTIONS {
        return auth(format!(
            "every connection slot is taken (the server-side face of \"pool exhausted\"): see who \
             holds them with SELECT usename, application_name, count(*) FROM pg_stat_activity \
             GROUP BY 1, 2; lower DB_POOL_MAX_SIZE or the instance count of the services sharing \
             the server, or {}",
            place.raise_max_connections()
        ));
    }
    if *code == SqlState::CANNOT_CONNECT_NOW {
        return auth("the server is starting, stopping or recovering: wait for it and run pgkit doctor again".into());
    }
    auth(hint.map_or_else(
        || "the server's message names the cause; its log has more".to_string(),
        str::to_string,
    ))
}

fn tls_fix(dsn: &Dsn) -> String {
    match dsn.sslmode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            "point sslrootcert at the CA that signed the server's certificate (Cloud SQL: gcloud sql \
             instances describe INSTANCE --format='value(serverCaCert.cert)' > server-ca.pem); with \
             verify-full the DSN's host must be a name the certificate carries, or use sslmode=verify-ca"
                .into()
        }
        _ => "check the server's TLS setup (ssl_cert_file, ssl_key_file) and any sslcert/sslkey in the DSN".into(),
    }
}

fn query_failure(e: &tokio_postgres::Error, fix: &str) -> Failure {
    let problem = e
        .as_db_error()
        .map_or_else(|| error_chain(e), |db| db.message().to_string());
    Failure::new(problem, fix.to_string())
}

/// Whether a transaction pooler sits in front, seen from outside (two
/// transactions of one connection in different server sessions), against
/// what `DB_POOLER` says; behind one, whether the role's defaults give each
/// session the service's settings.
async fn pooler(
    dsn: &Dsn,
    input: &DoctorInput,
    password: Option<&Secret>,
    client: &Client,
) -> Result<((), String), Failure> {
    use crate::pooler::{detect, verify_session_defaults, Detected, Pooler};
    let mut others = Vec::new();
    for _ in 0..3 {
        let other = connect(dsn, &input.session, password, None)
            .await
            .map_err(|e| {
                Failure::new(
                    format!("another connection failed: {e}"),
                    "run doctor again".into(),
                )
            })?;
        others.push(other);
    }
    let seen = detect(client, &others, Duration::from_secs(2))
        .await
        .map_err(|e| query_failure(&e, "run doctor again"))?;
    match (seen, input.session.pooler) {
        (Detected::Direct, Pooler::None) => Ok((
            (),
            "each connection has its own server session (direct, or session pooling): DB_POOLER=none fits".into(),
        )),
        (Detected::Direct, Pooler::Transaction) => Err(Failure::new(
            "DB_POOLER=transaction, but each connection has its own server session: no transaction pooler is in front".into(),
            "unset DB_POOLER (or set it to none): statements are then prepared once per connection, which is faster".into(),
        )),
        (Detected::TransactionPooler, Pooler::None) => Err(Failure::new(
            "two transactions on one connection ran in different server sessions: a transaction pooler \
             (PgBouncer in transaction mode, Cloud SQL Managed Connection Pooling) is in front"
                .into(),
            "set DB_POOLER=transaction; run migrations on a direct DSN (DB_MIGRATE_DSN)".into(),
        )),
        (Detected::TransactionPooler, Pooler::Transaction) => {
            match verify_session_defaults(client, &input.session).await {
                Ok(Ok(())) => Ok((
                    (),
                    "a transaction pooler, and DB_POOLER=transaction; the role's defaults give sessions the service's settings".into(),
                )),
                Ok(Err(e)) => Err(Failure::new(
                    format!("a transaction pooler, but {}", e.mismatches.join(", ")),
                    format!("run `pgkit provision`, or: {}", e.fixes.join(" ")),
                )),
                Err(e) => Err(query_failure(&e, "run doctor again")),
            }
        }
    }
}

async fn select_one(client: &Client) -> Result<((), String), Failure> {
    let started = Instant::now();
    match client.query_one("SELECT 1", &[]).await {
        Ok(_) => Ok((
            (),
            format!("SELECT 1 answered in {} ms", started.elapsed().as_millis()),
        )),
        Err(e) => Err(query_failure(
            &e,
            "the session opened but cannot run a query: look at the server's log",
        )),
    }
}

/// USAGE on the schema, and data privileges on each of its tables and sequences.
async fn privileges(
    client: &Client,
    place: &Place,
    schema: Option<&str>,
) -> Result<((), String), Failure> {
    const FIX: &str =
        "the catalog query failed; run pgkit doctor again, or look at the server's log";
    let row = client
        .query_one(
            "SELECT current_user::text, quote_ident(current_user), current_database()::text,
                    coalesce($1::text, current_schema()::text)",
            &[&schema],
        )
        .await
        .map_err(|e| query_failure(&e, FIX))?;
    let (user, user_q, db): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let Some(schema) = row.get::<_, Option<String>>(3) else {
        return Err(Failure::new(
            format!("the search_path of {user} names no schema that exists: unqualified table names find nothing"),
            format!("set it: ALTER ROLE {user_q} SET search_path = <the service's schema>, public; or pass --schema"),
        ));
    };
    let found = client
        .query_opt(
            "SELECT n.oid, has_schema_privilege(n.oid, 'USAGE'), quote_ident(n.nspname)
             FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
            &[&schema],
        )
        .await
        .map_err(|e| query_failure(&e, FIX))?;
    let Some(found) = found else {
        return Err(Failure::new(
            format!("schema {schema} does not exist in database {db}"),
            format!(
                "create it with its grants: pgkit provision --schema {schema} --role {user} (as the \
                 migration owner); or fix --schema"
            ),
        ));
    };
    let (oid, usage, schema_q): (tokio_postgres::types::Oid, bool, String) =
        (found.get(0), found.get(1), found.get(2));
    let provision = format!(
        "pgkit provision --schema {schema} --role {user} does all of it, tables created later included"
    );
    if !usage {
        return Err(Failure::new(
            format!(
                "role {user} has no USAGE on schema {schema}: every query on its tables fails with \
                 \"permission denied for schema {schema}\""
            ),
            format!(
                "{}: GRANT USAGE ON SCHEMA {schema_q} TO {user_q}; GRANT SELECT, INSERT, UPDATE, DELETE \
                 ON ALL TABLES IN SCHEMA {schema_q} TO {user_q}; ({provision})",
                place.as_admin()
            ),
        ));
    }
    let tables = table_gaps(client, oid)
        .await
        .map_err(|e| query_failure(&e, FIX))?;
    if !tables.missing.is_empty() {
        return Err(Failure::new(
            format!(
                "role {user} lacks {} on {} of {} tables in schema {schema} ({}): those queries fail \
                 with \"permission denied for table\"",
                tables.privileges.join(", "),
                tables.missing.len(),
                tables.total,
                list(&tables.missing)
            ),
            format!(
                "{}: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_q} TO \
                 {user_q}; and for tables created later, ALTER DEFAULT PRIVILEGES FOR ROLE <migration \
                 owner> IN SCHEMA {schema_q} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {user_q}; \
                 ({provision})",
                place.as_admin()
            ),
        ));
    }
    let sequences = sequence_gaps(client, oid)
        .await
        .map_err(|e| query_failure(&e, FIX))?;
    if !sequences.is_empty() {
        return Err(Failure::new(
            format!(
                "role {user} has no USAGE on {} sequence(s) in schema {schema} ({}): inserts that \
                 take the next id fail",
                sequences.len(),
                list(&sequences)
            ),
            format!(
                "{}: GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {user_q}; ({provision})",
                place.as_admin()
            ),
        ));
    }
    Ok((
        (),
        if tables.total == 0 {
            format!("USAGE on schema {schema}; no tables in it yet")
        } else {
            format!(
                "USAGE on schema {schema}; SELECT, INSERT, UPDATE, DELETE on all {} tables",
                tables.total
            )
        },
    ))
}

/// Tables of one schema the current user cannot fully use. pgkit's tracking
/// table is not one of them: the runtime role gets SELECT on it at most
/// (`pgkit provision` revokes writes), so the service cannot rewrite its
/// migration history.
struct TableGaps {
    total: usize,
    missing: Vec<String>,
    /// The privileges missing on at least one table, in a fixed order.
    privileges: Vec<&'static str>,
}

async fn table_gaps(
    client: &Client,
    schema: tokio_postgres::types::Oid,
) -> Result<TableGaps, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text,
                    has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT'),
                    has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE')
             FROM pg_catalog.pg_class c
             WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname <> $2
             ORDER BY 1",
            &[&schema, &crate::migrate::TABLE],
        )
        .await?;
    const NAMES: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];
    let mut lacking = [false; 4];
    let mut missing = Vec::new();
    for row in &rows {
        let mut complete = true;
        for (i, flag) in lacking.iter_mut().enumerate() {
            if !row.get::<_, bool>(i + 1) {
                *flag = true;
                complete = false;
            }
        }
        if !complete {
            missing.push(row.get(0));
        }
    }
    Ok(TableGaps {
        total: rows.len(),
        missing,
        privileges: NAMES
            .iter()
            .zip(lacking)
            .filter(|(_, l)| *l)
            .map(|(n, _)| *n)
            .collect(),
    })
}

async fn sequence_gaps(
    client: &Client,
    schema: tokio_postgres::types::Oid,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c
             WHERE c.relnamespace = $1
               -- CASE keeps the privilege check off non-sequences (it raises on them).
               AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'USAGE') ELSE false END
             ORDER BY 1",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The first few names, and how many more.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// The server's version, and whether every instance's pool fits in its
/// connection slots at full scale.
async fn server(
    client: &Client,
    place: &Place,
    input: &DoctorInput,
) -> Result<((), String), Failure> {
    let slots = crate::budget::ServerSlots::read(client)
        .await
        .map_err(|e| query_failure(&e, "look at the server's log"))?;
    let (version, max, reserved, open) = (
        &slots.version,
        slots.max_connections,
        slots.reserved,
        slots.open,
    );
    let budget = slots.for_applications();
    let pool = input.pool_max_size as u64;
    let instances = u64::from(input.instances.unwrap_or(1));
    let demand = pool * instances;
    let scale = format!(
        "DB_POOL_MAX_SIZE {pool} × {instances} instance{} = {demand} connections",
        if instances == 1 { "" } else { "s" }
    );
    if input.session.pooler == crate::pooler::Pooler::Transaction {
        return Ok((
            (),
            format!(
                "PostgreSQL {version}; max_connections {max} ({budget} for applications); behind a \
                 transaction pooler, {scale} count against the pooler's client limit (max_client_conn), \
                 and its server pool against max_connections; {open} connections open now"
            ),
        ));
    }
    if !slots.fits(pool, instances) {
        return Err(Failure::new(
            format!(
                "pool exhausted at full scale: {scale}, but the server accepts {budget} \
                 (max_connections {max} minus {reserved} reserved for superusers); past that, new \
                 connections fail with \"too many clients already\" and requests wait DB_POOL_TIMEOUT, \
                 then fail with \"pool exhausted\""
            ),
            budget_fix(place, budget, pool, instances),
        ));
    }
    let unknown_scale = if input.instances.is_none() {
        " (one instance; pass --instances N or set MAX_INSTANCES to check Cloud Run's maximum)"
    } else {
        ""
    };
    Ok((
        (),
        format!(
            "PostgreSQL {version}; max_connections {max} ({budget} for applications) covers \
             {scale}{unknown_scale}; {open} connections open now"
        ),
    ))
}

fn budget_fix(place: &Place, budget: u64, pool: u64, instances: u64) -> String {
    let mut ways = Vec::new();
    let pool_fit = budget / instances;
    if pool_fit >= 1 {
        ways.push(format!("lower DB_POOL_MAX_SIZE to {pool_fit} or less"));
    }
    let instances_fit = budget / pool;
    if instances_fit >= 1 {
        ways.push(format!(
            "cap Cloud Run's --max-instances at {instances_fit}"
        ));
    }
    ways.push(place.raise_max_connections());
    format!(
        "{}; other services on the same server count too",
        ways.join(", or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_fix_names_numbers_that_fit() {
        let place = Place::of(&Dsn::parse("postgresql://u@/d?host=/cloudsql/p:r:main").unwrap());
        let fix = budget_fix(&place, 97, 15, 10);
        assert!(fix.starts_with("lower DB_POOL_MAX_SIZE to 9 or less, or cap Cloud Run's --max-instances at 6, or raise max_connections: gcloud sql instances patch main"), "{fix}");
    }

    #[test]
    fn parse_failure_does_not_echo_the_password() {
        let failure = parse(&Secret::new("postgresql://u:Sup3r-Secret@h:notaport/d")).unwrap_err();
        assert!(
            !failure.problem.contains("Sup3r-Secret"),
            "{}",
            failure.problem
        );
        assert!(
            failure
                .problem
                .starts_with("the DSN does not parse: the port after the host is not a number"),
            "{}",
            failure.problem
        );
        let (dsn, shown) = parse(&Secret::new("postgresql://u:Sup3r-Secret@h/d")).unwrap();
        assert_eq!(shown, "postgresql://u:***@h:5432/d");
        assert_eq!(dsn.user, "u");
    }
}
