//! `/api/settings`: each attendee's editor settings, in their own folder
//! (`users/<name>/comfy.settings.json`, ComfyUI's file name).
//!
//! Policy: writes are read-modify-write under the user's lock, so two tabs
//! saving at once lose nothing; the file is capped
//! (`attendees.max_settings_kib`) and written atomically; a setting id is
//! at most 256 characters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::{ApiError, Front, read_json_file, write_atomic};
use crate::auth::Identity;
use crate::front::Caller;

const FILE: &str = "comfy.settings.json";

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

fn parse(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
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
    body: Bytes,
) -> Result<(), ApiError> {
    let Value::Object(changes) = parse(&body)? else {
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
    body: Bytes,
) -> Result<(), ApiError> {
    check_id(&id)?;
    let value = parse(&body)?;
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let mut map = load(&front, &user).await?;
    map.insert(id, value);
    store(&front, &user, map).await
}
