//! The publisher side: submit jobs (with dedupe ids and trace context), route renders, read a
//! job's state, follow its events, cancel it, and inspect queues and dead letters.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, consumer, kv, ErrorCode};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::config::NatsConfig;
use crate::events::{JobEvent, JobState, Reporter};
use crate::infra::{self, consumer_name, Infra, Overrides, DLQ_STREAM, EVENTS_STREAM, QUEUES};
use crate::job::{Envelope, JobId};
use crate::telemetry::TraceParent;
use crate::worker::{
    CANCEL_SUBJECT_PREFIX, DLQ_HEADER_ATTEMPTS, DLQ_HEADER_ERROR, DLQ_HEADER_JOB, DLQ_HEADER_QUEUE,
    DLQ_HEADER_WORKER,
};

/// What [`Client::cancel_job`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job is recorded as `cancelled` (and a running one was asked to stop).
    Cancelled(JobEvent),
    /// The job had already finished in this state; nothing was written.
    AlreadyFinished(JobEvent),
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue hit its message, byte or per-subject limit (discard-new): back off and retry.
    #[error("queue {subject} is full ({detail}); try again later")]
    QueueFull { subject: String, detail: String },
    /// The job is larger than a message may be (the server's `max_payload` or the stream's
    /// `max_msg_size`): it can never be queued as it is.
    #[error("job for {subject} is too large to queue ({detail})")]
    TooLarge { subject: String, detail: String },
    #[error("could not publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: anyhow::Error,
    },
}

impl SubmitError {
    /// Classifies a refused publish by what the client and the server say in code: the
    /// client's error kind and the JetStream API error code of the server's answer.
    fn from_publish(subject: &str, err: PublishError) -> Self {
        let api_code = std::error::Error::source(&err)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .map(jetstream::Error::error_code);
        let subject = subject.to_owned();
        match (err.kind(), api_code) {
            // Under discard-new, a stream at its message, byte or per-subject limit refuses the
            // message with "stream store failed" (10077); a server out of storage answers
            // "insufficient resources" (10023). Both pass once workers drain the queue.
            (_, Some(ErrorCode::STREAM_STORE_FAILED | ErrorCode::INSUFFICIENT_RESOURCES)) => {
                SubmitError::QueueFull {
                    subject,
                    detail: err.to_string(),
                }
            }
            (PublishErrorKind::MaxPayloadExceeded, _)
            | (_, Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)) => SubmitError::TooLarge {
                subject,
                detail: err.to_string(),
            },
            _ => SubmitError::Publish {
                subject,
                source: err.into(),
            },
        }
    }
}

/// One queue's depth as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    pub queue: String,
    pub consumer: String,
    /// Waiting to be delivered.
    pub pending: u64,
    /// Delivered and not yet acknowledged (running).
    pub in_flight: usize,
    /// Pull requests waiting at the server (idle worker slots).
    pub waiting_pulls: usize,
    pub redelivered: usize,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterInfo {
    /// Sequence in the `DLQ` stream (what `dlq replay` takes).
    pub seq: u64,
    pub subject: String,
    pub job_id: String,
    pub queue: String,
    pub error: String,
    pub attempts: String,
    pub worker: String,
}

/// A connected publisher.
#[derive(Clone)]
pub struct Client {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub infra: Infra,
}

impl Client {
    /// Connects and makes sure the streams and KV bucket exist.
    pub async fn connect(config: &NatsConfig) -> anyhow::Result<Self> {
        let nats = config.connect("lightbox-client").await?;
        Self::from_nats(nats, &config.overrides()).await
    }

    /// Connects once (failing within a few seconds when NATS cannot be reached) and binds to the
    /// existing streams and bucket without changing any server configuration: what every
    /// `lightbox` command but `infra apply` uses.
    pub async fn bind(config: &NatsConfig) -> anyhow::Result<Self> {
        let nats = config
            .connect_once("lightbox-client", Duration::from_secs(3))
            .await?;
        let js = jetstream::new(nats.clone());
        let infra = infra::bind(&js).await?;
        Ok(Self { nats, js, infra })
    }

    /// Wraps a connected client; creates or binds the streams and bucket as `overrides` says.
    pub async fn from_nats(
        nats: async_nats::Client,
        overrides: &Overrides,
    ) -> anyhow::Result<Self> {
        let js = jetstream::new(nats.clone());
        let infra = infra::ensure(&js, overrides).await?;
        Ok(Self { nats, js, infra })
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            js: self.js.clone(),
            kv: self.infra.kv.clone(),
        }
    }

    /// Publishes a job to a queue subject and records it as `queued`. The job id is the
    /// `Nats-Msg-Id`, so publishing the same envelope twice inside the dedupe window runs it once.
    pub async fn submit<R: Serialize>(
        &self,
        subject: &str,
        envelope: &Envelope<R>,
    ) -> Result<JobId, SubmitError> {
        self.submit_raw(
            subject,
            &envelope.id.to_string(),
            Bytes::from(envelope.to_json()),
            None,
        )
        .await?;
        Ok(envelope.id)
    }

    /// Publishes raw bytes (for replays and tests) with a dedupe id and optional trace context.
    pub async fn submit_raw(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
        trace: Option<&TraceParent>,
    ) -> Result<(), SubmitError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let trace = trace.cloned().unwrap_or_else(TraceParent::new_root);
        headers.insert("traceparent", trace.header().as_str());
        self.js
            .publish_with_headers(subject.to_owned(), headers, payload.clone())
            .await
            .map_err(|err| SubmitError::from_publish(subject, err))?
            .await
            .map_err(|err| SubmitError::from_publish(subject, err))?;
        // Record `queued` only if no worker has reported yet (create fails if the key exists).
        if let Ok(envelope) = crate::job::parse_envelope(&payload) {
            let event = JobEvent::new(
                envelope.id.to_string(),
                envelope.function.as_str(),
                JobState::Queued,
                0,
                "publisher",
            );
            if let Ok(bytes) = serde_json::to_vec(&event) {
                let _ = self
                    .infra
                    .kv
                    .create(crate::events::subject_token(&event.job_id), bytes.into())
                    .await;
            }
        }
        Ok(())
    }

    /// The latest state of a job, from the KV bucket.
    pub async fn status(&self, job_id: &str) -> anyhow::Result<Option<JobEvent>> {
        self.reporter().status(job_id).await
    }

    /// Every event of a job so far and then as they happen (an ordered consumer on `EVENTS`).
    pub async fn watch(
        &self,
        job_id: &str,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<JobEvent>>> {
        let stream = self.js.get_stream(EVENTS_STREAM).await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: format!("events.job.{}.>", crate::events::subject_token(job_id)),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let messages = consumer.messages().await?;
        Ok(messages.map(|message| {
            let message = message.map_err(|err| anyhow::anyhow!("event stream: {err}"))?;
            serde_json::from_slice::<JobEvent>(&message.payload).context("decoding event")
        }))
    }

    /// Waits for a job's terminal event, calling `on_event` for each event on the way.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
        mut on_event: impl FnMut(&JobEvent),
    ) -> anyhow::Result<JobEvent> {
        let events = self.watch(job_id).await?;
        tokio::pin!(events);
        let result = tokio::time::timeout(timeout, async {
            while let Some(event) = events.next().await {
                let event = event?;
                on_event(&event);
                if event.state.is_terminal() {
                    return Ok(event);
                }
            }
            anyhow::bail!("event stream ended")
        })
        .await;
        result.map_err(|_| {
            anyhow::anyhow!("job {job_id} did not finish within {} s", timeout.as_secs())
        })?
    }

    /// Cancels a job: a queued job is skipped when it is pulled; a running one stops at its next
    /// check and removes partial outputs. Returns the job's state afterwards: `cancelled`, or
    /// the terminal state it had already reached (see [`Client::cancel_job`] to tell them apart).
    /// A job the `jobs` bucket does not know is an error, and nothing is written for it.
    pub async fn cancel(&self, job_id: &str) -> anyhow::Result<JobEvent> {
        Ok(match self.cancel_job(job_id).await? {
            CancelOutcome::Cancelled(event) | CancelOutcome::AlreadyFinished(event) => event,
        })
    }

    /// Cancels a job unless it already finished. The `cancelled` state is written as a
    /// compare-and-set on the job's KV entry (an update at the revision read), so a terminal
    /// state a worker stores in between is never overwritten: the read is repeated and the
    /// finished state returned. Only after the KV entry says `cancelled` are the event and
    /// the cancel request for a running job published.
    pub async fn cancel_job(&self, job_id: &str) -> anyhow::Result<CancelOutcome> {
        let key = crate::events::subject_token(job_id);
        // A job whose state changes this often while we look is still moving; each round
        // trip reads its latest state.
        for _ in 0..20 {
            let entry = self
                .infra
                .kv
                .entry(key.clone())
                .await
                .with_context(|| format!("reading the state of job {job_id}"))?;
            let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
                anyhow::bail!("no job {job_id} is known (nothing was cancelled)");
            };
            let current: JobEvent = serde_json::from_slice(&entry.value)
                .with_context(|| format!("decoding the state of job {job_id}"))?;
            if current.state.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(current));
            }
            let event = JobEvent::new(
                job_id,
                &current.function,
                JobState::Cancelled,
                0,
                "lightbox-cli",
            );
            let payload = Bytes::from(serde_json::to_vec(&event)?);
            match self
                .infra
                .kv
                .update(key.clone(), payload.clone(), entry.revision)
                .await
            {
                Ok(_) => {}
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(err) => {
                    return Err(err).with_context(|| format!("recording job {job_id} as cancelled"))
                }
            }
            self.js
                .publish(event.subject(), payload)
                .await?
                .await
                .with_context(|| format!("publishing the cancelled event of job {job_id}"))?;
            self.nats
                .publish(format!("{CANCEL_SUBJECT_PREFIX}.{key}"), Bytes::new())
                .await?;
            self.nats.flush().await?;
            return Ok(CancelOutcome::Cancelled(event));
        }
        anyhow::bail!("job {job_id} kept changing state while it was being cancelled; try again")
    }

    /// Depth of every work queue.
    pub async fn queues(&self) -> anyhow::Result<Vec<QueueInfo>> {
        let mut infos = Vec::new();
        for queue in QUEUES {
            let name = consumer_name(queue);
            match self.infra.jobs.consumer_info(&name).await {
                Ok(info) => infos.push(QueueInfo {
                    queue: queue.to_owned(),
                    consumer: name,
                    pending: info.num_pending,
                    in_flight: info.num_ack_pending,
                    waiting_pulls: info.num_waiting,
                    redelivered: info.num_redelivered,
                }),
                Err(_) => {
                    // No worker has created the consumer yet: report what the stream holds.
                    let mut pending = 0;
                    if let Ok(mut subjects) = self.infra.jobs.info_with_subjects(queue).await {
                        while let Some(Ok((_, count))) = subjects.next().await {
                            pending += count as u64;
                        }
                    }
                    infos.push(QueueInfo {
                        queue: queue.to_owned(),
                        consumer: name,
                        pending,
                        in_flight: 0,
                        waiting_pulls: 0,
                        redelivered: 0,
                    });
                }
            }
        }
        Ok(infos)
    }

    /// Up to `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<DeadLetterInfo>> {
        let mut stream = self.js.get_stream(DLQ_STREAM).await?;
        let state = stream.info().await?.state.clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for seq in state.first_sequence..=state.last_sequence {
            if letters.len() >= limit {
                break;
            }
            let Ok(raw) = stream.get_raw_message(seq).await else {
                continue;
            };
            let header = |name: &str| {
                raw.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            letters.push(DeadLetterInfo {
                seq,
                subject: raw.subject.to_string(),
                job_id: header(DLQ_HEADER_JOB),
                queue: header(DLQ_HEADER_QUEUE),
                error: header(DLQ_HEADER_ERROR),
                attempts: header(DLQ_HEADER_ATTEMPTS),
                worker: header(DLQ_HEADER_WORKER),
            });
        }
        Ok(letters)
    }

    /// Publishes a dead letter's original job to its queue again, then removes the letter.
    /// `id` is the DLQ sequence or the job id.
    pub async fn replay(&self, id: &str) -> anyhow::Result<DeadLetterInfo> {
        let letters = self.dead_letters(usize::MAX).await?;
        let letter = letters
            .into_iter()
            .find(|l| l.seq.to_string() == id || l.job_id == id)
            .with_context(|| format!("no dead letter with sequence or job id {id}"))?;
        let stream = self.js.get_stream(DLQ_STREAM).await?;
        let raw = stream.get_raw_message(letter.seq).await?;
        let msg_id = format!("{}-replay-{}", letter.job_id, letter.seq);
        self.submit_raw(&letter.queue, &msg_id, raw.payload.clone(), None)
            .await?;
        stream.delete_message(letter.seq).await?;
        Ok(letter)
    }
}
