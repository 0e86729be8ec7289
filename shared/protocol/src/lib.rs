//! Lightbox's wire protocol: the job envelope, per-function requests, outcome events, object
//! keys, the work queues with their routing rule, cache keys and trace context, plus the JSON
//! Schemas generated from them for publishers in other languages.
//!
//! Architecture invariant: plain data and pure functions. No tokio, no NATS client, no store
//! client (a dependency test in `tests/` holds this), so any producer or consumer can use it.

pub mod cache;
pub mod error;
pub mod events;
pub mod job;
pub mod key;
pub mod queue;
pub mod render_spec;
pub mod requests;
pub mod results;
pub mod schemas;
pub mod trace;

pub use error::JobError;
pub use job::{Envelope, Function, JobId};
pub use key::ObjectKey;
pub use queue::Queue;
pub use requests::JobRequest;
