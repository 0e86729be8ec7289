//! The Lightbox function SDK: the job envelope and request types, the JetStream worker runtime,
//! outcome events, object store access with key validation, configuration and telemetry.
//!
//! A function is a [`worker::Handler`] plus a tiny `main`:
//!
//! ```no_run
//! use shared::worker::{Handler, Job, Outcome};
//! use shared::{Function, JobError};
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
//!     shared::worker::run(Echo).await
//! }
//! ```

pub mod cache;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod infra;
pub mod job;
pub mod requests;
pub mod schemas;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use error::JobError;
pub use job::{Envelope, Function, JobId};
pub use store::{ObjectKey, Store, StoreConfig};
