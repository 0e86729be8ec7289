//! Dead letters: a job that is terminated or runs out of deliveries is copied, unchanged, to
//! `dlq.<function>` with the error, attempt count and worker in headers, and leaves `JOBS`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tracing::{error, info, warn};

use super::{Handler, Shared};
use crate::events::{ErrorInfo, JobEvent, JobState};
use crate::infra::{consumer_name, JOBS_STREAM};
use crate::job::parse_envelope;

pub const DLQ_HEADER_JOB: &str = "Lightbox-Job-Id";
pub const DLQ_HEADER_ERROR: &str = "Lightbox-Error";
pub const DLQ_HEADER_ATTEMPTS: &str = "Lightbox-Attempts";
pub const DLQ_HEADER_WORKER: &str = "Lightbox-Worker";
pub const DLQ_HEADER_QUEUE: &str = "Lightbox-Queue";

/// A dead letter: the original message bytes plus why it died.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub job_id: String,
    pub function: String,
    /// The work-queue subject it came from (replay publishes it there again).
    pub queue: String,
    pub error: String,
    pub attempts: u64,
    pub worker: String,
    /// Sequence of the job message in `JOBS`; with the job id it makes the dedupe id, so two
    /// instances reporting the same delivery write one letter, and a replay can die again.
    pub source_seq: u64,
    pub payload: Bytes,
}

/// Header values cannot hold line breaks; keep them short and on one line.
fn header_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

/// Publishes a dead letter and waits for the server to store it. Deduplicated per job id.
pub async fn publish(js: &jetstream::Context, letter: &DeadLetter) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("dlq-{}-{}", letter.job_id, letter.source_seq).as_str(),
    );
    headers.insert(DLQ_HEADER_JOB, header_value(&letter.job_id).as_str());
    headers.insert(DLQ_HEADER_ERROR, header_value(&letter.error).as_str());
    headers.insert(DLQ_HEADER_ATTEMPTS, letter.attempts.to_string().as_str());
    headers.insert(DLQ_HEADER_WORKER, header_value(&letter.worker).as_str());
    headers.insert(DLQ_HEADER_QUEUE, header_value(&letter.queue).as_str());
    js.publish_with_headers(
        format!("dlq.{}", letter.function),
        headers,
        letter.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

/// Ends a job that failed for good: writes its dead letter, then terminates the message and
/// removes it from `JOBS`. If the letter cannot be written the message stays, for redelivery.
pub(super) async fn terminate<H: Handler>(
    shared: &Shared<H>,
    message: &jetstream::Message,
    letter: &DeadLetter,
) {
    if let Err(err) = publish(&shared.infra.js, letter).await {
        error!(error = %err, "could not write the dead letter; leaving the job for redelivery");
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
        return;
    }
    shared
        .counters
        .dead_lettered
        .fetch_add(1, Ordering::Relaxed);
    // A work-queue stream drops a terminated message like an acked one, so no delete is needed
    // (and function users have no right to delete JOBS messages: see infra/nats/auth.conf).
    let _ = message.double_ack_with(AckKind::Term).await;
}

#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    stream_seq: u64,
    deliveries: u64,
}

/// Messages that reach `max_deliver` without a final ack (the worker died on every try) would
/// sit in a work-queue stream forever. The server announces them; one instance per consumer
/// (a queue group) moves each to the dead-letter stream, records the failure and deletes it.
pub(super) async fn spawn_max_deliveries_watcher<H: Handler>(
    shared: Arc<Shared<H>>,
) -> anyhow::Result<()> {
    let consumer = consumer_name(&shared.config.queue);
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{consumer}");
    let mut sub = shared
        .client
        .queue_subscribe(subject, format!("lightbox-dlq-{consumer}"))
        .await?;
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            let Ok(advisory) = serde_json::from_slice::<MaxDeliveriesAdvisory>(&message.payload)
            else {
                continue;
            };
            if let Err(err) = dead_letter_exhausted(&shared, &advisory).await {
                warn!(error = %err, seq = advisory.stream_seq, "could not dead-letter an exhausted job");
            }
        }
    });
    Ok(())
}

async fn dead_letter_exhausted<H: Handler>(
    shared: &Shared<H>,
    advisory: &MaxDeliveriesAdvisory,
) -> anyhow::Result<()> {
    let raw = match shared.infra.jobs.get_raw_message(advisory.stream_seq).await {
        Ok(raw) => raw,
        // Already gone: another path settled it.
        Err(_) => return Ok(()),
    };
    let job_id = parse_envelope(&raw.payload)
        .map(|e| e.id.to_string())
        .ok()
        .or_else(|| {
            raw.headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
        })
        .unwrap_or_else(|| format!("seq-{}", advisory.stream_seq));
    let error = format!(
        "no attempt finished: gave up after {} deliveries (worker crashed or lost its lease each time)",
        advisory.deliveries
    );
    let function = H::FUNCTION.as_str();
    let mut event = JobEvent::new(
        &job_id,
        function,
        JobState::Failed,
        advisory.deliveries,
        &shared.config.instance,
    );
    event.error = Some(ErrorInfo {
        kind: "retryable".into(),
        message: error.clone(),
    });
    shared.reporter.report(&event, true).await?;
    let letter = DeadLetter {
        job_id: job_id.clone(),
        function: function.to_owned(),
        queue: raw.subject.to_string(),
        error,
        attempts: advisory.deliveries,
        worker: shared.config.instance.clone(),
        source_seq: advisory.stream_seq,
        payload: raw.payload.clone(),
    };
    publish(&shared.infra.js, &letter).await?;
    shared
        .infra
        .jobs
        .delete_message(advisory.stream_seq)
        .await?;
    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .dead_lettered
        .fetch_add(1, Ordering::Relaxed);
    info!(job_id = %job_id, deliveries = advisory.deliveries, "exhausted job moved to the dead-letter stream");
    Ok(())
}
