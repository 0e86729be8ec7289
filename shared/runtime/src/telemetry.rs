//! Telemetry: `tracing` with an env filter (`LIGHTBOX_LOG`, else `RUST_LOG`), JSON lines when
//! `LIGHTBOX_LOG_FORMAT=json`, and W3C trace context continued from an incoming `traceparent`.

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
        .with_target(false);
    let json = std::env::var("LIGHTBOX_LOG_FORMAT")
        .map(|f| f == "json")
        .unwrap_or(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

pub use lightbox_protocol::trace::TraceParent;
