//! The JetStream worker every function runs: pull only as many jobs as there are free slots,
//! keep each job's lease alive with in-progress acks, report outcomes, retry with backoff,
//! dead-letter what cannot succeed, and drain on SIGTERM.
//!
//! A function's `main.rs` calls [`run`] with its [`Handler`]; tests start a [`Worker`] in process.
//! One file per concern:
//! - `context.rs`: what a handler sees ([`Handler`], [`Job`], [`JobContext`], [`Outcome`]);
//! - `start.rs`: start-up and binding, [`Worker`], [`run`] and its `--check` probe;
//! - `pull.rs`: the pull loop (slots, pull requests, binding again, drain);
//! - `delivery.rs`: one delivery from receipt to settlement, panics included;
//! - `lease.rs`: in-progress acks, progress events, deadline and drain-grace stops;
//! - `settle.rs`: the settle policy (ack, nak with backoff, term with dead letter);
//! - `continuation.rs`: jobs run first ([`JobContext::run_first`]) and their continuations;
//! - `cancel.rs`: cancel requests and the stop signals of running jobs ([`StopReason`]);
//! - `dlq.rs`: dead letters and the delivery limit the runtime enforces;
//! - `record.rs`: the runtime's record of a job in the store (outcome, hand-backs);
//! - `service.rs`: the NATS micro service and its [`Counters`].

mod cancel;
mod context;
mod continuation;
mod delivery;
mod dlq;
mod lease;
mod pull;
mod record;
mod service;
mod settle;
mod start;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use cancel::{StopReason, CANCEL_SUBJECT_PREFIX};
pub use context::{Handler, Job, JobContext, Outcome};
pub use dlq::{
    DeadLetter, DLQ_HEADER_ATTEMPTS, DLQ_HEADER_ERROR, DLQ_HEADER_JOB, DLQ_HEADER_QUEUE,
    DLQ_HEADER_WORKER,
};
pub use service::Counters;
pub use settle::backoff;
pub use start::{run, Worker};

use crate::config::WorkerConfig;
use crate::events::Reporter;
use crate::infra::{Infra, Overrides};
use crate::store::Store;

/// State shared by the pull loop, the watchers and the job tasks of one worker.
struct Shared<H: Handler> {
    handler: Arc<H>,
    config: WorkerConfig,
    /// What the configuration changes in the committed definitions.
    overrides: Overrides,
    client: async_nats::Client,
    infra: Infra,
    reporter: Reporter,
    store: Store,
    /// What job contexts publish and lock through.
    broker: Arc<context::Broker>,
    counters: Arc<Counters>,
    ack_wait: Duration,
    /// Deliveries a job may use (hand-backs not counted), enforced by the runtime
    /// (`dlq::delivery_limit`); `u64::MAX` for none.
    max_deliver: u64,
    /// Stop signals of jobs running here.
    running: cancel::Running,
    /// Set when the drain grace period is over: jobs still running are given back (Nak).
    abandon: watch::Sender<bool>,
}
