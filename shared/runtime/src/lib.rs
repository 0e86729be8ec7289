//! The Lightbox function SDK over NATS and the object store: the JetStream worker runtime,
//! outcome reporting, the publisher client, store access with prefix policy, cross-process
//! locks, configuration and telemetry. The wire types are [`lightbox_protocol`]'s, re-exported
//! here so a function needs one dependency, and no function needs `async-nats`: a handler
//! reaches JetStream only through its [`worker::JobContext`] (locks, jobs to run first).
//!
//! A function is a [`worker::Handler`] plus a tiny `main`:
//!
//! ```no_run
//! use lightbox_runtime::worker::{Handler, Job, Outcome};
//! use lightbox_runtime::{Function, JobError};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Request = serde_json::Value;
//!     const FUNCTION: Function = Function::Convert;
//!     const DEFAULT_QUEUE: &'static str = "convert";
//!     const DEFAULT_CONCURRENCY: usize = 2;
//!     async fn handle(&self, job: Job<Self::Request>) -> Result<Outcome, JobError> {
//!         Ok(Outcome { result: job.request, ..Outcome::default() })
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     lightbox_runtime::worker::run(Echo).await
//! }
//! ```

pub mod client;
pub mod config;
pub mod env;
pub mod events;
pub mod infra;
pub mod locks;
pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use lightbox_protocol::{cache, error, job, queue, requests, schemas};
pub use lightbox_protocol::{Envelope, Function, JobError, JobId, ObjectKey, Queue};
pub use store::{Store, StoreConfig, StoreError};
