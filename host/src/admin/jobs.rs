//! Every attendee's jobs, for the operator: list with filters, the full
//! transition history, cancel, reprioritise, retry.
//!
//! Policy: reprioritise moves a job that is still waiting (a job already on
//! its way to a GPU is a 409); retry re-submits a finished job that did not
//! succeed as a new job of the same attendee with a new prompt id, under
//! the attendee's usual caps, and leaves the old one as it was.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use crate::front::ApiError;
use crate::queue::{
    CancelOutcome, Job, JobId, JobState, NewJob, Page, Priority, Requester, StoreError,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Filter {
    /// Only this attendee's jobs.
    user: Option<String>,
    /// Only jobs in this state (`queued`, `running`, `failed`, …).
    state: Option<String>,
    /// Only this workflow kind.
    kind: Option<String>,
    /// Only jobs that ran on this pool.
    pool: Option<String>,
    /// At most this many (default 200, at most 2000).
    limit: Option<usize>,
}

impl Filter {
    /// Everyone's newest `limit` jobs (the dashboard's view).
    pub(super) fn newest(limit: usize) -> Filter {
        Filter {
            user: None,
            state: None,
            kind: None,
            pool: None,
            limit: Some(limit),
        }
    }
}

/// Every known user's jobs (newest 500 each), newest first.
async fn all_jobs(admin: &Admin, only_user: Option<&str>) -> Result<Vec<Job>, ApiError> {
    let names: Vec<String> = match only_user {
        Some(user) => vec![user.to_string()],
        None => admin
            .users()
            .await?
            .users
            .into_iter()
            .map(|u| u.name)
            .collect(),
    };
    let mut jobs = Vec::new();
    for name in names {
        jobs.extend(
            admin
                .state
                .queue
                .list_user(
                    &name,
                    Page {
                        offset: 0,
                        limit: 500,
                    },
                )
                .await?,
        );
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    Ok(jobs)
}

/// The operator's summary of a job.
fn summary(job: &Job) -> Value {
    json!({
        "id": job.id,
        "prompt_id": job.prompt_id,
        "user": job.user,
        "state": job.state,
        "priority": job.priority,
        "workflow_kind": job.workflow_kind,
        "pool": job.backend.as_ref().map(|b| b.pool.clone()),
        "attempts": job.attempts,
        "lost_to_reclaim": job.lost_to_reclaim,
        "cancel_requested": job.cancel_requested,
        "progress": job.progress,
        "reason": job.reason,
        "gpu_seconds": job.gpu_seconds,
        "created_at_ms": job.created_at_ms,
        "started_at_ms": crate::front::jobs::shape::started_ms(job),
        "updated_at_ms": job.updated_at_ms,
    })
}

#[utoipa::path(get, path = "/admin/api/jobs", operation_id = "list_jobs", tag = "jobs",
    params(Filter),
    responses(
        (status = 200, description = "Every attendee's jobs, newest first", body = super::openapi::JobList),
        (status = 400, description = "An unknown state", body = super::openapi::ApiErrorBody),
    )
)]
/// `GET /admin/api/jobs?user=&state=&kind=&pool=&limit=`.
pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let state = match filter.state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(JobState::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state {name:?} is not one of queued, leased, dispatched, running, succeeded, failed, cancelled, dead"
            ))
        })?),
    };
    let jobs = all_jobs(&admin, filter.user.as_deref()).await?;
    let limit = filter.limit.unwrap_or(200).min(2000);
    let selected: Vec<Value> = jobs
        .iter()
        .filter(|j| state.is_none_or(|s| j.state == s))
        .filter(|j| filter.kind.as_deref().is_none_or(|k| j.workflow_kind == k))
        .filter(|j| {
            filter
                .pool
                .as_deref()
                .is_none_or(|p| j.backend.as_ref().is_some_and(|b| b.pool == p))
        })
        .take(limit)
        .map(summary)
        .collect();
    Ok(Json(json!({ "jobs": selected })))
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a job number")))
}

#[utoipa::path(get, path = "/admin/api/jobs/{id}", operation_id = "job_detail", tag = "jobs",
    params(("id" = u64, Path, description = "The job number")),
    responses(
        (status = 200, description = "The job's summary with `history` (every transition), `outputs`, `backend` and `cost_estimate`", body = Object),
        (status = 400, description = "Not a job number", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such job", body = super::openapi::ApiErrorBody),
    )
)]
/// `GET /admin/api/jobs/{id}`: the job with every transition.
pub(super) async fn detail(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = admin
        .state
        .queue
        .get(job_id(&id)?, Requester::Admin)
        .await?;
    let mut body = summary(&job);
    body["history"] = json!(job.history);
    body["outputs"] = json!(job.outputs);
    body["backend"] = json!(job.backend);
    body["cost_estimate"] = json!(job.cost);
    Ok(Json(body))
}

#[utoipa::path(post, path = "/admin/api/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(("id" = u64, Path, description = "The job number")),
    responses(
        (status = 200, description = "Cancelled, asked of the backend, or already finished", body = super::openapi::CancelAnswer),
        (status = 400, description = "Not a job number", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such job", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let outcome = admin.state.queue.cancel(id, Requester::Admin).await?;
    tracing::info!(job = id, ?outcome, "operator cancelled a job");
    admin.front.positions.nudge();
    Ok(Json(json!({
        "outcome": match outcome {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::Requested => "requested",
            CancelOutcome::AlreadyFinished => "already_finished",
        }
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Reprioritise {
    /// The new class.
    #[schema(value_type = super::openapi::PriorityClass)]
    priority: Priority,
}

#[utoipa::path(post, path = "/admin/api/jobs/{id}/priority", operation_id = "reprioritise_job", tag = "jobs",
    params(("id" = u64, Path, description = "The job number")),
    request_body = Reprioritise,
    responses(
        (status = 200, description = "The job moved to the new class", body = super::openapi::JobSummary),
        (status = 400, description = "Not a job number, or a malformed body", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such job", body = super::openapi::ApiErrorBody),
        (status = 409, description = "The job is no longer waiting", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/jobs/{id}/priority {"priority": "instructor" | "high" |
/// "normal" | "low"}`.
pub(super) async fn reprioritise(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let change: Reprioritise = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"priority\": \"instructor\" | \"high\" | \"normal\" | \"low\"}}: {e}"
        ))
    })?;
    let job = match admin.state.queue.reprioritise(id, change.priority).await {
        Err(StoreError::InvalidTransition { state, .. }) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is {state:?} and no longer waiting: only a queued job can be moved"
            )));
        }
        other => other?,
    };
    tracing::info!(job = id, user = %job.user, priority = job.priority.name(), "operator reprioritised a job");
    admin.front.positions.nudge();
    admin.state.dispatcher.wake();
    Ok(Json(summary(&job)))
}

#[utoipa::path(post, path = "/admin/api/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs",
    params(("id" = u64, Path, description = "The job number")),
    responses(
        (status = 200, description = "The new job's summary with `retry_of`", body = super::openapi::JobSummary),
        (status = 400, description = "Not a job number", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such job", body = super::openapi::ApiErrorBody),
        (status = 409, description = "The job did not fail, die or get cancelled", body = super::openapi::ApiErrorBody),
        (status = 413, description = "The stored prompt is over the size limit", body = super::openapi::ApiErrorBody),
        (status = 429, description = "The attendee is at a cap", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/jobs/{id}/retry`: the same prompt again, as a new job.
pub(super) async fn retry(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let old = admin.state.queue.get(id, Requester::Admin).await?;
    if !matches!(
        old.state,
        JobState::Failed | JobState::Dead | JobState::Cancelled
    ) {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}: only a failed, dead or cancelled job can be retried",
            old.state.as_str()
        )));
    }
    let payload = admin.state.queue.payload(id).await?;
    let job = admin
        .state
        .queue
        .enqueue(NewJob {
            user: old.user.clone(),
            prompt_id: uuid::Uuid::new_v4().to_string(),
            client_id: old.client_id.clone(),
            priority: old.priority,
            workflow_kind: old.workflow_kind.clone(),
            cost: old.cost,
            payload,
        })
        .await?;
    tracing::info!(job = job.id, retry_of = id, user = %job.user, prompt_id = %job.prompt_id, "operator retried a job");
    admin.front.positions.nudge();
    admin.state.dispatcher.wake();
    let mut body = summary(&job);
    body["retry_of"] = json!(id);
    Ok(Json(body))
}
