//! Registration as a NATS micro service, so `nats micro ls|info|stats` shows each instance: name,
//! version, queue and concurrency (metadata), and per endpoint the micro protocol's own columns.
//!
//! Jobs do not arrive as requests on a core-NATS endpoint but are pulled from JetStream, so the
//! `async-nats` service, which counts only requests it routes itself, would report zeros in
//! `num_requests`, `num_errors` and `processing_time` whatever a worker does. The worker therefore
//! answers the micro protocol's `$SRV.PING|INFO|STATS` subjects itself (the v1 schemas
//! `io.nats.micro.v1.*_response`), with the `jobs` endpoint's numbers taken from [`Counters`]:
//! `num_requests` counts settled deliveries (succeeded, failed, cancelled, or given back for a
//! retry), `num_errors` the failed and retried ones, and `processing_time` /
//! `average_processing_time` their run time in nanoseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde_json::json;

use crate::config::WorkerConfig;
use crate::infra::consumer_name;

/// Counters shown by `nats micro stats`, the status endpoint and `/metrics`.
#[derive(Debug)]
pub struct Counters {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub cancelled: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Run time of settled deliveries, in nanoseconds.
    pub processing_nanos: AtomicU64,
    /// Pixel samples rendered (samples per pixel × pixels × frames), from render results.
    pub render_samples: AtomicU64,
    /// Seconds from receipt to settlement of each delivery.
    pub job_seconds: Histogram,
    /// Seconds between submission and receipt.
    pub queue_wait_seconds: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        // 10 ms to about 45 min: thumbnails to heavy renders.
        let buckets = || exponential_buckets(0.01, 2.5, 14);
        Self {
            started: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            processing_nanos: AtomicU64::new(0),
            render_samples: AtomicU64::new(0),
            job_seconds: Histogram::new(buckets()),
            queue_wait_seconds: Histogram::new(buckets()),
        }
    }
}

impl Counters {
    /// Records one settled delivery: its run time and, when known, how long it waited queued.
    pub fn observe_settled(&self, run: Duration, queue_wait: Option<Duration>) {
        let nanos = u64::try_from(run.as_nanos()).unwrap_or(u64::MAX);
        self.processing_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.job_seconds.observe(run.as_secs_f64());
        if let Some(wait) = queue_wait {
            self.queue_wait_seconds.observe(wait.as_secs_f64());
        }
    }

    /// Counts the pixel samples a render result reports (`outputs[].samples × width × height ×
    /// frames`); other results carry none.
    pub fn observe_result(&self, result: &serde_json::Value) {
        let Some(outputs) = result.get("outputs").and_then(|o| o.as_array()) else {
            return;
        };
        let field = |output: &serde_json::Value, name: &str| {
            output.get(name).and_then(|v| v.as_u64()).unwrap_or(0)
        };
        let samples: u64 = outputs
            .iter()
            .map(|output| {
                field(output, "samples")
                    .saturating_mul(field(output, "width"))
                    .saturating_mul(field(output, "height"))
                    .saturating_mul(field(output, "frames").max(1))
            })
            .sum();
        self.render_samples.fetch_add(samples, Ordering::Relaxed);
    }

    /// Settled deliveries: what `num_requests` shows.
    pub fn settled(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.cancelled.load(Ordering::Relaxed)
            + self.retried.load(Ordering::Relaxed)
    }

    /// Failed and retried deliveries: what `num_errors` shows.
    pub fn errors(&self) -> u64 {
        self.failed.load(Ordering::Relaxed) + self.retried.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> serde_json::Value {
        json!({
            "started": self.started.load(Ordering::Relaxed),
            "processed": self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
                + self.cancelled.load(Ordering::Relaxed),
            "succeeded": self.succeeded.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "errors": self.errors(),
            "retried": self.retried.load(Ordering::Relaxed),
            "cancelled": self.cancelled.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
            "dead_lettered": self.dead_lettered.load(Ordering::Relaxed),
            "render_samples": self.render_samples.load(Ordering::Relaxed),
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

/// The running responders; [`Service::stop`] ends them.
pub(crate) struct Service {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Stops answering (the instance leaves `nats micro ls`).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}

/// What one instance says about itself.
struct Identity {
    name: String,
    id: String,
    version: &'static str,
    description: String,
    metadata: HashMap<String, String>,
    started: String,
    queue: String,
    status: String,
}

impl Identity {
    fn base(&self, kind: &str) -> serde_json::Value {
        json!({
            "type": format!("io.nats.micro.v1.{kind}_response"),
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": self.metadata,
        })
    }

    fn endpoints(&self) -> [(&'static str, &str, String); 2] {
        [
            ("jobs", self.queue.as_str(), consumer_name(&self.queue)),
            ("status", self.status.as_str(), String::new()),
        ]
    }

    fn info(&self) -> serde_json::Value {
        let mut info = self.base("info");
        info["description"] = json!(self.description);
        info["endpoints"] = self
            .endpoints()
            .iter()
            .map(|(name, subject, group)| {
                json!({"name": name, "subject": subject, "queue_group": group, "metadata": {}})
            })
            .collect();
        info
    }

    fn stats(&self, counters: &Counters, status_requests: u64) -> serde_json::Value {
        let mut stats = self.base("stats");
        stats["started"] = json!(self.started);
        let processing = counters.processing_nanos.load(Ordering::Relaxed);
        let requests = counters.settled();
        let [(jobs, jobs_subject, group), (status, status_subject, _)] = self.endpoints();
        stats["endpoints"] = json!([
            {
                "name": jobs,
                "subject": jobs_subject,
                "queue_group": group,
                "num_requests": requests,
                "num_errors": counters.errors(),
                "last_error": "",
                "processing_time": processing,
                "average_processing_time": processing.checked_div(requests).unwrap_or(0),
                "data": counters.snapshot(),
            },
            {
                "name": status,
                "subject": status_subject,
                "queue_group": "",
                "num_requests": status_requests,
                "num_errors": 0,
                "last_error": "",
                "processing_time": 0,
                "average_processing_time": 0,
            },
        ]);
        stats
    }
}

pub(super) async fn register(
    client: &async_nats::Client,
    name: &str,
    config: &WorkerConfig,
    counters: Arc<Counters>,
) -> anyhow::Result<Service> {
    let identity = Arc::new(Identity {
        name: name.to_owned(),
        id: uuid::Uuid::now_v7().simple().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        description: format!("Lightbox {name} worker on {}", config.queue),
        metadata: HashMap::from([
            ("queue".to_owned(), config.queue.clone()),
            ("concurrency".to_owned(), config.concurrency.to_string()),
            ("instance".to_owned(), config.instance.clone()),
        ]),
        started: crate::telemetry::rfc3339(SystemTime::now()),
        queue: config.queue.clone(),
        status: status_subject(name, &config.instance),
    });
    let status_requests = Arc::new(AtomicU64::new(0));
    let mut subscriptions = Vec::new();
    for verb in ["PING", "INFO", "STATS"] {
        for subject in [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{name}"),
            format!("$SRV.{verb}.{name}.{}", identity.id),
        ] {
            let subscription = client
                .subscribe(subject.clone())
                .await
                .map_err(|err| anyhow::anyhow!("subscribing to {subject}: {err}"))?;
            subscriptions.push(subscription.map(move |message| (verb, message)));
        }
    }
    let mut requests = futures::stream::select_all(subscriptions);
    let responder = {
        let client = client.clone();
        let identity = identity.clone();
        let counters = counters.clone();
        let status_requests = status_requests.clone();
        tokio::spawn(async move {
            while let Some((verb, message)) = requests.next().await {
                let Some(reply) = message.reply else {
                    continue;
                };
                let body = match verb {
                    "PING" => identity.base("ping"),
                    "INFO" => identity.info(),
                    _ => identity.stats(&counters, status_requests.load(Ordering::Relaxed)),
                };
                let _ = client
                    .publish(reply, body.to_string().into_bytes().into())
                    .await;
            }
        })
    };
    // `status` answers with this instance's counters (the `--check` probe asks it).
    let mut status = client
        .subscribe(identity.status.clone())
        .await
        .map_err(|err| anyhow::anyhow!("subscribing to the status subject: {err}"))?;
    let status_task = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(message) = status.next().await {
                status_requests.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = message.reply {
                    let body = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
                    let _ = client.publish(reply, body.into()).await;
                }
            }
        })
    };
    client.flush().await?;
    Ok(Service {
        tasks: vec![responder, status_task],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_results_count_pixel_samples() {
        let counters = Counters::default();
        counters.observe_result(&json!({"outputs": [
            {"samples": 4, "width": 10, "height": 5, "frames": 1},
            {"samples": 2, "width": 10, "height": 10, "frames": 3},
        ]}));
        counters.observe_result(&json!({"width": 10}));
        assert_eq!(counters.render_samples.load(Ordering::Relaxed), 200 + 600);
    }
}
