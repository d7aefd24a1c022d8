//! `/api/view` and the uploads: the attendee's own images and videos.
//!
//! Policy:
//! - `type=input` is `users/<name>/input`; `output` and `temp` are
//!   `users/<name>/output` (the dispatcher stores both there). Names and sub
//!   folders are plain relative paths ([`crate::paths`]); anything else is a
//!   400; a file that is not the caller's is a 404, the same as a missing
//!   one. Files are served with ranges (video scrubbing), `nosniff`, a CSP
//!   that lets a file opened as a page do nothing, and their own name. The
//!   content type comes from the file's first bytes ([`served_type`]), never
//!   from its name: images, videos and audio show inline, anything else
//!   (an `x.html`, say) is `application/octet-stream` and an attachment.
//! - Uploads are streamed to disk and checked as they come
//!   ([`super::upload`]): sniffed from their first bytes (PNG, JPEG, WebP,
//!   GIF), never trusted from the name or the declared type, capped in
//!   bytes (`attendees.max_upload_mib`; a declared length over it is
//!   refused before reading) and in pixels
//!   (`attendees.max_upload_megapixels`), checked whole, within the
//!   attendee's quota and the disk's watermark. Names (and folders) are at
//!   most 200 bytes (400). They land in the caller's folder and travel to
//!   the GPU with the jobs that load them ([`crate::dispatch::inputs`]).
//! - A second upload of the same name keeps the first file: identical bytes
//!   answer with the same name, different bytes get `name (1).png`, unless
//!   `overwrite=true`.
//! - `/api/upload/mask` applies the mask's alpha to the original image (as
//!   ComfyUI does) and stores the result as a PNG.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest as _, Multipart, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use super::{ApiError, Front, upload};
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
    let (mime, inline) = served_type(&head_of(&real).await);
    let mime: mime_guess::Mime = mime
        .parse()
        .unwrap_or(mime_guess::mime::APPLICATION_OCTET_STREAM);
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
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_POLICY),
    );
    let disposition = if inline { "inline" } else { "attachment" };
    // Only a plain ASCII name goes in the header; anything else is the
    // browser's to name.
    let name: String = query
        .filename
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(response)
}

/// What a served file may do if a browser opens it as a page: nothing.
/// (Images and videos display without any of it.)
const FILE_POLICY: &str = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox";

/// The first bytes of a file (fewer if it is shorter or unreadable).
async fn head_of(path: &FsPath) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::with_capacity(64);
    if let Ok(file) = tokio::fs::File::open(path).await {
        let _ = file.take(64).read_to_end(&mut head).await;
    }
    head
}

/// The content type a file is served with, from its first bytes, never
/// from its name, and whether it may show inline: images, videos and audio
/// the editor previews; anything else is a download.
pub fn served_type(head: &[u8]) -> (&'static str, bool) {
    use imagesize::ImageType;
    let image = match imagesize::image_type(head) {
        Ok(ImageType::Png) => Some("image/png"),
        Ok(ImageType::Jpeg) => Some("image/jpeg"),
        Ok(ImageType::Webp) => Some("image/webp"),
        Ok(ImageType::Gif) => Some("image/gif"),
        _ => None,
    };
    if let Some(mime) = image {
        return (mime, true);
    }
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let media = if at(4, b"ftyp") {
        Some("video/mp4")
    } else if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        Some("video/webm")
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Some("audio/wav")
    } else if at(0, b"fLaC") {
        Some("audio/flac")
    } else if at(0, b"OggS") {
        Some("audio/ogg")
    } else if at(0, b"ID3") || at(0, &[0xff, 0xfb]) {
        Some("audio/mpeg")
    } else {
        None
    };
    media.map_or(("application/octet-stream", false), |mime| (mime, true))
}

/// One upload, as read from the form; the file is on disk already.
#[derive(Default)]
struct Upload {
    name: String,
    file: Option<upload::Received>,
    subfolder: String,
    kind: String,
    overwrite: bool,
    original_ref: Option<Value>,
}

/// Refuses an upload before its body is read: a declared length over the
/// cap, a full disk, an attendee at their quota.
async fn before_reading(
    front: &Front,
    user: &Identity,
    request: Request,
) -> Result<Multipart, ApiError> {
    let declared = super::body::declared_length(request.headers()).unwrap_or(0);
    let cap = (front.limits.max_upload_mib as u64) * 1024 * 1024 + FORM_ROOM;
    if declared > cap {
        super::body::linger(request.into_body(), declared, cap);
        return Err(too_large(front));
    }
    if let Err(refusal) = admissible(front, user, declared).await {
        super::body::linger(request.into_body(), declared, cap);
        return Err(refusal);
    }
    Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("the upload is not a form: {}", e.body_text())))
}

/// The disk's watermark and the attendee's quota, for `declared` more bytes.
async fn admissible(front: &Front, user: &Identity, declared: u64) -> Result<(), ApiError> {
    let dir = front.user_dir(user)?;
    let floor = (front.limits.min_free_disk_mib as u64) << 20;
    if upload::free_bytes(&front.data_dir).is_some_and(|free| free < floor.saturating_add(declared))
    {
        tracing::warn!("upload refused: the data disk is at its watermark");
        return Err(ApiError::Unavailable(
            "the workshop's disk is nearly full, so uploads are paused; tell the workshop staff"
                .into(),
        ));
    }
    let (files, bytes) = upload::usage(&dir.join("input")).await;
    quota(
        front,
        files + 1,
        bytes.saturating_add(declared.saturating_sub(FORM_ROOM)),
    )
}

/// Refuses `files` files of `bytes` in all over the attendee's quota.
fn quota(front: &Front, files: usize, bytes: u64) -> Result<(), ApiError> {
    if files > front.limits.max_upload_files {
        return Err(ApiError::TooMany(format!(
            "you already keep {} uploaded files; that is this workshop's limit",
            front.limits.max_upload_files
        )));
    }
    if bytes > (front.limits.max_upload_total_mib as u64) << 20 {
        return Err(ApiError::TooMany(format!(
            "your uploads would take more than the {} MiB each attendee may keep",
            front.limits.max_upload_total_mib
        )));
    }
    Ok(())
}

/// Room for the multipart framing around the file.
const FORM_ROOM: u64 = 64 * 1024;

async fn read_form(
    front: &Front,
    user: &Identity,
    mut form: Multipart,
) -> Result<Upload, ApiError> {
    let mut upload = Upload {
        kind: "input".into(),
        ..Upload::default()
    };
    let caps = upload::Caps {
        max_bytes: (front.limits.max_upload_mib as u64) * 1024 * 1024,
        max_pixels: u64::from(front.limits.max_upload_megapixels) * 1_000_000,
    };
    let staging = front.user_dir(user)?;
    while let Some(field) = form.next_field().await.map_err(multipart)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" => {
                if upload.file.is_some() {
                    return Err(ApiError::BadRequest("send one file per upload".into()));
                }
                upload.name = field.file_name().unwrap_or("").to_string();
                upload.file = Some(upload::receive(field, &staging, caps).await?);
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
    if upload.file.is_none() {
        return Err(ApiError::BadRequest(
            "no file: send it in a form field named \"image\"".into(),
        ));
    }
    Ok(upload)
}

fn too_large(front: &Front) -> ApiError {
    ApiError::TooLarge(format!(
        "the file is larger than {} MiB",
        front.limits.max_upload_mib
    ))
}

pub(super) fn multipart(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("the upload is too large: {}", error.body_text()))
    } else {
        ApiError::BadRequest(format!(
            "the upload form is malformed: {}",
            error.body_text()
        ))
    }
}

/// Longest name of a file or folder an upload may have, in bytes: room
/// for a ` (999)` suffix under the 255 most filesystems take.
const MAX_NAME: usize = 200;

fn name_too_long(name: &str) -> Option<ApiError> {
    name.split('/').any(|part| part.len() > MAX_NAME).then(|| {
        ApiError::BadRequest(format!(
            "file and folder names are at most {MAX_NAME} bytes; {} is longer",
            name.chars().take(40).collect::<String>() + "…"
        ))
    })
}

/// Moves the received file to the upload's name in the caller's folder.
async fn store(
    front: &Front,
    user: &Identity,
    upload: &Upload,
    received: upload::Received,
) -> Result<Json<Value>, ApiError> {
    let root = folder(front, user, &upload.kind)?;
    let file_name = paths::plain_relative(&upload.name)
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| unsafe_name(&upload.name))?;
    if let Some(refusal) = name_too_long(&file_name).or_else(|| name_too_long(&upload.subfolder)) {
        return Err(refusal);
    }
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
    let (files, bytes) = upload::usage(&front.user_dir(user)?.join("input")).await;
    quota(front, files + 1, bytes.saturating_add(received.size))?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::io("your folder", e))?;
    let path = upload::place(&dir, &file_name, &received, upload.overwrite).await;
    let size = received.size;
    let target = path.clone();
    tokio::task::spawn_blocking(move || received.file.persist(&target))
        .await
        .map_err(|e| ApiError::Unavailable(format!("storing your upload: {e}")))?
        .map_err(|e| ApiError::io("storing your upload", e.error))?;
    let stored = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(&file_name)
        .to_string();
    tracing::info!(user = %user.name, file = ?stored, size, "upload stored");
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
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let form = before_reading(&front, &user, request).await?;
    let mut upload = read_form(&front, &user, form).await?;
    let received = upload.file.take().ok_or_else(upload::not_an_image)?;
    store(&front, &user, &upload, received).await
}

/// `POST /api/upload/mask`: the mask's alpha onto `original_ref`'s image.
async fn upload_mask(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let form = before_reading(&front, &user, request).await?;
    let mut upload = read_form(&front, &user, form).await?;
    let mask_file = upload.file.take().ok_or_else(upload::not_an_image)?;
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
    // Compositing decodes both images (each within the pixel cap checked
    // at upload), so the mask is read whole here.
    let mask = tokio::fs::read(&mask_file.file)
        .await
        .map_err(|e| ApiError::io("your mask", e))?;
    let png = tokio::task::spawn_blocking(move || composite(&original_bytes, &mask))
        .await
        .map_err(|e| ApiError::Unavailable(format!("applying the mask: {e}")))??;
    let received = staged(&front.user_dir(&user)?, png).await?;
    store(&front, &user, &upload, received).await
}

/// `bytes` the host made (a composited mask) as a received upload.
async fn staged(dir: &FsPath, bytes: Vec<u8>) -> Result<upload::Received, ApiError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest as _;
        use std::io::Write as _;
        std::fs::create_dir_all(&dir)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&dir)?;
        temp.write_all(&bytes)?;
        Ok(upload::Received {
            size: bytes.len() as u64,
            sha256: sha2::Sha256::digest(&bytes).into(),
            file: temp.into_temp_path(),
        })
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("storing your mask: {e}")))?
    .map_err(|e: std::io::Error| ApiError::io("storing your mask", e))
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
