//! The attendees as the operator sees them: account, live connection,
//! jobs waiting and running, jobs done and GPU-seconds used.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::Admin;
use crate::front::ApiError;

#[utoipa::path(get, path = "/admin/api/attendees", operation_id = "list_attendees", tag = "attendees",
    responses((status = 200, description = "Every account with its connection, jobs, use and caps", body = super::openapi::AttendeeList))
)]
/// `GET /admin/api/attendees`.
pub(super) async fn list(State(admin): State<Arc<Admin>>) -> Result<Json<Value>, ApiError> {
    let users = admin.users().await?;
    let snapshot = admin.state.queue.snapshot().await?;
    let usage: HashMap<&str, _> = snapshot
        .users
        .iter()
        .map(|u| (u.name.as_str(), u))
        .collect();
    let attendees: Vec<Value> = users
        .users
        .iter()
        .map(|user| {
            let used = usage.get(user.name.as_str());
            json!({
                "name": user.name,
                "role": user.role,
                "disabled": user.disabled,
                "connected": admin.front.sockets_of(&user.name),
                "pending": used.map_or(0, |u| u.pending),
                "running": used.map_or(0, |u| u.running),
                "done": used.map_or(0, |u| u.jobs_done),
                "gpu_seconds": used.map_or(0.0, |u| u.gpu_seconds_used),
                "priority": used.map(|u| u.priority),
                "max_pending": used.map(|u| u.max_pending),
                "max_running": used.map(|u| u.max_running),
            })
        })
        .collect();
    Ok(Json(json!({ "attendees": attendees })))
}
