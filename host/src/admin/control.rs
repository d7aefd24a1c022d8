//! The operator's switches: the pools' state, the live settings (the job
//! wait, the budget), and the workshop session.
//!
//! Policy: a change takes effect for the next job (the job wait of a job
//! already on a GPU does not move), is persisted in
//! `<data>/admin_settings.json` or `<data>/session.json`, and is logged.
//! The job wait is capped at 6 hours: longer is a stuck job, not a video.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Admin;
use crate::dispatch::dispatcher::Dispatcher;
use crate::front::ApiError;
use crate::session::SessionState;

/// The longest job wait the operator may set.
const MAX_JOB_WAIT_SECS: u64 = 6 * 3600;

/// Settings the operator changes while the workshop runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settings {
    /// How long a job may run on a GPU; `None` keeps the configured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_wait_secs: Option<u64>,
    /// The most the day may cost (in the pools' price unit); dispatch is
    /// held once it is spent ([`super::costs`]). In a change, zero or less
    /// removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    /// Pools the operator took out of use (no new jobs go there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools_out_of_use: Vec<String>,
    /// Pre-warmed Verda pools and the minimum replicas to restore at close.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prewarmed: std::collections::BTreeMap<String, u32>,
    /// The maximum replicas to restore with the minimum (a pre-warm above
    /// the maximum raised it too).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prewarmed_max: std::collections::BTreeMap<String, u32>,
}

/// The live settings and where they are kept.
pub struct LiveSettings {
    current: Mutex<Settings>,
    file: PathBuf,
}

impl LiveSettings {
    /// The settings last saved under `data_dir` (none: the configuration).
    pub fn load(data_dir: &Path) -> Arc<LiveSettings> {
        let file = data_dir.join("admin_settings.json");
        let current = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Arc::new(LiveSettings {
            current: Mutex::new(current),
            file,
        })
    }

    /// The settings now.
    pub fn get(&self) -> Settings {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the saved settings to the dispatcher (at start).
    pub fn apply(&self, dispatcher: &Dispatcher) {
        let settings = self.get();
        if let Some(secs) = settings.job_wait_secs {
            dispatcher.set_job_wait(Duration::from_secs(secs));
            tracing::info!(job_wait_secs = secs, "job wait set by the operator earlier");
        }
        for pool in dispatcher.pools() {
            let name = &pool.backend().info().name;
            if settings.pools_out_of_use.contains(name) {
                pool.set_in_use(false);
                tracing::info!(pool = %name, "pool out of use, as the operator left it");
            }
        }
    }

    pub(super) fn save(&self, settings: Settings) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&settings).map_err(std::io::Error::other)?;
        crate::paths::write_atomic(&self.file, &bytes)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = settings;
        Ok(())
    }
}

#[utoipa::path(get, path = "/admin/api/pools", operation_id = "list_pools", tag = "control",
    responses((status = 200, description = "`{\"pools\": [..]}`: each pool's name, gpu, spot, capacity, in_flight, warm, recent_failures, price_per_hour", body = Object))
)]
/// `GET /admin/api/pools`: each pool's state.
pub(super) async fn pools(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let prewarmed = admin.settings.get().prewarmed;
    // The pools in force, the default one included (none configured).
    let configured = admin.state.config.effective_pools();
    let pools: Vec<Value> = admin
        .state
        .dispatcher
        .pools()
        .iter()
        .map(|pool| {
            let info = pool.backend().info();
            json!({
                "name": info.name,
                "kind": configured.get(&info.name).map(|p| p.kind),
                "prewarmed": prewarmed.contains_key(&info.name),
                "in_use": pool.in_use(),
                "gpu": info.gpu,
                "spot": info.spot,
                "capacity": info.capacity,
                "in_flight": pool.in_flight(),
                "warm": pool.backend().warm(),
                "recent_failures": pool.recent_failures(),
                "price_per_hour": info.price_per_hour,
            })
        })
        .collect();
    Json(json!({ "pools": pools }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct PoolSwitch {
    /// `false`: no new jobs go to the pool; `true`: back in use.
    in_use: bool,
}

#[utoipa::path(put, path = "/admin/api/pools/{name}", operation_id = "switch_pool", tag = "control",
    params(("name" = String, Path, description = "The pool's name")),
    request_body = PoolSwitch,
    responses(
        (status = 200, description = "`{\"pools\": [..]}` after the switch", body = Object),
        (status = 400, description = "A malformed body", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such pool", body = super::openapi::ApiErrorBody),
        (status = 409, description = "The last pool in use cannot be taken out", body = super::openapi::ApiErrorBody),
    )
)]
/// `PUT /admin/api/pools/{name} {"in_use": bool}`: takes a pool out of use
/// (no new jobs; those on it finish) or back in, without a restart. The
/// last pool in use cannot be taken out: close the session instead.
pub(super) async fn switch_pool(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let switch: PoolSwitch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"in_use\": true | false}}: {e}")))?;
    let all = admin.state.dispatcher.pools();
    let pool = all
        .iter()
        .find(|p| p.backend().info().name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no pool named {name:?}")))?;
    if !switch.in_use
        && all
            .iter()
            .filter(|p| p.in_use())
            .all(|p| std::ptr::eq(&**p, &**pool))
    {
        return Err(ApiError::Conflict(format!(
            "{name} is the last pool in use: put another in use first, or close the session to stop dispatching"
        )));
    }
    let mut next = admin.settings.get();
    next.pools_out_of_use.retain(|p| p != &name);
    if !switch.in_use {
        next.pools_out_of_use.push(name.clone());
    }
    admin
        .settings
        .save(next)
        .map_err(|e| ApiError::io("saving the settings", e))?;
    pool.set_in_use(switch.in_use);
    tracing::info!(pool = %name, in_use = switch.in_use, "operator switched a pool");
    admin.state.dispatcher.wake();
    admin.front.positions.nudge();
    Ok(pools(State(admin)).await)
}

#[utoipa::path(get, path = "/admin/api/settings", operation_id = "get_settings", tag = "control",
    responses((status = 200, description = "The settings in force", body = super::openapi::SettingsView))
)]
/// `GET /admin/api/settings`: what is in force.
pub(super) async fn settings(State(admin): State<Arc<Admin>>) -> Json<Value> {
    Json(json!({
        "job_wait_secs": admin.state.dispatcher.job_wait().as_secs(),
        "budget": admin.settings.get().budget,
        "dispatch_held": admin.state.dispatcher.held(),
        "overrides": admin.settings.get(),
    }))
}

#[utoipa::path(put, path = "/admin/api/settings", operation_id = "change_settings", tag = "control",
    request_body = Settings,
    responses(
        (status = 200, description = "The settings in force now", body = super::openapi::SettingsView),
        (status = 400, description = "A malformed body, a job wait out of 10 s–6 h, or a budget that is not a number", body = super::openapi::ApiErrorBody),
    )
)]
/// `PUT /admin/api/settings {"job_wait_secs": N}`.
pub(super) async fn change_settings(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: Settings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"job_wait_secs\": seconds, \"budget\": amount}}: {e}"
        ))
    })?;
    if let Some(secs) = change.job_wait_secs
        && !(10..=MAX_JOB_WAIT_SECS).contains(&secs)
    {
        return Err(ApiError::BadRequest(format!(
            "job_wait_secs must be between 10 and {MAX_JOB_WAIT_SECS}"
        )));
    }
    if let Some(budget) = change.budget
        && !budget.is_finite()
    {
        return Err(ApiError::BadRequest("budget must be a number".into()));
    }
    let mut next = admin.settings.get();
    if change.job_wait_secs.is_some() {
        next.job_wait_secs = change.job_wait_secs;
    }
    if let Some(budget) = change.budget {
        next.budget = (budget > 0.0).then_some(budget);
        tracing::info!(budget = ?next.budget, "operator changed the budget");
    }
    admin
        .settings
        .save(next.clone())
        .map_err(|e| ApiError::io("saving the settings", e))?;
    if let Some(secs) = next.job_wait_secs {
        admin
            .state
            .dispatcher
            .set_job_wait(Duration::from_secs(secs));
        tracing::info!(job_wait_secs = secs, "operator changed the job wait");
    }
    if change.budget.is_some() {
        super::costs::enforce(&admin).await?;
    }
    Ok(settings(State(admin)).await)
}

#[utoipa::path(get, path = "/admin/api/session", operation_id = "get_session", tag = "control",
    responses((status = 200, description = "Where the session is", body = super::openapi::SessionView))
)]
/// `GET /admin/api/session`.
pub(super) async fn session(State(admin): State<Arc<Admin>>) -> Json<Value> {
    Json(json!({ "state": admin.session.get() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Switch {
    /// The state to switch to.
    #[schema(value_type = super::openapi::SessionStateName)]
    state: SessionState,
}

#[utoipa::path(put, path = "/admin/api/session", operation_id = "switch_session", tag = "control",
    request_body = Switch,
    responses(
        (status = 200, description = "Where the session is now", body = super::openapi::SessionView),
        (status = 400, description = "A malformed body", body = super::openapi::ApiErrorBody),
    )
)]
/// `PUT /admin/api/session {"state": "open" | "drain" | "closed"}`.
pub(super) async fn switch_session(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let switch: Switch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"state\": \"open\" | \"drain\" | \"closed\"}}: {e}"
        ))
    })?;
    admin
        .session
        .set(switch.state)
        .map_err(|e| ApiError::io("saving the session", e))?;
    admin.state.dispatcher.wake();
    // Closing lets pre-warmed replicas go (they cost money by the hour).
    let released = if switch.state == SessionState::Closed {
        super::prewarm::release_all(&admin).await
    } else {
        Vec::new()
    };
    let mut answer = session(State(admin)).await;
    if !released.is_empty() {
        answer.0["prewarm_released"] = json!(released);
    }
    Ok(answer)
}
