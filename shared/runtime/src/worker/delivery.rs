//! One delivery from receipt to its final ack: read the headers and envelope, open the job's
//! span, decide whether it runs at all, run the handler under its lease, and settle the
//! message with the verdict. Holds its slot until done.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::{error, info, warn, Instrument};

use super::cancel::StopReason;
use super::context::{Job, JobContext};
use super::lease::{self, Lease};
use super::settle::{self, Settle, Verdict};
use super::{continuation, Handler, Shared};
use crate::error::JobError;
use crate::events::{JobEvent, JobState};
use crate::job::{now_ms, parse_envelope, parse_request, Envelope};
use crate::telemetry::TraceParent;

pub(super) async fn process<H: Handler>(
    shared: Arc<Shared<H>>,
    message: jetstream::Message,
    permit: OwnedSemaphorePermit,
) {
    let received = Instant::now();
    let info = message
        .info()
        .ok()
        .map(|i| (i.delivered.max(1) as u64, i.stream_sequence));
    let (attempt, stream_seq) = info.unwrap_or((1, 0));
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let trace = header("traceparent")
        .and_then(|h| TraceParent::parse(&h))
        .unwrap_or_else(TraceParent::new_root);
    let header_id = header("Nats-Msg-Id");
    let parsed = parse_envelope(&message.payload);
    let job_id = match &parsed {
        Ok(envelope) => envelope.id.to_string(),
        // A malformed envelope is reported under whatever id it carries, else its Nats-Msg-Id.
        Err(_) => crate::job::claimed_id(&message.payload)
            .or(header_id)
            .unwrap_or_else(|| format!("seq-{stream_seq}")),
    };
    let function = H::FUNCTION.as_str();
    let span = crate::telemetry::job_span(&job_id, function, attempt, &trace);
    async move {
        let in_flight = shared.counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .counters
            .max_in_flight
            .fetch_max(in_flight, Ordering::SeqCst);
        // A continuation is checked before the job runs, like the job itself: an invalid one
        // fails the job for good, and is never acted on (not published, nor failed in its name).
        let (parsed, continuation) = continuation::checked(parsed);
        // A recorded outcome, a job done earlier or a delivery past the limit is settled
        // without running (see `settle.rs`).
        let (prior, settled) =
            settle::before_running(&shared, &parsed, &job_id, attempt, stream_seq).await;
        let verdict = match settled {
            Some(verdict) => verdict,
            None => {
                run_job(
                    &shared,
                    &message,
                    parsed,
                    &job_id,
                    attempt,
                    trace.clone(),
                    received,
                )
                .await
            }
        };
        let settle = Settle {
            job_id: &job_id,
            attempt,
            stream_seq,
            received,
            trace: &trace,
            continuation,
            prior,
        };
        settle::finish(&shared, &message, verdict, settle).await;
        shared.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
    }
    .instrument(span)
    .await
}

async fn run_job<H: Handler>(
    shared: &Arc<Shared<H>>,
    message: &jetstream::Message,
    parsed: Result<Envelope, JobError>,
    job_id: &str,
    attempt: u64,
    trace: TraceParent,
    received: Instant,
) -> Verdict {
    let envelope = match parsed {
        Ok(envelope) => envelope,
        Err(err) => return Verdict::Failed(err),
    };
    if envelope.function != H::FUNCTION {
        return Verdict::Failed(JobError::permanent(format!(
            "job is for function {} but was queued on {} (served by {})",
            envelope.function,
            message.subject,
            H::FUNCTION
        )));
    }
    // The deadline counts from submission: a job whose deadline passed while it was queued
    // fails at once, without running.
    let deadline = match envelope.deadline_ms {
        None => None,
        Some(deadline_ms) => match time_left(envelope.submitted_at_ms, deadline_ms, received) {
            Some(deadline) => Some(deadline),
            None => {
                return Verdict::Failed(JobError::permanent(format!(
                    "deadline of {deadline_ms} ms exceeded while queued (submitted {} ms ago)",
                    now_ms().saturating_sub(envelope.submitted_at_ms)
                )))
            }
        },
    };
    let request: H::Request = match parse_request(&envelope.request) {
        Ok(request) => request,
        Err(err) => return Verdict::Failed(err),
    };
    shared.counters.started.fetch_add(1, Ordering::Relaxed);
    let mut started = JobEvent::new(
        job_id,
        H::FUNCTION.as_str(),
        JobState::Started,
        attempt,
        &shared.config.instance,
    );
    started.trace_id = Some(trace.trace_id.clone());
    if envelope.submitted_at_ms > 0 {
        started.timings_ms.insert(
            "queue".into(),
            now_ms().saturating_sub(envelope.submitted_at_ms) as f64,
        );
    }
    if let Err(err) = shared.reporter.report(&started, false).await {
        warn!(error = %err, "could not report start");
    }
    info!(
        queue_wait_ms = started.timings_ms.get("queue").copied().unwrap_or(0.0),
        "started"
    );

    let stop = shared.running.start(job_id);
    let (progress_tx, progress_rx) = watch::channel(None);
    let deadline_ms = envelope.deadline_ms.unwrap_or(0);
    let ctx = JobContext {
        id: envelope.id,
        function: H::FUNCTION,
        attempt,
        // The job writes and reads only under its function's prefixes (see `store.rs`).
        store: shared.store.for_function(H::FUNCTION),
        trace,
        queue: message.subject.to_string(),
        envelope: Arc::new(envelope),
        progress: progress_tx,
        stop: stop.clone(),
        broker: Some(shared.broker.clone()),
    };
    let handler = shared.handler.clone();
    let task = tokio::spawn(
        async move { handler.handle(Job { request, ctx }).await }
            .instrument(tracing::Span::current()),
    );
    let lease = Lease {
        message,
        job_id,
        attempt,
        deadline,
    };
    let supervised = lease::supervise(shared, lease, task, progress_rx, &stop).await;
    shared.running.end(job_id);
    let run_ms = received.elapsed().as_secs_f64() * 1000.0;
    // A job the runtime stopped and that did not finish ends as its stop says, whatever error
    // the handler returned on the way out (usually `JobError::Cancelled`, after cleaning up).
    // A handler that returned its outcome finished its work before it saw the stop: its
    // outputs are whole and stay, so it succeeded (a render checks for a stop after its last
    // upload and undoes them instead, when it sees one).
    let stopped = |reason: StopReason| match reason {
        StopReason::Cancelled => Verdict::Failed(JobError::Cancelled),
        StopReason::Deadline => Verdict::Failed(JobError::permanent(format!(
            "deadline of {deadline_ms} ms exceeded"
        ))),
        StopReason::Drain => Verdict::GiveBack,
    };
    match (supervised, stop.reason()) {
        (Ok(Ok(mut outcome)), _) => {
            outcome.timings_ms.push(("run".into(), run_ms));
            Verdict::Succeeded(outcome)
        }
        (_, Some(reason)) => stopped(reason),
        (Ok(Err(err)), None) => Verdict::Failed(err),
        // A handler panic fails its job; the process keeps serving.
        (Err(join_error), None) if join_error.is_panic() => {
            let payload = join_error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(panic = %text, "handler panicked");
            Verdict::Failed(JobError::permanent(format!("handler panicked: {text}")))
        }
        (Err(_), None) => Verdict::GiveBack,
    }
}

/// When a job submitted at `submitted_at_ms` (Unix ms; 0 when unknown, then counted from
/// `received`) with `deadline_ms` must be done, or `None` when that has passed.
fn time_left(
    submitted_at_ms: u64,
    deadline_ms: u64,
    received: Instant,
) -> Option<tokio::time::Instant> {
    let received = tokio::time::Instant::from_std(received);
    if submitted_at_ms == 0 {
        return Some(received + Duration::from_millis(deadline_ms));
    }
    let due_ms = submitted_at_ms.saturating_add(deadline_ms);
    let left_ms = due_ms.checked_sub(now_ms()).filter(|left| *left > 0)?;
    Some(tokio::time::Instant::now() + Duration::from_millis(left_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_counts_from_submission() {
        let received = Instant::now();
        let now = now_ms();
        // Submitted 5 s ago with a 2 s deadline: already past.
        assert!(time_left(now - 5_000, 2_000, received).is_none());
        // Submitted 1 s ago with a 10 s deadline: about 9 s left, not 10.
        let left = time_left(now - 1_000, 10_000, received).unwrap() - tokio::time::Instant::now();
        assert!(left <= Duration::from_millis(9_000), "{left:?}");
        assert!(left > Duration::from_millis(8_000), "{left:?}");
        // No submission time: counted from receipt.
        let due = time_left(0, 3_000, received).unwrap();
        assert_eq!(
            due,
            tokio::time::Instant::from_std(received) + Duration::from_millis(3_000)
        );
    }
}
