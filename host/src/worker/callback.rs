//! The worker's side of the host's progress callback.
//!
//! While a job runs, the worker POSTs `{"prompt_id","value","max"}` to the
//! callback URL with the job's bearer token: at most twice a second while
//! steps advance, and every `HEARTBEAT` while nothing does (model loading),
//! so a cancel reaches the GPU within seconds either way. An answer
//! `{"cancel": true}` interrupts the job on the local ComfyUI once.
//! A callback that fails is logged and ignored: progress is a courtesy, the
//! job's result travels in the `/run` answer.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::run::RunCallback;
use crate::dispatch::comfyui::client::ComfyClient;

/// Between two reports when no step advanced.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// Between two reports at most.
const MIN_GAP: Duration = Duration::from_millis(500);

/// Reports one job's progress until dropped.
pub struct Reporter {
    steps: watch::Sender<(u32, u32)>,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// Starts reporting for `prompt_id`; interrupts it on ComfyUI when the
    /// host answers `cancel`.
    pub fn start(callback: RunCallback, comfy: ComfyClient, prompt_id: &str) -> Self {
        let (steps, mut changed) = watch::channel((0u32, 0u32));
        let prompt_id = prompt_id.to_string();
        let task = tokio::spawn(async move {
            crate::tls::install_provider();
            let http = match reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
            {
                Ok(http) => http,
                Err(e) => {
                    tracing::warn!(error = %e, "no progress callback client");
                    return;
                }
            };
            let mut cancelled = false;
            loop {
                let (value, max) = *changed.borrow_and_update();
                let answer = http
                    .post(&callback.url)
                    .bearer_auth(&callback.token)
                    .json(&json!({"prompt_id": prompt_id, "value": value, "max": max}))
                    .send()
                    .await;
                let cancel = match answer {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("cancel").and_then(Value::as_bool))
                        .unwrap_or(false),
                    Ok(r) => {
                        tracing::debug!(status = %r.status(), "progress callback refused");
                        false
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "progress callback failed");
                        false
                    }
                };
                if cancel && !cancelled {
                    cancelled = true;
                    tracing::info!(%prompt_id, "the host cancelled the job; interrupting");
                    if let Err(e) = comfy.cancel(&prompt_id).await {
                        tracing::warn!(error = %e, "could not interrupt the job");
                    }
                }
                tokio::time::sleep(MIN_GAP).await;
                let _ = tokio::time::timeout(HEARTBEAT, changed.changed()).await;
            }
        });
        Reporter { steps, task }
    }

    /// A step advanced.
    pub fn progress(&self, value: u32, max: u32) {
        let _ = self.steps.send((value, max));
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
