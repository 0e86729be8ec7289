//! Dead letters: a job that fails for good or runs out of deliveries is copied, unchanged, to
//! `dlq.<function>` with the error, attempt count and worker in headers, and leaves `JOBS` by its
//! Term ack (`settle.rs` does the settling).
//!
//! The delivery limit is the runtime's, not the server's: the consumers deliver without limit
//! (`max_deliver: -1`) and carry the limit in their metadata (`lightbox.max_deliver`, see
//! [`delivery_limit`]). A delivery past the limit — every earlier one died with its worker, lost
//! its lease, or could not store its outcome — is moved here without running, by whichever
//! instance receives it, one that starts later included. Nothing depends on anyone hearing the
//! server's max-deliveries advisory, and no function needs rights to read or delete `JOBS`
//! messages.

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use bytes::Bytes;
use tracing::warn;

use crate::infra::MAX_DELIVER_METADATA;

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

/// The delivery limit the runtime enforces for a consumer: `LIGHTBOX_MAX_DELIVER` if set, else
/// the consumer's `lightbox.max_deliver` metadata (from `infra/nats/consumer.*.json`). A value
/// of 0 or less means no limit.
///
/// A consumer applied before the runtime enforced the limit still has the server's
/// `max_deliver`: the server then stops delivering after that many deliveries, so the runtime
/// must dead-letter on the last of them (limit `max_deliver - 1`) or the job would stay in `JOBS`
/// unseen. That works, with a warning to apply the current definitions.
pub(super) fn delivery_limit(
    server: &consumer::Config,
    override_limit: Option<i64>,
) -> anyhow::Result<u64> {
    let name = server.durable_name.as_deref().unwrap_or("?");
    let as_limit = |n: i64| u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(u64::MAX);
    let committed = server
        .metadata
        .get(MAX_DELIVER_METADATA)
        .map(|text| {
            text.trim().parse::<i64>().map_err(|_| {
                anyhow::anyhow!(
                    "consumer {name}: metadata {MAX_DELIVER_METADATA} = {text:?} is not a number"
                )
            })
        })
        .transpose()?;
    let wanted = override_limit.or(committed).map(as_limit);
    if server.max_deliver <= 0 {
        return wanted.ok_or_else(|| {
            anyhow::anyhow!(
                "consumer {name} has no delivery limit: neither {MAX_DELIVER_METADATA} in its metadata \
                 nor LIGHTBOX_MAX_DELIVER; {}",
                crate::infra::APPLY_HINT
            )
        });
    }
    let server_limit = server.max_deliver as u64;
    if server_limit < 2 {
        anyhow::bail!(
            "consumer {name} has max_deliver {server_limit} on the server, which leaves no delivery to \
             move an exhausted job to the dead-letter stream; apply the current definitions \
             (max_deliver -1, the limit in metadata): {}",
            crate::infra::APPLY_HINT
        );
    }
    let limit = wanted.unwrap_or(u64::MAX).min(server_limit - 1);
    warn!(
        consumer = name,
        server_max_deliver = server_limit,
        limit,
        "the consumer still has a server-side max_deliver; apply the current definitions \
         (lightbox infra apply) so the runtime alone enforces the delivery limit"
    );
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(max_deliver: i64, metadata: Option<&str>) -> consumer::Config {
        let mut config = consumer::Config {
            durable_name: Some("convert".into()),
            max_deliver,
            ..Default::default()
        };
        if let Some(value) = metadata {
            config
                .metadata
                .insert(MAX_DELIVER_METADATA.into(), value.into());
        }
        config
    }

    #[test]
    fn the_limit_comes_from_metadata_or_the_override_and_a_legacy_server_limit_leaves_one_delivery()
    {
        assert_eq!(delivery_limit(&consumer(-1, Some("5")), None).unwrap(), 5);
        assert_eq!(
            delivery_limit(&consumer(-1, Some("5")), Some(1)).unwrap(),
            1
        );
        assert_eq!(delivery_limit(&consumer(-1, None), Some(3)).unwrap(), 3);
        assert_eq!(
            delivery_limit(&consumer(-1, Some("-1")), None).unwrap(),
            u64::MAX,
            "-1: no limit"
        );
        assert!(delivery_limit(&consumer(-1, None), None)
            .unwrap_err()
            .to_string()
            .contains("lightbox infra apply"));
        assert!(delivery_limit(&consumer(-1, Some("five")), None).is_err());
        // Applied before the runtime enforced it: dead-letter on the server's last delivery.
        assert_eq!(delivery_limit(&consumer(5, None), None).unwrap(), 4);
        assert_eq!(delivery_limit(&consumer(5, Some("3")), None).unwrap(), 3);
        assert!(delivery_limit(&consumer(1, None), Some(1)).is_err());
    }
}
