//! Binding the port and serving the application until told to stop, with a
//! bounded graceful shutdown.
//!
//! Each accepted connection is served by its own task, held in a `JoinSet`
//! owned here rather than spawned loose (as `axum::serve` does), so that
//! shutdown can end them. On the stop signal (SIGTERM from Cloud Run, Ctrl-C
//! in a terminal) the listener is closed, idle keep-alive connections are
//! closed, and requests in flight get `SHUTDOWN_GRACE` (7 s by default) to
//! finish. The connection tasks still running then are aborted: their
//! requests' futures are dropped (a pooled connection in use is dropped with
//! them) and their sockets closed, so the client sees the connection cut.
//! `serve` returns only once every connection task has ended, which leaves
//! the caller the rest of Cloud Run's 10 s to close the pool and exit.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight finished within the grace period.
    Completed,
    /// The grace period ran out; the connections still open were aborted.
    GraceExpired,
}

/// Binds `host:port` (port 0 picks a free port).
pub async fn bind(host: IpAddr, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(host, port)).await
}

/// A URL a person can open for `addr` (`localhost` for the unspecified address).
pub fn display_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Serves `app` on `listener` until `stop` completes, then drains within
/// `grace` and aborts what is left. Returns once no connection task runs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<Drained> {
    let (draining_tx, draining_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, app.clone(), draining_rx.clone()));
                }
                Err(e) => {
                    // EMFILE and the like: the error is not the listener's
                    // fault and may pass; backing off avoids a busy loop.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        connections = connections.len(),
        "shutting down: no new connections; waiting for requests in flight"
    );
    let _ = draining_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return Ok(Drained::Completed);
    }
    let cut = connections.len();
    connections.abort_all();
    // Wait for the aborted tasks to be dropped, so their pooled connections
    // are back (or discarded) before the caller closes the pool.
    while connections.join_next().await.is_some() {}
    tracing::warn!(
        grace_seconds = grace.as_secs_f64(),
        connections = cut,
        "requests still in flight after the grace period were cut off"
    );
    Ok(Drained::GraceExpired)
}

/// Serves HTTP/1.1 on one connection until the client closes it or, once
/// `draining` turns true, until its request in flight (if any) is answered.
async fn serve_connection(tcp: TcpStream, app: Router, mut draining: watch::Receiver<bool>) {
    // Responses are written whole; Nagle's algorithm would only add latency.
    let _ = tcp.set_nodelay(true);
    let service = TowerToHyperService::new(
        app.map_request(|request: Request<Incoming>| request.map(axum::body::Body::new)),
    );
    let mut connection = pin!(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service)
    );
    let mut drain_started = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = draining.wait_for(|d| *d), if !drain_started => {
                drain_started = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Waits (at most `within`) until no spawned task of this runtime is left.
///
/// Called last, after the pool is closed, by a caller that owns the runtime
/// and has ended its own tasks: what may still run then is the pool's own
/// short-lived work, above all the cancel request for a statement whose
/// request was cut at the deadline. Dropping the runtime would cancel that
/// task, and the statement would then run on in PostgreSQL (holding its
/// locks, or committing an insert nobody was told about).
pub async fn settle(within: Duration) {
    let runtime = tokio::runtime::Handle::current();
    let deadline = tokio::time::Instant::now() + within;
    while runtime.metrics().num_alive_tasks() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                tasks = runtime.metrics().num_alive_tasks(),
                "background tasks still running at exit"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment this is made:
/// made before the service says it is serving, a signal sent right after
/// that line stops it gracefully instead of killing it (the default action).
pub struct StopSignals(Option<(Signal, Signal)>);

/// Starts listening for the stop signals; see [`StopSignals`].
pub fn stop_signals() -> StopSignals {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
            StopSignals(None)
        }
    }
}

impl StopSignals {
    /// Completes on the first of them, naming which in the log.
    pub async fn recv(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop signal received");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_urls() {
        assert_eq!(
            display_url("0.0.0.0:8080".parse().unwrap()),
            "http://localhost:8080"
        );
        assert_eq!(
            display_url("127.0.0.1:9".parse().unwrap()),
            "http://127.0.0.1:9"
        );
    }
}
