//! The JetStream worker loop every function runs: pull only as many jobs as there are free slots,
//! keep each job's lease alive with in-progress acks, report outcomes, retry with backoff,
//! dead-letter what cannot succeed, and drain on SIGTERM.
//!
//! A function's `main.rs` calls [`run`] with its [`Handler`]; tests start a [`Worker`] in process.

mod dlq;
mod service;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::{self, AckKind};
use async_nats::StatusCode;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn, Instrument};

pub use dlq::{
    DeadLetter, DLQ_HEADER_ATTEMPTS, DLQ_HEADER_ERROR, DLQ_HEADER_JOB, DLQ_HEADER_QUEUE,
    DLQ_HEADER_WORKER,
};

use crate::config::WorkerConfig;
use crate::error::JobError;
use crate::events::{ErrorInfo, JobEvent, JobState, Progress, Reporter};
use crate::infra::{self, Infra, Overrides};
use crate::job::{now_ms, parse_envelope, parse_request, Continuation, Envelope, Function, JobId};
use crate::store::Store;
use crate::telemetry::TraceParent;

/// Subject prefix for cancellation requests: `lightbox.cancel.<job_id>`.
pub const CANCEL_SUBJECT_PREFIX: &str = "lightbox.cancel";

/// What a handler returns on success.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Keys of the objects written.
    pub outputs: Vec<String>,
    /// Function-specific result, reported in the `succeeded` event and the KV entry.
    pub result: serde_json::Value,
    /// Extra stage timings in milliseconds.
    pub timings_ms: Vec<(String, f64)>,
    /// Set when the handler handed the job to another job that will continue it (see
    /// [`crate::job::Continuation`]): the job is recorded as `waiting` and its message settled.
    pub waiting_for: Option<String>,
}

/// A function's job handler.
pub trait Handler: Send + Sync + 'static {
    /// The typed request inside the envelope.
    type Request: DeserializeOwned + Send + 'static;
    /// The function this handler implements (checked against each envelope).
    const FUNCTION: Function;
    /// The queue served when `LIGHTBOX_QUEUE` is unset.
    const DEFAULT_QUEUE: &'static str;
    /// Slots per process when `LIGHTBOX_CONCURRENCY` is unset.
    const DEFAULT_CONCURRENCY: usize;

    /// Runs one job. Bad input is `JobError::Permanent`; passing faults are `JobError::Retryable`.
    fn handle(
        &self,
        job: Job<Self::Request>,
    ) -> impl Future<Output = Result<Outcome, JobError>> + Send;
}

/// One job as a handler sees it: the typed request plus its context.
pub struct Job<R> {
    pub request: R,
    pub ctx: JobContext,
}

/// Everything about a job besides its request.
#[derive(Clone)]
pub struct JobContext {
    pub id: JobId,
    pub function: Function,
    /// Delivery attempt, from 1.
    pub attempt: u64,
    pub store: Store,
    /// The NATS client, for functions that publish follow-up work.
    pub client: async_nats::Client,
    pub trace: TraceParent,
    /// The queue subject the job came from.
    pub queue: String,
    /// The whole envelope as received, for handlers that build a continuation of this job.
    pub envelope: Arc<Envelope>,
    progress: watch::Sender<Option<Progress>>,
    cancelled: Arc<AtomicBool>,
}

impl JobContext {
    /// Reports progress; the runtime publishes it as a `progress` event (rate-limited).
    pub fn progress(&self, done: u64, total: u64, eta_ms: Option<u64>, message: impl Into<String>) {
        let _ = self.progress.send(Some(Progress {
            done,
            total,
            eta_ms,
            message: message.into(),
        }));
    }

    /// Whether the job was cancelled, hit its deadline, or the worker is giving it up.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The flag behind [`Self::is_cancelled`], for code outside tokio (renderers check it between passes).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    /// A context for calling a handler directly, with no broker (handler unit tests, local CLI runs).
    pub fn detached(function: Function, store: Store, client: async_nats::Client) -> Self {
        let (progress, _) = watch::channel(None);
        Self {
            id: JobId::new(),
            function,
            attempt: 1,
            store,
            client,
            trace: TraceParent::new_root(),
            queue: String::new(),
            envelope: Arc::new(Envelope::new(function, serde_json::Value::Null)),
            progress,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Counters shown by `nats micro stats` and the status endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub cancelled: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub dead_lettered: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "started": self.started.load(Ordering::Relaxed),
            "processed": self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
                + self.cancelled.load(Ordering::Relaxed),
            "succeeded": self.succeeded.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "errors": self.failed.load(Ordering::Relaxed) + self.retried.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "cancelled": self.cancelled.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
            "dead_lettered": self.dead_lettered.load(Ordering::Relaxed),
        })
    }
}

/// State shared by the pull loop and the job tasks of one worker.
struct Shared<H: Handler> {
    handler: Arc<H>,
    config: WorkerConfig,
    client: async_nats::Client,
    infra: Infra,
    reporter: Reporter,
    store: Store,
    counters: Arc<Counters>,
    ack_wait: Duration,
    max_deliver: u64,
    /// Cancel flags of jobs running here, by job id.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Set when the drain grace period is over: jobs still running are given back (Nak).
    abandon: watch::Sender<bool>,
}

/// A running worker. Dropping it does not stop it; call [`Worker::shutdown`].
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub counters: Arc<Counters>,
    pub client: async_nats::Client,
}

impl Worker {
    /// Connects, creates or updates streams and the consumer from `infra/nats/`, registers the
    /// micro service and starts pulling.
    pub async fn start<H: Handler>(config: WorkerConfig, handler: H) -> anyhow::Result<Self> {
        let started = Instant::now();
        let name = format!("lightbox-{}", H::FUNCTION);
        let client = config
            .nats
            .connect(&format!("{name}:{}", config.instance))
            .await?;
        let store =
            Store::connect(config.store.clone()).context("connecting to the object store")?;
        let js = jetstream::new(client.clone());
        let overrides = Overrides {
            replicas: Some(config.nats.replicas),
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: config.max_ack_pending,
            bind_only: config.nats.bind_only,
        };
        let infra = infra::ensure(&js, &overrides).await?;
        let consumer = infra::ensure_consumer(&infra.jobs, &config.queue, &overrides).await?;
        let consumer_config = consumer.cached_info().config.clone();
        let counters = Arc::new(Counters::default());
        let (abandon, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            handler: Arc::new(handler),
            reporter: Reporter {
                js: js.clone(),
                kv: infra.kv.clone(),
            },
            ack_wait: consumer_config.ack_wait,
            max_deliver: u64::try_from(consumer_config.max_deliver).unwrap_or(u64::MAX),
            config,
            client: client.clone(),
            infra,
            store,
            counters: counters.clone(),
            running: Mutex::new(HashMap::new()),
            abandon,
        });
        let service =
            service::register(&shared.client, &name, &shared.config, counters.clone()).await?;
        dlq::spawn_max_deliveries_watcher(shared.clone()).await?;
        spawn_cancel_listener(shared.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(pull_loop(shared, stop_rx, service));
        info!(
            queue = %consumer_config.filter_subject,
            startup_ms = started.elapsed().as_secs_f64() * 1000.0,
            "consuming"
        );
        Ok(Self {
            stop,
            task,
            counters,
            client,
        })
    }

    /// Stops pulling, waits for running jobs up to the drain grace, Naks the rest, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let result = self.task.await.context("worker task")?;
        let _ = self.client.flush().await;
        result
    }
}

/// Runs a function until SIGTERM or SIGINT, then drains. This is all a function's `main` calls.
///
/// With the single argument `--check` it instead asks the running instance named by
/// `LIGHTBOX_INSTANCE` for its status over NATS and exits non-zero if it does not answer
/// (the container health check and liveness probe).
pub async fn run<H: Handler>(handler: H) -> anyhow::Result<()> {
    crate::telemetry::init();
    let config = WorkerConfig::from_env(H::DEFAULT_QUEUE, H::DEFAULT_CONCURRENCY);
    if std::env::args().nth(1).as_deref() == Some("--check") {
        return check::<H>(&config).await;
    }
    let worker = Worker::start(config, handler).await?;
    wait_for_signal().await;
    info!("signal received: draining");
    worker.shutdown().await?;
    info!("drained, exiting");
    Ok(())
}

/// Asks the instance's status endpoint for its counters; an answer means it is alive and serving.
async fn check<H: Handler>(config: &WorkerConfig) -> anyhow::Result<()> {
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        config.nats.connect("lightbox-check"),
    )
    .await
    .context("NATS did not answer within 5 s")??;
    let subject = service::status_subject(&format!("lightbox-{}", H::FUNCTION), &config.instance);
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        client.request(subject.clone(), bytes::Bytes::new()),
    )
    .await
    .with_context(|| format!("instance {} did not answer on {subject}", config.instance))?
    .with_context(|| format!("instance {} is not serving", config.instance))?;
    println!("{}", String::from_utf8_lossy(&reply.payload));
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Jobs running at least this long are settled with a double ack.
const DOUBLE_ACK_AFTER_MS: f64 = 1000.0;

/// How long one pull request waits at the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// Idle heartbeat the server sends while a pull request waits; missing ones mean the consumer
/// or the connection is gone, and the loop binds again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

async fn pull_loop<H: Handler>(
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
    service: async_nats::service::Service,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency));
    let overrides = Overrides {
        replicas: Some(shared.config.nats.replicas),
        ack_wait: shared.config.ack_wait,
        max_deliver: shared.config.max_deliver,
        max_ack_pending: shared.config.max_ack_pending,
        bind_only: shared.config.nats.bind_only,
    };
    let mut consumer =
        infra::ensure_consumer(&shared.infra.jobs, &shared.config.queue, &overrides).await?;
    let inbox = shared.client.new_inbox();
    let mut inbox_sub = shared.client.subscribe(inbox.clone()).await?;
    let mut jobs = tokio::task::JoinSet::new();

    'pull: loop {
        // Wait for at least one free slot, then take every free slot: never pull more than that.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            _ = stop.changed() => break 'pull,
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let request = BatchConfig {
            batch: permits.len(),
            expires: Some(PULL_EXPIRES),
            idle_heartbeat: PULL_HEARTBEAT,
            ..Default::default()
        };
        if let Err(err) = consumer.request_batch(request, inbox.clone().into()).await {
            warn!(error = %err, "pull request failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Receive until the request is filled, expires, or the server goes quiet.
        while !permits.is_empty() {
            let next = tokio::select! {
                next = tokio::time::timeout(PULL_HEARTBEAT * 3, inbox_sub.next()) => next,
                _ = stop.changed() => break 'pull,
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => anyhow::bail!("NATS subscription closed"),
                Err(_) => {
                    warn!("no heartbeat from the consumer; binding again");
                    match infra::ensure_consumer(
                        &shared.infra.jobs,
                        &shared.config.queue,
                        &overrides,
                    )
                    .await
                    {
                        Ok(fresh) => consumer = fresh,
                        Err(err) => warn!(error = %err, "binding the consumer failed"),
                    }
                    // A fresh inbox so late replies to the old request cannot overfill the slots.
                    inbox_sub = shared.client.subscribe(inbox.clone()).await?;
                    break;
                }
            };
            match message.status {
                None | Some(StatusCode::OK) => {
                    let permit = permits.pop().expect("a slot per requested message");
                    let message = jetstream::Message {
                        message,
                        context: shared.infra.js.clone(),
                    };
                    jobs.spawn(process(shared.clone(), message, permit));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => break,
                Some(status) => {
                    let description = message.description.clone().unwrap_or_default();
                    debug!(%status, %description, "pull request ended");
                    if description.to_ascii_lowercase().contains("deleted") {
                        warn!("consumer was deleted; binding again");
                        consumer = infra::ensure_consumer(
                            &shared.infra.jobs,
                            &shared.config.queue,
                            &overrides,
                        )
                        .await?;
                    }
                    break;
                }
            }
        }
        // Reap finished tasks so the set does not grow without bound.
        while jobs.try_join_next().is_some() {}
    }

    // Stop pulling: dropping the subscription removes our interest, so the server forgets the
    // waiting request. Anything already delivered to us goes straight back.
    let _ = inbox_sub.unsubscribe().await;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(50), inbox_sub.next()).await
    {
        if matches!(message.status, None | Some(StatusCode::OK)) {
            let message = jetstream::Message {
                message,
                context: shared.infra.js.clone(),
            };
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
    }
    let in_flight = jobs.len();
    if in_flight > 0 {
        info!(
            in_flight,
            grace_s = shared.config.drain_grace.as_secs_f64(),
            "waiting for running jobs"
        );
    }
    let drained = tokio::time::timeout(shared.config.drain_grace, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = jobs.len(),
            "drain grace over: giving running jobs back to the queue"
        );
        let _ = shared.abandon.send(true);
        while jobs.join_next().await.is_some() {}
    }
    let _ = service.stop().await;
    Ok(())
}

/// Handles one delivered message from receipt to its final ack. Holds its slot until done.
async fn process<H: Handler>(
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
        Err(_) => serde_json::from_slice::<serde_json::Value>(&message.payload)
            .ok()
            .and_then(|value| {
                value
                    .get("id")
                    .and_then(|id| id.as_str())
                    .map(str::to_owned)
            })
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
        let trace_id = trace.trace_id.clone();
        let continuation = parsed
            .as_ref()
            .ok()
            .and_then(|envelope| envelope.then.clone());
        let verdict = run_job(&shared, &message, parsed, &job_id, attempt, trace, received).await;
        let settle = Settle {
            job_id: &job_id,
            attempt,
            stream_seq,
            received,
            trace_id: &trace_id,
            continuation,
        };
        finish(&shared, &message, verdict, settle).await;
        shared.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
    }
    .instrument(span)
    .await
}

/// What became of one delivery.
enum Verdict {
    Succeeded(Outcome),
    Failed(JobError),
    /// Already finished earlier (a redelivery after a lost ack): acknowledge and move on.
    AlreadyDone(JobState),
    /// The worker is shutting down: hand the job back at once.
    GiveBack,
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

    let cancelled = Arc::new(AtomicBool::new(false));
    shared
        .running
        .lock()
        .expect("running map")
        .insert(job_id.to_owned(), cancelled.clone());
    let (progress_tx, mut progress_rx) = watch::channel(None);
    let ctx = JobContext {
        id: envelope.id,
        function: H::FUNCTION,
        attempt,
        store: shared.store.clone(),
        client: shared.client.clone(),
        trace,
        queue: message.subject.to_string(),
        envelope: Arc::new(envelope.clone()),
        progress: progress_tx,
        cancelled: cancelled.clone(),
    };
    let handler = shared.handler.clone();
    let mut task = tokio::spawn(
        async move { handler.handle(Job { request, ctx }).await }
            .instrument(tracing::Span::current()),
    );

    // Keep the lease alive for the whole job, publish progress, watch deadline and drain.
    let heartbeat_every = (shared.ack_wait / 3).max(Duration::from_millis(200));
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let deadline = envelope
        .deadline_ms
        .map(|ms| tokio::time::Instant::from_std(received) + Duration::from_millis(ms));
    let mut abandon = shared.abandon.subscribe();
    // Progress is published at most every 250 ms, whatever rate the handler reports at.
    let mut progress_tick = tokio::time::interval(Duration::from_millis(250));
    let result = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = heartbeat.tick() => {
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %err, "in-progress ack failed");
                }
            }
            _ = progress_tick.tick() => {
                if !progress_rx.has_changed().unwrap_or(false) { continue; }
                let snapshot = progress_rx.borrow_and_update().clone();
                if let Some(progress) = snapshot {
                    let mut event = JobEvent::new(job_id, H::FUNCTION.as_str(), JobState::Progress, attempt, &shared.config.instance);
                    event.progress = Some(progress);
                    let _ = shared.reporter.report(&event, false).await;
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                cancelled.store(true, Ordering::SeqCst);
                task.abort();
                shared.running.lock().expect("running map").remove(job_id);
                return Verdict::Failed(JobError::permanent(format!(
                    "deadline of {} ms exceeded", envelope.deadline_ms.unwrap_or(0))));
            }
            _ = async { let _ = abandon.wait_for(|abandon| *abandon).await; } => {
                cancelled.store(true, Ordering::SeqCst);
                task.abort();
                shared.running.lock().expect("running map").remove(job_id);
                return Verdict::GiveBack;
            }
        }
    };
    shared.running.lock().expect("running map").remove(job_id);
    let run_ms = received.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(mut outcome)) => {
            outcome.timings_ms.push(("run".into(), run_ms));
            if cancelled.load(Ordering::SeqCst) {
                Verdict::Failed(JobError::Cancelled)
            } else {
                Verdict::Succeeded(outcome)
            }
        }
        Ok(Err(err)) => Verdict::Failed(err),
        Err(join_error) if join_error.is_panic() => {
            let payload = join_error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(panic = %text, "handler panicked");
            Verdict::Failed(JobError::permanent(format!("handler panicked: {text}")))
        }
        Err(_) => Verdict::GiveBack,
    }
}

/// What `finish` needs to know about a delivery besides its verdict.
struct Settle<'a> {
    job_id: &'a str,
    attempt: u64,
    stream_seq: u64,
    received: Instant,
    trace_id: &'a str,
    continuation: Option<Continuation>,
}

/// Reports the verdict and settles the message: Ack, Nak with backoff, or Term plus dead letter.
async fn finish<H: Handler>(
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
        trace_id,
        continuation,
    } = settle;
    let function = H::FUNCTION.as_str();
    let worker = shared.config.instance.as_str();
    let new_event = |state: JobState| {
        let mut event = JobEvent::new(job_id, function, state, attempt, worker);
        event.trace_id = Some(trace_id.to_owned());
        event
    };
    let run_ms = received.elapsed().as_secs_f64() * 1000.0;
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
                if let Err(err) = publish_continuation(shared, job_id, continuation).await {
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
            if let Some(continued) = continuation.as_ref().and_then(Continuation::job_id) {
                let function = continuation
                    .as_ref()
                    .and_then(|c| c.job.get("function"))
                    .and_then(|f| f.as_str())
                    .unwrap_or("");
                let mut event = JobEvent::new(&continued, function, JobState::Failed, 0, worker);
                event.error = Some(ErrorInfo {
                    kind: err.kind().into(),
                    message: format!(
                        "{} job {job_id}, which this job waited for, failed: {message_text}",
                        H::FUNCTION
                    ),
                });
                report_final(shared, &event).await;
            }
            let letter = DeadLetter {
                job_id: job_id.to_owned(),
                function: function.to_owned(),
                queue: message.subject.to_string(),
                error: message_text,
                attempts: attempt,
                worker: worker.to_owned(),
                source_seq: stream_seq,
                payload: message.payload.clone(),
            };
            if let Err(err) = dlq::publish(&shared.infra.js, &letter).await {
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
            let _ = message.double_ack_with(AckKind::Term).await;
            // A work-queue stream drops terminated messages; delete explicitly in case it kept it.
            if stream_seq > 0 {
                let _ = shared.infra.jobs.delete_message(stream_seq).await;
            }
        }
    }
}

/// Publishes a continuation; its dedupe id ties it to this job, so a rerun publishes it once.
async fn publish_continuation<H: Handler>(
    shared: &Arc<Shared<H>>,
    job_id: &str,
    continuation: &Continuation,
) -> anyhow::Result<()> {
    let continued = continuation.job_id().unwrap_or_default();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{continued}-after-{job_id}").as_str(),
    );
    let payload = bytes::Bytes::from(serde_json::to_vec(&continuation.job)?);
    shared
        .infra
        .js
        .publish_with_headers(continuation.subject.clone(), headers, payload)
        .await?
        .await?;
    info!(continued = %continued, subject = %continuation.subject, "published continuation");
    Ok(())
}

async fn report_final<H: Handler>(shared: &Arc<Shared<H>>, event: &JobEvent) {
    // Terminal states must be stored before the message is settled; retry briefly on faults.
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

async fn spawn_cancel_listener<H: Handler>(shared: Arc<Shared<H>>) -> anyhow::Result<()> {
    let mut sub = shared
        .client
        .subscribe(format!("{CANCEL_SUBJECT_PREFIX}.*"))
        .await?;
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            let job_id = message
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let flag = shared
                .running
                .lock()
                .expect("running map")
                .get(&job_id)
                .cloned();
            if let Some(flag) = flag {
                info!(job_id = %job_id, "cancelling running job");
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    Ok(())
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
