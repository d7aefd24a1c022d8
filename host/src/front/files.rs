//! `/api/view` and the uploads: the attendee's own images and videos.
//!
//! Policy:
//! - `type=input` is `users/<name>/input`; `output` and `temp` are
//!   `users/<name>/output` (the dispatcher stores both there). Names and sub
//!   folders are plain relative paths ([`crate::paths`]); anything else is a
//!   400; a file that is not the caller's is a 404, the same as a missing
//!   one. Files are served with ranges (video scrubbing), `nosniff` and
//!   their own name.
//! - Uploads are sniffed from their first bytes (PNG, JPEG, WebP, GIF),
//!   never trusted from the name or the declared type, and capped in bytes
//!   (`attendees.max_upload_mib`, also the body limit) and in pixels
//!   (`attendees.max_upload_megapixels`). They land in the caller's folder
//!   and travel to the GPU with the jobs that load them
//!   ([`crate::dispatch::inputs`]).
//! - A second upload of the same name keeps the first file: identical bytes
//!   answer with the same name, different bytes get `name (1).png`, unless
//!   `overwrite=true`.
//! - `/api/upload/mask` applies the mask's alpha to the original image (as
//!   ComfyUI does) and stores the result as a PNG.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use super::{ApiError, Front};
use crate::auth::Identity;
use crate::front::Caller;
use crate::paths;

/// The file routes; `max_upload` bytes is the body limit of the uploads.
pub fn router() -> Router<Arc<Front>> {
    Router::new().route("/view", get(view))
}

/// The upload routes, with their body limit.
pub fn upload_router(max_upload: usize) -> Router<Arc<Front>> {
    Router::new()
        .route("/upload/image", post(upload_image))
        .route("/upload/mask", post(upload_mask))
        // The multipart framing around the file needs a little room.
        .layer(DefaultBodyLimit::max(max_upload + 64 * 1024))
}

/// Which of the user's folders a ComfyUI `type` names.
fn folder(front: &Front, user: &Identity, kind: &str) -> Result<PathBuf, ApiError> {
    let dir = front.user_dir(user)?;
    match kind {
        "" | "output" | "temp" => Ok(dir.join("output")),
        "input" => Ok(dir.join("input")),
        other => Err(ApiError::BadRequest(format!(
            "type {other:?} is not one of input, output, temp"
        ))),
    }
}

fn unsafe_name(name: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{name:?} is not a plain file name inside your folder (no '..', no leading '/' or '.')"
    ))
}

#[derive(Deserialize)]
struct ViewQuery {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// `GET /api/view?filename=…&subfolder=…&type=…`.
async fn view(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<ViewQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let root = folder(&front, &user, &query.kind)?;
    let path = paths::join_plain(&root, &query.subfolder, &query.filename)
        .ok_or_else(|| unsafe_name(&format!("{}/{}", query.subfolder, query.filename)))?;
    let real = paths::existing_file_inside(&root, &path)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("{}: not found", query.filename)))?;
    let mime = mime_guess::from_path(&real).first_or_octet_stream();
    let mut response = ServeFile::new_with_mime(&real, &mime)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {})
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "filename=\"{}\"",
        query.filename.replace(['"', '\\'], "_")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(response)
}

/// One upload, as read from the form.
#[derive(Default)]
struct Upload {
    name: String,
    bytes: Vec<u8>,
    subfolder: String,
    kind: String,
    overwrite: bool,
    original_ref: Option<Value>,
}

async fn read_form(front: &Front, mut form: Multipart) -> Result<Upload, ApiError> {
    let mut upload = Upload {
        kind: "input".into(),
        ..Upload::default()
    };
    let max = front.limits.max_upload_mib * 1024 * 1024;
    let mut seen_file = false;
    while let Some(field) = form.next_field().await.map_err(multipart)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" => {
                upload.name = field.file_name().unwrap_or("").to_string();
                upload.bytes = field.bytes().await.map_err(multipart)?.to_vec();
                seen_file = true;
            }
            other => {
                let text = field.text().await.map_err(multipart)?;
                match other {
                    "subfolder" => upload.subfolder = text,
                    "type" => upload.kind = text,
                    "overwrite" => upload.overwrite = matches!(text.as_str(), "true" | "1"),
                    "original_ref" => {
                        upload.original_ref = Some(serde_json::from_str(&text).map_err(|e| {
                            ApiError::BadRequest(format!("original_ref is not JSON: {e}"))
                        })?)
                    }
                    _ => {}
                }
            }
        }
    }
    if !seen_file {
        return Err(ApiError::BadRequest(
            "no file: send it in a form field named \"image\"".into(),
        ));
    }
    if upload.bytes.len() > max {
        return Err(too_large(front));
    }
    Ok(upload)
}

fn too_large(front: &Front) -> ApiError {
    ApiError::TooLarge(format!(
        "the file is larger than {} MiB",
        front.limits.max_upload_mib
    ))
}

fn multipart(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("the upload is too large: {}", error.body_text()))
    } else {
        ApiError::BadRequest(format!(
            "the upload form is malformed: {}",
            error.body_text()
        ))
    }
}

/// Checks the bytes are an image we accept, within the pixel cap.
fn sniff(front: &Front, bytes: &[u8]) -> Result<(), ApiError> {
    use imagesize::ImageType;
    let kind = imagesize::image_type(bytes).map_err(|_| not_an_image())?;
    if !matches!(
        kind,
        ImageType::Png | ImageType::Jpeg | ImageType::Webp | ImageType::Gif
    ) {
        return Err(not_an_image());
    }
    let size = imagesize::blob_size(bytes).map_err(|_| not_an_image())?;
    let pixels = size.width as u64 * size.height as u64;
    let max = front.limits.max_upload_megapixels as u64 * 1_000_000;
    if pixels == 0 || pixels > max {
        return Err(ApiError::BadRequest(format!(
            "the image is {}×{}; at most {} megapixels are accepted",
            size.width, size.height, front.limits.max_upload_megapixels
        )));
    }
    Ok(())
}

fn not_an_image() -> ApiError {
    ApiError::BadRequest("that file is not a PNG, JPEG, WebP or GIF image".into())
}

/// Picks the stored name: the same name if free, or identical; else
/// `stem (n).ext`.
async fn place(dir: &FsPath, name: &str, bytes: &[u8], overwrite: bool) -> PathBuf {
    let first = dir.join(name);
    if overwrite {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) => (stem.to_string(), format!(".{ext}")),
        None => (name.to_string(), String::new()),
    };
    let mut candidate = first;
    for n in 1..1000 {
        match tokio::fs::read(&candidate).await {
            Err(_) => return candidate,
            Ok(existing) if existing == bytes => return candidate,
            Ok(_) => candidate = dir.join(format!("{stem} ({n}){ext}")),
        }
    }
    dir.join(format!("{stem} ({}){ext}", uuid::Uuid::new_v4().simple()))
}

/// Stores `bytes` as the upload's name in the caller's folder.
async fn store(
    front: &Front,
    user: &Identity,
    upload: &Upload,
    bytes: Vec<u8>,
) -> Result<Json<Value>, ApiError> {
    let root = folder(front, user, &upload.kind)?;
    let file_name = paths::plain_relative(&upload.name)
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| unsafe_name(&upload.name))?;
    let dir = if upload.subfolder.is_empty() {
        root.clone()
    } else {
        root.join(
            paths::plain_relative(&upload.subfolder)
                .ok_or_else(|| unsafe_name(&upload.subfolder))?,
        )
    };
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(|e| ApiError::io("your folder", e))?;
    if !paths::parent_stays_inside(&root, &dir.join("x")).await {
        return Err(unsafe_name(&upload.subfolder));
    }
    let lock = front.user_lock(&user.name);
    let _held = lock.lock().await;
    let path = place(&dir, &file_name, &bytes, upload.overwrite).await;
    super::write_atomic(&path, bytes).await?;
    let stored = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(&file_name)
        .to_string();
    tracing::info!(user = %user.name, file = %stored, "upload stored");
    Ok(Json(json!({
        "name": stored,
        "subfolder": upload.subfolder,
        "type": if upload.kind.is_empty() { "input" } else { upload.kind.as_str() },
    })))
}

/// `POST /api/upload/image` (multipart: `image`, `subfolder`, `type`, `overwrite`).
async fn upload_image(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    form: Multipart,
) -> Result<Json<Value>, ApiError> {
    let mut upload = read_form(&front, form).await?;
    sniff(&front, &upload.bytes)?;
    let bytes = std::mem::take(&mut upload.bytes);
    store(&front, &user, &upload, bytes).await
}

/// `POST /api/upload/mask`: the mask's alpha onto `original_ref`'s image.
async fn upload_mask(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    form: Multipart,
) -> Result<Json<Value>, ApiError> {
    let mut upload = read_form(&front, form).await?;
    sniff(&front, &upload.bytes)?;
    let original = upload
        .original_ref
        .clone()
        .ok_or_else(|| ApiError::BadRequest("a mask needs original_ref".into()))?;
    let field = |key: &str| {
        original
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (name, subfolder, kind) = (field("filename"), field("subfolder"), field("type"));
    let root = folder(&front, &user, &kind)?;
    let path = paths::join_plain(&root, &subfolder, &name).ok_or_else(|| unsafe_name(&name))?;
    let real = paths::existing_file_inside(&root, &path)
        .await
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{name}: the original image is not yours or is gone"
            ))
        })?;
    let original_bytes = tokio::fs::read(&real)
        .await
        .map_err(|e| ApiError::io(&name, e))?;
    let mask = std::mem::take(&mut upload.bytes);
    let png = tokio::task::spawn_blocking(move || composite(&original_bytes, &mask))
        .await
        .map_err(|e| ApiError::Unavailable(format!("applying the mask: {e}")))??;
    store(&front, &user, &upload, png).await
}

/// ComfyUI's mask rule: the original's colours, the mask's alpha (resized
/// to the original), as a PNG.
fn composite(original: &[u8], mask: &[u8]) -> Result<Vec<u8>, ApiError> {
    let decode = |bytes: &[u8], what: &str| {
        image::load_from_memory(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the {what} cannot be read: {e}")))
    };
    let mut base = decode(original, "original image")?.to_rgba8();
    let mask = decode(mask, "mask")?.to_rgba8();
    let mask = if mask.dimensions() != base.dimensions() {
        image::imageops::resize(
            &mask,
            base.width(),
            base.height(),
            image::imageops::FilterType::Triangle,
        )
    } else {
        mask
    };
    for (pixel, m) in base.pixels_mut().zip(mask.pixels()) {
        pixel.0[3] = m.0[3];
    }
    let mut out = std::io::Cursor::new(Vec::new());
    base.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ApiError::Unavailable(format!("encoding the masked image: {e}")))?;
    Ok(out.into_inner())
}
