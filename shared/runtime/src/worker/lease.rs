//! The lease of a running job: while the handler runs, in-progress acks keep JetStream from
//! redelivering it (every third of `ack_wait`), progress reports become `progress` events (at
//! most every 250 ms), and the job's deadline and the end of the drain grace stop it.
//!
//! Stopping is cooperative: the deadline or the drain signals the job's [`StopSignal`] (so does
//! a cancel request, from `cancel.rs`), and the lease keeps the job's lease alive while the
//! handler cleans up and returns. Only a handler that overstays the stop grace
//! (`LIGHTBOX_STOP_GRACE_MS`, default 10 s) is aborted; its abort-safe guards (a render's
//! uploads, a tessellation's lock) then clean up from their `Drop`.

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::{info, warn};

use super::cancel::{StopReason, StopSignal};
use super::context::Outcome;
use super::{Handler, Shared};
use crate::error::JobError;
use crate::events::{JobEvent, JobState, Progress};

/// How long a stopped handler may take to clean up and return before its task is aborted.
fn stop_grace() -> Duration {
    static GRACE: OnceLock<Duration> = OnceLock::new();
    *GRACE.get_or_init(|| {
        Duration::from_millis(crate::config::env_parse("LIGHTBOX_STOP_GRACE_MS", 10_000))
    })
}

/// How the handler's run ended: it returned, panicked, or (after overstaying the stop grace)
/// its task was aborted. Why it was stopped, if it was, is in the job's [`StopSignal`].
pub(super) type Supervised = Result<Result<Outcome, JobError>, JoinError>;

/// The delivery a lease is held on.
pub(super) struct Lease<'a> {
    pub message: &'a jetstream::Message,
    pub job_id: &'a str,
    pub attempt: u64,
    /// When the job's deadline passes (counted from its submission; see `delivery.rs`).
    pub deadline: Option<tokio::time::Instant>,
}

/// Holds the lease until the handler's task ends, stopping it at its deadline or when the drain
/// grace is over, and aborting it when it does not return within the stop grace.
pub(super) async fn supervise<H: Handler>(
    shared: &Arc<Shared<H>>,
    lease: Lease<'_>,
    mut task: JoinHandle<Result<Outcome, JobError>>,
    mut progress: watch::Receiver<Option<Progress>>,
    stop: &StopSignal,
) -> Supervised {
    let Lease {
        message,
        job_id,
        attempt,
        deadline,
    } = lease;
    let heartbeat_every = (shared.ack_wait / 3).max(Duration::from_millis(200));
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let mut abandon = shared.abandon.subscribe();
    // Progress is published at most every 250 ms, whatever rate the handler reports at.
    let mut progress_tick = tokio::time::interval(Duration::from_millis(250));
    // Set once the job is asked to stop: when its grace for cleaning up is over.
    let mut abort_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            joined = &mut task => return joined,
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
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() && abort_at.is_none() => {
                stop.stop(StopReason::Deadline);
            }
            _ = async { let _ = abandon.wait_for(|abandon| *abandon).await; }, if abort_at.is_none() => {
                stop.stop(StopReason::Drain);
            }
            reason = stop.stopped(), if abort_at.is_none() => {
                let grace = stop_grace();
                info!(reason = reason.as_str(), grace_ms = grace.as_millis() as u64, "stopping the job");
                abort_at = Some(tokio::time::Instant::now() + grace);
            }
            _ = async { tokio::time::sleep_until(abort_at.unwrap()).await }, if abort_at.is_some() => {
                warn!(reason = stop.reason().map_or("unknown", StopReason::as_str), "the handler did not stop within its grace; aborting it");
                task.abort();
                return (&mut task).await;
            }
        }
    }
}
