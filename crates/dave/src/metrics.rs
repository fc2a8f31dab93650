//! Prometheus metrics at `GET /metrics`, kept and written out by
//! `prometheus-client` in the OpenMetrics text format (which Prometheus and
//! Google Cloud Managed Service for Prometheus scrape).
//!
//! Requests are counted per (method, route template, status) with a latency
//! histogram; the route is the template (`/api/v1/conversations/{id}`), never
//! the raw path, so ids cannot blow up the number of series, and unknown
//! routes share one `unmatched` label. HTTP lets a client send any token as
//! the method (`curl -X RND123`), so only the standard methods are labelled
//! as themselves and every other one is `other`: no client can add series.
//! Pool and breaker figures are read from the [`Database`] when scraped
//! (nothing runs in between: Cloud Run throttles CPU between requests).

use std::time::{Duration, Instant};

use pgkit::breaker::BreakerState;
use pgkit::pool::Database;
use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The method label of requests with a method outside RFC 9110 and PATCH.
pub const OTHER_METHOD: &str = "other";

/// The label for `method`: itself when standard, else [`OTHER_METHOD`].
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or(OTHER_METHOD)
}

/// The labels of a request series, in this order on every sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ToLabel {
    to: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServedByLabel {
    served_by: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's request metrics; shared through `AppState`.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    registry: Registry,
    in_flight: Gauge,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts a request as in flight until dropped (also when its future is
/// cancelled, e.g. the client went away).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let in_flight = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let mut registry = Registry::default();
        registry.register(
            "dave_http_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        // A counter's samples get `_total` (dave_http_requests_total).
        registry.register(
            "dave_http_requests",
            "Requests served, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "dave_http_request_duration_seconds",
            "Time to the response's headers, by method, route template and status",
            durations.clone(),
        );
        Metrics {
            started: Instant::now(),
            registry,
            in_flight,
            requests,
            durations,
        }
    }

    /// Marks a request as started; it stops counting when the guard drops.
    pub fn start_request(&self) -> InFlight {
        self.in_flight.inc();
        InFlight {
            gauge: self.in_flight.clone(),
        }
    }

    /// Records one finished request. `route` is the matched template, or
    /// [`UNMATCHED`]; `method` is labelled by [`method_label`].
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }

    /// The whole exposition: requests, then the database's pool, breaker and
    /// errors, then the uptime; OpenMetrics text ending in `# EOF`.
    pub fn render(&self, db: &Database) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let scraped = scrape_registry(db, self.started.elapsed());
        // Writing into a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &scraped);
        let _ = text::encode_eof(&mut out);
        out
    }
}

/// The figures read at scrape time, in a registry made for this scrape.
fn scrape_registry(db: &Database, uptime: Duration) -> Registry {
    let mut registry = Registry::default();
    let status = db.status();
    let gauges = [
        (
            "dave_db_pool_size",
            "Open connections, idle and in use",
            status.size,
        ),
        ("dave_db_pool_idle", "Idle connections", status.idle),
        (
            "dave_db_pool_in_use",
            "Connections handed out",
            status.in_use,
        ),
        (
            "dave_db_pool_waiting",
            "Callers waiting for a connection",
            status.waiting,
        ),
        ("dave_db_pool_max_size", "DB_POOL_MAX_SIZE", status.max_size),
        ("dave_db_pool_min_size", "DB_POOL_MIN_SIZE", status.min_size),
    ];
    for (name, help, value) in gauges {
        registry.register(
            name,
            help,
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }
    registry.register(
        "dave_db_pool_acquire_timeouts",
        "Acquires that found no free connection within DB_POOL_TIMEOUT",
        ConstCounter::new(db.acquire_timeouts()),
    );

    let breaker_state = Family::<StateLabel, Gauge>::default();
    let state = db.breaker().state();
    for candidate in [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ] {
        breaker_state
            .get_or_create(&StateLabel {
                state: candidate.as_str(),
            })
            .set(i64::from(candidate == state));
    }
    registry.register(
        "dave_db_breaker_state",
        "The circuit breaker's state (1 for the current one)",
        breaker_state,
    );

    let transitions = db.breaker().transitions();
    let breaker_transitions = Family::<ToLabel, Counter>::default();
    for (to, n) in [
        ("open", transitions.opened),
        ("half_open", transitions.half_opened),
        ("closed", transitions.closed),
    ] {
        breaker_transitions.get_or_create(&ToLabel { to }).inc_by(n);
    }
    registry.register(
        "dave_db_breaker_transitions",
        "Transitions of the circuit breaker into each state",
        breaker_transitions,
    );

    let errors = Family::<KindLabel, Counter>::default();
    for (kind, n) in db.errors_by_kind() {
        errors.get_or_create(&KindLabel { kind }).inc_by(n);
    }
    registry.register("dave_db_errors", "Failed database calls by kind", errors);

    register_replica(&mut registry, db);

    registry.register(
        "dave_uptime_seconds",
        "Seconds since the process started",
        ConstGauge::new(uptime.as_secs_f64()),
    );
    registry
}

/// The read replica's figures (`DB_READ_DSN`), when one is configured:
/// its state, lag, pool, and how many routed reads each server answered.
fn register_replica(registry: &mut Registry, db: &Database) {
    let Some(replica) = db.replica_status() else {
        return;
    };
    let state = Family::<StateLabel, Gauge>::default();
    for candidate in ["ok", "lagging", "down", "unknown"] {
        state
            .get_or_create(&StateLabel { state: candidate })
            .set(i64::from(candidate == replica.state));
    }
    registry.register(
        "dave_db_replica_state",
        "The read replica's state (1 for the current one)",
        state,
    );
    if let Some(lag) = replica.lag_seconds {
        registry.register(
            "dave_db_replica_lag_seconds",
            "How far behind the primary the replica was at its last check, plus the check's age",
            ConstGauge::new(lag),
        );
    }
    let reads = Family::<ServedByLabel, Counter>::default();
    for (served_by, n) in [
        ("replica", replica.reads_replica),
        ("primary", replica.reads_primary),
        ("primary_after_replica_failed", replica.fallbacks),
    ] {
        reads.get_or_create(&ServedByLabel { served_by }).inc_by(n);
    }
    registry.register(
        "dave_db_replica_routed_reads",
        "Reads that could go to the replica, by the server that answered",
        reads,
    );
    for (name, help, value) in [
        (
            "dave_db_replica_pool_size",
            "Open replica connections",
            replica.pool.size,
        ),
        (
            "dave_db_replica_pool_in_use",
            "Replica connections handed out",
            replica.pool.in_use,
        ),
    ] {
        registry.register(
            name,
            help,
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_only(m: &Metrics) -> String {
        let mut out = String::new();
        text::encode_registry(&mut out, &m.registry).unwrap();
        out
    }

    #[test]
    fn counts_and_buckets_per_route_and_status() {
        let m = Metrics::new();
        for ms in [3, 30] {
            m.record(
                "GET",
                "/api/v1/conversations/{id}",
                200,
                Duration::from_millis(ms),
            );
        }
        m.record(
            "GET",
            "/api/v1/conversations/{id}",
            404,
            Duration::from_millis(1),
        );
        let text = requests_only(&m);
        let ok = "method=\"GET\",route=\"/api/v1/conversations/{id}\",status=\"200\"";
        for line in [
            format!("dave_http_requests_total{{{ok}}} 2\n"),
            format!("dave_http_request_duration_seconds_bucket{{le=\"0.0025\",{ok}}} 0\n"),
            format!("dave_http_request_duration_seconds_bucket{{le=\"0.005\",{ok}}} 1\n"),
            format!("dave_http_request_duration_seconds_bucket{{le=\"0.05\",{ok}}} 2\n"),
            format!("dave_http_request_duration_seconds_bucket{{le=\"+Inf\",{ok}}} 2\n"),
            format!("dave_http_request_duration_seconds_count{{{ok}}} 2\n"),
        ] {
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
        let sum = text
            .lines()
            .find(|l| l.starts_with(&format!("dave_http_request_duration_seconds_sum{{{ok}}}")))
            .unwrap();
        let sum: f64 = sum.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert!((sum - 0.033).abs() < 1e-9, "{sum}");
        assert!(text.contains("status=\"404\"} 1\n"), "{text}");
    }

    #[test]
    fn slow_requests_land_in_inf_only() {
        let m = Metrics::new();
        m.record("POST", "/x", 201, Duration::from_secs(60));
        let text = requests_only(&m);
        assert!(
            text.contains("le=\"30.0\",method=\"POST\",route=\"/x\",status=\"201\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("le=\"+Inf\",method=\"POST\",route=\"/x\",status=\"201\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn in_flight_follows_guards() {
        let m = Metrics::new();
        let a = m.start_request();
        let b = m.start_request();
        assert!(requests_only(&m).contains("dave_http_requests_in_flight 2\n"));
        drop(a);
        drop(b);
        assert!(requests_only(&m).contains("dave_http_requests_in_flight 0\n"));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Metrics::new();
        for method in ["RND123", "get", "PROPFIND", "X\"Y"] {
            m.record(method, UNMATCHED, 404, Duration::from_millis(1));
        }
        m.record("PATCH", UNMATCHED, 404, Duration::from_millis(1));
        let text = requests_only(&m);
        let mut totals: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dave_http_requests_total{"))
            .collect();
        totals.sort_unstable();
        assert_eq!(
            totals,
            [
                "dave_http_requests_total{method=\"PATCH\",route=\"unmatched\",status=\"404\"} 1",
                "dave_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 4",
            ],
            "{text}"
        );
    }
}
