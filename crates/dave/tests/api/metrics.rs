//! `/metrics`: Prometheus text with requests by route template and status,
//! the latency histogram, pool, breaker and query-error figures.

use std::collections::HashMap;

use crate::helpers::spawn_app;

/// `name{labels}` → value, for every sample line; panics on a malformed line.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty()
            || line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line.starts_with("# UNIT ")
            || line == "# EOF"
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `series value`: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        out.insert(series.to_owned(), value);
    }
    out
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    let token = app.bearer(uuid::Uuid::new_v4(), false);
    for _ in 0..2 {
        let missing = format!("/api/v1/conversations/{}", uuid::Uuid::new_v4());
        let response = app
            .client
            .get(app.url(&missing))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    assert_eq!(app.get("/no/such/route/12345").await.status(), 404);
    assert_eq!(app.get("/health/ready").await.status(), 200);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let text = response.text().await.unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{text}"
    );
    let s = samples(&text);

    let by_id = "method=\"GET\",route=\"/api/v1/conversations/{id}\",status=\"404\"";
    assert_eq!(
        s[&format!("dave_http_requests_total{{{by_id}}}")],
        2.0,
        "{text}"
    );
    assert_eq!(
        s[&format!("dave_http_request_duration_seconds_count{{{by_id}}}")],
        2.0
    );
    assert_eq!(
        s[&format!("dave_http_request_duration_seconds_bucket{{le=\"+Inf\",{by_id}}}")],
        2.0
    );
    assert!(s[&format!("dave_http_request_duration_seconds_sum{{{by_id}}}")] > 0.0);
    assert_eq!(
        s["dave_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"],
        1.0
    );
    assert!(
        !text.contains("/no/such/route"),
        "raw paths are never labels"
    );
    assert_eq!(
        s["dave_http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"200\"}"],
        1.0
    );

    assert!(s["dave_db_pool_size"] >= 1.0, "{text}");
    for gauge in [
        "dave_db_pool_idle",
        "dave_db_pool_waiting",
        "dave_db_pool_in_use",
    ] {
        assert!(s.contains_key(gauge), "{gauge} missing:\n{text}");
    }
    assert_eq!(s["dave_db_breaker_state{state=\"closed\"}"], 1.0);
    assert_eq!(s["dave_db_breaker_state{state=\"open\"}"], 0.0);
    assert_eq!(s["dave_db_breaker_transitions_total{to=\"open\"}"], 0.0);
    assert!(
        s.contains_key("dave_db_errors_total{kind=\"timeout\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn histogram_buckets_are_cumulative() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.get("/health/live").await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let labels = ",method=\"GET\",route=\"/health/live\",status=\"200\"}";
    let counts: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("dave_http_request_duration_seconds_bucket{le=") && l.contains(labels)
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(counts.len() > 5, "{text}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(*counts.last().unwrap(), 3.0);
}

/// The number of request series (`dave_http_requests_total` samples).
async fn request_series(app: &crate::helpers::TestApp) -> usize {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("dave_http_requests_total{"))
        .count()
}

/// A request with a made-up method to a made-up path, or to a real route.
async fn made_up(app: &crate::helpers::TestApp, i: usize, real_route: bool) -> u16 {
    let method =
        reqwest::Method::from_bytes(format!("RND{}{i}", rand::random::<u32>()).as_bytes()).unwrap();
    let path = if real_route {
        format!("/api/v1/conversations/{}", uuid::Uuid::new_v4())
    } else {
        format!("/made/up/{}/{i}", uuid::Uuid::new_v4())
    };
    app.client
        .request(method, app.url(&path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_series() {
    let app = spawn_app().await;
    // The shared `other` and `unmatched` series exist after one of each.
    let first = [made_up(&app, 0, false).await, made_up(&app, 0, true).await];
    assert_eq!(first, [404, 405]);
    app.get("/metrics").await;
    let before = request_series(&app).await;

    for i in 1..=100 {
        let status = made_up(&app, i, i % 2 == 0).await;
        assert!(status == 404 || status == 405, "{status}");
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(request_series(&app).await, before, "{text}");
    assert!(!text.contains("RND"), "{text}");
    assert!(!text.contains("/made/up"), "{text}");
    let s = samples(&text);
    assert_eq!(
        s["dave_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"}"], 51.0,
        "{text}"
    );
    assert_eq!(
        s["dave_http_requests_total{method=\"other\",route=\"/api/v1/conversations/{id}\",status=\"405\"}"],
        51.0,
        "{text}"
    );
}
