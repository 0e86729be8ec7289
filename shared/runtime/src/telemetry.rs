//! Telemetry: `tracing` with an env filter (`LIGHTBOX_LOG`, else `RUST_LOG`), JSON lines when
//! `LIGHTBOX_LOG_FORMAT=json`, W3C trace context continued from an incoming `traceparent`, and
//! job spans exported over OTLP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! Text logs carry ANSI colour codes only when stderr is a terminal, so a log file or a
//! container's log stream holds plain text. In JSON lines a field logged with `?value` whose
//! debug form is JSON (a list of keys, a map of numbers) is written as that JSON, so `outputs`
//! is an array, not a string holding one.
//!
//! OTLP (http/protobuf, the SDK's batch processor on its own thread): each job's span
//! ([`job_span`]) continues the job's `traceparent` (same trace id, the incoming span as its
//! parent) and is exported with its fields (`job_id`, `function`, `attempt`) and events as
//! attributes and span events. The resource follows the spec's variables: `OTEL_SERVICE_NAME`,
//! else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the function's `lightbox-<function>`;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off; `OTEL_BSP_*`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_EXPORTER_OTLP_{,TRACES_}HEADERS`/`TIMEOUT` are read by the
//! SDK. Export is independent of `LIGHTBOX_LOG`: spans and events at `info` and above are sent.
//! With neither endpoint variable set no exporter exists and a span costs what it did before.
//! [`flush`] (called when a worker drains, or its pull loop ends) sends what is buffered. A
//! `--check` run exports nothing.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The tracer provider while OTLP export is on (set once, by the `init` that installed the
/// subscriber).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber once; later calls do nothing. Logs go to stderr. Spans are
/// exported over OTLP under the service name `lightbox` unless the environment names one;
/// workers call [`init_service`] with their function's name.
pub fn init() {
    init_service("lightbox");
}

/// [`init`] with the service name used when neither `OTEL_SERVICE_NAME` nor
/// `OTEL_RESOURCE_ATTRIBUTES` names one (`lightbox-convert`, ...).
pub fn init_service(default_service_name: &str) {
    let filter = std::env::var("LIGHTBOX_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info,async_nats=warn".into());
    let json = std::env::var("LIGHTBOX_LOG_FORMAT")
        .map(|f| f == "json")
        .unwrap_or(false);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        fmt.fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_filter(EnvFilter::new(filter))
            .boxed()
    } else {
        fmt.with_filter(EnvFilter::new(filter)).boxed()
    };
    // `lightbox-<function> --check` (the health check and readiness probe) runs no jobs: it
    // builds no exporter, even with the pod's OTEL_* variables set.
    let health_check = std::env::args().nth(1).as_deref() == Some("--check");
    let (provider, note) = if health_check {
        (None, None)
    } else {
        match otlp_provider(&|name| std::env::var(name).ok(), default_service_name) {
            Ok(Some(provider)) => (Some(provider), None),
            Ok(None) => (None, None),
            Err(message) => (None, Some(message)),
        }
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("lightbox"))
            .with_filter(export_filter())
    });
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if let Some(message) = note {
        tracing::warn!("OTLP trace export is off: {message}");
    }
    if let Some(provider) = provider {
        if installed {
            tracing::info!(endpoint = %otlp_endpoint_for_log(), "exporting job spans over OTLP");
            let _ = PROVIDER.set(provider);
        } else {
            let _ = provider.shutdown();
        }
    }
}

/// What the OTLP layer sees: `info` and above, without the transports' own chatter (and never
/// the exporter's HTTP client, whose spans would feed back into the exporter).
fn export_filter() -> Targets {
    Targets::new()
        .with_default(Level::INFO)
        .with_target("async_nats", Level::WARN)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
}

/// The tracer provider the environment asks for: `None` when no OTLP endpoint is set or export
/// is turned off, an error (logged, export stays off) when the settings cannot be honoured.
fn otlp_provider(
    var: &dyn Fn(&str) -> Option<String>,
    default_service_name: &str,
) -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(exporter) = set("OTEL_TRACES_EXPORTER") {
        let names: Vec<String> = exporter
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        if names.iter().any(|n| n == "none") {
            return Ok(None);
        }
        if !names.iter().any(|n| n == "otlp") {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={exporter}: only otlp (or none) is built in"
            ));
        }
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(protocol) = protocol.filter(|p| p.trim() != "http/protobuf") {
        return Err(format!(
            "OTLP protocol {protocol} is not built in; use http/protobuf (a collector's port 4318)"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP exporter cannot be built: {e}"))?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(var, default_service_name))
            .build(),
    ))
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES` and the SDK's own attributes, with `service.name`
/// from `OTEL_SERVICE_NAME` first (the spec's precedence), then the attributes, then the
/// default.
fn resource(var: &dyn Fn(&str) -> Option<String>, default_service_name: &str) -> Resource {
    let from_attributes = EnvResourceDetector::new()
        .detect()
        .get(&opentelemetry::Key::new("service.name"))
        .map(|v| v.to_string());
    let service_name = var("OTEL_SERVICE_NAME")
        .filter(|v| !v.trim().is_empty())
        .or(from_attributes)
        .unwrap_or_else(|| default_service_name.to_owned());
    Resource::builder_empty()
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ])
        .with_attribute(KeyValue::new("service.name", service_name))
        .build()
}

/// Where spans go, for the start-up log line (the traces endpoint as the exporter resolves it).
fn otlp_endpoint_for_log() -> String {
    match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint,
        _ => format!(
            "{}/v1/traces",
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .unwrap_or_default()
                .trim_end_matches('/')
        ),
    }
}

/// The span a job runs in: `job_id`, `function`, `attempt` and `trace_id` (logged with every
/// line). While OTLP export is on it continues `trace`: the exported span has the job's trace
/// id and the span that sent the job as its parent.
pub fn job_span(job_id: &str, function: &str, attempt: u64, trace: &TraceParent) -> tracing::Span {
    let span =
        tracing::info_span!("job", job_id = %job_id, function, attempt, trace_id = %trace.trace_id);
    if PROVIDER.get().is_some() {
        if let Some(parent) = remote_parent(trace) {
            let _ = span.set_parent(parent);
        }
        span.set_attribute("messaging.system", "nats");
    }
    span
}

/// The `traceparent` for work a job starts (a job it runs first, its continuation): the job's
/// trace, with the current span (the job's, or one of its handler's) as parent while that span
/// is exported, so the next job's span hangs under this one; otherwise a fresh span id
/// ([`TraceParent::child`]).
pub fn outgoing(trace: &TraceParent) -> TraceParent {
    let context = tracing::Span::current().context();
    let span = context.span();
    let current = span.span_context();
    if current.is_valid() && current.trace_id().to_string() == trace.trace_id {
        TraceParent {
            trace_id: trace.trace_id.clone(),
            parent_id: current.span_id().to_string(),
            flags: trace.flags.clone(),
        }
    } else {
        trace.child()
    }
}

/// The OpenTelemetry context of a `traceparent` received from another process.
fn remote_parent(trace: &TraceParent) -> Option<Context> {
    let trace_id = TraceId::from_hex(&trace.trace_id).ok()?;
    let span_id = SpanId::from_hex(&trace.parent_id).ok()?;
    let flags = u8::from_str_radix(&trace.flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(context))
}

/// Sends the spans the exporter still holds and waits for the collector's answer (bounded by
/// the exporter's timeout). A no-op when export is off. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(err) = provider.force_flush() {
            tracing::warn!("OTLP: spans could not be flushed: {err}");
        }
    }
}

/// One JSON object per event: `timestamp`, `level`, the event's fields (flattened, `message`
/// included), `span` (the innermost span's fields and name) and `spans` (all, outermost first).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = Map::new();
        object.insert("timestamp".into(), rfc3339(SystemTime::now()).into());
        object.insert("level".into(), event.metadata().level().as_str().into());
        event.record(&mut JsonVisitor(&mut object));
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let extensions = span.extensions();
                    let mut fields = extensions
                        .get::<FormattedFields<N>>()
                        .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                        .unwrap_or_default();
                    fields.insert("name".into(), span.name().into());
                    Value::Object(fields)
                })
                .collect();
            if let Some(innermost) = spans.last() {
                object.insert("span".into(), innermost.clone());
            }
            object.insert("spans".into(), spans.into());
        }
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), debug_value(&format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// A debug-formatted value: lists and maps whose debug form is valid JSON (`["a", "b"]`,
/// `{"k": 1}`) become that JSON; anything else stays the string it printed.
fn debug_value(printed: &str) -> Value {
    if printed.starts_with('[') || printed.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<Value>(printed) {
            return value;
        }
    }
    Value::String(printed.to_owned())
}

/// A time as RFC 3339 in UTC (`2026-12-04T19:30:09.123456789Z`), for logs and the micro
/// service's `started`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_nanos()
    )
}

pub use lightbox_protocol::trace::TraceParent;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_writes_utc_civil_time() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_796_412_609, 5);
        assert_eq!(rfc3339(t), "2026-12-04T19:30:09.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lists_stay_lists_and_other_values_stay_strings() {
        let keys = vec![
            "outputs/a.webp".to_owned(),
            "outputs/b \"q\".png".to_owned(),
        ];
        assert_eq!(
            debug_value(&format!("{keys:?}")),
            serde_json::json!(["outputs/a.webp", "outputs/b \"q\".png"])
        );
        assert_eq!(
            debug_value(&format!("{:?}", Vec::<String>::new())),
            serde_json::json!([])
        );
        assert_eq!(debug_value("Some(3)"), Value::String("Some(3)".into()));
        assert_eq!(debug_value("[not json"), Value::String("[not json".into()));
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn no_endpoint_or_export_turned_off_builds_no_exporter() {
        for vars in [
            &[][..],
            &[("OTEL_SERVICE_NAME", "x")][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:4318/v1/traces",
                ),
                ("OTEL_TRACES_EXPORTER", "none"),
            ][..],
        ] {
            assert!(
                otlp_provider(&env(vars), "lightbox-test")
                    .unwrap()
                    .is_none(),
                "{vars:?}"
            );
        }
    }

    #[test]
    fn protocols_and_exporters_not_built_in_are_refused_by_name() {
        let err = otlp_provider(
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
            "lightbox-test",
        )
        .unwrap_err();
        assert!(
            err.contains("grpc") && err.contains("http/protobuf"),
            "{err}"
        );
        let err = otlp_provider(
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_TRACES_EXPORTER", "zipkin"),
            ]),
            "lightbox-test",
        )
        .unwrap_err();
        assert!(err.contains("zipkin"), "{err}");
    }

    #[test]
    fn service_name_prefers_otel_service_name_then_the_default() {
        let name = |vars: &[(&str, &str)]| {
            resource(&env(vars), "lightbox-convert")
                .get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
        };
        assert_eq!(name(&[]).as_deref(), Some("lightbox-convert"));
        assert_eq!(
            name(&[("OTEL_SERVICE_NAME", "convert-eu")]).as_deref(),
            Some("convert-eu")
        );
    }

    #[test]
    fn work_a_job_starts_names_the_exported_span_as_parent() {
        let trace =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        // Without an OpenTelemetry layer: the same trace, a fresh span id.
        let plain = outgoing(&trace);
        assert_eq!(plain.trace_id, trace.trace_id);
        assert_ne!(plain.parent_id, trace.parent_id);

        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job");
            span.set_parent(remote_parent(&trace).unwrap()).unwrap();
            let _entered = span.enter();
            let own = span.context().span().span_context().span_id().to_string();
            let next = outgoing(&trace);
            assert_eq!(next.trace_id, trace.trace_id);
            assert_eq!(next.parent_id, own);
            assert_eq!(next.flags, "01");
            assert_ne!(own, trace.parent_id);
        });
    }

    #[test]
    fn a_traceparent_becomes_a_remote_parent() {
        let trace =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let context = remote_parent(&trace).unwrap();
        let span = context.span();
        let parent = span.span_context();
        assert!(parent.is_remote() && parent.is_sampled());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
    }
}
