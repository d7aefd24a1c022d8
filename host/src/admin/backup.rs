//! Backups: every attendee's outputs and the job history, copied to an
//! S3-compatible bucket (Cloudflare R2 in production).
//!
//! Policy:
//! - What: each file under `<data>/users/<user>/output/` as
//!   `<prefix>/outputs/<user>/<path>`, and every job (all states, with its
//!   history) as one JSON line each in `<prefix>/history/jobs-<time>.jsonl`
//!   plus `<prefix>/history/latest.jsonl`. Passwords and the users file are
//!   never copied.
//! - Incremental: an output already in the bucket with the same size is not
//!   sent again (outputs are written once under a unique name), so a backup
//!   every half hour costs only what is new.
//! - When: every `backup.interval_minutes` (0: never on its own) and on
//!   demand (`POST /admin/api/backups`); one at a time per host. Large files
//!   go up in parts (object_store's buffered multipart writer), so memory
//!   stays flat.
//! - The last result (counts, bytes, timings, or the error) is kept for
//!   `GET /admin/api/backups` and logged; a failed backup never touches the
//!   workshop, it is reported and tried again at the next interval.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use futures_util::StreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::Admin;
use crate::config::BackupConfig;
use crate::front::ApiError;

/// What one backup did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct BackupReport {
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: u64,
    /// Output files sent.
    pub uploaded: u64,
    /// Output files already in the bucket.
    pub skipped: u64,
    /// Bytes of output files sent.
    pub bytes: u64,
    /// Jobs in the history file.
    pub history_jobs: u64,
    /// Why it stopped, if it failed.
    pub error: Option<String>,
}

/// The host's backups: the bucket, whether one runs, the last result.
#[derive(Default)]
pub struct Backups {
    running: AtomicBool,
    last: Mutex<Option<BackupReport>>,
}

fn now_ms() -> u64 {
    crate::queue::system_clock().now_ms()
}

fn bucket(config: &BackupConfig) -> Result<Arc<dyn ObjectStore>, String> {
    let name = config
        .bucket
        .as_deref()
        .ok_or("no backup.bucket configured")?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(name)
        .with_region(&config.region);
    if let Some(endpoint) = &config.endpoint {
        // Plain http only for a local S3 (tests, a MinIO on the same box).
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &config.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    crate::tls::install_provider();
    Ok(Arc::new(
        builder.build().map_err(|e| format!("the bucket: {e}"))?,
    ))
}

/// Every file under `dir`, with its path relative to `dir` (`/`-joined).
/// Symlinks are not followed: only what the host wrote is copied.
fn files_under(dir: &Path) -> Vec<(PathBuf, String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                stack.push((entry.path(), relative));
            } else if kind.is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found.push((entry.path(), relative, size));
            }
        }
    }
    found
}

/// Runs one backup to the end; the report says what happened.
async fn run(admin: &Admin) -> BackupReport {
    let mut report = BackupReport {
        started_at_ms: now_ms(),
        ..BackupReport::default()
    };
    if let Err(error) = copy(admin, &mut report).await {
        tracing::warn!(%error, "backup failed");
        report.error = Some(error);
    } else {
        tracing::info!(
            uploaded = report.uploaded,
            skipped = report.skipped,
            bytes = report.bytes,
            jobs = report.history_jobs,
            "backup done"
        );
    }
    report.finished_at_ms = now_ms();
    report
}

async fn copy(admin: &Admin, report: &mut BackupReport) -> Result<(), String> {
    let config = &admin.state.config.backup;
    let store = bucket(config)?;
    let prefix = config.prefix.trim_matches('/').to_string();
    let data_dir = admin.state.config.server.data_dir.clone();
    let users = admin.users().await.map_err(|e| e.to_string())?;
    // What the bucket has already, by key and size.
    let mut present = std::collections::HashMap::new();
    let mut listing = store.list(Some(&ObjectPath::from(format!("{prefix}/outputs"))));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| format!("listing the bucket: {e}"))?;
        present.insert(meta.location.to_string(), meta.size);
    }
    for user in &users.users {
        let Some(root) = crate::dispatch::outputs::user_output_dir(&data_dir, &user.name) else {
            continue;
        };
        let files = tokio::task::spawn_blocking(move || files_under(&root))
            .await
            .map_err(|e| e.to_string())?;
        for (path, relative, size) in files {
            let key = format!("{prefix}/outputs/{}/{relative}", user.name);
            if present.get(&key) == Some(&size) {
                report.skipped += 1;
                continue;
            }
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("opening {}: {e}", path.display()))?;
            let mut upload = object_store::buffered::BufWriter::new(
                store.clone(),
                ObjectPath::from(key.as_str()),
            );
            let sent = tokio::io::copy(&mut file, &mut upload)
                .await
                .map_err(|e| format!("sending {key}: {e}"))?;
            upload
                .shutdown()
                .await
                .map_err(|e| format!("finishing {key}: {e}"))?;
            report.uploaded += 1;
            report.bytes += sent;
        }
    }
    // The history: every job, one JSON line each.
    let mut lines = Vec::new();
    for user in &users.users {
        for job in super::costs::every_job_of(admin, &user.name)
            .await
            .map_err(|e| format!("reading the jobs: {e}"))?
        {
            serde_json::to_writer(&mut lines, &job).map_err(|e| e.to_string())?;
            lines.push(b'\n');
            report.history_jobs += 1;
        }
    }
    let lines = bytes::Bytes::from(lines);
    for name in [
        format!("jobs-{}.jsonl", report.started_at_ms),
        "latest.jsonl".into(),
    ] {
        let key = ObjectPath::from(format!("{prefix}/history/{name}"));
        store
            .put(&key, lines.clone().into())
            .await
            .map_err(|e| format!("writing {key}: {e}"))?;
    }
    Ok(())
}

/// Runs a backup unless one is running; `None` if one was.
async fn run_once(admin: &Admin) -> Option<BackupReport> {
    if admin.backups.running.swap(true, Ordering::AcqRel) {
        return None;
    }
    let report = run(admin).await;
    *admin.backups.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
    admin.backups.running.store(false, Ordering::Release);
    Some(report)
}

fn configured(admin: &Admin) -> bool {
    admin.state.config.backup.bucket.is_some()
}

#[utoipa::path(get, path = "/admin/api/backups", operation_id = "backup_status", tag = "backups",
    responses((status = 200, description = "`{configured, bucket, prefix, interval_minutes, running, last}`", body = Object))
)]
/// `GET /admin/api/backups`: the setup and the last result.
pub(super) async fn status(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let config = &admin.state.config.backup;
    Json(json!({
        "configured": configured(&admin),
        "bucket": config.bucket,
        "prefix": config.prefix,
        "interval_minutes": config.interval_minutes,
        "running": admin.backups.running.load(Ordering::Acquire),
        "last": *admin.backups.last.lock().unwrap_or_else(|p| p.into_inner()),
    }))
}

#[utoipa::path(post, path = "/admin/api/backups", operation_id = "backup_now", tag = "backups",
    responses(
        (status = 200, description = "The backup's report", body = BackupReport),
        (status = 409, description = "No bucket configured, or a backup is running", body = super::openapi::ApiErrorBody),
        (status = 502, description = "The bucket refused or failed: the report with its error", body = BackupReport),
    )
)]
/// `POST /admin/api/backups`: back up now; answers with the report (502
/// with the report when the bucket refused).
pub(super) async fn now(
    State(admin): State<Arc<Admin>>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    if !configured(&admin) {
        return Err(ApiError::Conflict(
            "no backup.bucket configured: set [backup] in the configuration".into(),
        ));
    }
    let Some(report) = run_once(&admin).await else {
        return Err(ApiError::Conflict("a backup is running already".into()));
    };
    let status = if report.error.is_some() {
        axum::http::StatusCode::BAD_GATEWAY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(json!(report))))
}

/// Backs up every `backup.interval_minutes` while the host runs.
pub async fn backup_loop(admin: Arc<Admin>) {
    let minutes = admin.state.config.backup.interval_minutes;
    if !configured(&admin) || minutes == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(minutes * 60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // not at start: the first one after an interval
    loop {
        tick.tick().await;
        run_once(&admin).await;
    }
}
