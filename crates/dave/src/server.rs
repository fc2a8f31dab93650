//! Binding the port and serving the application until told to stop, with a
//! bounded graceful shutdown.
//!
//! On the stop signal (SIGTERM from Cloud Run, Ctrl-C in a terminal) the
//! listener stops accepting, idle keep-alive connections are closed, and
//! requests in flight get `SHUTDOWN_GRACE` (8 s by default; Cloud Run kills
//! the container 10 s after SIGTERM) to finish. Whatever is still running
//! then is dropped, so shutdown always ends within the bound.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight finished within the grace period.
    Completed,
    /// The grace period ran out; the requests still running were dropped.
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

/// Serves `app` on `listener` until `stop` completes, then drains within `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<Drained> {
    let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
    let signal = async move {
        stop.await;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "shutting down: no new connections; waiting for requests in flight"
        );
        let _ = stopped_tx.send(());
    };
    // Responses are written whole; Nagle's algorithm would only add latency.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let deadline = async move {
        if stopped_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            // The server ended without a stop signal; never fire.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.map(|()| Drained::Completed),
        () = deadline => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "requests still in flight after the grace period were dropped"
            );
            Ok(Drained::GraceExpired)
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), naming which in the log.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stop signal received");
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
