//! Cross-process locks: named entries in the KV bucket `tessellate_locks`, defined in
//! `infra/nats/tessellate-locks.kv.json` and loaded by [`crate::infra`] like every other bucket.
//!
//! Taking a lock is a KV `create`, which exactly one process wins. Entries expire after the
//! bucket's `max_age`, so a holder that died frees its lock; a holder releases its own entry
//! only (by revision), never one that someone else took after it expired. Handlers reach the
//! locks through [`crate::worker::JobContext::locks`].

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::error::JobError;
use crate::infra::{self, Overrides, LOCKS_BUCKET};

/// Why a lock operation failed. Every case may pass (the bucket or the server was unreachable),
/// so a job that meets one is retried.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("opening KV bucket {LOCKS_BUCKET}: {source:#}")]
    Open {
        #[source]
        source: anyhow::Error,
    },
    #[error("taking lock {name} in {LOCKS_BUCKET}: {source}")]
    Acquire {
        name: String,
        #[source]
        source: kv::CreateError,
    },
    #[error("releasing lock {name} in {LOCKS_BUCKET}: {source}")]
    Release {
        name: String,
        #[source]
        source: kv::DeleteError,
    },
}

impl From<LockError> for JobError {
    fn from(err: LockError) -> Self {
        JobError::retryable(err.to_string())
    }
}

/// The lock bucket. Cheap to clone.
#[derive(Clone)]
pub struct Locks {
    kv: kv::Store,
    lifetime: Duration,
}

/// A lock this process holds. Release it with [`Lock::release`]. A lock dropped unreleased (a
/// job's task aborted mid-way, an early return) is released by a task spawned from its `Drop`,
/// so an aborted holder does not keep others waiting; only when no runtime is left to run that
/// task (the process is going) does it expire after [`Locks::lifetime`].
#[derive(Debug)]
#[must_use = "a lock is held until it is released or expires"]
pub struct Lock {
    kv: kv::Store,
    name: String,
    revision: u64,
    /// Cleared by [`Lock::release`], so `Drop` knows there is nothing left to do.
    held: bool,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("bucket", &LOCKS_BUCKET)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Locks {
    /// Creates or updates the bucket from its committed definition (binds to it under
    /// `bind_only`).
    pub async fn open(js: &jetstream::Context, overrides: &Overrides) -> Result<Self, LockError> {
        let lifetime = infra::locks_kv_config(overrides)
            .map_err(|source| LockError::Open { source })?
            .max_age;
        let kv = infra::ensure_locks(js, overrides)
            .await
            .map_err(|source| LockError::Open { source })?;
        Ok(Self { kv, lifetime })
    }

    /// How long a lock lives when its holder never releases it.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Takes the lock `name` for `owner` (recorded as its value), or returns `None` when another
    /// holder has it. `name` must be a valid KV key (letters, digits, `-`, `_`, `/`, `=`, `.`
    /// inside).
    ///
    /// A lock already held under the same `owner` is taken over (compare-and-set on its
    /// revision): handlers name the job as owner, and a job's deliveries run one after another,
    /// so that holder is an earlier delivery of this job whose worker died or lost its lease.
    /// Without this, a redelivery after a SIGKILL waits on its own lock until it expires.
    pub async fn try_acquire(&self, name: &str, owner: &str) -> Result<Option<Lock>, LockError> {
        let acquired = |revision| {
            Some(Lock {
                kv: self.kv.clone(),
                name: name.to_owned(),
                revision,
                held: true,
            })
        };
        match self.kv.create(name, Bytes::from(owner.to_owned())).await {
            Ok(revision) => Ok(acquired(revision)),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Whose is it? Unreadable or someone else's: not ours to take.
                let Ok(Some(entry)) = self.kv.entry(name).await else {
                    return Ok(None);
                };
                if entry.operation != kv::Operation::Put || entry.value != owner.as_bytes() {
                    return Ok(None);
                }
                match self
                    .kv
                    .update(name, Bytes::from(owner.to_owned()), entry.revision)
                    .await
                {
                    Ok(revision) => {
                        tracing::info!(
                            lock = name,
                            owner,
                            "took over a lock an earlier delivery of this job held"
                        );
                        Ok(acquired(revision))
                    }
                    // Changed meanwhile (released, expired, taken): try again later.
                    Err(_) => Ok(None),
                }
            }
            Err(source) => Err(LockError::Acquire {
                name: name.to_owned(),
                source,
            }),
        }
    }
}

impl Lock {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock. A lock that expired meanwhile, and perhaps was taken by someone
    /// else, is left alone: that is not an error.
    pub async fn release(mut self) -> Result<(), LockError> {
        let released = release(&self.kv, &self.name, self.revision).await;
        // Only now: a release cut short by an abort is done again from `Drop`.
        self.held = false;
        released
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (kv, name, revision) = (
            self.kv.clone(),
            std::mem::take(&mut self.name),
            self.revision,
        );
        runtime.spawn(async move {
            if let Err(err) = release(&kv, &name, revision).await {
                tracing::warn!(error = %err, "could not release a dropped lock; it expires");
            }
        });
    }
}

/// Deletes the lock entry if it is still the one taken at `revision`.
async fn release(kv: &kv::Store, name: &str, revision: u64) -> Result<(), LockError> {
    match kv.delete_expect_revision(name, Some(revision)).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
        Err(source) => Err(LockError::Release {
            name: name.to_owned(),
            source,
        }),
    }
}
