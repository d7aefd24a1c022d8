//! Verda (ex-DataCrunch) serverless containers running `comfyume worker`.
//!
//! The protocol, from Verda's container documentation: a request to
//! `<base>/<deployment>/<path>` with `Authorization: Bearer <key>` and
//! `Prefer: respond-async` is queued by Verda, which answers at once with
//! `{"Id","StatusPath","ResultPath"}` (the id also as `X-Inference-Id`).
//! `GET <base>/status/<deployment>` and `GET <base>/result/<deployment>`,
//! each with `X-Inference-Id`, tell how it goes and give the container's
//! answer.
//!
//! Why the worker: Verda's load balancer is not sticky, so ComfyUI's own
//! `POST /prompt` then `GET /history` would reach different replicas. The
//! worker answers **one** request (`POST /run`) with the outputs inline,
//! which Verda stores as the result.
//!
//! Policy:
//! - The inference id is Verda's choice, so it is recorded right after the
//!   submit (see [`super::running`]); recovery asks `status` whether Verda
//!   still knows it and re-attaches.
//! - Polls every `poll_interval`, each bounded by `request`. A poll the
//!   gateway does not answer properly (unreachable, a 5xx of its own, a
//!   result it cannot hand over yet) says nothing about the run, which may
//!   still be on its GPU: sending the job elsewhere would pay for it twice.
//!   So failed polls are tolerated for `outage_patience` (and never past
//!   the job's deadline); only then is the pool taken as unavailable and
//!   the job requeued.
//! - The host waits the job's wait plus `queue_grace` (time in Verda's
//!   queue and the cold start), while the worker is told the job's wait
//!   itself: the worker's clear "no result after" reason arrives first.
//! - A status of failed, or a result that is not the worker's answer, means
//!   the replica was lost (a spot reclaim): the job is requeued. A status
//!   of done whose result is not there yet (202, 404: status and result are
//!   separate endpoints) is polled again like a failed poll: running the
//!   job again would pay for a run that has already happened.
//! - Outputs arrive inline; they are held in memory from the result to the
//!   dispatcher's download, then forgotten. The result body is capped.
//! - Cancel: Verda cannot address the replica, so the worker learns of a
//!   cancel from its progress callback ([`super::callback`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt as _;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::backend::{Backend, BackendError, PoolInfo, Submission};
use super::comfyui::protocol::{FileRef, NodeOutput, Outcome};
use crate::worker::{RunCallback, RunInput, RunRequest, RunResponse};

/// A replica that finished a job this recently is taken as warm (Verda
/// keeps replicas for a while after the last request).
const WARM_FOR: Duration = Duration::from_secs(300);

/// Where and how to reach one deployment.
#[derive(Debug, Clone)]
pub struct VerdaSettings {
    /// `https://containers.datacrunch.io` (a fake gateway in tests).
    pub base_url: String,
    /// The deployment's name.
    pub deployment: String,
    /// The inference API key.
    pub api_key: crate::config::Secret,
    /// One status poll (`timeouts.poll_secs`).
    pub request: Duration,
    /// Sending the job with its inputs (`timeouts.submit_secs`).
    pub submit: Duration,
    /// Fetching the result with the outputs (`timeouts.download_secs`).
    pub download: Duration,
    /// Between two status polls.
    pub poll_interval: Duration,
    /// Largest result body (outputs inline, base64).
    pub max_result_bytes: usize,
    /// Added to the job's wait for Verda's queue and a cold start
    /// (`verda.queue_grace_secs`).
    pub queue_grace: Duration,
    /// How long polls of a submitted job may fail in a row before the job
    /// is requeued elsewhere (`verda.outage_patience_secs`).
    pub outage_patience: Duration,
}

/// One finished job's output files by `(type, subfolder, filename)`.
type HeldOutputs = HashMap<(String, String, String), Vec<u8>>;

/// The `verda` backend kind.
pub struct VerdaBackend {
    info: PoolInfo,
    settings: VerdaSettings,
    http: reqwest::Client,
    base: Url,
    outputs: Mutex<HashMap<String, HeldOutputs>>,
    last_finished: Mutex<Option<Instant>>,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    #[serde(rename = "Id", alias = "id")]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    #[serde(rename = "Status", alias = "status")]
    status: Option<String>,
}

enum Progress {
    Pending,
    Done,
    Failed(String),
}

/// What one look at a submitted inference found.
enum Look {
    /// Still queued or running.
    Pending,
    /// Over: the job's outcome, or why its run was lost.
    Over(Result<Outcome, BackendError>),
    /// The gateway did not answer properly: nothing is known of the run.
    Unknown(BackendError),
}

/// A stored result, as fetched.
enum Fetched {
    /// The worker's answer.
    Answer(RunResponse),
    /// Not the worker's answer: the replica could not run the job, or
    /// what is stored is something else (a lost replica).
    Lost(String),
    /// Nothing stored yet (HTTP 202 or 404).
    NotYet(StatusCode),
}

fn classify_status(status: &str) -> Progress {
    match status.to_ascii_lowercase().as_str() {
        "completed" | "complete" | "succeeded" | "success" | "done" | "finished" => Progress::Done,
        s @ ("failed" | "error" | "cancelled" | "canceled" | "expired" | "timeout" | "lost") => {
            Progress::Failed(s.to_string())
        }
        _ => Progress::Pending,
    }
}

impl VerdaBackend {
    /// A pool served by the Verda deployment `settings.deployment`.
    pub fn new(info: PoolInfo, settings: VerdaSettings) -> anyhow::Result<Self> {
        let mut base = Url::parse(&settings.base_url)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        crate::tls::install_provider();
        // Each call sets its own named timeout.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.request)
            .build()?;
        Ok(VerdaBackend {
            info,
            settings,
            http,
            base,
            outputs: Mutex::new(HashMap::new()),
            last_finished: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.settings.api_key.expose())
    }

    fn unavailable(&self, what: &str, detail: impl std::fmt::Display) -> BackendError {
        BackendError::Unavailable(format!(
            "verda {} ({what}): {detail}",
            self.settings.deployment
        ))
    }

    fn http_error(&self, what: &str, status: StatusCode) -> BackendError {
        match status.as_u16() {
            401 | 403 => self.unavailable(
                what,
                format!(
                    "Verda refused the inference key (HTTP {status}); check the pool's api_key"
                ),
            ),
            413 => BackendError::Refused(format!(
                "verda {}: the job's inputs are too large for one request (HTTP 413)",
                self.settings.deployment
            )),
            _ => self.unavailable(what, format!("HTTP {status}")),
        }
    }

    /// One status poll: `Ok(None)` when Verda does not know the id.
    async fn status(&self, id: &str) -> Result<Option<Progress>, BackendError> {
        let what = "status";
        let response = self
            .authed(
                self.http
                    .get(self.url(&format!("status/{}", self.settings.deployment))),
            )
            .header("X-Inference-Id", id)
            .timeout(self.settings.request)
            .send()
            .await
            .map_err(|e| self.unavailable(what, e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.http_error(what, response.status()));
        }
        let body: StatusBody = response
            .json()
            .await
            .map_err(|e| self.unavailable(what, format!("unreadable answer: {e}")))?;
        Ok(Some(classify_status(body.status.as_deref().unwrap_or(""))))
    }

    /// The stored result. A worker that answered 502/503 could not run the
    /// job on its replica (ComfyUI down, draining): that is a lost replica,
    /// not a failed job. An error status with no worker's answer in it is
    /// the gateway's own failure: an error, as for an unreachable gateway.
    async fn result(&self, id: &str) -> Result<Fetched, BackendError> {
        let what = "result";
        let response = self
            .authed(
                self.http
                    .get(self.url(&format!("result/{}", self.settings.deployment))),
            )
            .header("X-Inference-Id", id)
            .timeout(self.settings.download)
            .send()
            .await
            .map_err(|e| self.unavailable(what, e))?;
        let code = response.status();
        let max = self.settings.max_result_bytes;
        if response.content_length().is_some_and(|n| n as usize > max) {
            return Err(BackendError::Refused(format!(
                "the job's result is larger than {max} bytes"
            )));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unavailable(what, e))?;
            if body.len() + chunk.len() > max {
                return Err(BackendError::Refused(format!(
                    "the job's result is larger than {max} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let answer = serde_json::from_slice::<RunResponse>(&body).ok();
        Ok(match answer {
            Some(answer) if matches!(code.as_u16(), 502 | 503) => Fetched::Lost(format!(
                "the replica could not run the job: {}",
                answer.reason.unwrap_or_else(|| format!("HTTP {code}"))
            )),
            Some(answer) => Fetched::Answer(answer),
            None if code.is_server_error() || code == StatusCode::TOO_MANY_REQUESTS => {
                return Err(self.http_error(what, code));
            }
            None if matches!(code.as_u16(), 202 | 404) => Fetched::NotYet(code),
            None => Fetched::Lost(format!(
                "the stored result is not the worker's answer (HTTP {code}; replica lost?)"
            )),
        })
    }

    /// One look at inference `id`: its status, and its result once over.
    async fn look(&self, id: &str) -> Look {
        let lost = |detail: String| Look::Over(Err(self.unavailable("status", detail)));
        match self.status(id).await {
            Ok(Some(Progress::Pending)) => Look::Pending,
            Ok(Some(Progress::Done)) => match self.result(id).await {
                Ok(Fetched::Answer(answer)) => Look::Over(self.settle(id, answer)),
                Ok(Fetched::NotYet(code)) => Look::Unknown(self.unavailable(
                    "result",
                    format!("the inference is done but its result is not there yet (HTTP {code})"),
                )),
                Ok(Fetched::Lost(detail)) => lost(detail),
                Err(e @ BackendError::Unavailable(_)) => Look::Unknown(e),
                Err(e) => Look::Over(Err(e)),
            },
            // A worker that answered (even an error) is a real outcome;
            // anything else is a lost replica. The run is over either way,
            // so a result that cannot be fetched is not worth waiting for.
            // One too large to fetch is the job's own failure, as it is
            // after a status of done.
            Ok(Some(Progress::Failed(status))) => match self.result(id).await {
                Ok(Fetched::Answer(answer)) => Look::Over(self.settle(id, answer)),
                Err(e @ BackendError::Refused(_)) => Look::Over(Err(e)),
                _ => lost(format!(
                    "the inference ended {status} without an answer: replica lost"
                )),
            },
            Ok(None) => lost(format!("Verda no longer knows inference {id}")),
            Err(e @ BackendError::Unavailable(_)) => Look::Unknown(e),
            Err(e) => Look::Over(Err(e)),
        }
    }

    /// Turns the worker's answer into an outcome, keeping the files.
    fn settle(&self, id: &str, answer: RunResponse) -> Result<Outcome, BackendError> {
        match answer.status.as_str() {
            "success" => {}
            "refused" => {
                return Err(BackendError::Refused(
                    answer
                        .reason
                        .unwrap_or_else(|| "the worker refused the job".into()),
                ));
            }
            _ => {
                return Ok(Outcome::Failed(
                    answer
                        .reason
                        .unwrap_or_else(|| "the job failed on the GPU".into()),
                ));
            }
        }
        let mut nodes: std::collections::BTreeMap<String, NodeOutput> = Default::default();
        let mut files = HashMap::new();
        for output in answer.outputs {
            let bytes = BASE64.decode(&output.data_base64).map_err(|_| {
                BackendError::Refused(format!("output {:?} is not base64", output.filename))
            })?;
            let node = nodes.entry(output.node_id).or_insert_with(|| NodeOutput {
                images: vec![],
                animated: vec![],
                audio: vec![],
                other: Default::default(),
            });
            node.images.push(FileRef {
                filename: output.filename.clone(),
                subfolder: output.subfolder.clone(),
                kind: output.kind.clone(),
            });
            if output.animated && node.animated.is_empty() {
                node.animated.push(true);
            }
            files.insert((output.kind, output.subfolder, output.filename), bytes);
        }
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), files);
        *self.last_finished.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(Outcome::Success(nodes))
    }
}

#[async_trait]
impl Backend for VerdaBackend {
    fn info(&self) -> &PoolInfo {
        &self.info
    }

    fn chosen_id(&self, _prompt_id: &str) -> Option<String> {
        None
    }

    fn warm(&self) -> bool {
        self.last_finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < WARM_FOR)
    }

    async fn submit(&self, job: Submission<'_>) -> Result<String, BackendError> {
        let what = "submit";
        let body = RunRequest {
            prompt_id: job.prompt_id.to_string(),
            prompt: job.payload.get("prompt").unwrap_or(job.payload).clone(),
            extra_data: job.payload.get("extra_data").cloned(),
            inputs: job
                .inputs
                .iter()
                .map(|i| RunInput {
                    name: i.name.clone(),
                    subfolder: i.subfolder.clone(),
                    data_base64: BASE64.encode(&i.bytes),
                })
                .collect(),
            job_wait_secs: Some(job.job_wait.as_secs().max(1)),
            callback: job.callback.map(|c| RunCallback {
                url: c.url.clone(),
                token: c.token.clone(),
            }),
        };
        let response = self
            .authed(
                self.http
                    .post(self.url(&format!("{}/run", self.settings.deployment))),
            )
            .header("Prefer", "respond-async")
            .timeout(self.settings.submit)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unavailable(what, e))?;
        if !response.status().is_success() {
            return Err(self.http_error(what, response.status()));
        }
        let header_id = response
            .headers()
            .get("X-Inference-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let accepted: Option<Accepted> = response.json().await.ok();
        accepted
            .and_then(|a| a.id)
            .or(header_id)
            .filter(|id| !id.is_empty() && id.len() <= 200)
            .ok_or_else(|| self.unavailable(what, "no inference id in the answer"))
    }

    async fn wait(
        &self,
        backend_id: &str,
        _client_id: &str,
        job_wait: Duration,
        _progress: &mut (dyn FnMut(u32, u32) + Send),
    ) -> Result<Outcome, BackendError> {
        let deadline = Instant::now() + job_wait + self.settings.queue_grace;
        // Since when the gateway has not answered properly, and how.
        let mut unknown: Option<(Instant, BackendError)> = None;
        loop {
            match self.look(backend_id).await {
                Look::Over(outcome) => return outcome,
                Look::Pending => unknown = None,
                Look::Unknown(e) => {
                    let since = unknown.as_ref().map_or_else(Instant::now, |(t, _)| *t);
                    if since.elapsed() >= self.settings.outage_patience {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "status poll failed; the run may go on, polling again");
                    unknown = Some((since, e));
                }
            }
            if Instant::now() + self.settings.poll_interval > deadline {
                // Not known to have failed: by now its worker has given up
                // (it was told the job's wait), so running it again
                // elsewhere is safe.
                if let Some((_, e)) = unknown {
                    return Err(e);
                }
                return Err(BackendError::TimedOut(format!(
                    "no result from verda {} within {} s",
                    self.settings.deployment,
                    (job_wait + self.settings.queue_grace).as_secs()
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    async fn download(&self, backend_id: &str, file: &FileRef) -> Result<Vec<u8>, BackendError> {
        let key = (
            file.kind.clone(),
            file.subfolder.clone(),
            file.filename.clone(),
        );
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(backend_id)
            .and_then(|files| files.remove(&key))
            .ok_or_else(|| {
                BackendError::Refused(format!("output {:?} is not in the result", file.filename))
            })
    }

    fn forget(&self, backend_id: &str) {
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(backend_id);
    }

    async fn cancel(&self, backend_id: &str) -> Result<(), BackendError> {
        // Verda cannot address the replica: the worker learns of the cancel
        // at its next progress callback.
        tracing::debug!(backend_id, "cancel relayed through the worker's callback");
        Ok(())
    }

    async fn knows(&self, backend_id: &str) -> Result<bool, BackendError> {
        Ok(self.status(backend_id).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_whatever_their_case() {
        assert!(matches!(classify_status("Completed"), Progress::Done));
        assert!(matches!(classify_status("SUCCEEDED"), Progress::Done));
        assert!(matches!(classify_status("failed"), Progress::Failed(_)));
        assert!(matches!(classify_status("Running"), Progress::Pending));
        assert!(matches!(classify_status(""), Progress::Pending));
    }
}
