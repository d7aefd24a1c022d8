//! Pre-warm: keep Verda replicas up for a session so the first demo does
//! not wait for a cold start, and let them go at close.
//!
//! Policy: pre-warming a `verda` pool raises its deployment's minimum
//! replicas (to the body's `replicas`, else the pool's `prewarm_replicas`)
//! through Verda's management API ([`crate::dispatch::verda_scaling`]) and
//! records the minimum and maximum it had (a minimum above the maximum
//! raises the maximum too), in `<data>/admin_settings.json`, so a restart
//! still knows what to restore. Releasing (or closing the session) puts
//! both back. Without `verda.client_id`/`client_secret` the
//! operator gets a 409 saying what to configure; a refusal by Verda is a
//! 502 naming the step.
//!
//! A `comfyui` or `rehearsal` pool (one server, always up) is warmed by a
//! warm-up job instead: a workshop template (the body's `template`, else
//! the Flux2 Klein 4B distilled one) with one sampling step, sent straight
//! to the backend so its models are loaded before the first attendee
//! presses Run. It is not an attendee's job: it skips the queue and the
//! pool's slot count, so send it before opening the session. The answer
//! says how long it took (the cold start the attendees will not wait for).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use crate::config::PoolKind;
use crate::dispatch::verda_scaling::VerdaScaling;
use crate::front::ApiError;

/// The management client, if the configuration has credentials.
pub(super) fn client(config: &crate::config::Config) -> Option<Arc<VerdaScaling>> {
    match VerdaScaling::from_config(config) {
        Ok(client) => client.map(Arc::new),
        Err(error) => {
            tracing::warn!(%error, "Verda management client not available: no pre-warm");
            None
        }
    }
}

/// The pool's configuration as the dispatcher runs it: the configured
/// pools, or the default one when none is configured (`GET
/// /admin/api/pools` lists that one too, so it must be found here).
fn pool_config(admin: &Admin, pool: &str) -> Result<crate::config::PoolConfig, ApiError> {
    admin
        .state
        .config
        .effective_pools()
        .remove(pool)
        .ok_or_else(|| ApiError::NotFound(format!("no pool named {pool:?}")))
}

/// The pool's deployment and the client, or why it cannot be pre-warmed.
fn target(admin: &Admin, pool: &str) -> Result<(String, u32, Arc<VerdaScaling>), ApiError> {
    let config = pool_config(admin, pool)?;
    if config.kind != PoolKind::Verda {
        return Err(ApiError::Conflict(format!(
            "{pool} is not a verda pool: only a serverless deployment has replicas to keep warm"
        )));
    }
    let deployment = config
        .deployment
        .clone()
        .unwrap_or_else(|| pool.to_string());
    let client = admin.scaling.clone().ok_or_else(|| {
        ApiError::Conflict(
            "pre-warm needs Verda's management credentials: set verda.client_id and verda.client_secret (COMFYUME_VERDA__CLIENT_SECRET)".into(),
        )
    })?;
    Ok((deployment, config.prewarm_replicas, client))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Prewarm {
    /// Verda: minimum replicas while warm (default: the pool's
    /// `prewarm_replicas`).
    replicas: Option<u32>,
    /// Other pools: the workshop template of the warm-up job (a file name
    /// in `workflows/api/` without `.api.json`).
    template: Option<String>,
}

/// The template a warm-up job runs by default.
const WARM_UP_TEMPLATE: &str = "comfyume_flux2_klein_4b_t2i_distilled";

/// Runs one warm-up job on a `comfyui`/`rehearsal` pool.
async fn warm_up(admin: &Admin, pool: &str, template: Option<&str>) -> Result<Value, ApiError> {
    let name = template.unwrap_or(WARM_UP_TEMPLATE);
    let file = format!("{name}.api.json");
    let prompt = crate::plugins::builtin::templates()
        .iter()
        .find(|(f, _)| *f == file)
        .and_then(|(_, text)| serde_json::from_str::<Value>(text).ok())
        .ok_or_else(|| {
            ApiError::NotFound(format!("no workshop template {name:?} in workflows/api"))
        })?;
    let mut prompt = prompt;
    // One step is enough to load every model the template uses.
    if let Some(nodes) = prompt.as_object_mut() {
        for node in nodes.values_mut() {
            if let Some(steps) = node.pointer_mut("/inputs/steps")
                && steps.is_number()
            {
                *steps = json!(1);
            }
        }
    }
    let backend = admin
        .state
        .dispatcher
        .pools()
        .iter()
        .find(|p| p.backend().info().name == pool)
        .map(|p| p.backend().clone())
        .ok_or_else(|| ApiError::NotFound(format!("no pool named {pool:?}")))?;
    let prompt_id = uuid::Uuid::new_v4().to_string();
    let client_id = "comfyume-warm-up";
    let payload = json!({"prompt": prompt, "extra_data": {"client_id": client_id}});
    let job_wait = admin.state.dispatcher.job_wait();
    let started = std::time::Instant::now();
    let submission = crate::dispatch::backend::Submission {
        prompt_id: &prompt_id,
        client_id,
        payload: &payload,
        inputs: &[],
        job_wait,
        callback: None,
    };
    let failed = |e: crate::dispatch::backend::BackendError| {
        ApiError::Upstream(format!("warming {pool}: {e}"))
    };
    let backend_id = backend.submit(submission).await.map_err(failed)?;
    let outcome = backend
        .wait(&backend_id, client_id, job_wait, &mut |_, _| {})
        .await;
    backend.forget(&backend_id);
    match outcome.map_err(failed)? {
        crate::dispatch::comfyui::protocol::Outcome::Success(_) => {
            let took = started.elapsed().as_secs_f64();
            tracing::info!(%pool, template = name, took_s = took, "pool warmed up");
            Ok(json!({"pool": pool, "warm_up": name, "took_seconds": took, "warm": backend.warm()}))
        }
        crate::dispatch::comfyui::protocol::Outcome::Failed(reason) => Err(ApiError::Upstream(
            format!("warming {pool}: the warm-up job failed: {reason}"),
        )),
        crate::dispatch::comfyui::protocol::Outcome::Pending => Err(ApiError::Upstream(format!(
            "warming {pool}: the warm-up job did not finish"
        ))),
    }
}

#[utoipa::path(post, path = "/admin/api/pools/{name}/prewarm", operation_id = "prewarm_pool", tag = "control",
    params(("name" = String, Path, description = "A verda pool's name")),
    request_body(content = Option<Prewarm>, description = "Optional: the minimum replicas"),
    responses(
        (status = 200, description = "Verda: `{pool, deployment, min_replicas, restore_to}`; other pools: `{pool, warm_up, took_seconds, warm}`", body = Object),
        (status = 400, description = "A malformed body or replicas out of 1–64", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such pool or template", body = super::openapi::ApiErrorBody),
        (status = 409, description = "No management credentials configured (verda pools)", body = super::openapi::ApiErrorBody),
        (status = 502, description = "Verda's management API, or the warm-up job, failed (the step is named)", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/pools/{name}/prewarm [{"replicas": N}]`.
pub(super) async fn prewarm(
    State(admin): State<Arc<Admin>>,
    Path(pool): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: Prewarm = if body.is_empty() {
        Prewarm::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"replicas\": N}}: {e}")))?
    };
    let kind = pool_config(&admin, &pool)?.kind;
    if matches!(kind, PoolKind::Comfyui | PoolKind::Rehearsal) {
        return warm_up(&admin, &pool, request.template.as_deref())
            .await
            .map(Json);
    }
    let (deployment, default, client) = target(&admin, &pool)?;
    let replicas = request.replicas.unwrap_or(default);
    if !(1..=64).contains(&replicas) {
        return Err(ApiError::BadRequest(
            "replicas must be between 1 and 64".into(),
        ));
    }
    let previous = client
        .set_replicas(&deployment, replicas, None)
        .await
        .map_err(|e| ApiError::Upstream(format!("pre-warming {pool}: {e}")))?;
    let mut settings = admin.settings.get();
    // Pre-warming twice keeps the bounds from before the first time.
    let restore = *settings
        .prewarmed
        .entry(pool.clone())
        .or_insert(previous.min);
    settings
        .prewarmed_max
        .entry(pool.clone())
        .or_insert(previous.max);
    admin
        .settings
        .save(settings)
        .map_err(|e| ApiError::io("saving the settings", e))?;
    tracing::info!(%pool, %deployment, replicas, restore, "pool pre-warmed");
    Ok(Json(json!({
        "pool": pool,
        "deployment": deployment,
        "min_replicas": replicas,
        "restore_to": restore,
    })))
}

/// Puts `pool`'s minimum replicas back; `Ok(None)` if it was not warmed.
async fn release_one(admin: &Admin, pool: &str) -> Result<Option<u32>, ApiError> {
    let Some(restore) = admin.settings.get().prewarmed.get(pool).copied() else {
        return Ok(None);
    };
    let restore_max = admin.settings.get().prewarmed_max.get(pool).copied();
    let (deployment, _, client) = target(admin, pool)?;
    client
        .set_replicas(&deployment, restore, restore_max)
        .await
        .map_err(|e| ApiError::Upstream(format!("releasing {pool}: {e}")))?;
    let mut settings = admin.settings.get();
    settings.prewarmed.remove(pool);
    settings.prewarmed_max.remove(pool);
    admin
        .settings
        .save(settings)
        .map_err(|e| ApiError::io("saving the settings", e))?;
    tracing::info!(%pool, %deployment, restore, "pool released from pre-warm");
    Ok(Some(restore))
}

#[utoipa::path(delete, path = "/admin/api/pools/{name}/prewarm", operation_id = "release_pool", tag = "control",
    params(("name" = String, Path, description = "A pre-warmed pool's name")),
    responses(
        (status = 200, description = "`{pool, min_replicas}`: the minimum restored", body = Object),
        (status = 404, description = "No such pool", body = super::openapi::ApiErrorBody),
        (status = 409, description = "The pool is not pre-warmed", body = super::openapi::ApiErrorBody),
        (status = 502, description = "Verda's management API refused or failed", body = super::openapi::ApiErrorBody),
    )
)]
/// `DELETE /admin/api/pools/{name}/prewarm`.
pub(super) async fn release(
    State(admin): State<Arc<Admin>>,
    Path(pool): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match release_one(&admin, &pool).await? {
        Some(restore) => Ok(Json(json!({"pool": pool, "min_replicas": restore}))),
        None => Err(ApiError::Conflict(format!("{pool} is not pre-warmed"))),
    }
}

/// At session close: every pre-warmed pool back to its minimum. Returns
/// one line per pool (what happened), for the operator.
pub(super) async fn release_all(admin: &Admin) -> Vec<String> {
    let pools: Vec<String> = admin.settings.get().prewarmed.into_keys().collect();
    let mut said = Vec::new();
    for pool in pools {
        match release_one(admin, &pool).await {
            Ok(Some(restore)) => said.push(format!("{pool}: minimum replicas back to {restore}")),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%pool, %error, "could not release a pre-warmed pool at close");
                said.push(format!("{pool}: NOT released: {error}"));
            }
        }
    }
    said
}
