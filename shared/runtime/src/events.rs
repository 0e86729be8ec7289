//! Outcome reporting: events on `events.job.<id>.<state>` and the latest state in KV `jobs`.
//! The event types are the protocol's ([`lightbox_protocol::events`]).
//!
//! Every payload is bounded by [`MAX_REPORT_BYTES`], which both limits agree with: the `jobs`
//! bucket's `max_value_size` and the `EVENTS` stream's `max_msg_size` (`infra/nats/`, checked by a
//! test). [`bounded`] makes an event fit: error and progress messages are cut, a result too large
//! is replaced by a summary naming the stored full result (`results/<function>/<job>.json`, the
//! runtime's record of the job), and a very long output list keeps the keys that fit.

use std::future::IntoFuture;

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use bytes::Bytes;

pub use lightbox_protocol::events::*;

/// The largest event or `jobs` value the runtime publishes, in bytes of JSON: 48 KiB, under the
/// 64 KiB both `jobs.kv.json` (`max_value_size`) and `events.stream.json` (`max_msg_size`) allow,
/// leaving room for headers.
pub const MAX_REPORT_BYTES: usize = 48 * 1024;
/// Longest error message kept in an event, in bytes (the rest is cut with a note).
pub const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Longest progress message kept in an event, in bytes.
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 1024;
/// Longest job id kept in an event (subjects and keys use at most 128 characters of it).
const MAX_JOB_ID_BYTES: usize = 256;

/// Cuts `text` to at most `max` bytes on a character boundary, saying how much was left out.
pub fn truncate_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let note_room = 64;
    let mut end = max.saturating_sub(note_room);
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes left out)", &text[..end], text.len() - end)
}

fn encoded_len(event: &JobEvent) -> usize {
    serde_json::to_vec(event)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// The event as it may be published: within [`MAX_REPORT_BYTES`]. `full_result` is where the
/// whole outcome is stored (named in the summary that replaces a result too large to report).
pub fn bounded(event: &JobEvent, full_result: Option<&str>) -> JobEvent {
    let mut event = event.clone();
    if event.job_id.len() > MAX_JOB_ID_BYTES {
        event.job_id = truncate_text(&event.job_id, MAX_JOB_ID_BYTES);
    }
    if let Some(error) = &mut event.error {
        error.message = truncate_text(&error.message, MAX_ERROR_BYTES);
        error.kind = truncate_text(&error.kind, 64);
    }
    if let Some(progress) = &mut event.progress {
        progress.message = truncate_text(&progress.message, MAX_PROGRESS_MESSAGE_BYTES);
    }
    if encoded_len(&event) <= MAX_REPORT_BYTES {
        return event;
    }
    // Too large: the result becomes a summary naming where the whole outcome is.
    let result_bytes = event
        .result
        .as_ref()
        .and_then(|r| serde_json::to_vec(r).ok())
        .map_or(0, |v| v.len());
    let outputs_total = event.outputs.len();
    let summary = |listed: usize| {
        serde_json::json!({
            "summarized": true,
            "full_result": full_result,
            "result_bytes": result_bytes,
            "outputs_total": outputs_total,
            "outputs_listed": listed,
        })
    };
    event.result = Some(summary(outputs_total));
    if encoded_len(&event) <= MAX_REPORT_BYTES {
        return event;
    }
    // Still too large: keep as many output keys as fit (the full list is in the stored outcome).
    let (mut fit, mut over) = (0, event.outputs.len());
    let all = std::mem::take(&mut event.outputs);
    while fit + 1 < over {
        let mid = (fit + over) / 2;
        event.outputs = all[..mid].to_vec();
        event.result = Some(summary(mid));
        if encoded_len(&event) <= MAX_REPORT_BYTES {
            fit = mid;
        } else {
            over = mid;
        }
    }
    event.outputs = all[..fit].to_vec();
    event.result = Some(summary(fit));
    if encoded_len(&event) > MAX_REPORT_BYTES {
        // Only the timings are left to be large.
        event.timings_ms.clear();
    }
    event
}

/// Publishes events and keeps the KV bucket current.
#[derive(Clone)]
pub struct Reporter {
    pub js: jetstream::Context,
    pub kv: kv::Store,
}

impl Reporter {
    fn kv_subject(job_id: &str) -> String {
        format!(
            "$KV.{}.{}",
            crate::infra::JOBS_BUCKET,
            subject_token(job_id)
        )
    }

    /// Publishes an event and records it as the job's latest state (a KV put is a publish to
    /// `$KV.jobs.<key>`), bounded ([`bounded`]). With `wait`, returns once the server has stored
    /// both; without, both are sent and not awaited (started, progress), which keeps the hot path
    /// short. Terminal states go through [`Self::report_terminal`].
    pub async fn report(&self, event: &JobEvent, wait: bool) -> anyhow::Result<()> {
        let event = bounded(event, None);
        let payload = Bytes::from(serde_json::to_vec(&event)?);
        let event_ack = self.js.publish(event.subject(), payload.clone()).await?;
        let kv_ack = self
            .js
            .publish(Self::kv_subject(&event.job_id), payload)
            .await?;
        if wait {
            let (event_stored, kv_stored) =
                futures::join!(event_ack.into_future(), kv_ack.into_future());
            event_stored?;
            kv_stored?;
        }
        Ok(())
    }

    /// Stores a terminal (or settling) state: the KV entry, then, once it is stored, the event
    /// with `msg_id` as its `Nats-Msg-Id`, so a retry or a buffered re-send stores it once. So a
    /// client that sees the terminal event (`lightbox wait`) and then reads the job's state finds
    /// it there. Both bounded ([`bounded`]), naming `full_result` in a summary.
    pub async fn report_terminal(
        &self,
        event: &JobEvent,
        msg_id: &str,
        full_result: Option<&str>,
    ) -> anyhow::Result<()> {
        let event = bounded(event, full_result);
        let payload = Bytes::from(serde_json::to_vec(&event)?);
        self.js
            .publish(Self::kv_subject(&event.job_id), payload.clone())
            .await?
            .await?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(event.subject(), headers, payload)
            .await?
            .await?;
        Ok(())
    }

    /// The latest recorded state of a job.
    pub async fn status(&self, job_id: &str) -> anyhow::Result<Option<JobEvent>> {
        match self.kv.get(subject_token(job_id)).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct KvFile {
        max_value_size: usize,
    }
    #[derive(serde::Deserialize)]
    struct StreamFile {
        max_msg_size: usize,
    }

    #[test]
    fn the_bound_fits_both_the_kv_bucket_and_the_events_stream() {
        let kv: KvFile = serde_json::from_str(crate::infra::JOBS_KV_JSON).unwrap();
        let events: StreamFile = serde_json::from_str(crate::infra::EVENTS_STREAM_JSON).unwrap();
        // Headroom for headers (Nats-Msg-Id, the KV operation) on top of the payload.
        assert!(MAX_REPORT_BYTES + 4096 <= kv.max_value_size);
        assert!(MAX_REPORT_BYTES + 4096 <= events.max_msg_size);
        assert_eq!(
            kv.max_value_size, events.max_msg_size,
            "one bound for both, so an event that is stored is also a storable KV value"
        );
    }

    fn event() -> JobEvent {
        JobEvent::new(
            "0190c0de-0000-7000-8000-000000000001",
            "render",
            JobState::Succeeded,
            1,
            "w",
        )
    }

    #[test]
    fn small_events_are_unchanged() {
        let mut small = event();
        small.result = Some(serde_json::json!({"frames": 3}));
        small.outputs = vec!["outputs/a.png".into()];
        assert_eq!(bounded(&small, Some("results/render/x.json")), small);
    }

    #[test]
    fn a_large_result_and_output_list_become_a_summary_naming_the_stored_result() {
        let mut large = event();
        large.result = Some(serde_json::json!({"blob": "x".repeat(100_000)}));
        large.outputs = (0..1080)
            .map(|i| {
                format!(
                    "outputs/render/{}/turntable-{}/frame-{i:04}.png",
                    "0123456789abcdef".repeat(4),
                    i / 360
                )
            })
            .collect();
        let small = bounded(&large, Some("results/render/x.json"));
        assert!(encoded_len(&small) <= MAX_REPORT_BYTES);
        let result = small.result.unwrap();
        assert_eq!(result["summarized"], true);
        assert_eq!(result["full_result"], "results/render/x.json");
        assert_eq!(result["outputs_total"], 1080);
        let listed = result["outputs_listed"].as_u64().unwrap() as usize;
        assert_eq!(small.outputs.len(), listed);
        assert!(listed > 100 && listed < 1080, "{listed}");
        assert_eq!(small.outputs[..], large.outputs[..listed]);
    }

    #[test]
    fn long_error_and_progress_messages_are_cut_on_a_character_boundary() {
        let mut failed = event();
        failed.state = JobState::Failed;
        failed.error = Some(ErrorInfo {
            kind: "permanent".into(),
            message: format!("unknown field `{}`", "é".repeat(35_000)),
        });
        failed.progress = Some(Progress {
            message: "p".repeat(10_000),
            ..Progress::default()
        });
        let small = bounded(&failed, None);
        let message = small.error.unwrap().message;
        assert!(message.len() <= MAX_ERROR_BYTES, "{}", message.len());
        assert!(message.starts_with("unknown field `é"));
        assert!(message.ends_with("bytes left out)"), "{message}");
        assert!(small.progress.unwrap().message.len() <= MAX_PROGRESS_MESSAGE_BYTES);
    }
}
