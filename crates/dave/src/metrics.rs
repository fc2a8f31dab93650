//! Prometheus metrics, kept in atomics and written out by hand in the text
//! exposition format at `GET /metrics`.
//!
//! Requests are counted per (method, route template, status) with a latency
//! histogram; the route is the template (`/api/v1/conversations/{id}`), never
//! the raw path, so ids cannot blow up the number of series, and unknown
//! routes share one `unmatched` label. HTTP lets a client send any token as
//! the method (`curl -X RND123`), so only the standard methods are labelled
//! as themselves and every other one is `other`: no client can add series.
//! Pool and breaker figures are read from
//! the [`Database`] when scraped (nothing runs in between: Cloud Run throttles
//! CPU between requests). A recorded request costs a read lock and a few
//! atomic adds; a new series takes the write lock once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use pgkit::breaker::BreakerState;
use pgkit::pool::Database;

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

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    method: &'static str,
    route: String,
    status: u16,
}

/// One (method, route, status): count, latency sum and buckets.
#[derive(Debug, Default)]
struct Series {
    count: AtomicU64,
    sum_micros: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf` only.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

impl Series {
    fn observe(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The process's request metrics; shared through `AppState`.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    in_flight: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts a request as in flight until dropped (also when its future is
/// cancelled, e.g. the client went away).
#[derive(Debug)]
pub struct InFlight<'a> {
    metrics: &'a Metrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            series: RwLock::new(HashMap::new()),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Marks a request as started; it stops counting when the guard drops.
    pub fn start_request(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { metrics: self }
    }

    /// Records one finished request. `route` is the matched template, or
    /// [`UNMATCHED`]; `method` is labelled by [`method_label`].
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let key = SeriesKey {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        let found = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let series = match found {
            Some(series) => series,
            None => {
                let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
                Arc::clone(map.entry(key).or_default())
            }
        };
        series.observe(latency);
    }

    /// The whole exposition: requests, then the database's pool, breaker and errors.
    pub fn render(&self, db: &Database) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_requests(&mut out);
        render_database(&mut out, db);
        out.push_str("# HELP dave_uptime_seconds Seconds since the process started.\n");
        out.push_str("# TYPE dave_uptime_seconds gauge\n");
        let _ = writeln!(
            out,
            "dave_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }

    fn render_requests(&self, out: &mut String) {
        let mut series: Vec<(SeriesKey, Arc<Series>)> = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));

        out.push_str("# HELP dave_http_requests_in_flight Requests being served now.\n");
        out.push_str("# TYPE dave_http_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "dave_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );

        out.push_str("# HELP dave_http_requests_total Requests served, by method, route template and status.\n");
        out.push_str("# TYPE dave_http_requests_total counter\n");
        for (key, s) in &series {
            let _ = writeln!(
                out,
                "dave_http_requests_total{{{}}} {}",
                labels(key),
                s.count.load(Ordering::Relaxed)
            );
        }

        out.push_str("# HELP dave_http_request_duration_seconds Time to the response's headers, by method, route template and status.\n");
        out.push_str("# TYPE dave_http_request_duration_seconds histogram\n");
        for (key, s) in &series {
            let labels = labels(key);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "dave_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "dave_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "dave_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "dave_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
}

fn labels(key: &SeriesKey) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        escape(key.method),
        escape(&key.route),
        key.status
    )
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn render_database(out: &mut String, db: &Database) {
    let status = db.status();
    gauge(
        out,
        "dave_db_pool_size",
        "Open connections, idle and in use.",
        status.size,
    );
    gauge(out, "dave_db_pool_idle", "Idle connections.", status.idle);
    gauge(
        out,
        "dave_db_pool_in_use",
        "Connections handed out.",
        status.in_use,
    );
    gauge(
        out,
        "dave_db_pool_waiting",
        "Callers waiting for a connection.",
        status.waiting,
    );
    gauge(
        out,
        "dave_db_pool_max_size",
        "DB_POOL_MAX_SIZE.",
        status.max_size,
    );
    gauge(
        out,
        "dave_db_pool_min_size",
        "DB_POOL_MIN_SIZE.",
        status.min_size,
    );

    out.push_str("# HELP dave_db_pool_acquire_timeouts_total Acquires that found no free connection within DB_POOL_TIMEOUT.\n");
    out.push_str("# TYPE dave_db_pool_acquire_timeouts_total counter\n");
    let _ = writeln!(
        out,
        "dave_db_pool_acquire_timeouts_total {}",
        db.acquire_timeouts()
    );

    let state = db.breaker().state();
    out.push_str(
        "# HELP dave_db_breaker_state The circuit breaker's state (1 for the current one).\n",
    );
    out.push_str("# TYPE dave_db_breaker_state gauge\n");
    for candidate in [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ] {
        let _ = writeln!(
            out,
            "dave_db_breaker_state{{state=\"{}\"}} {}",
            candidate.as_str(),
            u8::from(candidate == state)
        );
    }
    let transitions = db.breaker().transitions();
    out.push_str("# HELP dave_db_breaker_transitions_total Transitions of the circuit breaker into each state.\n");
    out.push_str("# TYPE dave_db_breaker_transitions_total counter\n");
    for (to, n) in [
        ("open", transitions.opened),
        ("half_open", transitions.half_opened),
        ("closed", transitions.closed),
    ] {
        let _ = writeln!(out, "dave_db_breaker_transitions_total{{to=\"{to}\"}} {n}");
    }

    out.push_str("# HELP dave_db_errors_total Failed database calls by kind.\n");
    out.push_str("# TYPE dave_db_errors_total counter\n");
    for (kind, n) in db.errors_by_kind() {
        let _ = writeln!(out, "dave_db_errors_total{{kind=\"{kind}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_only(m: &Metrics) -> String {
        let mut out = String::new();
        m.render_requests(&mut out);
        out
    }

    #[test]
    fn counts_and_buckets_per_route_and_status() {
        let m = Metrics::new();
        m.record(
            "GET",
            "/api/v1/conversations/{id}",
            200,
            Duration::from_millis(3),
        );
        m.record(
            "GET",
            "/api/v1/conversations/{id}",
            200,
            Duration::from_millis(30),
        );
        m.record(
            "GET",
            "/api/v1/conversations/{id}",
            404,
            Duration::from_millis(1),
        );
        let text = requests_only(&m);
        let ok = "method=\"GET\",route=\"/api/v1/conversations/{id}\",status=\"200\"";
        assert!(
            text.contains(&format!("dave_http_requests_total{{{ok}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "dave_http_request_duration_seconds_bucket{{{ok},le=\"0.0025\"}} 0\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "dave_http_request_duration_seconds_bucket{{{ok},le=\"0.005\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "dave_http_request_duration_seconds_bucket{{{ok},le=\"0.05\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "dave_http_request_duration_seconds_bucket{{{ok},le=\"+Inf\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "dave_http_request_duration_seconds_sum{{{ok}}} 0.033\n"
            )),
            "{text}"
        );
        assert!(text.contains("status=\"404\"} 1\n"), "{text}");
    }

    #[test]
    fn slow_requests_land_in_inf_only() {
        let m = Metrics::new();
        m.record("POST", "/x", 201, Duration::from_secs(60));
        let text = requests_only(&m);
        assert!(text.contains("le=\"30\"} 0\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 1\n"), "{text}");
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
        let totals: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dave_http_requests_total{"))
            .collect();
        assert_eq!(
            totals,
            [
                "dave_http_requests_total{method=\"PATCH\",route=\"unmatched\",status=\"404\"} 1",
                "dave_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 4",
            ],
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
