//! One delivery from receipt to its final ack: read the headers and envelope, open the job's
//! span, decide whether it runs at all, run the handler under its lease, and settle the
//! message with the verdict. Holds its slot until done.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::{error, info, warn, Instrument};

use super::context::{Job, JobContext};
use super::lease::{self, Lease, Supervised};
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
    let span =
        tracing::info_span!("job", job_id = %job_id, function, attempt, trace_id = %trace.trace_id);
    async move {
        let in_flight = shared.counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .counters
            .max_in_flight
            .fetch_max(in_flight, Ordering::SeqCst);
        // A continuation is checked before the job runs, like the job itself: an invalid one
        // fails the job for good, and is never acted on (not published, nor failed in its name).
        let (parsed, continuation) = continuation::checked(parsed);
        let verdict = run_job(
            &shared,
            &message,
            parsed,
            &job_id,
            attempt,
            trace.clone(),
            received,
        )
        .await;
        let settle = Settle {
            job_id: &job_id,
            attempt,
            stream_seq,
            received,
            trace: &trace,
            continuation,
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
    // A job cancelled while queued, or finished by an earlier delivery, does not run again.
    if let Ok(Some(previous)) = shared.reporter.status(job_id).await {
        if previous.state == JobState::Cancelled || previous.state == JobState::Succeeded {
            return Verdict::AlreadyDone(previous.state);
        }
    }
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

    let cancelled = shared.running.start(job_id);
    let (progress_tx, progress_rx) = watch::channel(None);
    let deadline_ms = envelope.deadline_ms;
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
        cancelled: cancelled.clone(),
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
        received,
        deadline_ms,
    };
    let supervised = lease::supervise(shared, lease, task, progress_rx, &cancelled).await;
    shared.running.end(job_id);
    let run_ms = received.elapsed().as_secs_f64() * 1000.0;
    match supervised {
        Supervised::Stopped(verdict) => verdict,
        Supervised::Joined(Ok(Ok(mut outcome))) => {
            outcome.timings_ms.push(("run".into(), run_ms));
            if cancelled.load(Ordering::SeqCst) {
                Verdict::Failed(JobError::Cancelled)
            } else {
                Verdict::Succeeded(outcome)
            }
        }
        Supervised::Joined(Ok(Err(err))) => Verdict::Failed(err),
        // A handler panic fails its job; the process keeps serving.
        Supervised::Joined(Err(join_error)) if join_error.is_panic() => {
            let payload = join_error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(panic = %text, "handler panicked");
            Verdict::Failed(JobError::permanent(format!("handler panicked: {text}")))
        }
        Supervised::Joined(Err(_)) => Verdict::GiveBack,
    }
}
