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
//! Policy (what Verda documents, and what the host assumes where it does
//! not: the table in `docs/worker.md`):
//! - The inference id is Verda's choice, so it is recorded right after the
//!   submit (see [`super::running`]); recovery asks `status` whether Verda
//!   still knows it and re-attaches.
//! - Statuses are Verda's SDK's: `Initialized` and `Queue` (waiting for a
//!   replica, a cold start included), `Inference` (on a GPU), `Completed`.
//!   A job's wait starts when Verda says `Inference`: the worker is told
//!   the job's wait, so its answer comes by then (plus one poll). Before,
//!   the job is waiting, bounded by the deployment's request TTL
//!   (`request_ttl`), after which Verda drops it: a job still queued past it
//!   never ran and goes back to our queue. An unknown status is waiting.
//! - A 404 before Verda ever answered for the id is a status that lags the
//!   submit: nothing is known yet, tolerated like a failed poll. Once the
//!   id was known, a 404 means Verda dropped it (its TTL, a lost replica):
//!   the job is requeued.
//! - Polls every `poll_interval`, each bounded by `request`. A poll the
//!   gateway does not answer properly (unreachable, a 5xx of its own, a
//!   result it cannot hand over yet) says nothing about the run, which may
//!   still be on its GPU: sending the job elsewhere would pay for it twice.
//!   So failed polls are tolerated for `outage_patience` (and never past
//!   the job's deadline); only then is the job requeued. A 429 backs off
//!   for its `Retry-After` (else doubling from the poll interval), and is
//!   not an outage.
//! - Everything the worker signals is read from its answer's body, which
//!   is all `/result` is documented to return: `retry` (a draining replica,
//!   a ComfyUI that restarted or cannot be reached) requeues the job;
//!   `refused` and `error` fail it. A result that is not the worker's
//!   answer (the gateway's own error) means the replica was lost: the job
//!   is requeued. A result not there yet after `Completed` (202, 404) is
//!   polled again like a failed poll: running the job again would pay for
//!   a run that has already happened.
//! - The request (inputs inline, base64) must fit the worker's body limit
//!   (`max_request_bytes`): a job over it fails at once with the reason,
//!   instead of a 413 from the replica and paid reruns.
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
use super::verda_watch::{Flow, Watch};
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
    /// The deployment's request TTL (`queue_message_ttl_seconds`, read
    /// through the management API, else `verda.request_ttl_secs`): how long
    /// a job may wait in Verda's queue before Verda drops it.
    pub request_ttl: Duration,
    /// The worker's largest request body (`verda.worker_max_request_mib`).
    pub max_request_bytes: usize,
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

/// Where a request is, by Verda's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// `Initialized`, `Queue`, or a status Verda does not document.
    Waiting,
    /// `Inference`: on a replica.
    Running,
    /// `Completed`: the container answered.
    Done,
}

/// One answer of the gateway about a request.
enum Answer<T> {
    /// What was asked.
    Known(T),
    /// 404: Verda does not know the id (not yet, or no longer).
    NotKnown,
    /// 429: asked to wait this long (`Retry-After`), if it said.
    Throttled(Option<Duration>),
}

/// What one look at a submitted inference found.
pub(super) enum Look {
    /// Queued or running.
    Pending(Progress),
    /// Over: the job's outcome, or why its run was lost.
    Over(Result<Outcome, BackendError>),
    /// Verda does not know the id.
    NotKnown,
    /// Asked to slow down.
    Throttled(Option<Duration>),
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
        "completed" => Progress::Done,
        "inference" => Progress::Running,
        // `Initialized`, `Queue`: and an undocumented status says nothing
        // of a run, so the job waits (bounded by the request TTL).
        _ => Progress::Waiting,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by gateways
/// we know of, and reads as absent).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How long to wait after the `streak`-th 429 in a row: what the gateway
/// asked, else doubling from the poll interval; at most a minute.
pub(super) fn back_off(asked: Option<Duration>, streak: u32, poll: Duration) -> Duration {
    let own = poll.saturating_mul(2u32.saturating_pow(streak.min(16)));
    asked.unwrap_or(own).clamp(poll, Duration::from_secs(60))
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

    /// One status poll.
    async fn status(&self, id: &str) -> Result<Answer<Progress>, BackendError> {
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
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(Answer::NotKnown),
            StatusCode::TOO_MANY_REQUESTS => {
                return Ok(Answer::Throttled(retry_after(&response)));
            }
            code if !code.is_success() => return Err(self.http_error(what, code)),
            _ => {}
        }
        let body: StatusBody = response
            .json()
            .await
            .map_err(|e| self.unavailable(what, format!("unreadable answer: {e}")))?;
        Ok(Answer::Known(classify_status(
            body.status.as_deref().unwrap_or(""),
        )))
    }

    /// The stored result: the container's body, and its status code when
    /// Verda passes it on (undocumented). A worker's answer is read from
    /// its body (`retry` is a lost replica, see [`Self::settle`]); a 502/503
    /// with the worker's answer is one too, from a worker that put its
    /// signal in the code only. An error status with no worker's answer in
    /// it is the gateway's own failure: an error, as for an unreachable
    /// gateway.
    async fn result(&self, id: &str) -> Result<Answer<Fetched>, BackendError> {
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
        if code == StatusCode::TOO_MANY_REQUESTS {
            return Ok(Answer::Throttled(retry_after(&response)));
        }
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
        Ok(Answer::Known(match answer {
            Some(answer) if matches!(code.as_u16(), 502 | 503) && answer.status != "retry" => {
                Fetched::Lost(format!(
                    "the replica could not run the job: {}",
                    answer.reason.unwrap_or_else(|| format!("HTTP {code}"))
                ))
            }
            Some(answer) => Fetched::Answer(answer),
            // The replica's own limit refused the request: running it again
            // would be refused again.
            None if code == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(self.http_error(what, code));
            }
            // Verda's own error stored as the result (its replica was lost
            // under the run) or a failing result endpoint: the same answer
            // either way, so it is tolerated like a failed poll, and the
            // job requeued only after `outage_patience`.
            None if code.is_server_error() => return Err(self.http_error(what, code)),
            None if matches!(code.as_u16(), 202 | 404) => Fetched::NotYet(code),
            None => Fetched::Lost(format!(
                "the stored result is not the worker's answer (HTTP {code}; replica lost?)"
            )),
        }))
    }

    /// One look at inference `id`: its status, and its result once over.
    async fn look(&self, id: &str) -> Look {
        let lost = |detail: String| Look::Over(Err(self.unavailable("result", detail)));
        match self.status(id).await {
            Ok(Answer::Known(Progress::Done)) => match self.result(id).await {
                Ok(Answer::Known(Fetched::Answer(answer))) => Look::Over(self.settle(id, answer)),
                Ok(Answer::Known(Fetched::NotYet(code))) => Look::Unknown(self.unavailable(
                    "result",
                    format!("the inference is done but its result is not there yet (HTTP {code})"),
                )),
                Ok(Answer::Known(Fetched::Lost(detail))) => lost(detail),
                Ok(Answer::NotKnown) => Look::NotKnown,
                Ok(Answer::Throttled(after)) => Look::Throttled(after),
                Err(e @ BackendError::Unavailable(_)) => Look::Unknown(e),
                Err(e) => Look::Over(Err(e)),
            },
            Ok(Answer::Known(progress)) => Look::Pending(progress),
            Ok(Answer::NotKnown) => Look::NotKnown,
            Ok(Answer::Throttled(after)) => Look::Throttled(after),
            Err(e @ BackendError::Unavailable(_)) => Look::Unknown(e),
            Err(e) => Look::Over(Err(e)),
        }
    }

    /// Turns the worker's answer into an outcome, keeping the files.
    fn settle(&self, id: &str, answer: RunResponse) -> Result<Outcome, BackendError> {
        match answer.status.as_str() {
            "success" => {}
            // The replica could not run it (draining, its ComfyUI restarted
            // or unreachable): as a lost replica, the job runs again.
            "retry" => {
                return Err(BackendError::Unavailable(format!(
                    "verda {}: the replica could not run the job: {}",
                    self.settings.deployment,
                    answer.reason.unwrap_or_else(|| "no reason given".into())
                )));
            }
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
        let body = serde_json::to_vec(&body)
            .map_err(|e| BackendError::Refused(format!("the job cannot be encoded: {e}")))?;
        let limit = self.settings.max_request_bytes;
        if body.len() > limit {
            let raw: usize = job.inputs.iter().map(|i| i.bytes.len()).sum();
            return Err(BackendError::Refused(format!(
                "the job's request is {} MiB with its inputs in base64 ({} MiB of input files), \
                 over the GPU worker's limit of {} MiB: use smaller input files",
                body.len() >> 20,
                raw >> 20,
                limit >> 20
            )));
        }
        // Verda takes nothing on a 429: sending again is safe, after the
        // wait it asks for, within the submit timeout.
        let give_up = Instant::now() + self.settings.submit;
        let mut streak = 0;
        let response = loop {
            let response = self
                .authed(
                    self.http
                        .post(self.url(&format!("{}/run", self.settings.deployment))),
                )
                .header("Prefer", "respond-async")
                .header("content-type", "application/json")
                .timeout(self.settings.submit)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| self.unavailable(what, e))?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                break response;
            }
            let pause = back_off(retry_after(&response), streak, self.settings.poll_interval);
            if Instant::now() + pause > give_up {
                return Err(self.http_error(what, response.status()));
            }
            streak += 1;
            tokio::time::sleep(pause).await;
        };
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
        let mut watch = Watch::new(&self.settings, job_wait);
        loop {
            match watch.step(self.look(backend_id).await, backend_id) {
                Flow::Again(pause) => tokio::time::sleep(pause).await,
                Flow::End(outcome) => return outcome,
            }
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
        match self.status(backend_id).await? {
            Answer::Known(_) => Ok(true),
            Answer::NotKnown => Ok(false),
            Answer::Throttled(_) => Err(self.unavailable("status", "HTTP 429")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_whatever_their_case() {
        assert_eq!(classify_status("Completed"), Progress::Done);
        assert_eq!(classify_status("INFERENCE"), Progress::Running);
        assert_eq!(classify_status("Queue"), Progress::Waiting);
        assert_eq!(classify_status("Initialized"), Progress::Waiting);
        // Undocumented: says nothing of a run.
        assert_eq!(classify_status("Failed"), Progress::Waiting);
        assert_eq!(classify_status(""), Progress::Waiting);
    }

    #[test]
    fn a_429_backs_off_as_asked_else_doubling_and_at_most_a_minute() {
        let poll = Duration::from_millis(100);
        let asked = Some(Duration::from_secs(7));
        assert_eq!(back_off(asked, 0, poll), Duration::from_secs(7));
        assert_eq!(back_off(None, 0, poll), poll);
        assert_eq!(back_off(None, 3, poll), Duration::from_millis(800));
        assert_eq!(back_off(None, 30, poll), Duration::from_secs(60));
        assert_eq!(back_off(Some(Duration::ZERO), 0, poll), poll);
    }
}
