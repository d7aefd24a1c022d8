//! Plugins at runtime: upload a component, see its check report, activate
//! it (or any stored version, built-ins included, by hash) into its slot,
//! roll a slot back to the version active before, remove a validator slot,
//! run a candidate scheduler in shadow.
//!
//! Policy: an upload is capped (`MAX_UPLOAD`), compiled with the limits the
//! configuration gives its name and slot, and run through the same
//! conformance fixtures as `comfyume plugin check`; a component that fails
//! them is refused (422, with the report), is not kept and can never be
//! activated — unless the operator explicitly overrides the check
//! (`?override=unchecked`), which is logged and answered with what failed.
//! Activation and rollback are atomic swaps: calls in flight finish on the
//! version they started with.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Admin;
use crate::front::ApiError;
use crate::plugins::RegistryError;
use crate::plugins::check::{check, first_failure, kind_name};

/// The largest component accepted (Python and JavaScript ones are 12–18 MB).
pub const MAX_UPLOAD: usize = 64 << 20;

/// The body limit of the admin routes (uploads are the largest).
pub(super) fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD)
}

#[utoipa::path(get, path = "/admin/api/plugins", operation_id = "plugin_status", tag = "plugins",
    responses((status = 200, description = "Every slot, and the shadow run", body = super::openapi::PluginsView))
)]
/// `GET /admin/api/plugins`: every slot (with its history by hash), every
/// stored version, how validators are arranged, the instance pool, and the
/// shadow run.
pub(super) async fn status(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let plugins = &admin.state.plugins;
    let (in_use, size) = plugins.engine().pool_usage();
    Json(json!({
        "slots": plugins.status(),
        "versions": plugins.versions(),
        "validators": plugins.validator_policy(),
        "instances": {"in_use": in_use, "pool": size},
        "shadow": plugins.shadow().status(),
    }))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub(super) struct ShadowRequest {
    /// The uploaded scheduler's hash.
    hash: String,
}

#[utoipa::path(put, path = "/admin/api/plugins/shadow", operation_id = "set_shadow", tag = "plugins",
    request_body = ShadowRequest,
    responses(
        (status = 200, description = "`{\"shadow\": status}` with fresh counts", body = Object),
        (status = 400, description = "A malformed body, or the plugin is not a scheduler", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No uploaded plugin has this hash", body = super::openapi::ApiErrorBody),
    )
)]
/// `PUT /admin/api/plugins/shadow {"hash": H}`: run the uploaded scheduler
/// `H` in shadow beside the active one (fresh counts).
pub(super) async fn set_shadow(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ShadowRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"hash\": the uploaded scheduler's hash}}: {e}"
        ))
    })?;
    let status = admin
        .state
        .plugins
        .set_shadow(&request.hash)
        .map_err(|e| match e {
            RegistryError::UnknownHash(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    tracing::info!(candidate = ?status.label, "shadow scheduler set");
    Ok(Json(json!({ "shadow": status })))
}

#[utoipa::path(delete, path = "/admin/api/plugins/shadow", operation_id = "clear_shadow", tag = "plugins",
    responses((status = 200, description = "`{\"shadow\": final counts or null}`", body = Object))
)]
/// `DELETE /admin/api/plugins/shadow`: stop the shadow run; answers with
/// its final counts.
pub(super) async fn clear_shadow(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let last = admin.state.plugins.shadow().clear();
    tracing::info!(candidate = ?last.as_ref().and_then(|s| s.label.clone()), "shadow scheduler stopped");
    Json(json!({ "shadow": last }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UploadOptions {
    /// `unchecked`: admit the component even if it fails the check.
    #[serde(rename = "override")]
    override_check: Option<String>,
}

#[utoipa::path(post, path = "/admin/api/plugins", operation_id = "upload_plugin", tag = "plugins",
    params(UploadOptions),
    request_body(description = "The WebAssembly component (`.wasm`), at most 64 MiB", content(
        (super::openapi::Binary = "application/wasm"),
        (super::openapi::Binary = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Checked and kept (or admitted with `check_failed` under the override)", body = super::openapi::Uploaded),
        (status = 400, description = "An empty body or an unknown override", body = super::openapi::ApiErrorBody),
        (status = 413, description = "Over 64 MiB"),
        (status = 422, description = "Not a usable plugin, or it failed the check (with `report`)", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/plugins[?override=unchecked]` with the `.wasm` as the
/// body. A component that fails the check is refused (422) and not kept,
/// unless the operator overrides: then it is admitted (201, with
/// `check_failed`) and, once activated, its slot's failure policy and the
/// built-in default stand between it and the workshop.
pub(super) async fn upload(
    State(admin): State<Arc<Admin>>,
    Query(options): Query<UploadOptions>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the component (.wasm) as the request body".into(),
        ));
    }
    let forced = match options.override_check.as_deref() {
        None => false,
        Some("unchecked") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "override={other:?}: the only override is `unchecked`"
            )));
        }
    };
    let registry = admin.state.plugins.clone();
    let table = admin.state.config.plugins.limits_table();
    let outcome = tokio::task::spawn_blocking(move || {
        let plugin = registry.compile_with(&body, &table)?;
        let report = check(&plugin);
        let failure = first_failure(&report);
        // Only a checked component (or an explicit override) is kept.
        let admitted = (failure.is_none() || forced).then(|| registry.admit(plugin));
        Ok::<_, crate::plugins::RegistryError>((admitted, report, failure))
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("checking the plugin: {e}")))?;
    let (admitted, report, failure) = match outcome {
        Ok(found) => found,
        Err(error) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": format!("not a usable plugin: {error}")})),
            )
                .into_response());
        }
    };
    let label = format!("{}@{}", report.plugin.name, report.plugin.version);
    let report_json = serde_json::to_value(&report).unwrap_or(Value::Null);
    let Some(plugin) = admitted else {
        let failure = failure.unwrap_or_default();
        tracing::warn!(plugin = %label, %failure, "uploaded plugin refused by the check");
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("{label} failed the check: {failure}"), "report": report_json})),
        )
            .into_response());
    };
    match &failure {
        Some(failure) => {
            tracing::warn!(plugin = %plugin.label(), hash = %plugin.hash(), %failure, "plugin admitted WITHOUT passing the check (operator override)")
        }
        None => {
            tracing::info!(plugin = %plugin.label(), hash = %plugin.hash(), "plugin uploaded and checked")
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "hash": plugin.hash(),
            "label": plugin.label(),
            "kind": kind_name(plugin.kind()),
            "size": plugin.size(),
            "report": report_json,
            "check_failed": failure,
        })),
    )
        .into_response())
}

#[utoipa::path(post, path = "/admin/api/plugins/{hash}/activate", operation_id = "activate_plugin", tag = "plugins",
    params(("hash" = String, Path, description = "The uploaded plugin's SHA-256")),
    responses(
        (status = 200, description = "The plugin is active in its slot", body = super::openapi::SlotChange),
        (status = 404, description = "No uploaded plugin has this hash", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/plugins/{hash}/activate`.
pub(super) async fn activate(
    State(admin): State<Arc<Admin>>,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let slot = admin
        .state
        .plugins
        .activate(&hash)
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    tracing::info!(%hash, %slot, "plugin activated");
    admin.state.dispatcher.wake();
    Ok(Json(json!({ "slot": slot, "active": hash })))
}

#[utoipa::path(delete, path = "/admin/api/plugins/slots/{slot}", operation_id = "remove_slot", tag = "plugins",
    params(("slot" = String, Path, description = "A validator slot, e.g. `validator:a-sleepy`")),
    responses(
        (status = 200, description = "`{\"removed\": slot}`: its plugin is asked no more", body = Object),
        (status = 404, description = "No such validator slot", body = super::openapi::ApiErrorBody),
        (status = 409, description = "The scheduler and selector slots cannot be removed", body = super::openapi::ApiErrorBody),
    )
)]
/// `DELETE /admin/api/plugins/slots/{slot}`: removes a validator slot. Its
/// versions stay stored; activating one brings the slot back.
pub(super) async fn remove_slot(
    State(admin): State<Arc<Admin>>,
    Path(slot): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin
        .state
        .plugins
        .remove_validator(&slot)
        .map_err(|e| match e {
            RegistryError::UnknownSlot(_) => ApiError::NotFound(e.to_string()),
            other => ApiError::Conflict(other.to_string()),
        })?;
    tracing::info!(%slot, "validator slot removed by the operator");
    Ok(Json(json!({ "removed": slot })))
}

#[utoipa::path(post, path = "/admin/api/plugins/slots/{slot}/rollback", operation_id = "rollback_slot", tag = "plugins",
    params(("slot" = String, Path, description = "The slot, e.g. `scheduler` or `validator:ltx2`")),
    responses(
        (status = 200, description = "The slot is back on the version active before the current (or disabled) one", body = super::openapi::SlotChange),
        (status = 409, description = "No such slot or nothing to roll back to", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/plugins/slots/{slot}/rollback`.
pub(super) async fn rollback(
    State(admin): State<Arc<Admin>>,
    Path(slot): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = admin
        .state
        .plugins
        .rollback(&slot)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    tracing::info!(%slot, active = %now.label(), "plugin slot rolled back");
    Ok(Json(
        json!({ "slot": slot, "active": now.label(), "hash": now.hash() }),
    ))
}
