//! Job errors carry their retry class: the runtime Naks retryable errors and terminates permanent ones.

/// Why a job failed, and whether trying again could help.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    /// Bad input or a request that can never succeed: no retry, a failure event and a dead letter.
    #[error("{message}")]
    Permanent { message: String },
    /// A passing fault (store or network unavailable): Nak with backoff, try again.
    #[error("{message}")]
    Retryable { message: String },
    /// The job was cancelled on request.
    #[error("cancelled")]
    Cancelled,
}

impl JobError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The error's class as a word for events and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Permanent { .. } => "permanent",
            Self::Retryable { .. } => "retryable",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Formats an error followed by its sources (`error: cause: cause of the cause`), so a message
/// says which node, accessor or key failed. A wrapper that already prints its source is not
/// repeated. The one formatter every function, the CLI and the tests use.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn chains_name_every_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let err = Outer(Inner(io));
        // Inner prints its source already; it is not repeated.
        assert_eq!(error_chain(&err), "outer: inner: disk on fire");
    }
}
