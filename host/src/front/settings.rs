//! `/api/settings`: each attendee's editor settings, in their own folder
//! (`users/<name>/comfy.settings.json`, ComfyUI's file name).
//!
//! Policy: writes are read-modify-write under the user's lock, so two tabs
//! saving at once lose nothing; the file is capped
//! (`attendees.max_settings_kib`, the body too, refused in JSON) and written
//! atomically; a setting id is at most 256 characters and a value nests at
//! most [`MAX_DEPTH`] deep (the editor's own settings nest four or five),
//! so what is stored can always be read back. A file that cannot be read
//! back anyway answers as a new attendee's settings, never a 503 that
//! would stop the editor from starting.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::body::{depth, read_capped};
use super::{ApiError, Front, read_json_file, write_atomic};
use crate::auth::Identity;
use crate::front::Caller;

const FILE: &str = "comfy.settings.json";

/// How deep a setting's value may nest.
pub const MAX_DEPTH: usize = 32;

/// The settings routes.
pub fn router() -> Router<Arc<Front>> {
    Router::new()
        .route("/settings", get(all).post(post_all))
        .route("/settings/{id}", get(one).post(post_one))
}

/// What a new attendee starts with: the editor's first-run template
/// browser would open on ComfyUI's own template catalogue, which this host
/// does not serve (the workshop's templates are in the workflows sidebar).
fn first_settings() -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("Comfy.TutorialCompleted".into(), Value::Bool(true));
    map
}

async fn load(front: &Front, user: &Identity) -> Result<Map<String, Value>, ApiError> {
    let path = front.user_dir(user)?.join(FILE);
    Ok(match read_json_file(&path).await? {
        Some(Value::Object(map)) => map,
        _ => first_settings(),
    })
}

async fn store(front: &Front, user: &Identity, map: Map<String, Value>) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec_pretty(&map)
        .map_err(|e| ApiError::BadRequest(format!("settings: {e}")))?;
    let max = front.limits.max_settings_kib * 1024;
    if bytes.len() > max {
        return Err(ApiError::TooLarge(format!(
            "your settings would be {} KiB; at most {} KiB are kept",
            bytes.len() / 1024,
            front.limits.max_settings_kib
        )));
    }
    write_atomic(&front.user_dir(user)?.join(FILE), bytes).await
}

/// The body as JSON, within the file's cap and [`MAX_DEPTH`].
async fn parse(front: &Front, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes: Bytes = read_capped(headers, body, front.limits.max_settings_kib * 1024).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if depth(&value) > MAX_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "settings nest at most {MAX_DEPTH} levels deep"
        )));
    }
    Ok(value)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::BadRequest(
            "a setting id is 1 to 256 characters".into(),
        ));
    }
    Ok(())
}

async fn all(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Object(load(&front, &user).await?)))
}

async fn one(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let map = load(&front, &user).await?;
    Ok(Json(map.get(&id).cloned().unwrap_or(Value::Null)))
}

async fn post_all(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let Value::Object(changes) = parse(&front, &headers, body).await? else {
        return Err(ApiError::BadRequest(
            "POST /api/settings takes an object of setting id → value".into(),
        ));
    };
    for id in changes.keys() {
        check_id(id)?;
    }
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let mut map = load(&front, &user).await?;
    map.extend(changes);
    store(&front, &user, map).await
}

async fn post_one(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    check_id(&id)?;
    let value = parse(&front, &headers, body).await?;
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let mut map = load(&front, &user).await?;
    map.insert(id, value);
    store(&front, &user, map).await
}
