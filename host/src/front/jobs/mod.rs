//! The caller's own jobs: `/api/jobs`, `/api/queue`, `/api/history`,
//! `/api/interrupt` and the cancels.
//!
//! Policy:
//! - Every list is the caller's jobs only (the store lists by user); a job
//!   id of someone else's is a 404, exactly like an unknown id; a cancel of
//!   someone else's job is a 404 and changes nothing.
//! - Deleting or clearing history hides jobs from the attendee's own views
//!   (`users/<name>/history_hidden.json`); the operator's record and the
//!   output files stay, because the workshop is billed and exported from them.
//! - `/api/interrupt` without a prompt id stops the caller's running jobs,
//!   never anyone else's (ComfyUI's global interrupt would stop whatever
//!   the one GPU was doing).
//! - Lists (`/api/jobs`, `/api/queue`, `/api/history`) are built from the
//!   job records alone and never read a stored prompt: a prompt may be
//!   2 MB and a list 500 jobs long. Their items carry an empty `prompt`
//!   and the `extra_data` the record keeps (`client_id`, `create_time`);
//!   the whole workflow is in the one-job answers (`/api/jobs/{id}`,
//!   `/api/history/{id}`), one stored payload per request.

pub mod shape;

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{ApiError, Front, read_json_file, write_atomic};
use crate::auth::Identity;
use crate::front::Caller;
use crate::queue::{CancelOutcome, Job, JobState, Page, Requester};

/// The most jobs one listing looks at (newest first).
const SCAN: usize = 500;

/// The job routes.
pub fn router() -> Router<Arc<Front>> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/cancel", post(cancel_many))
        .route("/jobs/{id}", get(detail))
        .route("/jobs/{id}/cancel", post(cancel_one))
        .route("/queue", get(queue).post(queue_edit))
        .route("/history", get(history).post(history_edit))
        .route("/history/{id}", get(history_one))
        .route("/interrupt", post(interrupt))
}

/// `user`'s newest jobs (up to [`SCAN`]), as stored.
async fn listed(front: &Front, user: &str) -> Result<Vec<Job>, ApiError> {
    let page = Page {
        offset: 0,
        limit: SCAN,
    };
    Ok(front.queue.list_user(user, page).await?)
}

/// The caller's jobs, newest first, without the hidden ones.
async fn own_jobs(front: &Front, user: &str) -> Result<Vec<Job>, ApiError> {
    let hidden = Hidden::load(front, user).await?;
    let jobs = listed(front, user).await?;
    Ok(jobs.into_iter().filter(|j| !hidden.hides(j)).collect())
}

/// How many of `user`'s jobs are not finished (the editor's
/// `queue_remaining`).
pub async fn remaining(front: &Front, user: &str) -> Result<usize, ApiError> {
    let jobs = listed(front, user).await?;
    Ok(jobs.iter().filter(|j| !j.state.is_terminal()).count())
}

async fn job_by_prompt(front: &Front, user: &Identity, id: &str) -> Result<Job, ApiError> {
    Ok(front
        .queue
        .get_by_prompt_id(id, Requester::User(&user.name))
        .await?)
}

async fn payload(front: &Front, job: &Job) -> Value {
    match front.queue.payload(job.id).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

const STATUSES: [&str; 5] = ["pending", "in_progress", "completed", "failed", "cancelled"];

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

/// `GET /api/jobs?status=…&limit=…&offset=…&sort_by=…&sort_order=…`.
async fn list(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted: Option<HashSet<&str>> = match query.status.as_deref() {
        None | Some("") => None,
        Some(list) => {
            let asked: Vec<&str> = list.split(',').map(str::trim).collect();
            let bad: Vec<&str> = asked
                .iter()
                .copied()
                .filter(|s| !STATUSES.contains(s))
                .collect();
            if !bad.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "Invalid status value(s): {}. Valid values: {}",
                    bad.join(", "),
                    STATUSES.join(", ")
                )));
            }
            Some(asked.into_iter().collect())
        }
    };
    let mut jobs: Vec<Job> = own_jobs(&front, &user.name)
        .await?
        .into_iter()
        .filter(|j| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(shape::status(j.state)))
        })
        .collect();
    let ascending = query.sort_order.as_deref() == Some("asc");
    match query.sort_by.as_deref() {
        Some("execution_duration") => jobs.sort_by_key(|j| {
            shape::ended_ms(j)
                .zip(shape::started_ms(j))
                .map_or(0, |(end, start)| end.saturating_sub(start))
        }),
        _ => jobs.sort_by_key(|j| j.created_at_ms),
    }
    if !ascending {
        jobs.reverse();
    }
    let total = jobs.len();
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(200).min(SCAN);
    let page: Vec<Value> = jobs
        .iter()
        .skip(offset)
        .take(limit)
        .map(shape::summary)
        .collect();
    Ok(Json(json!({
        "jobs": page,
        "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": offset + limit < total},
    })))
}

/// `GET /api/jobs/{id}`.
async fn detail(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = job_by_prompt(&front, &user, &id).await?;
    let payload = payload(&front, &job).await;
    Ok(Json(shape::detail(&job, &payload)))
}

/// Cancels one of the caller's jobs; true if it was still going.
async fn cancel(front: &Front, user: &Identity, prompt_id: &str) -> Result<bool, ApiError> {
    let job = job_by_prompt(front, user, prompt_id).await?;
    let outcome = front
        .queue
        .cancel(job.id, Requester::User(&user.name))
        .await?;
    tracing::info!(user = %user.name, prompt_id, ?outcome, "cancel");
    front.positions.nudge();
    Ok(outcome != CancelOutcome::AlreadyFinished)
}

/// `POST /api/jobs/{id}/cancel`.
async fn cancel_one(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cancelled = cancel(&front, &user, &id).await?;
    Ok(Json(json!({ "cancelled": cancelled })))
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not JSON: {e}"))),
    }
}

fn id_list(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    match map.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= SCAN => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::BadRequest(format!("{key} must list prompt ids")))
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{key} must be a list of at most {SCAN} prompt ids"
        ))),
    }
}

/// `POST /api/jobs/cancel {"job_ids": […]}`: other people's ids are
/// skipped like unknown ones.
async fn cancel_many(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ids = id_list(&body_object(&body)?, "job_ids")?;
    let mut any = false;
    for id in ids {
        match cancel(&front, &user, &id).await {
            Ok(cancelled) => any |= cancelled,
            Err(ApiError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(Json(json!({ "cancelled": any })))
}

/// `GET /api/queue`: the caller's running and waiting jobs.
async fn queue(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
) -> Result<Json<Value>, ApiError> {
    let mut running = Vec::new();
    let mut pending = Vec::new();
    let mut jobs = own_jobs(&front, &user.name).await?;
    jobs.sort_by_key(|j| j.id);
    for job in jobs.iter().filter(|j| !j.state.is_terminal()) {
        let item = shape::queue_item(job, &shape::summary_payload(job));
        if matches!(job.state, JobState::Dispatched | JobState::Running) {
            running.push(item);
        } else {
            pending.push(item);
        }
    }
    Ok(Json(
        json!({"queue_running": running, "queue_pending": pending}),
    ))
}

/// `POST /api/queue {"delete": […]}` or `{"clear": true}`: cancels the
/// caller's waiting jobs.
async fn queue_edit(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    body: Bytes,
) -> Result<(), ApiError> {
    let body = body_object(&body)?;
    let mut ids = id_list(&body, "delete")?;
    if body.get("clear").and_then(Value::as_bool) == Some(true) {
        ids.extend(
            own_jobs(&front, &user.name)
                .await?
                .into_iter()
                .filter(|j| matches!(j.state, JobState::Queued | JobState::Leased))
                .map(|j| j.prompt_id),
        );
    }
    for id in ids {
        match cancel(&front, &user, &id).await {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct HistoryQuery {
    max_items: Option<usize>,
}

/// `GET /api/history?max_items=N`: the caller's finished jobs.
async fn history(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let max = query.max_items.unwrap_or(64).min(SCAN);
    let mut out = Map::new();
    let finished = own_jobs(&front, &user.name)
        .await?
        .into_iter()
        .filter(|j| j.state.is_terminal())
        .take(max);
    for job in finished {
        let summary = shape::summary_payload(&job);
        out.insert(job.prompt_id.clone(), shape::history(&job, &summary));
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /api/history/{id}`: `{}` for an unknown, running or hidden job.
async fn history_one(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = match job_by_prompt(&front, &user, &id).await {
        Ok(job) => job,
        Err(ApiError::NotFound(_)) => return Ok(Json(json!({}))),
        Err(other) => return Err(other),
    };
    let hidden = Hidden::load(&front, &user.name).await?;
    if !job.state.is_terminal() || hidden.hides(&job) {
        return Ok(Json(json!({})));
    }
    let payload = payload(&front, &job).await;
    Ok(Json(json!({ id: shape::history(&job, &payload) })))
}

/// `POST /api/history {"delete": […]}` or `{"clear": true}`.
async fn history_edit(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    body: Bytes,
) -> Result<(), ApiError> {
    let body = body_object(&body)?;
    let delete = id_list(&body, "delete")?;
    let clear = body.get("clear").and_then(Value::as_bool) == Some(true);
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let mut hidden = Hidden::load(&front, &user.name).await?;
    if clear {
        hidden.cleared_before_ms = now_ms();
        hidden.ids.clear();
    }
    hidden.ids.extend(delete);
    hidden.ids.sort();
    hidden.ids.dedup();
    hidden.ids.truncate(10 * SCAN);
    hidden.store(&front, &user.name).await
}

#[derive(Deserialize)]
struct InterruptBody {
    prompt_id: Option<String>,
}

/// `POST /api/interrupt [{"prompt_id": …}]`: stops one of the caller's
/// running jobs, or all of them.
async fn interrupt(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    body: Bytes,
) -> Result<(), ApiError> {
    let target: Option<String> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<InterruptBody>(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?
            .prompt_id
    };
    match target {
        Some(id) => {
            cancel(&front, &user, &id).await?;
        }
        None => {
            let running: Vec<String> = own_jobs(&front, &user.name)
                .await?
                .into_iter()
                .filter(|j| j.state.is_active())
                .map(|j| j.prompt_id)
                .collect();
            for id in running {
                cancel(&front, &user, &id).await?;
            }
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The jobs an attendee removed from their own history views.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Hidden {
    /// Finished jobs created before this are hidden (`clear`).
    #[serde(default)]
    cleared_before_ms: u64,
    /// Prompt ids hidden one by one (`delete`).
    #[serde(default)]
    ids: Vec<String>,
}

impl Hidden {
    fn path(front: &Front, user: &str) -> Option<std::path::PathBuf> {
        crate::dispatch::outputs::user_dir(&front.data_dir, user)
            .map(|dir| dir.join("history_hidden.json"))
    }

    async fn load(front: &Front, user: &str) -> Result<Hidden, ApiError> {
        let Some(path) = Self::path(front, user) else {
            return Ok(Hidden::default());
        };
        Ok(read_json_file(&path)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    async fn store(&self, front: &Front, user: &str) -> Result<(), ApiError> {
        let path = Self::path(front, user)
            .ok_or_else(|| ApiError::Forbidden("this account name cannot own files".into()))?;
        let bytes =
            serde_json::to_vec(self).map_err(|e| ApiError::Unavailable(format!("history: {e}")))?;
        write_atomic(&path, bytes).await
    }

    fn hides(&self, job: &Job) -> bool {
        job.state.is_terminal()
            && (job.created_at_ms < self.cleared_before_ms
                || self.ids.binary_search(&job.prompt_id).is_ok())
    }
}
