//! `comfyume worker`: the sidecar that runs inside a GPU container beside
//! ComfyUI.
//!
//! Why it exists: Verda's load balancer is not sticky, so a `POST /prompt`
//! and the `GET /history` that follows can land on different replicas and
//! the result is lost. The worker turns a whole job into **one** request:
//! `POST /run` uploads the inputs to the local ComfyUI, submits the prompt,
//! follows it to the end through the same client the host uses, downloads
//! the outputs and answers with all of them in one response.
//!
//! Health (`GET /health`): 503 `starting` until the local ComfyUI has
//! answered once and, when the worker supervises ComfyUI, while it or the
//! model files are not ready (see [`supervise`]) — Verda routes requests
//! only to a replica whose health check answers 200, so none reaches a
//! replica that would fail it; 200 `healthy` when idle, 200 `busy` while a
//! job runs, 503 `draining` after SIGTERM (the container is being stopped:
//! the load balancer must send no new work; runs in flight finish, then the
//! worker exits). `GET /object_info` passes ComfyUI's node catalogue through,
//! so the host sees the model files really present on the image.
//! `docs/worker.md` is the contract for whoever builds the GPU image.

mod callback;
mod run;
pub mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::dispatch::comfyui::client::{ClientLimits, ComfyClient};

pub use run::{RunCallback, RunInput, RunOutput, RunRequest, RunResponse};

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The local ComfyUI.
    pub comfyui_url: String,
    /// The local ComfyUI's input folder, where each job's inputs land under
    /// `comfyume/<prompt id>/`: removed after the job when known (ComfyUI
    /// has no call to delete an input).
    pub comfyui_input_dir: Option<std::path::PathBuf>,
    /// How long one job may take.
    pub job_wait: Duration,
    /// Largest request body (prompt plus inputs), in bytes.
    pub max_request_bytes: usize,
    /// ComfyUI client limits (request timeout, poll interval, output cap).
    pub client: ClientLimits,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            comfyui_url: "http://127.0.0.1:8188".into(),
            comfyui_input_dir: None,
            job_wait: Duration::from_secs(600),
            max_request_bytes: 64 << 20,
            client: ClientLimits::default(),
        }
    }
}

/// Shared worker state.
pub struct Worker {
    config: WorkerConfig,
    client: ComfyClient,
    /// The ComfyUI client id of every run: one socket for all of them
    /// (ComfyUI keeps one per client id).
    client_id: String,
    running: AtomicUsize,
    draining: AtomicBool,
    /// Set when the worker supervises ComfyUI (`supervise`).
    readiness: std::sync::OnceLock<Arc<supervise::Readiness>>,
    /// The local ComfyUI has answered once.
    ready: AtomicBool,
}

impl Worker {
    /// A worker for the ComfyUI at `config.comfyui_url`.
    pub fn new(config: WorkerConfig) -> anyhow::Result<Arc<Self>> {
        let client = ComfyClient::new(&config.comfyui_url, config.client)?;
        Ok(Arc::new(Worker {
            config,
            client,
            client_id: format!("comfyume-worker-{}", uuid::Uuid::new_v4().simple()),
            running: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            readiness: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        }))
    }

    /// The worker's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/run", post(run::run))
            .route("/health", get(health))
            .route("/object_info", get(object_info))
            .layer(DefaultBodyLimit::max(self.config.max_request_bytes))
            .with_state(self.clone())
    }

    /// Stops taking work: `/health` answers 503 and `/run` refuses.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Jobs in flight.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Serves on `listener` until `shutdown` resolves, then drains: waits
    /// for the runs in flight to answer before returning.
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let worker = self.clone();
        let drained = async move {
            shutdown.await;
            worker.drain();
            tracing::info!("draining: finishing {} job(s) in flight", worker.running());
            while worker.running() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        axum::serve(crate::server::no_delay(listener), self.router())
            .with_graceful_shutdown(drained)
            .await
    }
}

async fn health(State(w): State<Arc<Worker>>) -> Response {
    if w.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining", "running": w.running()})),
        )
            .into_response();
    }
    // A supervised ComfyUI has its own readiness (it answered, the models
    // are in place); otherwise any answer of ComfyUI's queue endpoint will
    // do: it is up and serving.
    if let Some(readiness) = w.readiness.get() {
        if let Some(reason) = readiness.not_ready() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "starting", "reason": reason, "running": w.running()})),
            )
                .into_response();
        }
    } else if !w.ready.load(Ordering::SeqCst) {
        match w
            .client
            .in_queue("00000000-0000-0000-0000-000000000000")
            .await
        {
            Ok(_) => w.ready.store(true, Ordering::SeqCst),
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"status": "starting", "running": 0, "reason": e.to_string()})),
                )
                    .into_response();
            }
        }
    }
    let status = if w.running() > 0 { "busy" } else { "healthy" };
    Json(json!({"status": status, "running": w.running()})).into_response()
}

async fn object_info(State(w): State<Arc<Worker>>) -> Response {
    match w.client.object_info().await {
        Ok(catalogue) => Json(catalogue).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `comfyume worker`: serve until SIGTERM or Ctrl-C, then drain.
pub async fn main(listen: SocketAddr, config: WorkerConfig) -> anyhow::Result<()> {
    let worker = Worker::new(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, comfyui = %worker.config.comfyui_url, "worker listening");
    worker
        .serve(listener, crate::server::shutdown_signal())
        .await?;
    Ok(())
}
