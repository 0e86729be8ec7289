//! Continuations: a job that needs another job first never waits in a slot. It asks the
//! runtime to run the other job with [`JobContext::run_first`], which publishes it carrying
//! this job as its continuation (`Envelope::then`); this job returns
//! [`Outcome::waiting_for`](super::Outcome::waiting_for) and is recorded as `waiting`. When the
//! other job succeeds the runtime publishes the continuation ([`publish`]), also when a
//! redelivery finds it succeeded earlier (the dedupe id makes that one publish). Every other end
//! of the other job fails the continued job naming why ([`fail_continued`]): it failed, was
//! dead-lettered after its deliveries, was cancelled, or its continuation could not be published
//! on its last delivery. See the table in `settle.rs`.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use tracing::info;

use super::context::JobContext;
use super::Handler;
use crate::error::JobError;
use crate::events::{ErrorInfo, JobEvent, JobState, Reporter};
use crate::job::{Continuation, Envelope, JobId};
use crate::requests::JobRequest;
use crate::telemetry::TraceParent;

impl JobContext {
    /// Runs another job before this one: publishes `request` to its queue (its type names the
    /// function; for renders the routing rule picks the queue) with this job as its
    /// continuation, on this job's queue, with the request `continued(first_id)` returns. The
    /// handler then returns [`Outcome::waiting_for`](super::Outcome::waiting_for) with the id.
    ///
    /// The other job's id is derived from this job's id and `request`, and is its
    /// `Nats-Msg-Id`: however often this job is delivered, it asks for one job, and the id it
    /// reports is that job's. The trace continues into it (`traceparent`).
    pub async fn run_first<R, C>(
        &self,
        request: &R,
        continued: impl FnOnce(JobId) -> C,
    ) -> Result<JobId, JobError>
    where
        R: JobRequest,
        C: Serialize,
    {
        let broker = self.broker()?;
        let first = first_job(&self.envelope, &self.queue, request, continued)?;
        // The job asked for is checked like a submitted one, its continuation included.
        if let Some(then) = &first.then {
            then.validate()?;
        }
        let queue = request.queue();
        let id = first.id.to_string();
        publish_job(
            &broker.js,
            queue.as_str(),
            &id,
            &crate::telemetry::outgoing(&self.trace),
            Bytes::from(first.to_json()),
        )
        .await
        .map_err(|err| {
            JobError::retryable(format!(
                "could not publish {} job {id} to run first: {}",
                R::FUNCTION,
                lightbox_protocol::error::error_chain(&*err)
            ))
        })?;
        info!(first_job = %id, %queue, "published a job to run first; this job continues when it is done");
        Ok(first.id)
    }
}

/// The envelope of the job to run before `this`: a fresh envelope for `request` whose
/// continuation is `this` with its request replaced, back on `this_queue`.
fn first_job<R, C>(
    this: &Envelope,
    this_queue: &str,
    request: &R,
    continued: impl FnOnce(JobId) -> C,
) -> Result<Envelope, JobError>
where
    R: JobRequest,
    C: Serialize,
{
    let encode = |what: &str, err: serde_json::Error| {
        JobError::permanent(format!("could not encode the {what}: {err}"))
    };
    let request =
        serde_json::to_value(request).map_err(|err| encode("request to run first", err))?;
    let mut salt = R::FUNCTION.as_str().as_bytes().to_vec();
    salt.push(0);
    salt.extend_from_slice(request.to_string().as_bytes());
    let id = JobId::derived(this.id, &salt);

    let mut continuation = this.clone();
    continuation.request =
        serde_json::to_value(continued(id)).map_err(|err| encode("continued request", err))?;
    let mut first = Envelope::new(R::FUNCTION, request);
    first.id = id;
    first.then = Some(Continuation {
        subject: this_queue.to_owned(),
        job: serde_json::to_value(&continuation).map_err(|err| encode("continuation", err))?,
    });
    Ok(first)
}

/// Publishes a job and waits for JetStream to store it; `msg_id` deduplicates it.
async fn publish_job(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    trace: &TraceParent,
    payload: Bytes,
) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert("traceparent", trace.header().as_str());
    js.publish_with_headers(subject.to_owned(), headers, payload)
        .await?
        .await?;
    Ok(())
}

/// A delivered envelope with its continuation checked ([`Continuation::validate`]): an
/// envelope whose continuation is invalid becomes a permanent failure naming why, and no
/// continuation is returned for it, so nothing is published or reported in its name.
pub(super) fn checked(
    parsed: Result<Envelope, JobError>,
) -> (Result<Envelope, JobError>, Option<Continuation>) {
    match parsed {
        Ok(envelope) => match envelope.then.as_ref().map(Continuation::validate) {
            None => (Ok(envelope), None),
            Some(Ok(_)) => {
                let then = envelope.then.clone();
                (Ok(envelope), then)
            }
            Some(Err(err)) => (Err(err), None),
        },
        Err(err) => (Err(err), None),
    }
}

/// Publishes the continuation of a job that succeeded; its dedupe id ties it to that job, so
/// a rerun publishes it once. The continuation is checked again here, whatever path reached
/// it: only a valid envelope is published, and only to the work queue it names.
pub(super) async fn publish(
    js: &jetstream::Context,
    job_id: &str,
    trace: &TraceParent,
    continuation: &Continuation,
) -> Result<(), async_nats::Error> {
    let (queue, _) = continuation.validate()?;
    let continued = continuation.job_id().unwrap_or_default();
    let payload = Bytes::from(serde_json::to_vec(&continuation.job)?);
    publish_job(
        js,
        queue.as_str(),
        &format!("{continued}-after-{job_id}"),
        &crate::telemetry::outgoing(trace),
        payload,
    )
    .await?;
    info!(continued = %continued, subject = %continuation.subject, "published continuation");
    Ok(())
}

/// Fails the job `continuation` would have continued, because the job it waited for (`job_id`,
/// of function `H`) will not continue it: `why` says what became of that job ("failed: ...",
/// "was cancelled", ...). Stored like a terminal state, under one msg id per pair of jobs; a
/// continued job already in a terminal state (cancelled by its submitter, say) is left as it is.
pub(super) async fn fail_continued<H: Handler>(
    reporter: &Reporter,
    continuation: &Continuation,
    job_id: &str,
    kind: &str,
    why: &str,
    worker: &str,
) -> anyhow::Result<()> {
    let Some(continued) = continuation.job_id() else {
        return Ok(());
    };
    if let Ok(Some(current)) = reporter.status(&continued).await {
        if current.state.is_terminal() {
            return Ok(());
        }
    }
    let function = continuation
        .job
        .get("function")
        .and_then(|f| f.as_str())
        .unwrap_or("");
    let mut event = JobEvent::new(&continued, function, JobState::Failed, 0, worker);
    event.error = Some(ErrorInfo {
        kind: kind.into(),
        message: format!(
            "{} job {job_id}, which this job waited for, {why}",
            H::FUNCTION
        ),
    });
    reporter
        .report_terminal(&event, &format!("{continued}-after-{job_id}-failed"), None)
        .await?;
    info!(continued = %continued, "failed the job that waited for this one");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{parse_envelope, Function};
    use crate::requests::{RenderRequest, TessellateRequest};
    use crate::ObjectKey;

    fn render_job() -> Envelope {
        let mut envelope = Envelope::new(
            Function::Render,
            serde_json::json!({"model": "models/a.step", "outputs": [{"width": 64}]}),
        );
        envelope.deadline_ms = Some(60_000);
        envelope
    }

    fn tessellate(input: &str) -> TessellateRequest {
        TessellateRequest {
            input: ObjectKey::new(input).unwrap(),
            output: Some(ObjectKey::new("cache/tessellate/abc.glb").unwrap()),
            linear_deflection: Some(0.001),
            angular_deflection: None,
        }
    }

    fn continued(first: JobId) -> RenderRequest {
        serde_json::from_value(serde_json::json!({
            "model": "models/a.step",
            "outputs": [{"width": 64}],
            "tessellated_by": first.to_string(),
        }))
        .unwrap()
    }

    #[test]
    fn the_first_job_carries_this_job_as_its_continuation_with_the_new_request() {
        let this = render_job();
        let first = first_job(
            &this,
            "render.light",
            &tessellate("models/a.step"),
            continued,
        )
        .unwrap();
        assert_eq!(first.function, Function::Tessellate);
        assert_eq!(first.request["input"], "models/a.step");
        assert_eq!(first.request["linear_deflection"], 0.001);
        assert_eq!(first.deadline_ms, None);

        let then = first.then.as_ref().unwrap();
        assert_eq!(then.subject, "render.light");
        assert_eq!(then.job_id(), Some(this.id.to_string()));
        let continuation = parse_envelope(&serde_json::to_vec(&then.job).unwrap()).unwrap();
        assert_eq!(continuation.id, this.id);
        assert_eq!(continuation.function, Function::Render);
        assert_eq!(continuation.deadline_ms, Some(60_000));
        assert_eq!(
            continuation.request["tessellated_by"],
            first.id.to_string(),
            "the continued request names the job that ran first"
        );
        // What goes on the wire parses as a job.
        assert!(parse_envelope(&first.to_json()).is_ok());
    }

    #[test]
    fn a_redelivered_job_asks_for_the_same_first_job_and_another_request_for_another() {
        let this = render_job();
        let once = first_job(
            &this,
            "render.light",
            &tessellate("models/a.step"),
            continued,
        )
        .unwrap();
        let again = first_job(
            &this,
            "render.light",
            &tessellate("models/a.step"),
            continued,
        )
        .unwrap();
        assert_eq!(once.id, again.id);
        let other = first_job(
            &this,
            "render.light",
            &tessellate("models/b.step"),
            continued,
        )
        .unwrap();
        assert_ne!(once.id, other.id);
        let other_parent = first_job(
            &render_job(),
            "render.light",
            &tessellate("models/a.step"),
            continued,
        )
        .unwrap();
        assert_ne!(once.id, other_parent.id);
    }

    #[test]
    fn a_job_with_an_invalid_continuation_fails_and_carries_no_continuation() {
        let victim = JobId::new();
        let mut job = Envelope::new(Function::Convert, serde_json::json!({}));
        job.then = Some(Continuation {
            subject: format!("events.job.{victim}.succeeded"),
            job: serde_json::to_value(render_job()).unwrap(),
        });
        let (parsed, continuation) = checked(Ok(job));
        let err = parsed.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("is not a work queue"), "{err}");
        assert!(
            continuation.is_none(),
            "an invalid continuation is never acted on"
        );

        let this = render_job();
        let first = first_job(
            &this,
            "render.light",
            &tessellate("models/a.step"),
            continued,
        )
        .unwrap();
        let (parsed, continuation) = checked(Ok(first.clone()));
        assert!(parsed.is_ok());
        assert_eq!(continuation, first.then);
    }

    #[tokio::test]
    async fn a_detached_context_cannot_run_other_jobs() {
        let dir = std::env::temp_dir().join(format!("lightbox-detached-{}", std::process::id()));
        let store = crate::Store::connect(crate::StoreConfig {
            backend: crate::store::StoreBackend::Local { root: dir.clone() },
            ..crate::StoreConfig::default()
        })
        .unwrap();
        let ctx = JobContext::detached(Function::Render, store);
        let err = ctx
            .run_first(&tessellate("models/a.step"), continued)
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("without NATS"), "{err}");
        assert!(ctx.locks().await.is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
