//! Telemetry: `tracing` with an env filter (`LIGHTBOX_LOG`, else `RUST_LOG`), JSON lines when
//! `LIGHTBOX_LOG_FORMAT=json`, and W3C trace context continued from an incoming `traceparent`.
//! Text logs carry ANSI colour codes only when stderr is a terminal, so a log file or a
//! container's log stream holds plain text. In JSON lines a field logged with `?value` whose
//! debug form is JSON (a list of keys, a map of numbers) is written as that JSON, so `outputs`
//! is an array, not a string holding one.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing. Logs go to stderr.
pub fn init() {
    let filter = std::env::var("LIGHTBOX_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info,async_nats=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let json = std::env::var("LIGHTBOX_LOG_FORMAT")
        .map(|f| f == "json")
        .unwrap_or(false);
    let _ = if json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init()
    } else {
        builder.try_init()
    };
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
}
