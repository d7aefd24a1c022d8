//! Plugins at runtime: upload a component, see its check report, activate
//! it into its slot, roll a slot back.
//!
//! Policy: an upload is capped (`MAX_UPLOAD`), compiled with the limits the
//! configuration gives its name and slot, and run through the same
//! conformance fixtures as `comfyume plugin check`; a component that fails
//! them is refused (422, with the report) and never becomes activatable.
//! Activation and rollback are atomic swaps: calls in flight finish on the
//! version they started with.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Admin;
use crate::front::ApiError;
use crate::plugins::check::{check, first_failure, kind_name};

/// The largest component accepted (Python and JavaScript ones are 12–18 MB).
pub const MAX_UPLOAD: usize = 64 << 20;

/// The body limit of the admin routes (uploads are the largest).
pub(super) fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD)
}

/// `GET /admin/api/plugins`: every slot.
pub(super) async fn status(State(admin): State<Arc<Admin>>) -> Json<Value> {
    Json(json!({ "slots": admin.state.plugins.status() }))
}

/// `POST /admin/api/plugins` with the `.wasm` as the body.
pub(super) async fn upload(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the component (.wasm) as the request body".into(),
        ));
    }
    let registry = admin.state.plugins.clone();
    let table = admin.state.config.plugins.limits_table();
    let outcome = tokio::task::spawn_blocking(move || {
        let plugin = registry.load_with(&body, &table)?;
        let report = check(&plugin);
        Ok::<_, crate::plugins::RegistryError>((plugin, report))
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("checking the plugin: {e}")))?;
    let (plugin, report) = match outcome {
        Ok(found) => found,
        Err(error) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": format!("not a usable plugin: {error}")})),
            )
                .into_response());
        }
    };
    let failure = first_failure(&report);
    let report = serde_json::to_value(&report).unwrap_or(Value::Null);
    if let Some(failure) = failure {
        tracing::warn!(plugin = %plugin.label(), %failure, "uploaded plugin refused by the check");
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("{} failed the check: {failure}", plugin.label()), "report": report})),
        )
            .into_response());
    }
    tracing::info!(plugin = %plugin.label(), hash = %plugin.hash(), "plugin uploaded and checked");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "hash": plugin.hash(),
            "label": plugin.label(),
            "kind": kind_name(plugin.kind()),
            "size": plugin.size(),
            "report": report,
        })),
    )
        .into_response())
}

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
