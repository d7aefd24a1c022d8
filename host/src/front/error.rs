//! The attendee API's errors, as the editor expects them.
//!
//! Policy: every refusal is a 4xx with a sentence a filmmaker can act on,
//! as `{"error": "…"}` (ComfyUI's shape for its own JSON errors); a store
//! outage is a 503 with `Retry-After`, never a 500. Another attendee's job
//! or file is a 404, the same answer as a job that does not exist, so ids
//! cannot be probed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::queue::StoreError;

/// What an attendee request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: the message says what to change.
    #[error("{0}")]
    BadRequest(String),
    /// Not found, or not the caller's.
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but refused (e.g. writing a workshop template).
    #[error("{0}")]
    Forbidden(String),
    /// Exists already (userdata without `overwrite`).
    #[error("{0}")]
    Conflict(String),
    /// Too big.
    #[error("{0}")]
    TooLarge(String),
    /// A cap on how much one attendee may keep or queue.
    #[error("{0}")]
    TooMany(String),
    /// The job store or the disk is unavailable for now.
    #[error("{0}")]
    Unavailable(String),
    /// A provider the host called for the operator (Verda's management
    /// API) refused or failed: the message says which step and why.
    #[error("{0}")]
    Upstream(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A disk error while serving the attendee's own files.
    pub fn io(what: &str, error: std::io::Error) -> ApiError {
        match error.kind() {
            std::io::ErrorKind::NotFound => ApiError::NotFound(format!("{what}: not found")),
            _ => {
                tracing::warn!(%error, what, "attendee file operation failed");
                ApiError::Unavailable(format!("{what}: the host could not use its disk"))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => ApiError::NotFound("no such job".into()),
            StoreError::PayloadTooLarge { .. } => ApiError::TooLarge(error.to_string()),
            StoreError::TooManyPending { .. } | StoreError::AtRunningCap { .. } => {
                ApiError::TooMany(error.to_string())
            }
            StoreError::BadPromptId(_) | StoreError::InvalidTransition { .. } => {
                ApiError::BadRequest(error.to_string())
            }
            StoreError::UnknownUser(_) => ApiError::Forbidden(error.to_string()),
            StoreError::Unavailable(_) | StoreError::LeaseLost { .. } | StoreError::Corrupt(_) => {
                tracing::warn!(%error, "job store error on an attendee request");
                ApiError::Unavailable("the job queue is unavailable for a moment; try again".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}
