//! The runtime's record of one job message, in the object store under the runtime's own prefix
//! (`results/<function>/<job id>.json`, [`crate::store::RUNTIME_PREFIX`]; no job may read or write
//! there). It holds:
//!
//! - the full outcome of a finished delivery (result, outputs, timings, error: the unbounded
//!   terminal event) and the `Nats-Msg-Id` it is reported under. It is written before the outcome
//!   is reported, so a delivery whose report could not be stored is not run again: the next
//!   delivery finds the record and reports the same event under the same id (one terminal event
//!   per job and attempt), and a summarised event names this key for the whole result;
//! - how many deliveries were handed back by a draining worker, which do not count toward the
//!   delivery limit.
//!
//! A record belongs to one message of `JOBS` (its stream sequence): a replayed dead letter or a
//! continuation is a new message of the same job and starts afresh.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::events::{subject_token, JobEvent};
use crate::store::{ObjectKey, Store, StoreError, RUNTIME_PREFIX};

/// What the runtime keeps about one job message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    pub job_id: String,
    /// The sequence of the job's message in `JOBS`.
    pub stream_seq: u64,
    /// Deliveries handed back by a worker shutting down.
    #[serde(default)]
    pub handbacks: u64,
    /// The outcome of the delivery that finished the job, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Recorded>,
}

/// A finished delivery's outcome as it is (and will again be) reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Recorded {
    /// The `Nats-Msg-Id` of the terminal event.
    pub msg_id: String,
    /// The whole terminal event (not bounded: the report is).
    pub event: JobEvent,
}

/// Where a job's record is kept: `results/<function>/<job id>.json`. `None` for an id that
/// makes no key (malformed envelopes have no record; they are cheap to fail again).
pub(super) fn key(function: &str, job_id: &str) -> Option<ObjectKey> {
    ObjectKey::new(format!(
        "{RUNTIME_PREFIX}{function}/{}.json",
        subject_token(job_id)
    ))
    .ok()
}

/// The record of this message of the job, if one was written (a record of another message of
/// the same job, such as the delivery before a replay, is not this one's).
pub(super) async fn load(
    store: &Store,
    key: &ObjectKey,
    stream_seq: u64,
) -> Result<Option<Record>, StoreError> {
    let Some(bytes) = store.get_runtime(key).await? else {
        return Ok(None);
    };
    // A record this version cannot read is treated as none: the job runs again.
    Ok(serde_json::from_slice::<Record>(&bytes)
        .ok()
        .filter(|record| record.stream_seq == stream_seq))
}

/// Whether any message of the job was recorded as succeeded by this function's runtime (a
/// replay or continuation is a new message, so the stream sequence is not compared here).
pub(super) async fn finished(store: &Store, key: &ObjectKey) -> Result<bool, StoreError> {
    let Some(bytes) = store.get_runtime(key).await? else {
        return Ok(false);
    };
    Ok(serde_json::from_slice::<Record>(&bytes)
        .ok()
        .and_then(|record| record.outcome)
        .is_some_and(|outcome| outcome.event.state == crate::events::JobState::Succeeded))
}

/// Writes the record in one request (readers see the old record or the new one).
pub(super) async fn save(
    store: &Store,
    key: &ObjectKey,
    record: &Record,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).expect("a record serialises");
    store.put_runtime(key, Bytes::from(bytes)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::JobState;

    #[tokio::test]
    async fn a_record_belongs_to_one_message_of_the_job() {
        let dir = std::env::temp_dir().join(format!("lightbox-record-{}", std::process::id()));
        let store = Store::connect(crate::StoreConfig {
            backend: crate::store::StoreBackend::Local { root: dir.clone() },
            ..crate::StoreConfig::default()
        })
        .unwrap();
        let id = "0190c0de-0000-7000-8000-000000000002";
        let key = key("convert", id).unwrap();
        assert_eq!(
            key.as_str(),
            "results/convert/0190c0de-0000-7000-8000-000000000002.json"
        );
        assert_eq!(load(&store, &key, 7).await.unwrap(), None);
        let record = Record {
            job_id: id.into(),
            stream_seq: 7,
            handbacks: 1,
            outcome: Some(Recorded {
                msg_id: format!("{id}-7-2-succeeded"),
                event: JobEvent::new(id, "convert", JobState::Succeeded, 2, "w"),
            }),
        };
        save(&store, &key, &record).await.unwrap();
        assert_eq!(load(&store, &key, 7).await.unwrap(), Some(record));
        assert_eq!(
            load(&store, &key, 8).await.unwrap(),
            None,
            "a replay is a new message"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
