//! `POST /internal/progress/{prompt_id}`: where GPU workers report a job's
//! step progress and learn whether it was cancelled (see
//! [`crate::dispatch::callback`]).
//!
//! Not an attendee route: the caller proves itself with the job's bearer
//! token, which only the worker running that job was given.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dispatch::callback::CallbackError;
use crate::dispatch::dispatcher::Dispatcher;

/// The callback route, for `dispatcher`'s jobs.
pub fn router<S: Clone + Send + Sync + 'static>(dispatcher: Arc<Dispatcher>) -> Router<S> {
    Router::new()
        .route("/internal/progress/{prompt_id}", post(report))
        .with_state(dispatcher)
}

/// The worker's report.
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    value: u32,
    #[serde(default)]
    max: u32,
}

/// Records the progress; answers `{"cancel": bool}`.
async fn report(
    State(dispatcher): State<Arc<Dispatcher>>,
    Path(prompt_id): Path<String>,
    headers: HeaderMap,
    Json(report): Json<Report>,
) -> (StatusCode, Json<Value>) {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match dispatcher
        .callbacks()
        .report(&prompt_id, token, report.value, report.max)
    {
        Ok(cancel) => (StatusCode::OK, Json(json!({ "cancel": cancel }))),
        Err(e @ CallbackError::BadToken) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": e.to_string() })),
        ),
        Err(e @ CallbackError::Unknown) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}
