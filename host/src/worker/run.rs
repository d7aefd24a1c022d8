//! `POST /run`: one job, start to finish, in one request.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Worker;
use crate::dispatch::comfyui::client::ClientError;
use crate::dispatch::comfyui::protocol::Outcome;

/// An input file the prompt references (a `LoadImage` value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInput {
    /// The name the prompt uses.
    pub name: String,
    /// Sub folder of ComfyUI's input folder (`""` for none).
    #[serde(default)]
    pub subfolder: String,
    /// The bytes, base64.
    pub data_base64: String,
}

/// `POST /run` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// The job's prompt id (a lowercase UUID), kept by ComfyUI.
    pub prompt_id: String,
    /// The API-format graph.
    pub prompt: Value,
    /// Passed through to ComfyUI.
    #[serde(default)]
    pub extra_data: Option<Value>,
    /// Inputs to upload first.
    #[serde(default)]
    pub inputs: Vec<RunInput>,
    /// How long the job may run, as the host counts it (the worker's own
    /// setting applies when absent), so no layer gives up before another.
    #[serde(default)]
    pub job_wait_secs: Option<u64>,
    /// Where to report progress and learn of a cancel.
    #[serde(default)]
    pub callback: Option<RunCallback>,
}

/// The host's progress callback for this job (see `docs/worker.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunCallback {
    /// `POST` progress here.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String,
}

/// One output file, inline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunOutput {
    /// The node that produced it.
    pub node_id: String,
    /// File name.
    pub filename: String,
    /// Sub folder.
    pub subfolder: String,
    /// `output` or `temp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Video.
    pub animated: bool,
    /// The bytes, base64.
    pub data_base64: String,
}

/// `POST /run` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResponse {
    /// The prompt id.
    pub prompt_id: String,
    /// `success`, `error` (the prompt failed), `refused` (ComfyUI refused
    /// it) or `retry` (this replica could not run it: draining, its ComfyUI
    /// unreachable or restarted under the job; run it elsewhere). Verda's
    /// `/result` is documented to return the body only, so every signal
    /// the host acts on is here, not just in the HTTP status.
    pub status: String,
    /// Why, when not `success`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Milliseconds spent running, as the worker measured.
    pub run_ms: u64,
    /// The outputs.
    #[serde(default)]
    pub outputs: Vec<RunOutput>,
}

fn answer(
    status: StatusCode,
    prompt_id: &str,
    kind: &str,
    reason: Option<String>,
    started: Instant,
    outputs: Vec<RunOutput>,
) -> (StatusCode, Json<RunResponse>) {
    let response = RunResponse {
        prompt_id: prompt_id.to_string(),
        status: kind.to_string(),
        reason,
        run_ms: started.elapsed().as_millis() as u64,
        outputs,
    };
    (status, Json(response))
}

/// Removes a job's inputs from ComfyUI's input folder when dropped (the
/// run ended, however it ended): they were the attendee's files, and no
/// later job may read them.
struct JobInputs(Option<std::path::PathBuf>);

impl Drop for JobInputs {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a job's inputs")
                }
            });
        }
    }
}

/// Counts a run as in flight for as long as it lives.
struct InFlight(Arc<Worker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the job; answers 200 with the outcome, 4xx for a bad request, and
/// `retry` in the body with 503 while draining, 502 when the local ComfyUI
/// cannot be reached or lost the prompt.
pub async fn run(
    State(w): State<Arc<Worker>>,
    Json(req): Json<RunRequest>,
) -> (StatusCode, Json<RunResponse>) {
    let started = Instant::now();
    let id = req.prompt_id.as_str();
    if w.draining.load(Ordering::SeqCst) {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            "retry",
            Some("this replica is draining".into()),
            started,
            vec![],
        );
    }
    if !crate::queue::is_prompt_id(id) {
        return answer(
            StatusCode::BAD_REQUEST,
            id,
            "refused",
            Some("prompt_id must be a lowercase UUID".into()),
            started,
            vec![],
        );
    }
    w.running.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(w.clone());
    // `id` is a UUID (checked above): the folder is a plain one inside.
    let _inputs = JobInputs(
        w.config
            .comfyui_input_dir
            .as_ref()
            .map(|dir| dir.join(crate::dispatch::inputs::JOBS_FOLDER).join(id)),
    );
    let client = &w.client;
    for input in &req.inputs {
        let Ok(bytes) = BASE64.decode(&input.data_base64) else {
            return answer(
                StatusCode::BAD_REQUEST,
                id,
                "refused",
                Some(format!("input {:?} is not base64", input.name)),
                started,
                vec![],
            );
        };
        if let Err(e) = client.upload(&input.name, &input.subfolder, bytes).await {
            return answer(
                StatusCode::BAD_GATEWAY,
                id,
                "retry",
                Some(format!("uploading {}: {e}", input.name)),
                started,
                vec![],
            );
        }
    }
    let client_id = w.client_id.as_str();
    match client
        .submit(&req.prompt, id, client_id, req.extra_data.as_ref())
        .await
    {
        Ok(_) => {}
        Err(ClientError::Rejected(r)) => {
            return answer(
                StatusCode::OK,
                id,
                "refused",
                Some(format!("ComfyUI refused the prompt: {}", r.error.message)),
                started,
                vec![],
            );
        }
        Err(e) => {
            return answer(
                StatusCode::BAD_GATEWAY,
                id,
                "retry",
                Some(format!("ComfyUI could not take the prompt: {e}")),
                started,
                vec![],
            );
        }
    }
    let job_wait = req
        .job_wait_secs
        .map(std::time::Duration::from_secs)
        .unwrap_or(w.config.job_wait);
    let reporter = req
        .callback
        .as_ref()
        .map(|callback| super::callback::Reporter::start(callback.clone(), client.clone(), id));
    let followed = client
        .follow(id, client_id, job_wait, |value, max| {
            if let Some(reporter) = &reporter {
                reporter.progress(value, max);
            }
        })
        .await;
    drop(reporter);
    let outcome = match followed {
        Ok(outcome) => outcome,
        Err(e) => {
            // A ComfyUI that restarted under the prompt lost the work, as a
            // reclaimed replica does: a 502 has the host run it again.
            let (status, kind) = match e {
                ClientError::Forgotten(_) => (StatusCode::BAD_GATEWAY, "retry"),
                _ => (StatusCode::OK, "error"),
            };
            return answer(status, id, kind, Some(e.to_string()), started, vec![]);
        }
    };
    match outcome {
        Outcome::Success(nodes) => {
            let mut outputs = Vec::new();
            for (node, output) in &nodes {
                for (file, animated) in output.files() {
                    match client.download(file).await {
                        Ok(bytes) => outputs.push(RunOutput {
                            node_id: node.clone(),
                            filename: file.filename.clone(),
                            subfolder: file.subfolder.clone(),
                            kind: file.kind.clone(),
                            animated,
                            data_base64: BASE64.encode(bytes),
                        }),
                        Err(e) => {
                            return answer(
                                StatusCode::OK,
                                id,
                                "error",
                                Some(e.to_string()),
                                started,
                                vec![],
                            );
                        }
                    }
                }
            }
            answer(StatusCode::OK, id, "success", None, started, outputs)
        }
        Outcome::Failed(reason) => {
            answer(StatusCode::OK, id, "error", Some(reason), started, vec![])
        }
        Outcome::Pending => answer(
            StatusCode::OK,
            id,
            "error",
            Some("no result".into()),
            started,
            vec![],
        ),
    }
}
