//! The lease of a running job: while the handler runs, in-progress acks keep JetStream from
//! redelivering it (every third of `ack_wait`), progress reports become `progress` events (at
//! most every 250 ms), and the job's deadline and the end of the drain grace stop it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::warn;

use super::context::Outcome;
use super::settle::Verdict;
use super::{Handler, Shared};
use crate::error::JobError;
use crate::events::{JobEvent, JobState, Progress};

/// How the handler's run ended.
pub(super) enum Supervised {
    /// The handler returned, or panicked, or its task was aborted.
    Joined(Result<Result<Outcome, JobError>, JoinError>),
    /// The runtime stopped it (deadline, drain grace over); the task was aborted.
    Stopped(Verdict),
}

/// The delivery a lease is held on.
pub(super) struct Lease<'a> {
    pub message: &'a jetstream::Message,
    pub job_id: &'a str,
    pub attempt: u64,
    /// When the message arrived; the envelope's deadline counts from here.
    pub received: Instant,
    pub deadline_ms: Option<u64>,
}

/// Holds the lease until the handler's task ends or the runtime stops it.
pub(super) async fn supervise<H: Handler>(
    shared: &Arc<Shared<H>>,
    lease: Lease<'_>,
    mut task: JoinHandle<Result<Outcome, JobError>>,
    mut progress: watch::Receiver<Option<Progress>>,
    cancelled: &AtomicBool,
) -> Supervised {
    let Lease {
        message,
        job_id,
        attempt,
        received,
        deadline_ms,
    } = lease;
    let heartbeat_every = (shared.ack_wait / 3).max(Duration::from_millis(200));
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let deadline =
        deadline_ms.map(|ms| tokio::time::Instant::from_std(received) + Duration::from_millis(ms));
    let mut abandon = shared.abandon.subscribe();
    // Progress is published at most every 250 ms, whatever rate the handler reports at.
    let mut progress_tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = &mut task => return Supervised::Joined(joined),
            _ = heartbeat.tick() => {
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %err, "in-progress ack failed");
                }
            }
            _ = progress_tick.tick() => {
                if !progress.has_changed().unwrap_or(false) { continue; }
                let snapshot = progress.borrow_and_update().clone();
                if let Some(progress) = snapshot {
                    let mut event = JobEvent::new(job_id, H::FUNCTION.as_str(), JobState::Progress, attempt, &shared.config.instance);
                    event.progress = Some(progress);
                    let _ = shared.reporter.report(&event, false).await;
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                cancelled.store(true, Ordering::SeqCst);
                task.abort();
                return Supervised::Stopped(Verdict::Failed(JobError::permanent(format!(
                    "deadline of {} ms exceeded", deadline_ms.unwrap_or(0)))));
            }
            _ = async { let _ = abandon.wait_for(|abandon| *abandon).await; } => {
                cancelled.store(true, Ordering::SeqCst);
                task.abort();
                return Supervised::Stopped(Verdict::GiveBack);
            }
        }
    }
}
