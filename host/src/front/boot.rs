//! The small answers the editor needs to boot.
//!
//! Policy: the editor cannot start without `/api/users`, `/api/settings`,
//! `/api/extensions` and `/api/object_info` (see the ablation capture in
//! the protocol samples); the rest get an answer in ComfyUI's shape that
//! says the truth about this host: users are stored on the server, there
//! are no server-side model folders to browse (the models live on the GPU
//! side), no custom-node translations, no global subgraphs. Nothing here
//! reveals another attendee or a path on the host.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Front;
use crate::front::Caller;

/// The editor extension that shows the queue position (see [`super::ws`]).
pub const QUEUE_EXTENSION: &str = "/extensions/comfyume/queue.js";

/// The boot routes.
pub fn router() -> Router<Arc<Front>> {
    Router::new()
        .route("/users", get(users))
        .route("/features", get(features))
        .route("/system_stats", get(system_stats))
        .route("/extensions", get(extensions))
        .route(QUEUE_EXTENSION, get(queue_extension))
        .route("/i18n", get(empty_object))
        // The templates of custom node packs: none (ours are user data).
        .route("/workflow_templates", get(empty_object))
        .route("/embeddings", get(empty_list))
        .route("/models", get(empty_list))
        .route("/models/{folder}", get(empty_list))
        .route("/global_subgraphs", get(empty_object))
        .route("/global_subgraphs/{id}", get(no_subgraph))
        .route("/node_replacements", get(empty_object))
        .route("/internal/folder_paths", get(empty_object))
        .route("/experiment/models", get(empty_list))
        .route("/experiment/models/{folder}", get(empty_list))
        .route("/object_info", get(object_info))
        .route("/object_info/{class}", get(object_info_one))
}

/// `GET /api/users`: settings and workflows are kept per user on the
/// server, and the login already says who the user is.
async fn users(_: Caller) -> Json<Value> {
    Json(json!({"storage": "server", "migrated": true}))
}

async fn features(State(front): State<Arc<Front>>) -> Json<Value> {
    Json(json!({
        // No preview frames are relayed from the GPU side.
        "supports_preview_metadata": false,
        "max_upload_size": front.limits.max_upload_mib * 1024 * 1024,
        "node_replacements": false,
        "assets": false,
    }))
}

async fn system_stats() -> Json<Value> {
    Json(json!({
        "system": {
            "os": std::env::consts::OS,
            "comfyui_version": "0.33.0",
            "required_frontend_version": front_version(),
            "python_version": "n/a (comfyume host)",
            "pytorch_version": "n/a (GPUs are remote)",
            "embedded_python": false,
            "argv": [],
            "ram_total": 0,
            "ram_free": 0,
        },
        "devices": [],
    }))
}

fn front_version() -> &'static str {
    super::assets::PINNED.version
}

/// `GET /api/extensions`: only ours; the editor's core extensions are
/// bundled in its own files.
async fn extensions() -> Json<Value> {
    Json(json!([QUEUE_EXTENSION]))
}

async fn queue_extension() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        include_str!("ws/queue.js"),
    )
        .into_response()
}

async fn empty_object() -> Json<Value> {
    Json(json!({}))
}

async fn empty_list() -> Json<Value> {
    Json(json!([]))
}

async fn no_subgraph(Path(_): Path<String>) -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn object_info(State(front): State<Arc<Front>>, headers: HeaderMap) -> Response {
    front.catalogue.response(&headers)
}

/// One class, or `{}` for an unknown one (as ComfyUI answers).
async fn object_info_one(
    State(front): State<Arc<Front>>,
    Path(class): Path<String>,
) -> Json<Value> {
    Json(match front.catalogue.node(&class) {
        Some(def) => json!({ class: def }),
        None => json!({}),
    })
}
