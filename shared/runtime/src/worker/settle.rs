//! The settle policy: what a delivery's verdict means for its message and its recorded state.
//!
//! | verdict                                   | reported                        | message          |
//! |-------------------------------------------|---------------------------------|------------------|
//! | succeeded, waiting for another job        | `waiting`                       | ack              |
//! | succeeded (continuation published first)  | `succeeded`                     | ack (double when long) |
//! | succeeded earlier / cancelled while queued| nothing                         | ack              |
//! | worker shutting down                      | `retrying`                      | nak now          |
//! | cancelled                                 | `cancelled`                     | ack              |
//! | retryable, deliveries left                | `retrying`                      | nak with backoff |
//! | permanent, or retryable with none left    | `failed` (+ the continued job)  | dead letter, term |
//!
//! A terminal state is stored before the message is settled, so a job never leaves `JOBS`
//! without its outcome recorded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use tracing::{info, warn};

use super::context::Outcome;
use super::{continuation, dlq, Handler, Shared};
use crate::error::JobError;
use crate::events::{ErrorInfo, JobEvent, JobState, Progress};
use crate::job::Continuation;
use crate::telemetry::TraceParent;

/// Jobs running at least this long are settled with a double ack.
const DOUBLE_ACK_AFTER_MS: f64 = 1000.0;

/// What became of one delivery.
pub(super) enum Verdict {
    Succeeded(Outcome),
    Failed(JobError),
    /// Already finished earlier (a redelivery after a lost ack): acknowledge and move on.
    AlreadyDone(JobState),
    /// The worker is shutting down: hand the job back at once.
    GiveBack,
}

/// What `finish` needs to know about a delivery besides its verdict.
pub(super) struct Settle<'a> {
    pub job_id: &'a str,
    pub attempt: u64,
    pub stream_seq: u64,
    pub received: Instant,
    pub trace: &'a TraceParent,
    pub continuation: Option<Continuation>,
}

/// Reports the verdict and settles the message: Ack, Nak with backoff, or Term plus dead letter.
pub(super) async fn finish<H: Handler>(
    shared: &Arc<Shared<H>>,
    message: &jetstream::Message,
    verdict: Verdict,
    settle: Settle<'_>,
) {
    let Settle {
        job_id,
        attempt,
        stream_seq,
        received,
        trace,
        continuation,
    } = settle;
    let function = H::FUNCTION.as_str();
    let worker = shared.config.instance.as_str();
    let new_event = |state: JobState| {
        let mut event = JobEvent::new(job_id, function, state, attempt, worker);
        event.trace_id = Some(trace.trace_id.clone());
        event
    };
    let run_ms = received.elapsed().as_secs_f64() * 1000.0;
    let queue_wait = message.info().ok().and_then(|info| {
        let published = u128::try_from(info.published.unix_timestamp_nanos()).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let waited = Duration::from_nanos(u64::try_from(now.checked_sub(published)?).ok()?);
        // Until it was received here, not until now.
        Some(waited.saturating_sub(received.elapsed()))
    });
    shared
        .counters
        .observe_settled(received.elapsed(), queue_wait);
    if let Verdict::Succeeded(outcome) = &verdict {
        shared.counters.observe_result(&outcome.result);
    }
    match verdict {
        Verdict::Succeeded(outcome) if outcome.waiting_for.is_some() => {
            let waiting_for = outcome.waiting_for.unwrap_or_default();
            let mut event = new_event(JobState::Waiting);
            event.progress = Some(Progress {
                message: format!("waiting for job {waiting_for}"),
                ..Progress::default()
            });
            event.result = Some(outcome.result);
            report_final(shared, &event).await;
            info!(waiting_for = %waiting_for, "waiting for another job to continue this one");
            let _ = message.double_ack().await;
        }
        Verdict::Succeeded(outcome) => {
            if let Some(continuation) = &continuation {
                if let Err(err) =
                    continuation::publish(&shared.infra.js, job_id, trace, continuation).await
                {
                    warn!(error = %err, "could not publish the continuation; retrying the job");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            }
            let mut event = new_event(JobState::Succeeded);
            event.outputs = outcome.outputs;
            event.result = Some(outcome.result);
            event.timings_ms.extend(outcome.timings_ms);
            report_final(shared, &event).await;
            shared.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            info!(run_ms, outputs = ?event.outputs, "succeeded");
            // Expensive jobs get a double ack: the server confirms, so a lease that expired
            // meanwhile is noticed. Short jobs cannot outlive their lease; a plain ack will do.
            if run_ms >= DOUBLE_ACK_AFTER_MS {
                if let Err(err) = message.double_ack().await {
                    warn!(error = %err, "final ack was not confirmed; a redelivery will find the job done");
                }
            } else if let Err(err) = message.ack().await {
                warn!(error = %err, "final ack failed; a redelivery will find the job done");
            }
        }
        Verdict::AlreadyDone(state) => {
            info!(
                state = state.as_str(),
                "already finished earlier; acknowledging"
            );
            let _ = message.double_ack().await;
        }
        Verdict::GiveBack => {
            info!("giving the job back to the queue");
            let mut event = new_event(JobState::Retrying);
            event.error = Some(ErrorInfo {
                kind: "retryable".into(),
                message: "worker shutting down".into(),
            });
            let _ = shared.reporter.report(&event, true).await;
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        Verdict::Failed(JobError::Cancelled) => {
            let event = new_event(JobState::Cancelled);
            report_final(shared, &event).await;
            shared.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            info!("cancelled");
            let _ = message.double_ack().await;
        }
        Verdict::Failed(err) if err.is_retryable() && attempt < shared.max_deliver => {
            let delay = backoff(
                attempt,
                shared.config.backoff_base,
                shared.config.backoff_max,
            );
            let mut event = new_event(JobState::Retrying);
            event.error = Some(ErrorInfo {
                kind: err.kind().into(),
                message: err.to_string(),
            });
            let _ = shared.reporter.report(&event, true).await;
            shared.counters.retried.fetch_add(1, Ordering::Relaxed);
            warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "retryable failure");
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
        Verdict::Failed(err) => {
            let message_text = if err.is_retryable() {
                format!("gave up after {attempt} attempts: {err}")
            } else {
                err.to_string()
            };
            let mut event = new_event(JobState::Failed);
            event.error = Some(ErrorInfo {
                kind: err.kind().into(),
                message: message_text.clone(),
            });
            report_final(shared, &event).await;
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            warn!(error = %message_text, "failed");
            if let Some(continuation) = &continuation {
                let event = continuation::failed_event::<H>(
                    continuation,
                    job_id,
                    &err,
                    &message_text,
                    worker,
                );
                if let Some(event) = event {
                    report_final(shared, &event).await;
                }
            }
            let letter = dlq::DeadLetter {
                job_id: job_id.to_owned(),
                function: function.to_owned(),
                queue: message.subject.to_string(),
                error: message_text,
                attempts: attempt,
                worker: worker.to_owned(),
                source_seq: stream_seq,
                payload: message.payload.clone(),
            };
            dlq::terminate(shared, message, &letter).await;
        }
    }
}

/// Stores a terminal state before the message is settled; retries briefly on faults.
pub(super) async fn report_final<H: Handler>(shared: &Arc<Shared<H>>, event: &JobEvent) {
    for attempt in 0..5 {
        match shared.reporter.report(event, true).await {
            Ok(()) => return,
            Err(err) => {
                warn!(error = %err, attempt, "could not report outcome; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then scaled by a random
/// factor in [0.5, 1.0] so retries from many jobs do not arrive together.
pub fn backoff(attempt: u64, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20) as u32;
    let raw = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    raw.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..=10 {
            let delay = backoff(attempt, base, max);
            let raw = (base * 2u32.pow(attempt as u32 - 1)).min(max);
            assert!(
                delay <= raw && delay >= raw / 2,
                "attempt {attempt}: {delay:?} vs {raw:?}"
            );
        }
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(3, base, max)).collect();
        assert!(samples.len() > 1, "jitter must vary the delay");
    }
}
