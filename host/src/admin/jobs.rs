//! Every attendee's jobs, for the operator: list with filters, the full
//! transition history, cancel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use crate::auth::UsersFile;
use crate::front::ApiError;
use crate::queue::{CancelOutcome, Job, JobId, JobState, Page, Requester};

#[derive(Deserialize)]
pub(super) struct Filter {
    user: Option<String>,
    state: Option<String>,
    kind: Option<String>,
    pool: Option<String>,
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
    let data_dir = admin.state.config.server.data_dir.clone();
    let names: Vec<String> = match only_user {
        Some(user) => vec![user.to_string()],
        None => tokio::task::spawn_blocking(move || UsersFile::load(&data_dir))
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading the users: {e}")))?
            .map_err(|e| ApiError::Unavailable(format!("reading the users: {e}")))?
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
        "updated_at_ms": job.updated_at_ms,
    })
}

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
