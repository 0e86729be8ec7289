//! Cancellation: `lightbox.cancel.<job_id>` sets the cancel flag of that job if it runs here.
//! Handlers check the flag ([`super::JobContext::is_cancelled`]); a job cancelled while queued
//! is skipped when it is pulled, because its recorded state is `cancelled`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tracing::info;

use super::{Handler, Shared};

/// Subject prefix for cancellation requests: `lightbox.cancel.<job_id>`.
pub const CANCEL_SUBJECT_PREFIX: &str = "lightbox.cancel";

/// The cancel flags of the jobs running in this worker, by job id.
#[derive(Default)]
pub(super) struct Running(Mutex<HashMap<String, Arc<AtomicBool>>>);

impl Running {
    /// Registers a job that starts; returns its (fresh, clear) cancel flag.
    pub(super) fn start(&self, job_id: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.0
            .lock()
            .expect("running map")
            .insert(job_id.to_owned(), flag.clone());
        flag
    }

    /// Forgets a job that ended.
    pub(super) fn end(&self, job_id: &str) {
        self.0.lock().expect("running map").remove(job_id);
    }

    /// Sets the flag of a running job; whether the job runs here.
    pub(super) fn cancel(&self, job_id: &str) -> bool {
        let flag = self.0.lock().expect("running map").get(job_id).cloned();
        match flag {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
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
        let flag = running.start("a");
        assert!(!running.cancel("b"));
        assert!(!flag.load(Ordering::SeqCst));
        assert!(running.cancel("a"));
        assert!(flag.load(Ordering::SeqCst));
        running.end("a");
        assert!(!running.cancel("a"));
    }
}
