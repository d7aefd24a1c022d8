//! A ComfyUI server reached directly: a local GPU box, a dev machine, or the
//! rehearsal backend. The backend job id is our own prompt id.

use std::time::Duration;

use async_trait::async_trait;

use super::backend::{Backend, BackendError, PoolInfo, Submission};
use super::comfyui::client::{ClientError, ComfyClient};
use super::comfyui::protocol::{FileRef, Outcome};

/// The `comfyui` backend kind.
pub struct ComfyBackend {
    info: PoolInfo,
    client: ComfyClient,
}

impl ComfyBackend {
    /// A pool served by the ComfyUI behind `client`.
    pub fn new(info: PoolInfo, client: ComfyClient) -> Self {
        ComfyBackend { info, client }
    }

    /// The ComfyUI client id of this host's jobs on this pool: stable across
    /// restarts of the host (a re-attached job's events come to the new
    /// process) and distinct per pool (two pools on one server must not
    /// share a socket: ComfyUI keeps one per client id).
    fn client_id(&self, host_client_id: &str) -> String {
        format!("{host_client_id}-{}", self.info.name)
    }
}

fn classify(error: ClientError) -> BackendError {
    match error {
        ClientError::Rejected(r) => {
            let nodes: Vec<String> = r
                .node_errors
                .iter()
                .flat_map(|(node, e)| {
                    e.errors
                        .iter()
                        .map(move |x| format!("node {node}: {}", x.message))
                })
                .collect();
            BackendError::Refused(format!(
                "the GPU's ComfyUI refused the prompt: {} {}",
                r.error.message,
                nodes.join("; ")
            ))
        }
        ClientError::Deadline(d) => {
            BackendError::TimedOut(format!("no result within {} s", d.as_secs()))
        }
        ClientError::TooLarge { .. } | ClientError::UnsafePath(_) => {
            BackendError::Refused(error.to_string())
        }
        other => BackendError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Backend for ComfyBackend {
    fn info(&self) -> &PoolInfo {
        &self.info
    }

    fn chosen_id(&self, prompt_id: &str) -> Option<String> {
        Some(prompt_id.to_string())
    }

    async fn submit(&self, job: Submission<'_>) -> Result<String, BackendError> {
        for input in job.inputs {
            self.client
                .upload(&input.name, &input.subfolder, input.bytes.clone())
                .await
                .map_err(|e| match e {
                    // A refused upload (bad type, too large) fails the job.
                    ClientError::Status { status, .. } if (400..500).contains(&status) => {
                        BackendError::Refused(format!(
                            "the GPU's ComfyUI refused the input {:?} (HTTP {status})",
                            input.name
                        ))
                    }
                    other => classify(other),
                })?;
        }
        let prompt = job.payload.get("prompt").unwrap_or(job.payload);
        let extra = job.payload.get("extra_data");
        self.client
            .submit(prompt, job.prompt_id, &self.client_id(job.client_id), extra)
            .await
            .map_err(classify)?;
        Ok(job.prompt_id.to_string())
    }

    async fn wait(
        &self,
        backend_id: &str,
        client_id: &str,
        job_wait: Duration,
        progress: &mut (dyn FnMut(u32, u32) + Send),
    ) -> Result<Outcome, BackendError> {
        self.client
            .follow(backend_id, &self.client_id(client_id), job_wait, progress)
            .await
            .map_err(classify)
    }

    async fn download(&self, _backend_id: &str, file: &FileRef) -> Result<Vec<u8>, BackendError> {
        self.client.download(file).await.map_err(classify)
    }

    async fn cancel(&self, backend_id: &str) -> Result<(), BackendError> {
        self.client.cancel(backend_id).await.map_err(classify)
    }

    async fn knows(&self, backend_id: &str) -> Result<bool, BackendError> {
        if self
            .client
            .history(backend_id)
            .await
            .map_err(classify)?
            .is_some()
        {
            return Ok(true);
        }
        self.client.in_queue(backend_id).await.map_err(classify)
    }
}
