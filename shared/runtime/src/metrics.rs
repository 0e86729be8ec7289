//! Prometheus metrics of one worker, served as text on `GET /metrics` at `LIGHTBOX_METRICS_ADDR`
//! (default `0.0.0.0:9464`; `off` serves none; `127.0.0.1:0` takes a free port, as tests do).
//!
//! Every number comes from the worker's [`Counters`], read at scrape time, so the micro service
//! stats, the status endpoint and `/metrics` never disagree:
//! - `lightbox_jobs_total{function,state}`: deliveries settled by final state (`succeeded`,
//!   `failed`, `cancelled`, `retried`);
//! - `lightbox_job_duration_seconds` and `lightbox_queue_wait_seconds`: histograms;
//! - `lightbox_jobs_in_flight`, `lightbox_retries_total`, `lightbox_dead_letters_total`;
//! - `lightbox_render_samples_total`: pixel samples rendered (`rate()` of it is samples per second).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::worker::Counters;

/// The registry of one worker: its counters under the label `function`.
pub fn registry(function: &str, counters: Arc<Counters>) -> Registry {
    let mut registry = Registry::with_labels(
        [(
            std::borrow::Cow::Borrowed("function"),
            std::borrow::Cow::Owned(function.to_owned()),
        )]
        .into_iter(),
    );
    registry.register(
        "lightbox_job_duration_seconds",
        "Seconds from receipt to settlement of each delivery",
        counters.job_seconds.clone(),
    );
    registry.register(
        "lightbox_queue_wait_seconds",
        "Seconds a job waited between submission and receipt",
        counters.queue_wait_seconds.clone(),
    );
    registry.register_collector(Box::new(CountersCollector { counters }));
    registry
}

/// Reads the atomic counters at scrape time.
#[derive(Debug)]
struct CountersCollector {
    counters: Arc<Counters>,
}

impl Collector for CountersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
        {
            let mut jobs = encoder.encode_descriptor(
                "lightbox_jobs",
                "Deliveries settled on this worker, by final state",
                None,
                MetricType::Counter,
            )?;
            for (state, value) in [
                ("succeeded", load(&c.succeeded)),
                ("failed", load(&c.failed)),
                ("cancelled", load(&c.cancelled)),
                ("retried", load(&c.retried)),
            ] {
                let labels = [("state", state)];
                ConstCounter::new(value).encode(jobs.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "lightbox_retries",
                "Deliveries given back to the queue for another attempt",
                load(&c.retried),
            ),
            (
                "lightbox_dead_letters",
                "Jobs this worker dead-lettered",
                load(&c.dead_lettered),
            ),
            (
                "lightbox_render_samples",
                "Pixel samples rendered (samples per pixel x pixels x frames)",
                load(&c.render_samples),
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "lightbox_jobs_in_flight",
            "Jobs running on this worker now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(load(&c.in_flight) as i64).encode(metric)?;
        Ok(())
    }
}

/// The registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Where to listen: `LIGHTBOX_METRICS_ADDR`, or the default; `off` (or `none`) for nowhere.
pub fn listen_addr(setting: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    match setting.unwrap_or(DEFAULT_ADDR) {
        "off" | "none" => Ok(None),
        addr => addr.parse().map(Some).map_err(|err| {
            anyhow::anyhow!("LIGHTBOX_METRICS_ADDR={addr:?} is not an address: {err}")
        }),
    }
}

/// The production default: every interface, the port conventionally free for exporters.
pub const DEFAULT_ADDR: &str = "0.0.0.0:9464";

/// Serves `GET /metrics` on `addr` until the task is aborted; returns the bound address.
///
/// The same listener answers `GET /livez` with `ok`: the liveness probe of the Kubernetes
/// package. An answer proves the process and its async runtime are alive, and needs no NATS, so
/// a NATS outage does not restart every pod (readiness, `--check`, does ask NATS).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("binding the metrics listener on {addr}: {err}"))?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    let task = tokio::spawn(async move {
        loop {
            let (mut socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                // One small request per connection: read the head, answer, close.
                let mut head = Vec::with_capacity(512);
                let mut buffer = [0u8; 512];
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let line = String::from_utf8_lossy(&head);
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next(), parts.next());
                let (status, content_type, body) = match (method, path) {
                    (Some("GET"), Some("/metrics")) => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        render(&registry),
                    ),
                    (Some("GET"), Some("/livez")) => ("200 OK", "text/plain", "ok\n".into()),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try GET /metrics or GET /livez\n".into(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(err) = socket.write_all(response.as_bytes()).await {
                    debug!(%peer, error = %err, "metrics: writing the answer failed");
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn livez_answers_without_nats_and_unknown_paths_are_404() {
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), Registry::default())
            .await
            .unwrap();
        let live = get(addr, "/livez").await;
        assert!(
            live.starts_with("HTTP/1.1 200 OK") && live.ends_with("ok\n"),
            "{live}"
        );
        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        task.abort();
    }

    #[test]
    fn the_text_names_every_metric_with_its_function() {
        let counters = Arc::new(Counters::default());
        counters.succeeded.fetch_add(3, Ordering::Relaxed);
        counters.observe_settled(std::time::Duration::from_millis(20), None);
        let text = render(&registry("render", counters));
        for expected in [
            "lightbox_jobs_total{function=\"render\",state=\"succeeded\"} 3",
            "lightbox_job_duration_seconds_count{function=\"render\"} 1",
            "lightbox_jobs_in_flight{function=\"render\"} 0",
            "lightbox_render_samples_total{function=\"render\"} 0",
            "lightbox_dead_letters_total",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }

    #[test]
    fn the_address_setting_parses() {
        assert_eq!(
            listen_addr(None).unwrap(),
            Some(DEFAULT_ADDR.parse().unwrap())
        );
        assert_eq!(listen_addr(Some("off")).unwrap(), None);
        assert!(listen_addr(Some("nonsense")).is_err());
    }
}
