//! Registration as a NATS micro service, so `nats micro ls|info|stats` shows each instance:
//! name, version, queue, and processed and error counts (in the stats `data`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::service::ServiceExt;
use futures::StreamExt;

use crate::config::WorkerConfig;

/// Counters shown by `nats micro stats` and the status endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub cancelled: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub dead_lettered: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "started": self.started.load(Ordering::Relaxed),
            "processed": self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
                + self.cancelled.load(Ordering::Relaxed),
            "succeeded": self.succeeded.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "errors": self.failed.load(Ordering::Relaxed) + self.retried.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "cancelled": self.cancelled.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
            "dead_lettered": self.dead_lettered.load(Ordering::Relaxed),
        })
    }
}

/// The subject on which an instance answers with its counters.
pub(super) fn status_subject(service: &str, instance: &str) -> String {
    format!(
        "lightbox.status.{service}.{}",
        crate::events::subject_token(instance)
    )
}

pub(super) async fn register(
    client: &async_nats::Client,
    name: &str,
    config: &WorkerConfig,
    counters: Arc<Counters>,
) -> anyhow::Result<async_nats::service::Service> {
    let metadata = HashMap::from([
        ("queue".to_owned(), config.queue.clone()),
        ("concurrency".to_owned(), config.concurrency.to_string()),
        ("instance".to_owned(), config.instance.clone()),
    ]);
    let stats_counters = counters.clone();
    let service = client
        .service_builder()
        .description(format!("Lightbox {name} worker on {}", config.queue))
        .metadata(metadata)
        .stats_handler(move |_endpoint, _stats| stats_counters.snapshot())
        .start(name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|err| anyhow::anyhow!("registering micro service: {err}"))?;
    // `status` answers with this instance's counters; every instance answers (no queue group
    // semantics matter for a read-only status).
    let mut endpoint = service
        .endpoint_builder()
        .name("status")
        .add(status_subject(name, &config.instance))
        .await
        .map_err(|err| anyhow::anyhow!("adding status endpoint: {err}"))?;
    tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let body = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
            let _ = request.respond(Ok(body.into())).await;
        }
    });
    Ok(service)
}
