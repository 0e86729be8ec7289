//! What a handler sees: the [`Handler`] trait it implements, the [`Job`] it is given (typed
//! request plus [`JobContext`]) and the [`Outcome`] it returns.
//!
//! The context is the handler's only way out of its job: the store, progress reports, the stop
//! signal (cancel, deadline, drain: [`JobContext::stopped`]), cross-process locks ([`JobContext::locks`]) and other jobs to run first
//! ([`JobContext::run_first`], in `continuation.rs`). It holds no NATS client a handler could
//! publish with, so every message on JetStream goes through the runtime.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::jetstream;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, OnceCell};

use super::cancel::{StopReason, StopSignal};
use crate::error::JobError;
use crate::events::Progress;
use crate::infra::Overrides;
use crate::job::{Envelope, Function, JobId};
use crate::locks::Locks;
use crate::store::Store;
use crate::telemetry::TraceParent;

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
    /// [`JobContext::run_first`]): the job is recorded as `waiting` and its message settled.
    pub waiting_for: Option<String>,
}

impl Outcome {
    /// The outcome of a job that waits for `first` (from [`JobContext::run_first`]) to
    /// continue it.
    pub fn waiting_for(first: JobId) -> Self {
        Self {
            waiting_for: Some(first.to_string()),
            ..Self::default()
        }
    }
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
    pub trace: TraceParent,
    /// The queue subject the job came from.
    pub queue: String,
    /// The whole envelope as received (a continuation of this job starts from it).
    pub envelope: Arc<Envelope>,
    pub(super) progress: watch::Sender<Option<Progress>>,
    /// Set when the runtime asks the job to stop (cancel, deadline, drain).
    pub(super) stop: StopSignal,
    /// The worker's JetStream side; `None` in a detached context.
    pub(super) broker: Option<Arc<Broker>>,
}

/// What the jobs of one worker reach JetStream through: publishing jobs to run first, and
/// the locks bucket, opened on first use so functions that take no locks need no rights on it.
pub(crate) struct Broker {
    pub(super) js: jetstream::Context,
    overrides: Overrides,
    locks: OnceCell<Locks>,
}

impl Broker {
    pub(super) fn new(js: jetstream::Context, overrides: Overrides) -> Self {
        Self {
            js,
            overrides,
            locks: OnceCell::new(),
        }
    }
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

    /// Whether the job was asked to stop: cancelled, past its deadline, or the worker is giving
    /// it up ([`Self::stop_reason`] says which).
    pub fn is_cancelled(&self) -> bool {
        self.stop.flag().load(Ordering::Relaxed)
    }

    /// The flag behind [`Self::is_cancelled`], for code outside tokio (renderers check it between
    /// passes, the sandbox kills its child when it is set).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.stop.flag().clone()
    }

    /// Why the job was asked to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop.reason()
    }

    /// Resolves when the runtime asks the job to stop, with the reason. A handler selects on
    /// it around long awaits, cleans up what it started (uploads, locks, children) and returns;
    /// the runtime waits a bounded grace for that before it aborts the handler's task.
    pub async fn stopped(&self) -> StopReason {
        self.stop.stopped().await
    }

    /// Asks this job to stop, as the runtime would: for detached contexts (local runs, handler
    /// tests). The first reason given counts.
    pub fn request_stop(&self, reason: StopReason) {
        self.stop.stop(reason);
    }

    /// The cross-process locks (KV bucket `tessellate_locks`, from
    /// `infra/nats/tessellate-locks.kv.json`), created or bound on first use and shared by the
    /// worker's jobs. A detached context has no broker and no locks.
    pub async fn locks(&self) -> Result<Locks, JobError> {
        let broker = self.broker()?;
        broker
            .locks
            .get_or_try_init(|| Locks::open(&broker.js, &broker.overrides))
            .await
            .cloned()
            .map_err(JobError::from)
    }

    pub(super) fn broker(&self) -> Result<&Broker, JobError> {
        self.broker.as_deref().ok_or_else(|| {
            JobError::permanent(format!(
                "{} job {} runs without NATS (a detached context): it cannot take locks or run other jobs",
                self.function, self.id
            ))
        })
    }

    /// A context for calling a handler directly, with no broker (handler unit tests, local
    /// CLI runs): the store works; locks and [`Self::run_first`] fail permanently.
    pub fn detached(function: Function, store: Store) -> Self {
        let (progress, _) = watch::channel(None);
        Self {
            id: JobId::new(),
            function,
            attempt: 1,
            store,
            trace: TraceParent::new_root(),
            queue: String::new(),
            envelope: Arc::new(Envelope::new(function, serde_json::Value::Null)),
            progress,
            stop: StopSignal::default(),
            broker: None,
        }
    }
}
