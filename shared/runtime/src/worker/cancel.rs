//! Stopping running jobs: cancel requests (`lightbox.cancel.<job_id>`), deadlines and the end of
//! the drain grace all come down to one [`StopSignal`] per running job, which says why.
//!
//! Stopping is cooperative: the signal sets the job's flag (what renderers and sandboxes poll,
//! [`super::JobContext::is_cancelled`]) and wakes what awaits it
//! ([`super::JobContext::stopped`]); the handler cleans up (undoes uploads, releases locks,
//! kills children) and returns, and only when it overstays the stop grace does the lease abort
//! it (`lease.rs`). A job cancelled while queued is skipped when it is pulled, because its
//! recorded state is `cancelled`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::watch;
use tracing::info;

use super::{Handler, Shared};

/// Subject prefix for cancellation requests: `lightbox.cancel.<job_id>`.
pub const CANCEL_SUBJECT_PREFIX: &str = "lightbox.cancel";

/// Why the runtime asks a running job to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// Someone cancelled the job (`lightbox cancel`): it ends `cancelled`.
    Cancelled,
    /// The envelope's `deadline_ms`, counted from submission, passed: it ends `failed`.
    Deadline,
    /// The worker is shutting down and its drain grace is over: the job goes back to the queue.
    Drain,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Deadline => "deadline",
            Self::Drain => "drain",
        }
    }
}

/// The stop signal of one running job: a flag for code outside tokio and a watch for code in
/// it. The first reason given is the one that counts.
#[derive(Clone)]
pub(crate) struct StopSignal {
    flag: Arc<AtomicBool>,
    reason: Arc<watch::Sender<Option<StopReason>>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            reason: Arc::new(watch::channel(None).0),
        }
    }
}

impl StopSignal {
    /// Asks the job to stop for `reason`; whether this call was the first to ask.
    pub(crate) fn stop(&self, reason: StopReason) -> bool {
        let first = self.reason.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
        self.flag.store(true, Ordering::SeqCst);
        first
    }

    /// Why the job was asked to stop, if it was.
    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.reason.borrow()
    }

    /// Resolves when the job is asked to stop, with the reason.
    pub(crate) async fn stopped(&self) -> StopReason {
        let mut receiver = self.reason.subscribe();
        let reason = match receiver.wait_for(Option::is_some).await {
            Ok(reason) => *reason,
            // The sender lives in `self`, so the channel cannot close while we wait.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// The flag set on stop (polled by renderers and sandboxes between steps).
    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }
}

/// The stop signals of the jobs running in this worker, by job id.
#[derive(Default)]
pub(super) struct Running(Mutex<HashMap<String, StopSignal>>);

impl Running {
    /// Registers a job that starts; returns its (fresh) stop signal.
    pub(super) fn start(&self, job_id: &str) -> StopSignal {
        let signal = StopSignal::default();
        self.0
            .lock()
            .expect("running map")
            .insert(job_id.to_owned(), signal.clone());
        signal
    }

    /// Forgets a job that ended.
    pub(super) fn end(&self, job_id: &str) {
        self.0.lock().expect("running map").remove(job_id);
    }

    /// Asks a running job to stop as cancelled; whether the job runs here.
    pub(super) fn cancel(&self, job_id: &str) -> bool {
        let signal = self.0.lock().expect("running map").get(job_id).cloned();
        match signal {
            Some(signal) => {
                signal.stop(StopReason::Cancelled);
                true
            }
            None => false,
        }
    }
}

/// Listens for cancel requests for the life of the worker's connection.
pub(super) async fn spawn_listener<H: Handler>(shared: Arc<Shared<H>>) -> anyhow::Result<()> {
    let mut sub = shared
        .client
        .subscribe(format!("{CANCEL_SUBJECT_PREFIX}.*"))
        .await?;
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            let job_id = message.subject.rsplit('.').next().unwrap_or_default();
            if shared.running.cancel(job_id) {
                info!(job_id = %job_id, "cancelling running job");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_jobs_are_flagged() {
        let running = Running::default();
        let signal = running.start("a");
        assert!(!running.cancel("b"));
        assert!(!signal.flag().load(Ordering::SeqCst));
        assert!(running.cancel("a"));
        assert!(signal.flag().load(Ordering::SeqCst));
        assert_eq!(signal.reason(), Some(StopReason::Cancelled));
        running.end("a");
        assert!(!running.cancel("a"));
    }

    #[tokio::test]
    async fn the_first_reason_counts_and_wakes_waiters() {
        let signal = StopSignal::default();
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.stopped().await }
        });
        assert!(signal.stop(StopReason::Deadline));
        assert!(!signal.stop(StopReason::Drain));
        assert_eq!(waiter.await.unwrap(), StopReason::Deadline);
        assert_eq!(signal.reason(), Some(StopReason::Deadline));
        // A waiter that comes late still hears it.
        assert_eq!(signal.stopped().await, StopReason::Deadline);
    }
}
