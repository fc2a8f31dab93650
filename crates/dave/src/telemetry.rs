//! Logging: pretty lines for a terminal, or (`LOG_FORMAT=json`) one JSON
//! object per line in Google Cloud Logging's structured format.
//!
//! A JSON line carries `severity`, `message` and `time`, the fields of every
//! span it happens in (so the request span's `request_id`, method and route
//! are on every line a request writes), its own fields, and, when the request
//! came with a trace context, `logging.googleapis.com/trace`
//! (`projects/PROJECT/traces/TRACE`, the project from `GOOGLE_CLOUD_PROJECT`),
//! `logging.googleapis.com/spanId` and `logging.googleapis.com/trace_sampled`,
//! so Cloud Logging groups a request's lines under its trace. The trace
//! context is read from W3C `traceparent` first, else from Google's
//! `X-Cloud-Trace-Context`, whose span id is decimal and is written here in
//! hex as Cloud Trace shows it. Access-log lines (target [`ACCESS_TARGET`])
//! also get an `httpRequest` object, which the Logs Explorer shows as a
//! request. The JSON layer is a small `tracing_subscriber::Layer` because the
//! stock JSON formatter nests fields and names keys its own way.

use std::fmt;
use std::io::{IsTerminal, Write};

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};

/// The target of the one INFO line each API request writes.
pub const ACCESS_TARGET: &str = "dave::access";

/// Span fields that carry the trace context; mapped to Cloud Logging's keys.
pub const TRACE_ID_FIELD: &str = "trace_id";
pub const SPAN_ID_FIELD: &str = "trace_span_id";
pub const SAMPLED_FIELD: &str = "trace_sampled";

const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_KEY: &str = "logging.googleapis.com/spanId";
const SAMPLED_KEY: &str = "logging.googleapis.com/trace_sampled";

/// Installs the process's logger, as the configuration says, writing to stdout.
/// Fails only when a logger was installed already.
pub fn init(config: &Config) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(CloudLoggingLayer::new(
                std::io::stdout,
                config.google_cloud_project.clone(),
            ))
            .try_init(),
        LogFormat::Pretty => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    // Colours only for a terminal, not for a file or a collector.
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
    }
}

/// A request's trace context, from `traceparent` or `X-Cloud-Trace-Context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits, when the header named a span.
    pub span_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    /// `traceparent` first, `X-Cloud-Trace-Context` second; `None` when
    /// neither is present and valid (a malformed header is ignored, as the
    /// W3C spec asks).
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(TraceContext::from_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(TraceContext::from_cloud_trace))
    }

    /// `00-<trace id>-<parent id>-<flags>`.
    pub fn from_traceparent(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        if !is_hex(version, 2) || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        // Version 00 has exactly four parts; later versions may add more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        if is_zero(trace_id) || is_zero(span_id) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: Some(span_id.to_ascii_lowercase()),
            sampled: flags & 1 == 1,
        })
    }

    /// `TRACE_ID/SPAN_ID;o=OPTIONS`, the span id in decimal.
    pub fn from_cloud_trace(value: &str) -> Option<TraceContext> {
        let (ids, options) = match value.trim().split_once(';') {
            Some((ids, options)) => (ids, Some(options)),
            None => (value.trim(), None),
        };
        let (trace_id, span_id) = match ids.split_once('/') {
            Some((t, s)) => (t, Some(s)),
            None => (ids, None),
        };
        if !is_hex(trace_id, 32) || is_zero(trace_id) {
            return None;
        }
        let span_id = match span_id.filter(|s| !s.is_empty()) {
            None => None,
            Some(decimal) => {
                let n: u64 = decimal.parse().ok()?;
                (n != 0).then(|| format!("{n:016x}"))
            }
        };
        let sampled = options
            .and_then(|o| o.trim().strip_prefix("o="))
            .is_some_and(|o| o.trim() == "1");
        Some(TraceContext {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id,
            sampled,
        })
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// The JSON layer: Cloud Logging's structured format, one object per line.
pub struct CloudLoggingLayer<W> {
    make_writer: W,
    project: Option<String>,
}

impl<W> CloudLoggingLayer<W> {
    /// A layer writing to `make_writer`; `project` names the trace resource.
    pub fn new(make_writer: W, project: Option<String>) -> Self {
        CloudLoggingLayer {
            make_writer,
            project,
        }
    }
}

/// A span's recorded fields, kept in its extensions. A list under the
/// fields' static names rather than a JSON map: every request opens a span,
/// few write a line, so the map is built only for a line.
struct SpanFields(Vec<(&'static str, Value)>);

impl SpanFields {
    /// A later value of a field replaces the earlier one, as in a map.
    fn set(&mut self, fields: Vec<(&'static str, Value)>) {
        for (name, value) in fields {
            match self.0.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => self.0.push((name, value)),
            }
        }
    }
}

/// Collects fields as JSON values; strings stay strings, numbers numbers.
#[derive(Default)]
struct JsonVisitor(Vec<(&'static str, Value)>);

impl JsonVisitor {
    fn insert(&mut self, field: &Field, value: Value) {
        self.0.push((field.name(), value));
    }
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::String(pgkit::error::error_chain(value)));
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        values.record(&mut visitor);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => fields.set(visitor.0),
            None => extensions.insert(SpanFields(visitor.0)),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    let named = span_fields
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()));
                    fields.extend(named);
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        fields.extend(visitor.0.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let line = self.line(event, fields);
        let mut writer = self.make_writer.make_writer();
        // A log line that cannot be written has nowhere else to go.
        let _ = writer.write_all(line.as_bytes());
    }
}

impl<W> CloudLoggingLayer<W> {
    fn line(&self, event: &Event<'_>, mut fields: Map<String, Value>) -> String {
        let meta = event.metadata();
        let mut out = Map::new();
        out.insert("severity".into(), severity(meta.level()).into());
        let message = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        let message = match message {
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.insert("message".into(), Value::String(message));
        out.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        out.insert("target".into(), meta.target().into());
        self.trace_keys(&mut fields, &mut out);
        if meta.target() == ACCESS_TARGET {
            out.insert("httpRequest".into(), http_request(&fields));
        }
        for (k, v) in fields {
            out.entry(k).or_insert(v);
        }
        let mut line = Value::Object(out).to_string();
        line.push('\n');
        line
    }

    /// Moves the trace fields to Cloud Logging's keys.
    fn trace_keys(&self, fields: &mut Map<String, Value>, out: &mut Map<String, Value>) {
        let Some(Value::String(trace_id)) = fields.remove(TRACE_ID_FIELD) else {
            fields.remove(SPAN_ID_FIELD);
            fields.remove(SAMPLED_FIELD);
            return;
        };
        let trace = match &self.project {
            Some(project) => format!("projects/{project}/traces/{trace_id}"),
            None => trace_id,
        };
        out.insert(TRACE_KEY.into(), trace.into());
        if let Some(span) = fields.remove(SPAN_ID_FIELD) {
            out.insert(SPAN_KEY.into(), span);
        }
        if let Some(sampled) = fields.remove(SAMPLED_FIELD) {
            out.insert(SAMPLED_KEY.into(), sampled);
        }
    }
}

/// Cloud Logging's `httpRequest` from the access-log fields.
fn http_request(fields: &Map<String, Value>) -> Value {
    let mut req = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = fields.get(from) {
            req.insert(to.into(), v.clone());
        }
    };
    copy("method", "requestMethod");
    copy("path", "requestUrl");
    copy("status", "status");
    copy("user_agent", "userAgent");
    if let Some(ms) = fields.get("latency_ms").and_then(Value::as_f64) {
        req.insert("latency".into(), format!("{:.6}s", ms / 1000.0).into());
    }
    Value::Object(req)
}

/// An in-memory log sink for tests that read what was logged (here and in
/// the middleware's tests).
#[cfg(test)]
pub(crate) mod test_log {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        /// Every line written so far, each parsed as JSON.
        pub(crate) fn json_lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_log::Buffer;
    use super::*;

    #[test]
    fn traceparent_gives_ids_and_sampling() {
        let t = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled);
        let unsampled = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cloud_trace_span_id_goes_from_decimal_to_hex() {
        let t = TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000/1;o=1").unwrap();
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("0000000000000001"));
        assert!(t.sampled);
        let t = TraceContext::from_cloud_trace(
            "105445aa7843bc8bf206b12000100000/18446744073709551615;o=0",
        )
        .unwrap();
        assert_eq!(t.span_id.as_deref(), Some("ffffffffffffffff"));
        assert!(!t.sampled);
        let t = TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000").unwrap();
        assert_eq!((t.span_id, t.sampled), (None, false));
        assert_eq!(TraceContext::from_cloud_trace("nothex/1;o=1"), None);
        assert_eq!(
            TraceContext::from_cloud_trace("105445aa7843bc8bf206b12000100000/12ab;o=1"),
            None
        );
    }

    #[test]
    fn traceparent_wins_over_cloud_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        assert_eq!(
            TraceContext::from_headers(&headers).unwrap().trace_id,
            "105445aa7843bc8bf206b12000100000"
        );
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            TraceContext::from_headers(&headers).unwrap().trace_id,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    fn capture(project: Option<&str>, f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(CloudLoggingLayer::new(
            buffer.clone(),
            project.map(str::to_owned),
        ));
        tracing::subscriber::with_default(subscriber, f);
        buffer.json_lines()
    }

    #[test]
    fn lines_carry_severity_message_span_fields_and_trace() {
        let lines = capture(Some("my-project"), || {
            let span = tracing::info_span!(
                "request",
                request_id = "req-1",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                trace_span_id = "00f067aa0ba902b7",
                trace_sampled = true,
            );
            let _guard = span.enter();
            tracing::warn!(attempt = 3, "database not reachable yet");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "database not reachable yet");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["attempt"], 3);
        assert_eq!(
            line[TRACE_KEY],
            "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(line[SPAN_KEY], "00f067aa0ba902b7");
        assert_eq!(line[SAMPLED_KEY], true);
        assert!(line.get(TRACE_ID_FIELD).is_none());
    }

    #[test]
    fn access_lines_get_an_http_request_object() {
        let lines = capture(None, || {
            tracing::info!(
                target: ACCESS_TARGET,
                method = "GET",
                path = "/api/v1/conversations",
                status = 200u64,
                latency_ms = 12.5,
                "request finished"
            );
        });
        let req = &lines[0]["httpRequest"];
        assert_eq!(req["requestMethod"], "GET");
        assert_eq!(req["status"], 200);
        assert_eq!(req["latency"], "0.012500s");
        assert_eq!(lines[0]["severity"], "INFO");
    }

    #[test]
    fn lines_outside_requests_have_no_trace_keys() {
        let lines = capture(Some("p"), || tracing::error!("boom"));
        assert_eq!(lines[0]["severity"], "ERROR");
        assert!(lines[0].get(TRACE_KEY).is_none());
    }
}
