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
