//! Why a store operation was refused, typed so the HTTP layer can answer
//! 4xx/503 and nothing is half-written.

use super::job::{JobId, JobState};

/// A refused or failed store operation. Every variant leaves the store as it
/// was before the call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The payload is larger than `queue.max_payload_bytes` (→ 413).
    #[error("the prompt is {size} bytes; at most {max} are accepted")]
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// No such user is registered (→ 403).
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The user already has `max_pending` jobs waiting (→ 429).
    #[error("{user} already has {pending} jobs waiting (the limit is {max})")]
    TooManyPending {
        /// The user.
        user: String,
        /// Jobs waiting.
        pending: u32,
        /// The cap.
        max: u32,
    },
    /// The prompt id is malformed or already used (→ 400).
    #[error("prompt id {0:?} is not a new lowercase UUID")]
    BadPromptId(String),
    /// No such job (→ 404). Also what a user gets for someone else's job,
    /// so job ids cannot be probed.
    #[error("job {0} not found")]
    NotFound(String),
    /// The job is not in a state that allows this (→ 409).
    #[error("job {id} is {state:?}; cannot {action}")]
    InvalidTransition {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
        /// What was attempted.
        action: &'static str,
    },
    /// The user is at their running cap (the dispatcher picks another job).
    #[error("{user} already has {running} jobs running (the limit is {max})")]
    AtRunningCap {
        /// The user.
        user: String,
        /// Running now.
        running: u32,
        /// The cap.
        max: u32,
    },
    /// The caller no longer holds the job's lease (another dispatcher took
    /// it over after it expired).
    #[error("job {id}: lease is held by {holder:?}, not {caller:?}")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// Who holds it now (none if it was requeued).
        holder: Option<String>,
        /// Who asked.
        caller: String,
    },
    /// The store cannot be reached or written (→ 503, retry later).
    #[error("the job store is unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (a bug or tampering; → 500).
    #[error("the job store holds unreadable data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The HTTP status the front and admin API answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::PayloadTooLarge { .. } => 413,
            StoreError::UnknownUser(_) => 403,
            StoreError::TooManyPending { .. } => 429,
            StoreError::BadPromptId(_) => 400,
            StoreError::NotFound(_) => 404,
            StoreError::InvalidTransition { .. }
            | StoreError::AtRunningCap { .. }
            | StoreError::LeaseLost { .. } => 409,
            StoreError::Unavailable(_) => 503,
            StoreError::Corrupt(_) => 500,
        }
    }
}
