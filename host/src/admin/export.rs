//! The end-of-day export: one zip of every attendee's outputs with a JSON
//! manifest, streamed.
//!
//! Policy: only files the job store records as a succeeded job's outputs
//! are exported, each resolved inside its owner's output folder (a name
//! that escapes it, or a file deleted since, is listed under `missing`,
//! never followed). The zip is written while it downloads (stored, not
//! recompressed: images and videos are compressed already), so memory stays
//! flat whatever the day produced; `manifest.json` comes last and names,
//! per job, the attendee, prompt id, workflow kind, pool, timings and the
//! files. `GET /admin/api/export/status` shows the progress of the export
//! running now (or the last one). One export at a time per host.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Admin;
use crate::dispatch::outputs::user_output_dir;
use crate::front::ApiError;
use crate::queue::JobState;

/// How far the current (or last) export got.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ExportProgress {
    /// An export is streaming now.
    pub running: bool,
    /// Files to write.
    pub files_total: usize,
    /// Files written so far.
    pub files_done: usize,
    /// Bytes of file content written so far.
    pub bytes: u64,
    /// Why the last export stopped early (e.g. the download was abandoned).
    pub error: Option<String>,
    /// When the last export ended (ms since the Unix epoch); none: no
    /// export has ended on this host yet.
    pub finished_at_ms: Option<u64>,
}

/// The export's shared progress.
#[derive(Default)]
pub struct Exports {
    progress: Mutex<ExportProgress>,
}

impl Exports {
    fn update(&self, change: impl FnOnce(&mut ExportProgress)) {
        change(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Marks an export as running, unless one already is.
    fn try_start(&self) -> bool {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if progress.running {
            return false;
        }
        *progress = ExportProgress {
            running: true,
            ..ExportProgress::default()
        };
        true
    }

    fn get(&self) -> ExportProgress {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One file to put in the zip.
struct Entry {
    path: PathBuf,
    name: String,
}

/// What goes in: the files and the manifest.
async fn collect(admin: &Admin) -> Result<(Vec<Entry>, Vec<Value>), ApiError> {
    let data_dir = admin.state.config.server.data_dir.clone();
    let users = admin.users().await?;
    let (mut entries, mut manifest) = (Vec::new(), Vec::new());
    for user in &users.users {
        let Some(root) = user_output_dir(&data_dir, &user.name) else {
            continue;
        };
        let mut jobs = super::costs::every_job_of(admin, &user.name).await?;
        jobs.retain(|j| j.state == JobState::Succeeded);
        jobs.sort_by_key(|j| j.id);
        for job in jobs {
            let (mut files, mut missing) = (Vec::new(), Vec::new());
            for output in job.outputs.iter().filter(|o| o.kind == "output") {
                let found =
                    match crate::paths::join_plain(&root, &output.subfolder, &output.filename) {
                        Some(path) => crate::paths::existing_file_inside(&root, &path).await,
                        None => None,
                    };
                let relative = if output.subfolder.is_empty() {
                    output.filename.clone()
                } else {
                    format!("{}/{}", output.subfolder, output.filename)
                };
                match found {
                    Some(path) => {
                        let name = format!("{}/{relative}", user.name);
                        files.push(name.clone());
                        entries.push(Entry { path, name });
                    }
                    None => missing.push(relative),
                }
            }
            let started = job
                .history
                .iter()
                .find(|t| t.state == JobState::Leased)
                .map(|t| t.at_ms);
            manifest.push(json!({
                "user": job.user,
                "job": job.id,
                "prompt_id": job.prompt_id,
                "workflow_kind": job.workflow_kind,
                "pool": job.backend.as_ref().map(|b| b.pool.clone()),
                "submitted_at_ms": job.created_at_ms,
                "started_at_ms": started,
                "finished_at_ms": job.updated_at_ms,
                "gpu_seconds": job.gpu_seconds,
                "files": files,
                "missing": missing,
            }));
        }
    }
    Ok((entries, manifest))
}

/// A `Write` that hands 64 KiB chunks to the response body; fails once
/// the client has gone, which stops the export.
struct ToBody {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ToBody {
    const CHUNK: usize = 64 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was abandoned")
        })
    }
}

impl Write for ToBody {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes the zip (blocking: file reads and the zip writer are sync).
fn write_zip(
    entries: Vec<Entry>,
    manifest: Vec<Value>,
    out: ToBody,
    exports: &Exports,
) -> Result<(), String> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new_stream(out);
    for entry in &entries {
        let mut file =
            std::fs::File::open(&entry.path).map_err(|e| format!("opening {}: {e}", entry.name))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size >= u32::MAX as u64);
        zip.start_file(entry.name.as_str(), options)
            .map_err(|e| format!("adding {}: {e}", entry.name))?;
        let written = std::io::copy(&mut file, &mut zip)
            .map_err(|e| format!("writing {}: {e}", entry.name))?;
        exports.update(|p| {
            p.files_done += 1;
            p.bytes += written;
        });
    }
    let manifest = serde_json::to_vec_pretty(&json!({
        "exported_at_ms": crate::queue::system_clock().now_ms(),
        "jobs": manifest,
    }))
    .map_err(|e| e.to_string())?;
    zip.start_file(
        "manifest.json",
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated),
    )
    .map_err(|e| format!("adding the manifest: {e}"))?;
    zip.write_all(&manifest)
        .map_err(|e| format!("writing the manifest: {e}"))?;
    let mut out = zip.finish().map_err(|e| format!("closing the zip: {e}"))?;
    out.flush().map_err(|e| format!("sending the zip: {e}"))
}

#[utoipa::path(get, path = "/admin/api/export", operation_id = "export_outputs", tag = "export",
    responses(
        (status = 200, description = "A zip of every succeeded job's outputs with `manifest.json` last, streamed; `x-comfyume-export-files` gives the file count", content_type = "application/zip", body = super::openapi::Binary),
        (status = 409, description = "An export is already running", body = super::openapi::ApiErrorBody),
    )
)]
/// `GET /admin/api/export`: the zip, streamed.
pub(super) async fn export(State(admin): State<Arc<Admin>>) -> Result<Response, ApiError> {
    if !admin.exports.try_start() {
        return Err(ApiError::Conflict(
            "an export is already running; see /admin/api/export/status".into(),
        ));
    }
    let (entries, manifest) = match collect(&admin).await {
        Ok(found) => found,
        Err(error) => {
            admin.exports.update(|p| {
                p.running = false;
                p.error = Some(error.to_string());
            });
            return Err(error);
        }
    };
    let total = entries.len();
    admin.exports.update(|p| p.files_total = total);
    tracing::info!(
        files = total,
        jobs = manifest.len(),
        "operator started the outputs export"
    );
    let (tx, rx) = mpsc::channel(4);
    let writer = ToBody {
        tx: tx.clone(),
        buffer: Vec::with_capacity(ToBody::CHUNK),
    };
    let worker = admin.clone();
    tokio::task::spawn_blocking(move || {
        let result = write_zip(entries, manifest, writer, &worker.exports);
        if let Err(error) = &result {
            tracing::warn!(%error, "the outputs export stopped");
            // The client sees a broken download rather than a short zip.
            let _ = tx.blocking_send(Err(std::io::Error::other(error.clone())));
        }
        worker.exports.update(|p| {
            p.running = false;
            p.error = result.err();
            p.finished_at_ms = Some(crate::queue::system_clock().now_ms());
        });
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let name = format!(
        "comfyume-outputs-{}.zip",
        crate::queue::system_clock().now_ms() / 1000
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::HeaderName::from_static("x-comfyume-export-files"),
                total.to_string(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(get, path = "/admin/api/export/status", operation_id = "export_status", tag = "export",
    responses((status = 200, description = "The running (or last) export's progress", body = ExportProgress))
)]
/// `GET /admin/api/export/status`.
pub(super) async fn status(State(admin): State<Arc<Admin>>) -> axum::Json<ExportProgress> {
    axum::Json(admin.exports.get())
}
