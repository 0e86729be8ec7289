//! Outcome reporting: every state change is an event on `events.job.<job_id>.<state>` and the
//! latest state per job is a KV entry, so one lookup answers "what happened to job X".

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::now_ms;

/// A job's state, as seen by publishers and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Published, not yet picked up (written by publishers that record it).
    Queued,
    Started,
    Progress,
    /// Waiting for another job (a tessellation) that will continue this one; holds no slot.
    Waiting,
    /// A retryable failure; the job will run again after a backoff.
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Started => "started",
            JobState::Progress => "progress",
            JobState::Waiting => "waiting",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether no further state follows.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Progress within a running job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// Units done (samples, frames, bytes, ...).
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// Estimated milliseconds left, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    /// `permanent`, `retryable` or `cancelled`.
    pub kind: String,
    pub message: String,
}

/// One state change of one job. The KV entry for the job holds the latest of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobEvent {
    pub job_id: String,
    pub function: String,
    pub state: JobState,
    /// Delivery attempt, from 1.
    pub attempt: u64,
    /// The instance that reported it.
    pub worker: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Keys of the objects the job wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// The function's result (sizes, samples, cache hits, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// W3C trace id the job runs under (continued from the publisher's `traceparent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Stage timings in milliseconds (`queue`, `run`, and any the function adds).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings_ms: BTreeMap<String, f64>,
}

impl JobEvent {
    pub fn new(
        job_id: impl Into<String>,
        function: &str,
        state: JobState,
        attempt: u64,
        worker: &str,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            function: function.to_owned(),
            state,
            attempt,
            worker: worker.to_owned(),
            at_ms: now_ms(),
            progress: None,
            outputs: Vec::new(),
            result: None,
            error: None,
            trace_id: None,
            timings_ms: BTreeMap::new(),
        }
    }

    /// The subject this event is published on.
    pub fn subject(&self) -> String {
        event_subject(&self.job_id, self.state)
    }
}

/// `events.job.<job_id>.<state>`; ids that are not subject-safe are replaced by `_` runs.
pub fn event_subject(job_id: &str, state: JobState) -> String {
    format!("events.job.{}.{}", subject_token(job_id), state.as_str())
}

/// A string made safe as one subject token (and as a KV key).
pub fn subject_token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_safe() {
        assert_eq!(
            event_subject("abc-1", JobState::Started),
            "events.job.abc-1.started"
        );
        assert_eq!(
            event_subject("a.b*c>", JobState::Failed),
            "events.job.a_b_c_.failed"
        );
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn terminal_states() {
        assert!(JobState::Succeeded.is_terminal() && JobState::Failed.is_terminal());
        assert!(!JobState::Retrying.is_terminal() && !JobState::Progress.is_terminal());
    }
}
