//! Pre-warm: keep Verda replicas up for a session so the first demo does
//! not wait for a cold start, and let them go at close.
//!
//! Policy: pre-warming a `verda` pool raises its deployment's minimum
//! replicas (to the body's `replicas`, else the pool's `prewarm_replicas`)
//! through Verda's management API ([`crate::dispatch::verda_scaling`]) and
//! records the minimum it had, in `<data>/admin_settings.json`, so a
//! restart still knows what to restore. Releasing (or closing the session)
//! puts that minimum back. Without `verda.client_id`/`client_secret` the
//! operator gets a 409 saying what to configure; a refusal by Verda is a
//! 502 naming the step. Pools of other kinds have no replicas to hold up:
//! a 409 says so.

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
    let verda = &config.verda;
    let (Some(id), Some(secret)) = (&verda.client_id, &verda.client_secret) else {
        return None;
    };
    let timeout = std::time::Duration::from_secs(config.timeouts.poll_secs.max(1));
    match VerdaScaling::new(&verda.management_url, id, secret.clone(), timeout) {
        Ok(client) => Some(Arc::new(client)),
        Err(error) => {
            tracing::warn!(%error, "Verda management client not available: no pre-warm");
            None
        }
    }
}

/// The pool's deployment and the client, or why it cannot be pre-warmed.
fn target(admin: &Admin, pool: &str) -> Result<(String, u32, Arc<VerdaScaling>), ApiError> {
    let config = admin
        .state
        .config
        .pools
        .get(pool)
        .ok_or_else(|| ApiError::NotFound(format!("no pool named {pool:?}")))?;
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
    /// Minimum replicas while warm (default: the pool's `prewarm_replicas`).
    replicas: Option<u32>,
}

#[utoipa::path(post, path = "/admin/api/pools/{name}/prewarm", operation_id = "prewarm_pool", tag = "control",
    params(("name" = String, Path, description = "A verda pool's name")),
    request_body(content = Option<Prewarm>, description = "Optional: the minimum replicas"),
    responses(
        (status = 200, description = "`{pool, deployment, min_replicas, restore_to}`", body = Object),
        (status = 400, description = "A malformed body or replicas out of 1–64", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such pool", body = super::openapi::ApiErrorBody),
        (status = 409, description = "Not a verda pool, or no management credentials configured", body = super::openapi::ApiErrorBody),
        (status = 502, description = "Verda's management API refused or failed (the step is named)", body = super::openapi::ApiErrorBody),
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
    let (deployment, default, client) = target(&admin, &pool)?;
    let replicas = request.replicas.unwrap_or(default);
    if !(1..=64).contains(&replicas) {
        return Err(ApiError::BadRequest(
            "replicas must be between 1 and 64".into(),
        ));
    }
    let previous = client
        .set_min_replicas(&deployment, replicas)
        .await
        .map_err(|e| ApiError::Upstream(format!("pre-warming {pool}: {e}")))?;
    let mut settings = admin.settings.get();
    // Pre-warming twice keeps the minimum from before the first time.
    let restore = *settings.prewarmed.entry(pool.clone()).or_insert(previous);
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
    let (deployment, _, client) = target(admin, pool)?;
    client
        .set_min_replicas(&deployment, restore)
        .await
        .map_err(|e| ApiError::Upstream(format!("releasing {pool}: {e}")))?;
    let mut settings = admin.settings.get();
    settings.prewarmed.remove(pool);
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
