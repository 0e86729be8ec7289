//! The settle policy: what a delivery's verdict means for its message and its recorded state.
//!
//! Terminal state is the contract: a job leaves `JOBS` only after its terminal KV state and event
//! are stored (KV first, so a client that sees the event reads the same state). Each row below is
//! one unit; if any step of it fails the message is not acked but Nak'd with a backoff, and the
//! next delivery (by any instance) does the whole unit again. Every step is idempotent: terminal
//! events carry a `Nats-Msg-Id` (`<job>-<seq>-<attempt>-<state>`), dead letters `dlq-<job>-<seq>`,
//! continuations `<continued>-after-<job>`, the continued job's failure
//! `<continued>-after-<job>-failed`, and the outcome of a finished run is in the runtime's record
//! (`record.rs`), so the work is not run again.
//!
//! | verdict                                   | unit, in order                                              | message  |
//! |-------------------------------------------|-------------------------------------------------------------|----------|
//! | succeeded, waiting for another job        | `waiting`                                                   | ack      |
//! | succeeded                                 | record outcome, publish continuation, `succeeded`           | ack (double when long) |
//! | recorded by an earlier delivery           | the recorded unit again (same event, same msg id)           | as recorded |
//! | succeeded earlier (KV + record)           | publish continuation                                        | ack      |
//! | cancelled earlier (KV)                    | fail the continued job (cancelled)                          | ack      |
//! | worker shutting down                      | record the hand-back, `retrying`                            | nak now  |
//! | cancelled                                 | `cancelled`, fail the continued job                         | ack      |
//! | retryable, deliveries left                | `retrying`                                                  | nak with backoff |
//! | permanent, or retryable with none left    | dead letter, `failed`, fail the continued job               | term     |
//! | delivery limit used up (none finished)    | dead letter, `failed`, fail the continued job — not run     | term     |
//! | record unreadable past the limit          | nothing                                                     | nak with backoff |
//!
//! A success is recorded before it is reported (its work must not be repeated, and a summarised
//! event names the record); a failure or cancellation is recorded only when its unit could not be
//! settled, so the next delivery settles the same outcome under the same msg id. Deliveries
//! handed back by a draining worker do not count toward the limit. A continuation that cannot be
//! published is retried with the job's deliveries; on the last one the continued job is failed
//! naming why, and this job's success stands. A continued job whose first job is
//! cancelled fails (it was not itself cancelled, and its waiter must learn it will not run).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use tracing::{info, warn};

use super::context::Outcome;
use super::record::{self, Record, Recorded};
use super::{continuation, dlq, Handler, Shared};
use crate::error::JobError;
use crate::events::{ErrorInfo, JobEvent, JobState, Progress};
use crate::job::{parse_envelope, Continuation, Envelope};
use crate::store::ObjectKey;
use crate::telemetry::TraceParent;

/// Jobs running at least this long are settled with a double ack.
const DOUBLE_ACK_AFTER_MS: f64 = 1000.0;
/// Tries to store an outcome within one delivery before leaving it to the next delivery.
const REPORT_TRIES: u32 = 3;

/// What became of one delivery.
pub(super) enum Verdict {
    Succeeded(Outcome),
    Failed(JobError),
    /// Already finished earlier (a redelivery after a lost ack): settle what follows from it.
    AlreadyDone(JobState),
    /// The worker is shutting down: hand the job back at once.
    GiveBack,
    /// An earlier delivery of this message finished and recorded its outcome, which could not
    /// all be stored or settled: report and settle it again, without running the job.
    Recorded(Box<Recorded>),
    /// The delivery limit is used up and no delivery finished: dead-letter without running.
    Exhausted,
    /// Whether it may run cannot be told now (its record could not be read): try again later.
    Later(String),
}

/// What is known about a message before it runs.
#[derive(Debug, Clone, Default)]
pub(super) struct Prior {
    /// Where the runtime's record of the job is (none for a malformed envelope).
    pub key: Option<ObjectKey>,
    /// Deliveries handed back so far.
    pub handbacks: u64,
    /// Whether the record was read (or there can be none): only then is a hand-back recorded.
    pub known: bool,
}

/// What `finish` needs to know about a delivery besides its verdict.
pub(super) struct Settle<'a> {
    pub job_id: &'a str,
    pub attempt: u64,
    pub stream_seq: u64,
    pub received: Instant,
    pub trace: &'a TraceParent,
    pub continuation: Option<Continuation>,
    pub prior: Prior,
}

impl Settle<'_> {
    /// Deliveries that count toward the limit: all of them but the hand-backs.
    fn used(&self) -> u64 {
        self.attempt.saturating_sub(self.prior.handbacks).max(1)
    }

    fn msg_id(&self, attempt: u64, state: JobState) -> String {
        format!(
            "{}-{}-{attempt}-{}",
            self.job_id,
            self.stream_seq,
            state.as_str()
        )
    }
}

/// Decides, before a delivery runs, whether it runs at all: an outcome recorded by an earlier
/// delivery of this message is settled again, a job finished or cancelled earlier (KV) is not run,
/// and a delivery past the limit (hand-backs not counted) is dead-lettered without running.
pub(super) async fn before_running<H: Handler>(
    shared: &Shared<H>,
    parsed: &Result<Envelope, JobError>,
    job_id: &str,
    attempt: u64,
    stream_seq: u64,
) -> (Prior, Option<Verdict>) {
    let mut prior = Prior {
        key: parsed
            .as_ref()
            .ok()
            .and_then(|_| record::key(H::FUNCTION.as_str(), job_id)),
        handbacks: 0,
        // The first delivery of a message has no record yet.
        known: attempt <= 1,
    };
    if let (Some(key), false) = (&prior.key, prior.known) {
        match record::load(&shared.store, key, stream_seq).await {
            Ok(Some(record)) => {
                prior.known = true;
                prior.handbacks = record.handbacks;
                if let Some(outcome) = record.outcome {
                    return (prior, Some(Verdict::Recorded(Box::new(outcome))));
                }
            }
            Ok(None) => prior.known = true,
            Err(err) if attempt > shared.max_deliver => {
                // It may have finished: it is not dead-lettered on a guess.
                let reason = format!("could not read the job's record: {err}");
                return (prior, Some(Verdict::Later(reason)));
            }
            Err(err) => warn!(error = %err, "could not read the job's record; running it"),
        }
    }
    if parsed.is_ok() {
        // A job cancelled while queued, or finished by an earlier delivery, does not run again.
        if let Ok(Some(previous)) = shared.reporter.status(job_id).await {
            if previous.state == JobState::Cancelled {
                return (prior, Some(Verdict::AlreadyDone(previous.state)));
            }
            // `succeeded` in KV is believed only with this function's record of the success
            // (written before any success is reported, under a prefix no job and no other
            // function may write): any function user may write a job's KV entry, and a forged
            // `succeeded` must not make the worker skip a job that never ran.
            if previous.state == JobState::Succeeded {
                match &prior.key {
                    Some(key) => match record::finished(&shared.store, key).await {
                        Ok(true) => return (prior, Some(Verdict::AlreadyDone(previous.state))),
                        Ok(false) => warn!(
                            "the job's state says succeeded but this function has no record of \
                             finishing it; running it"
                        ),
                        // Cannot tell: not run on a guess, not skipped on one either.
                        Err(err) => {
                            let reason = format!("could not read the job's record: {err}");
                            return (prior, Some(Verdict::Later(reason)));
                        }
                    },
                    None => return (prior, Some(Verdict::AlreadyDone(previous.state))),
                }
            }
        }
    }
    if attempt.saturating_sub(prior.handbacks) > shared.max_deliver {
        return (prior, Some(Verdict::Exhausted));
    }
    (prior, None)
}

/// Hands back a message this worker received but will not start because it is stopping: the
/// hand-back is recorded, so it uses up no delivery, and the message is Nak'd at once.
pub(super) async fn hand_back<H: Handler>(shared: &Shared<H>, message: &jetstream::Message) {
    let job = parse_envelope(&message.payload)
        .ok()
        .zip(message.info().ok());
    if let Some((envelope, info)) = job {
        let job_id = envelope.id.to_string();
        let (attempt, stream_seq) = (info.delivered.max(1) as u64, info.stream_sequence);
        if let Some(key) = record::key(H::FUNCTION.as_str(), &job_id) {
            let found = if attempt > 1 {
                record::load(&shared.store, &key, stream_seq).await
            } else {
                Ok(None)
            };
            // A record that cannot be read is not overwritten: the hand-back then counts.
            if let Ok(found) = found {
                let mut record = found.unwrap_or(Record {
                    job_id,
                    stream_seq,
                    ..Record::default()
                });
                record.handbacks += 1;
                if let Err(err) = record::save(&shared.store, &key, &record).await {
                    warn!(error = %err, "could not record the hand-back; it counts as a delivery");
                }
            }
        }
    }
    let _ = message.ack_with(AckKind::Nak(None)).await;
}

/// Reports the verdict and settles the message (see the table above).
pub(super) async fn finish<H: Handler>(
    shared: &Arc<Shared<H>>,
    message: &jetstream::Message,
    verdict: Verdict,
    settle: Settle<'_>,
) {
    let queue_wait = message.info().ok().and_then(|info| {
        let published = u128::try_from(info.published.unix_timestamp_nanos()).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let waited = Duration::from_nanos(u64::try_from(now.checked_sub(published)?).ok()?);
        // Until it was received here, not until now.
        Some(waited.saturating_sub(settle.received.elapsed()))
    });
    shared
        .counters
        .observe_settled(settle.received.elapsed(), queue_wait);
    if let Verdict::Succeeded(outcome) = &verdict {
        shared.counters.observe_result(&outcome.result);
    }
    let unit = Unit {
        shared,
        message,
        settle: &settle,
    };
    if let Err(err) = unit.settle(verdict).await {
        let delay = backoff(
            settle.used(),
            shared.config.backoff_base,
            shared.config.backoff_max,
        );
        warn!(
            error = %crate::error::error_chain(err.as_ref()),
            retry_in_ms = delay.as_millis() as u64,
            "could not store the outcome; the job stays queued and its next delivery settles it"
        );
        let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
    }
}

/// One delivery being settled.
struct Unit<'a, H: Handler> {
    shared: &'a Arc<Shared<H>>,
    message: &'a jetstream::Message,
    settle: &'a Settle<'a>,
}

impl<H: Handler> Unit<'_, H> {
    fn event(&self, state: JobState, attempt: u64) -> JobEvent {
        let mut event = JobEvent::new(
            self.settle.job_id,
            H::FUNCTION.as_str(),
            state,
            attempt,
            &self.shared.config.instance,
        );
        event.trace_id = Some(self.settle.trace.trace_id.clone());
        event
    }

    async fn settle(&self, verdict: Verdict) -> anyhow::Result<()> {
        let settle = self.settle;
        let attempt = settle.attempt;
        let run_ms = settle.received.elapsed().as_secs_f64() * 1000.0;
        match verdict {
            Verdict::Succeeded(outcome) if outcome.waiting_for.is_some() => {
                let waiting_for = outcome.waiting_for.unwrap_or_default();
                let mut event = self.event(JobState::Waiting, attempt);
                event.progress = Some(Progress {
                    message: format!("waiting for job {waiting_for}"),
                    ..Progress::default()
                });
                event.result = Some(outcome.result);
                self.report(&event, &settle.msg_id(attempt, JobState::Waiting))
                    .await?;
                info!(waiting_for = %waiting_for, "waiting for another job to continue this one");
                let _ = self.message.double_ack().await;
                Ok(())
            }
            Verdict::Succeeded(outcome) => {
                let mut event = self.event(JobState::Succeeded, attempt);
                event.outputs = outcome.outputs;
                event.result = Some(outcome.result);
                event.timings_ms.extend(outcome.timings_ms);
                let recorded = Recorded {
                    msg_id: settle.msg_id(attempt, JobState::Succeeded),
                    event,
                };
                // The outcome is stored before it is reported: if the report cannot be stored,
                // the next delivery reports it again instead of running the job again.
                self.record(&recorded).await?;
                info!(run_ms, outputs = ?recorded.event.outputs, "succeeded");
                self.succeed(&recorded, run_ms).await
            }
            Verdict::Recorded(recorded) => {
                info!(
                    state = recorded.event.state.as_str(),
                    attempt = recorded.event.attempt,
                    "an earlier delivery finished the job; settling its recorded outcome"
                );
                match recorded.event.state {
                    JobState::Succeeded => self.succeed(&recorded, 0.0).await,
                    JobState::Cancelled => self.cancelled(&recorded).await,
                    _ => self.fail(&recorded).await,
                }
            }
            Verdict::AlreadyDone(state) => {
                info!(
                    state = state.as_str(),
                    "already finished earlier; settling what follows"
                );
                if state == JobState::Succeeded {
                    self.publish_continuation().await?;
                } else {
                    self.fail_continued("cancelled", "was cancelled").await?;
                }
                let _ = self.message.double_ack().await;
                Ok(())
            }
            Verdict::GiveBack => {
                info!("giving the job back to the queue");
                // A hand-back does not count toward the delivery limit.
                if let (Some(key), true) = (&settle.prior.key, settle.prior.known) {
                    let record = Record {
                        job_id: settle.job_id.to_owned(),
                        stream_seq: settle.stream_seq,
                        handbacks: settle.prior.handbacks + 1,
                        outcome: None,
                    };
                    if let Err(err) = record::save(&self.shared.store, key, &record).await {
                        warn!(error = %err, "could not record the hand-back; it counts as a delivery");
                    }
                }
                let mut event = self.event(JobState::Retrying, attempt);
                event.error = Some(ErrorInfo {
                    kind: "retryable".into(),
                    message: "worker shutting down".into(),
                });
                let _ = self.shared.reporter.report(&event, true).await;
                let _ = self.message.ack_with(AckKind::Nak(None)).await;
                Ok(())
            }
            Verdict::Failed(JobError::Cancelled) => {
                let recorded = Recorded {
                    msg_id: settle.msg_id(attempt, JobState::Cancelled),
                    event: self.event(JobState::Cancelled, attempt),
                };
                info!("cancelled");
                self.cancelled(&recorded).await
            }
            Verdict::Failed(err)
                if err.is_retryable() && settle.used() < self.shared.max_deliver =>
            {
                let delay = backoff(
                    settle.used(),
                    self.shared.config.backoff_base,
                    self.shared.config.backoff_max,
                );
                let mut event = self.event(JobState::Retrying, attempt);
                event.error = Some(ErrorInfo {
                    kind: err.kind().into(),
                    message: err.to_string(),
                });
                let _ = self.shared.reporter.report(&event, true).await;
                self.shared.counters.retried.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "retryable failure");
                let _ = self.message.ack_with(AckKind::Nak(Some(delay))).await;
                Ok(())
            }
            Verdict::Failed(err) => {
                let text = if err.is_retryable() {
                    format!("gave up after {} attempts: {err}", settle.used())
                } else {
                    err.to_string()
                };
                let mut event = self.event(JobState::Failed, attempt);
                event.error = Some(ErrorInfo {
                    kind: err.kind().into(),
                    message: text,
                });
                let recorded = Recorded {
                    msg_id: settle.msg_id(attempt, JobState::Failed),
                    event,
                };
                self.fail(&recorded).await
            }
            Verdict::Exhausted => {
                let limit = self.shared.max_deliver;
                let mut event = self.event(JobState::Failed, limit);
                event.error = Some(ErrorInfo {
                    kind: "retryable".into(),
                    message: format!(
                        "no attempt finished: gave up after {limit} deliveries (the worker died, \
                         lost its lease or could not store the outcome each time)"
                    ),
                });
                let recorded = Recorded {
                    msg_id: format!("{}-{}-exhausted-failed", settle.job_id, settle.stream_seq),
                    event,
                };
                warn!(
                    deliveries = attempt,
                    handbacks = settle.prior.handbacks,
                    limit,
                    "delivery limit used up; moving the job to the dead-letter stream"
                );
                self.fail(&recorded).await
            }
            Verdict::Later(reason) => anyhow::bail!(reason),
        }
    }

    /// Publishes the continuation (if any), reports `succeeded`, acks.
    async fn succeed(&self, recorded: &Recorded, run_ms: f64) -> anyhow::Result<()> {
        self.publish_continuation().await?;
        self.report(&recorded.event, &recorded.msg_id).await?;
        self.shared
            .counters
            .succeeded
            .fetch_add(1, Ordering::Relaxed);
        // Expensive jobs get a double ack: the server confirms, so a lease that expired
        // meanwhile is noticed. Short jobs cannot outlive their lease; a plain ack will do.
        if run_ms >= DOUBLE_ACK_AFTER_MS {
            if let Err(err) = self.message.double_ack().await {
                warn!(error = %err, "final ack was not confirmed; a redelivery will find the job done");
            }
        } else if let Err(err) = self.message.ack().await {
            warn!(error = %err, "final ack failed; a redelivery will find the job done");
        }
        Ok(())
    }

    /// Reports `cancelled`, fails the continued job, acks.
    async fn cancelled(&self, recorded: &Recorded) -> anyhow::Result<()> {
        let settled = self.cancelled_unit(recorded).await;
        self.record_if_unsettled(recorded, &settled).await;
        settled
    }

    async fn cancelled_unit(&self, recorded: &Recorded) -> anyhow::Result<()> {
        self.report(&recorded.event, &recorded.msg_id).await?;
        self.fail_continued("cancelled", "was cancelled").await?;
        self.shared
            .counters
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.message.double_ack().await;
        Ok(())
    }

    /// Writes the dead letter, reports `failed`, fails the continued job, terminates.
    async fn fail(&self, recorded: &Recorded) -> anyhow::Result<()> {
        let settled = self.fail_unit(recorded).await;
        self.record_if_unsettled(recorded, &settled).await;
        settled
    }

    async fn fail_unit(&self, recorded: &Recorded) -> anyhow::Result<()> {
        let settle = self.settle;
        let error = recorded.event.error.clone().unwrap_or(ErrorInfo {
            kind: "permanent".into(),
            message: "failed".into(),
        });
        let letter = dlq::DeadLetter {
            job_id: settle.job_id.to_owned(),
            function: H::FUNCTION.as_str().to_owned(),
            queue: self.message.subject.to_string(),
            error: error.message.clone(),
            attempts: recorded.event.attempt,
            worker: self.shared.config.instance.clone(),
            source_seq: settle.stream_seq,
            payload: self.message.payload.clone(),
        };
        dlq::publish(&self.shared.infra.js, &letter).await?;
        self.report(&recorded.event, &recorded.msg_id).await?;
        self.fail_continued(&error.kind, &format!("failed: {}", error.message))
            .await?;
        self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.shared
            .counters
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        warn!(error = %error.message, "failed");
        // A work-queue stream drops a terminated message like an acked one, so no delete is
        // needed (and function users have no right to delete JOBS messages: infra/nats/auth.conf).
        let _ = self.message.double_ack_with(AckKind::Term).await;
        Ok(())
    }

    /// Publishes the continuation of a job that succeeded. If it cannot be published it is
    /// retried with the job's deliveries; on the last one the continued job is failed instead.
    async fn publish_continuation(&self) -> anyhow::Result<()> {
        let Some(then) = &self.settle.continuation else {
            return Ok(());
        };
        let published = continuation::publish(
            &self.shared.infra.js,
            self.settle.job_id,
            self.settle.trace,
            then,
        )
        .await;
        let Err(err) = published else {
            return Ok(());
        };
        let err = crate::error::error_chain(&*err);
        if self.settle.used() < self.shared.max_deliver {
            anyhow::bail!("could not publish the continuation: {err}");
        }
        warn!(error = %err, "could not publish the continuation on the last delivery; failing the continued job");
        self.fail_continued(
            "retryable",
            &format!(
                "succeeded, but the job continuing it could not be published after {} deliveries: {err}",
                self.settle.used()
            ),
        )
        .await
    }

    /// Fails the job this one would have continued, if any, naming why.
    async fn fail_continued(&self, kind: &str, why: &str) -> anyhow::Result<()> {
        let Some(then) = &self.settle.continuation else {
            return Ok(());
        };
        continuation::fail_continued::<H>(
            &self.shared.reporter,
            then,
            self.settle.job_id,
            kind,
            why,
            &self.shared.config.instance,
        )
        .await
    }

    /// Records the outcome in the store; a success must be recorded before it is reported.
    async fn record(&self, recorded: &Recorded) -> anyhow::Result<()> {
        let Some(key) = &self.settle.prior.key else {
            return Ok(());
        };
        let record = Record {
            job_id: self.settle.job_id.to_owned(),
            stream_seq: self.settle.stream_seq,
            handbacks: self.settle.prior.handbacks,
            outcome: Some(recorded.clone()),
        };
        record::save(&self.shared.store, key, &record)
            .await
            .map_err(|err| anyhow::anyhow!("could not record the outcome: {err}"))
    }

    /// A failure or cancellation is recorded only when its unit could not be settled, so the
    /// next delivery settles the same outcome under the same msg id (bad input costs nothing but
    /// its one delivery otherwise). If that record cannot be written either, the next delivery
    /// finds the failure again, or the delivery limit ends the job.
    async fn record_if_unsettled(&self, recorded: &Recorded, settled: &anyhow::Result<()>) {
        if settled.is_err() {
            if let Err(err) = self.record(recorded).await {
                warn!(error = %err, "could not record the outcome either");
            }
        }
    }

    /// Stores a terminal event and KV state, retrying briefly within this delivery.
    async fn report(&self, event: &JobEvent, msg_id: &str) -> anyhow::Result<()> {
        let full = self
            .settle
            .prior
            .key
            .as_ref()
            .map(|key| key.as_str().to_owned());
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .shared
                .reporter
                .report_terminal(event, msg_id, full.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(err) if tries >= REPORT_TRIES => {
                    return Err(err.context(format!(
                        "storing the {} state of job {}",
                        event.state.as_str(),
                        event.job_id
                    )))
                }
                Err(err) => {
                    warn!(error = %err, tries, "could not store the outcome; retrying");
                    // Keep the lease while retrying.
                    let _ = self.message.ack_with(AckKind::Progress).await;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
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
