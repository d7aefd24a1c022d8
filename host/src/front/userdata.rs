//! `/api/userdata`: each attendee's saved workflows and other editor files,
//! with the workshop templates beside them, read-only.
//!
//! Policy:
//! - An attendee's files live in `users/<name>/userdata/`; a name is a
//!   plain relative path ([`crate::paths`]), decoded once by the router, so
//!   `..`, `%2e%2e`, absolute paths, hidden names and symlinks leading out
//!   are refused with a 400 (or a 404 for a symlink found on read).
//! - The workshop templates (`attendees.templates_dir`) appear in every
//!   attendee's workflow list as `workflows/workshop/<name>.json`. Writing,
//!   moving or deleting anything under `workflows/workshop/` is a 403 with
//!   a sentence saying to save under another name, so a template never
//!   overwrites an attendee's work and an attendee never changes a template.
//! - Each file is capped (`attendees.max_userdata_kib`: the body is read up
//!   to that and refused beyond, in JSON, declared or not) and so is the
//!   number of files per attendee (`attendees.max_userdata_files`).

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Front, write_atomic};
use crate::auth::Identity;
use crate::front::Caller;
use crate::paths;

/// Where the templates appear in every attendee's user data.
pub const TEMPLATE_FOLDER: &str = "workflows/workshop";

/// The workshop templates, loaded once at start.
pub struct Templates {
    files: BTreeMap<String, Template>,
}

struct Template {
    bytes: Bytes,
    modified_ms: u64,
}

impl Templates {
    /// Every `*.json` in `dir` (not recursive). When `dir` is not there
    /// (`serve` run away from the checkout, where the relative default
    /// `workflows/ui` means nothing), the templates built into the binary:
    /// the same files as of the build, said at info level, not as a fault.
    pub fn load(dir: &FsPath) -> Templates {
        let mut files = BTreeMap::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    if !name.ends_with(".json") || paths::plain_relative(name).is_none() {
                        continue;
                    }
                    let Ok(bytes) = std::fs::read(&path) else {
                        continue;
                    };
                    let modified_ms = entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .map_or(0, millis);
                    files.insert(
                        name.to_string(),
                        Template {
                            bytes: Bytes::from(bytes),
                            modified_ms,
                        },
                    );
                }
                tracing::info!(dir = %dir.display(), templates = files.len(), "workshop templates");
            }
            Err(error) => {
                for (name, text, modified_ms) in crate::plugins::builtin::ui_templates() {
                    files.insert(
                        (*name).to_string(),
                        Template {
                            bytes: Bytes::from_static(text.as_bytes()),
                            modified_ms: *modified_ms,
                        },
                    );
                }
                if error.kind() == std::io::ErrorKind::NotFound {
                    tracing::info!(
                        dir = %dir.display(), templates = files.len(),
                        "workshop templates: the ones built into this binary (no such folder)"
                    );
                } else {
                    tracing::warn!(
                        dir = %dir.display(), %error, templates = files.len(),
                        "attendees.templates_dir is unreadable: using the workshop templates built into this binary"
                    );
                }
            }
        }
        Templates { files }
    }

    /// The template names (`<name>.json`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<&Template> {
        self.files.get(name)
    }
}

fn millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The user data routes.
pub fn router() -> Router<Arc<Front>> {
    Router::new()
        .route("/userdata", get(list))
        .route("/userdata/{file}", get(read).post(write).delete(remove))
        .route("/userdata/{file}/move/{dest}", post(rename))
        .route("/v2/userdata", get(list_v2))
}

/// `users/<name>/userdata`.
fn root(front: &Front, user: &Identity) -> Result<PathBuf, ApiError> {
    Ok(front.user_dir(user)?.join("userdata"))
}

/// A plain relative name, or a 400 saying why.
fn plain(name: &str) -> Result<String, ApiError> {
    paths::plain_relative(name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{name:?} is not a plain file name inside your folder (no '..', no leading '/' or '.')"
        ))
    })
}

/// The template a name refers to, if it is under the template folder.
fn template_name(relative: &str) -> Option<&str> {
    relative
        .strip_prefix(TEMPLATE_FOLDER)
        .and_then(|rest| rest.strip_prefix('/'))
}

fn read_only(relative: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "{relative} is a workshop template and is read-only; save your version under another name"
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    dir: Option<String>,
    #[serde(default)]
    recurse: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    full_info: Option<String>,
}

fn flag(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

/// One listed file, relative to the listed folder.
struct Entry {
    path: String,
    size: u64,
    modified_ms: u64,
}

/// `GET /api/userdata?dir=workflows&recurse=true&full_info=true`.
async fn list(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let dir = plain(query.dir.as_deref().unwrap_or(""))?;
    let recurse = flag(&query.recurse);
    let base = root(&front, &user)?.join(&dir);
    let mut found = Vec::new();
    let mut exists = false;
    if paths::parent_stays_inside(&root(&front, &user)?, &base.join("x")).await {
        exists = walk(&base, recurse, &mut found).await;
    }
    // The templates show in `workflows` (recursively) and in their own folder.
    let template_prefix = if dir == TEMPLATE_FOLDER {
        Some(String::new())
    } else if dir == "workflows" && recurse {
        Some("workshop/".to_string())
    } else {
        None
    };
    if let Some(prefix) = template_prefix {
        // Nothing of the attendee's can be in the template folder (writes
        // there are refused), but a folder made by hand must not shadow it.
        if prefix.is_empty() {
            found.clear();
        } else {
            found.retain(|e| !e.path.starts_with(&prefix));
        }
        for name in front.templates.names() {
            let Some(template) = front.templates.get(name) else {
                continue;
            };
            exists = true;
            found.push(Entry {
                path: format!("{prefix}{name}"),
                size: template.bytes.len() as u64,
                modified_ms: template.modified_ms,
            });
        }
    }
    if !exists {
        return Ok((StatusCode::NOT_FOUND, "Directory not found").into_response());
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let body: Vec<Value> = if flag(&query.full_info) {
        found
            .iter()
            .map(|e| json!({"path": e.path, "size": e.size, "modified": e.modified_ms, "created": e.modified_ms}))
            .collect()
    } else if flag(&query.split) {
        found
            .iter()
            .map(|e| {
                let mut parts = vec![Value::from(e.path.clone())];
                parts.extend(e.path.split('/').map(Value::from));
                Value::Array(parts)
            })
            .collect()
    } else {
        found.iter().map(|e| Value::from(e.path.clone())).collect()
    };
    Ok(Json(Value::Array(body)).into_response())
}

/// Files under `base` (recursively if asked), without following symlinks
/// or listing hidden names. False if `base` is not a folder.
async fn walk(base: &FsPath, recurse: bool, out: &mut Vec<Entry>) -> bool {
    let mut stack = vec![(base.to_path_buf(), String::new())];
    let mut is_dir = false;
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        is_dir = true;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = tokio::fs::symlink_metadata(entry.path()).await else {
                continue;
            };
            let relative = format!("{prefix}{name}");
            if meta.is_dir() && recurse {
                stack.push((entry.path(), format!("{relative}/")));
            } else if meta.is_file() {
                out.push(Entry {
                    path: relative,
                    size: meta.len(),
                    modified_ms: meta.modified().map_or(0, millis),
                });
            }
        }
    }
    is_dir
}

/// `GET /api/userdata/{file}`.
async fn read(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    // Reading a name that could not exist (the editor asks for
    // `workflows/.index.json`) is a plain 404, as in ComfyUI.
    let relative = plain(&file).map_err(|_| ApiError::NotFound(format!("{file}: not found")))?;
    let bytes = if let Some(name) = template_name(&relative) {
        front
            .templates
            .get(name)
            .map(|t| t.bytes.clone())
            .ok_or_else(|| ApiError::NotFound(format!("{relative}: no such template")))?
    } else {
        let root = root(&front, &user)?;
        let path = paths::existing_file_inside(&root, &root.join(&relative))
            .await
            .ok_or_else(|| ApiError::NotFound(format!("{relative}: not found")))?;
        Bytes::from(
            tokio::fs::read(&path)
                .await
                .map_err(|e| ApiError::io(&relative, e))?,
        )
    };
    let content_type = if relative.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
struct WriteQuery {
    overwrite: Option<String>,
    full_info: Option<String>,
}

fn overwrite(value: &Option<String>) -> bool {
    // ComfyUI overwrites unless told `overwrite=false`.
    !matches!(value.as_deref(), Some("false" | "0"))
}

/// Where a write to `relative` goes, after every check.
async fn writable(front: &Front, user: &Identity, relative: &str) -> Result<PathBuf, ApiError> {
    if relative == TEMPLATE_FOLDER || template_name(relative).is_some() {
        return Err(read_only(relative));
    }
    let root = root(front, user)?;
    let path = root.join(relative);
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(|e| ApiError::io("your folder", e))?;
    if !paths::parent_stays_inside(&root, &path).await {
        return Err(ApiError::BadRequest(format!(
            "{relative} would leave your folder"
        )));
    }
    if let Ok(meta) = tokio::fs::symlink_metadata(&path).await
        && !meta.is_file()
    {
        return Err(ApiError::BadRequest(format!("{relative} is not a file")));
    }
    Ok(path)
}

async fn count_files(root: &FsPath) -> usize {
    let mut found = Vec::new();
    walk(root, true, &mut found).await;
    found.len()
}

/// `POST /api/userdata/{file}?overwrite=…&full_info=…`.
async fn write(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(file): Path<String>,
    Query(query): Query<WriteQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let relative = plain(&file)?;
    let max = front.limits.max_userdata_kib * 1024;
    let body = super::body::read_capped(&headers, body, max)
        .await
        .map_err(|e| match e {
            super::body::BodyError::TooLarge { .. } => ApiError::TooLarge(format!(
                "{relative} is larger than the {} KiB kept per file",
                front.limits.max_userdata_kib
            )),
            other => other.into(),
        })?;
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let path = writable(&front, &user, &relative).await?;
    let exists = tokio::fs::try_exists(&path).await.unwrap_or(false);
    if exists && !overwrite(&query.overwrite) {
        return Err(ApiError::Conflict("File already exists".into()));
    }
    if !exists && count_files(&root(&front, &user)?).await >= front.limits.max_userdata_files {
        return Err(ApiError::TooMany(format!(
            "you already keep {} files; delete some first",
            front.limits.max_userdata_files
        )));
    }
    let size = body.len();
    write_atomic(&path, body.to_vec()).await?;
    let now = millis(std::time::SystemTime::now());
    if flag(&query.full_info) {
        Ok(
            Json(json!({"path": relative, "size": size, "modified": now, "created": now}))
                .into_response(),
        )
    } else {
        Ok(Json(Value::from(relative)).into_response())
    }
}

/// `DELETE /api/userdata/{file}`.
async fn remove(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path(file): Path<String>,
) -> Result<StatusCode, ApiError> {
    let relative = plain(&file)?;
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let path = writable(&front, &user, &relative).await?;
    tokio::fs::remove_file(&path)
        .await
        .map_err(|e| ApiError::io(&relative, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/userdata/{file}/move/{dest}?overwrite=…`.
async fn rename(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Path((file, dest)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
) -> Result<Json<Value>, ApiError> {
    let from_name = plain(&file)?;
    let to_name = plain(&dest)?;
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let from = writable(&front, &user, &from_name).await?;
    let to = writable(&front, &user, &to_name).await?;
    if !tokio::fs::try_exists(&from).await.unwrap_or(false) {
        return Err(ApiError::NotFound(format!("{from_name}: not found")));
    }
    if tokio::fs::try_exists(&to).await.unwrap_or(false) && !overwrite(&query.overwrite) {
        return Err(ApiError::Conflict("File already exists".into()));
    }
    if let Some(dir) = to.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ApiError::io(&to_name, e))?;
    }
    tokio::fs::rename(&from, &to)
        .await
        .map_err(|e| ApiError::io(&from_name, e))?;
    Ok(Json(Value::from(to_name)))
}

#[derive(Deserialize)]
struct V2Query {
    path: Option<String>,
}

/// `GET /api/v2/userdata?path=…`: one folder's entries.
async fn list_v2(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<V2Query>,
) -> Result<Json<Value>, ApiError> {
    let dir = match query.path.as_deref() {
        None | Some("") => String::new(),
        Some(path) => plain(path)?,
    };
    let root = root(&front, &user)?;
    let base = root.join(&dir);
    let mut out = Vec::new();
    if paths::parent_stays_inside(&root, &base.join("x")).await
        && let Ok(mut entries) = tokio::fs::read_dir(&base).await
    {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = tokio::fs::symlink_metadata(entry.path()).await else {
                continue;
            };
            if name.starts_with('.') || meta.is_symlink() {
                continue;
            }
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            out.push(json!({
                "name": name,
                "path": path,
                "type": if meta.is_dir() { "directory" } else { "file" },
                "size": meta.len(),
                "modified": meta.modified().map_or(0, millis) as f64 / 1000.0,
            }));
        }
    }
    Ok(Json(Value::Array(out)))
}
