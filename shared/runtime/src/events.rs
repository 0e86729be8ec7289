//! Outcome reporting: events on `events.job.<id>.<state>` and the latest state in KV `jobs`.
//! The event types are the protocol's ([`lightbox_protocol::events`]).

use std::future::IntoFuture;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

pub use lightbox_protocol::events::*;

/// Publishes events and keeps the KV bucket current.
#[derive(Clone)]
pub struct Reporter {
    pub js: jetstream::Context,
    pub kv: kv::Store,
}

impl Reporter {
    /// Publishes an event and records it as the job's latest state (a KV put is a publish to
    /// `$KV.jobs.<key>`). With `wait`, returns once the server has stored both (terminal states);
    /// without, both are sent and not awaited (started, progress), which keeps the hot path short.
    pub async fn report(&self, event: &JobEvent, wait: bool) -> anyhow::Result<()> {
        let payload = Bytes::from(serde_json::to_vec(event)?);
        let event_ack = self.js.publish(event.subject(), payload.clone()).await?;
        let kv_subject = format!(
            "$KV.{}.{}",
            crate::infra::JOBS_BUCKET,
            subject_token(&event.job_id)
        );
        let kv_ack = self.js.publish(kv_subject, payload).await?;
        if wait {
            let (event_stored, kv_stored) =
                futures::join!(event_ack.into_future(), kv_ack.into_future());
            event_stored?;
            kv_stored?;
        }
        Ok(())
    }

    /// The latest recorded state of a job.
    pub async fn status(&self, job_id: &str) -> anyhow::Result<Option<JobEvent>> {
        match self.kv.get(subject_token(job_id)).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }
}
