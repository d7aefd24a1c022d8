//! A client for one ComfyUI server: the calls the dispatcher and the
//! `worker` sidecar make.
//!
//! Policy:
//! - Every call has a timeout (`request`): a backend that hangs becomes an
//!   error, never a stuck dispatcher.
//! - Downloads are capped (`max_output_bytes`) and streamed into memory only
//!   up to the cap; a larger output is an error, not an out-of-memory host.
//! - One websocket per server and client id ([`super::events`]), opened
//!   before the first submit and shared by every prompt followed there.
//!   [`ComfyClient::follow`] takes progress and the end of its prompt from
//!   it, and the outcome from `/history/{id}`: at once when it starts
//!   following, on each end event (retried within milliseconds: ComfyUI
//!   sends `execution_success` before it writes the entry), and at once
//!   when the socket reconnects. While the socket is down it polls every
//!   `poll`, until the `job_wait` deadline. The history entry is the source
//!   of truth for the outcome either way.
//! - A `/history` look that fails in a way that may pass (no answer, a 5xx,
//!   a 429) says nothing about the prompt, which goes on running on its
//!   GPU: giving up would fail the attendee's job (worker) or run it a
//!   second time elsewhere (direct pool). Such failures are tolerated for
//!   `outage_patience` in a row, and never past the deadline; a ComfyUI
//!   that stays silent longer is taken as gone.
//! - A prompt with no history entry is looked for in `/queue`; one in
//!   neither place was forgotten by a ComfyUI that restarted
//!   ([`ClientError::Forgotten`]), and is given up at once rather than
//!   waited for until the deadline. ComfyUI writes the entry before it
//!   drops the prompt from its queue, so the history is read again after
//!   the queue to rule out a prompt that ended between the two looks.

use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::events::{Hub, Link, PromptEvent};

use super::protocol::{
    FileRef, HistoryEntry, Outcome, PromptAccepted, PromptRejected, PromptRequest, Uploaded,
};

/// The first quick look after an end event finds no history entry yet
/// (ComfyUI announces `execution_success` before writing it): looks follow
/// after this, doubling up to `poll`.
const EAGER_FIRST: Duration = Duration::from_millis(5);

/// The client's limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// One HTTP request (`timeouts.poll_secs`).
    pub request: Duration,
    /// `POST /prompt` and each input upload (`timeouts.submit_secs`).
    pub submit: Duration,
    /// One output download (`timeouts.download_secs`).
    pub download: Duration,
    /// A prompt whose socket is up but quiet this long is checked against
    /// `/history` all the same (`timeouts.ws_idle_secs`): a safety net, not
    /// how ends are found.
    pub ws_idle: Duration,
    /// Between two `/history` polls when the websocket is unavailable.
    pub poll: Duration,
    /// Largest output file downloaded.
    pub max_output_bytes: usize,
    /// How long `/history` looks may fail in a row while a prompt is
    /// followed before the server is taken as gone.
    pub outage_patience: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            request: Duration::from_secs(10),
            submit: Duration::from_secs(300),
            download: Duration::from_secs(300),
            ws_idle: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_output_bytes: 512 << 20,
            outage_patience: Duration::from_secs(30),
        }
    }
}

/// What went wrong talking to ComfyUI.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// ComfyUI refused the prompt (validation), with its own error body.
    #[error("ComfyUI refused the prompt: {}", .0.error.message)]
    Rejected(Box<PromptRejected>),
    /// An HTTP status other than the expected one.
    #[error("{what}: ComfyUI answered HTTP {status}")]
    Status {
        /// The call.
        what: &'static str,
        /// The status.
        status: u16,
    },
    /// No answer in time, connection refused, reset…
    #[error("{what}: {source}")]
    Transport {
        /// The call.
        what: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what ComfyUI sends.
    #[error("{what}: unreadable answer: {detail}")]
    Malformed {
        /// The call.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// An output larger than the cap.
    #[error("output {file} is larger than {max} bytes")]
    TooLarge {
        /// The file.
        file: String,
        /// The cap.
        max: usize,
    },
    /// An output path that would escape its folder.
    #[error("output path {0:?} is not a plain relative path")]
    UnsafePath(String),
    /// The job did not finish before the deadline.
    #[error("no result after {0:?}")]
    Deadline(Duration),
    /// ComfyUI has no trace of a prompt it accepted: not queued, not
    /// running, no history entry. It restarted (both live in its memory),
    /// so the prompt will never end there.
    #[error("ComfyUI no longer knows prompt {0} (neither queued nor in its history: it restarted)")]
    Forgotten(String),
}

impl ClientError {
    /// A failure that may pass on its own: no answer, or ComfyUI (or a
    /// proxy before it) answering that it cannot serve right now.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A ComfyUI server.
#[derive(Clone)]
pub struct ComfyClient {
    http: reqwest::Client,
    base: Url,
    limits: ClientLimits,
    /// One websocket per client id, shared by the clones.
    hubs: Arc<Mutex<HashMap<String, Hub>>>,
}

impl std::fmt::Debug for ComfyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyClient")
            .field("base", &self.base.as_str())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ComfyClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8189`).
    pub fn new(base: &str, limits: ClientLimits) -> Result<Self, ClientError> {
        let mut base = Url::parse(base).map_err(|e| ClientError::Malformed {
            what: "url",
            detail: e.to_string(),
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        crate::tls::install_provider();
        let http = reqwest::Client::builder()
            .timeout(limits.request)
            .connect_timeout(limits.request)
            .build()
            .map_err(|e| ClientError::Transport {
                what: "client",
                source: e,
            })?;
        Ok(ComfyClient {
            http,
            base,
            limits,
            hubs: Arc::default(),
        })
    }

    async fn send(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        request
            .send()
            .await
            .map_err(|e| ClientError::Transport { what, source: e })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Status {
                what,
                status: status.as_u16(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport { what, source: e })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
            what,
            detail: e.to_string(),
        })
    }

    /// `POST /prompt` with our prompt id and client id.
    pub async fn submit(
        &self,
        prompt: &Value,
        prompt_id: &str,
        client_id: &str,
        extra_data: Option<&Value>,
    ) -> Result<PromptAccepted, ClientError> {
        let what = "submit";
        // The socket the prompt's events go to is open before ComfyUI has
        // the prompt, so none of them is sent to nobody.
        self.hub(client_id).ready().await;
        let body = PromptRequest {
            prompt,
            client_id,
            prompt_id,
            extra_data,
        };
        let response = self
            .send(
                what,
                self.http
                    .post(self.url("prompt"))
                    .timeout(self.limits.submit)
                    .json(&body),
            )
            .await?;
        if response.status() == StatusCode::BAD_REQUEST {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ClientError::Transport { what, source: e })?;
            return match serde_json::from_slice::<PromptRejected>(&bytes) {
                Ok(rejected) => Err(ClientError::Rejected(Box::new(rejected))),
                Err(e) => Err(ClientError::Malformed {
                    what,
                    detail: e.to_string(),
                }),
            };
        }
        let accepted: PromptAccepted = Self::json(what, response).await?;
        if accepted.prompt_id != prompt_id {
            return Err(ClientError::Malformed {
                what,
                detail: format!("ComfyUI renamed the prompt to {}", accepted.prompt_id),
            });
        }
        Ok(accepted)
    }

    /// `GET /history/{id}`: `None` while ComfyUI has no entry for it.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ClientError> {
        let what = "history";
        let response = self
            .send(
                what,
                self.http.get(self.url(&format!("history/{prompt_id}"))),
            )
            .await?;
        let mut all: std::collections::BTreeMap<String, HistoryEntry> =
            Self::json(what, response).await?;
        Ok(all.remove(prompt_id))
    }

    /// `POST /upload/image` (multipart), for inputs the prompt references,
    /// into `subfolder` of ComfyUI's input folder (`""` for none).
    pub async fn upload(
        &self,
        name: &str,
        subfolder: &str,
        bytes: Vec<u8>,
    ) -> Result<Uploaded, ClientError> {
        let what = "upload";
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input")
            .text("subfolder", subfolder.to_string())
            .text("overwrite", "true");
        let response = self
            .send(
                what,
                self.http
                    .post(self.url("upload/image"))
                    .timeout(self.limits.submit)
                    .multipart(form),
            )
            .await?;
        Self::json(what, response).await
    }

    /// `GET /view` for one output, capped at `max_output_bytes`.
    pub async fn download(&self, file: &FileRef) -> Result<Vec<u8>, ClientError> {
        let what = "download";
        let path = file.safe_path().ok_or_else(|| {
            ClientError::UnsafePath(format!("{}/{}", file.subfolder, file.filename))
        })?;
        let response = self
            .send(
                what,
                self.http
                    .get(self.url("view"))
                    .timeout(self.limits.download)
                    .query(&[
                        ("filename", file.filename.as_str()),
                        ("subfolder", file.subfolder.as_str()),
                        ("type", file.kind.as_str()),
                    ]),
            )
            .await?;
        if !response.status().is_success() {
            return Err(ClientError::Status {
                what,
                status: response.status().as_u16(),
            });
        }
        let max = self.limits.max_output_bytes;
        if response.content_length().is_some_and(|n| n as usize > max) {
            return Err(ClientError::TooLarge { file: path, max });
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Transport { what, source: e })?;
            if body.len() + chunk.len() > max {
                return Err(ClientError::TooLarge { file: path, max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Stops the prompt: `POST /interrupt {"prompt_id"}` (if running) and
    /// `POST /queue {"delete":[id]}` (if still waiting in ComfyUI's queue).
    pub async fn cancel(&self, prompt_id: &str) -> Result<(), ClientError> {
        for (what, path, body) in [
            (
                "interrupt",
                "interrupt",
                serde_json::json!({ "prompt_id": prompt_id }),
            ),
            (
                "queue delete",
                "queue",
                serde_json::json!({ "delete": [prompt_id] }),
            ),
        ] {
            let response = self
                .send(what, self.http.post(self.url(path)).json(&body))
                .await?;
            if !response.status().is_success() {
                return Err(ClientError::Status {
                    what,
                    status: response.status().as_u16(),
                });
            }
        }
        Ok(())
    }

    /// Whether the prompt is running or waiting in ComfyUI's own queue
    /// (`GET /queue`: `queue_running` and `queue_pending` list
    /// `[number, prompt_id, …]`).
    pub async fn in_queue(&self, prompt_id: &str) -> Result<bool, ClientError> {
        let what = "queue";
        let response = self.send(what, self.http.get(self.url("queue"))).await?;
        let queue: Value = Self::json(what, response).await?;
        Ok(["queue_running", "queue_pending"].iter().any(|list| {
            queue[*list]
                .as_array()
                .into_iter()
                .flatten()
                .any(|item| item.get(1).and_then(Value::as_str) == Some(prompt_id))
        }))
    }

    /// The server's base URL, for logs.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /object_info`: the node catalogue, with the model files present.
    pub async fn object_info(&self) -> Result<Value, ClientError> {
        let what = "object_info";
        let response = self
            .send(what, self.http.get(self.url("object_info")))
            .await?;
        Self::json(what, response).await
    }

    /// The socket of `client_id` on this server, opened on first use and
    /// shared by every clone of this client.
    fn hub(&self, client_id: &str) -> Hub {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        hubs.entry(client_id.to_string())
            .or_insert_with(|| {
                let mut url = self.url("ws");
                let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
                let _ = url.set_scheme(scheme);
                url.query_pairs_mut().append_pair("clientId", client_id);
                Hub::start(url, self.limits.request)
            })
            .clone()
    }

    /// Waits for the prompt to end, reporting step progress to `progress`,
    /// and gives up at `job_wait`.
    ///
    /// Follows the shared socket of `client_id` (see [`super::events`]):
    /// registers first, then looks at `/history` at once (the prompt may
    /// have ended before), again on every end event (retried within
    /// milliseconds while ComfyUI has not written the entry yet), and at
    /// once on every change of the socket (events may have been missed
    /// while it was down). While the socket is down it polls every `poll`;
    /// while it is up and quiet, it looks every `ws_idle` all the same.
    pub async fn follow(
        &self,
        prompt_id: &str,
        client_id: &str,
        job_wait: Duration,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<Outcome, ClientError> {
        let deadline = Instant::now() + job_wait;
        let hub = self.hub(client_id);
        let mut subscription = hub.subscribe(prompt_id);
        hub.ready().await;
        let mut failing = None;
        let mut look_at = Instant::now();
        // The end was announced: the next looks come quickly.
        let mut eager: Option<Duration> = None;
        // Closed when another follower of the same prompt replaced this one.
        let mut events_open = true;
        loop {
            let now = Instant::now();
            if now >= look_at {
                if let Some(outcome) = self.look(prompt_id, &mut failing).await? {
                    return Ok(outcome);
                }
                let wait = match (eager, hub.link()) {
                    (Some(step), _) => {
                        eager = Some((step * 2).min(self.limits.poll));
                        step
                    }
                    (None, Link::Up { .. }) => self.limits.ws_idle,
                    (None, _) => self.limits.poll,
                };
                look_at = Instant::now() + wait;
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Deadline(job_wait));
            }
            let wake = tokio::time::Instant::from_std(look_at.min(deadline));
            tokio::select! {
                event = subscription.events.recv(), if events_open => match event {
                    Some(PromptEvent::Progress { value, max }) => progress(value, max),
                    Some(PromptEvent::Ending | PromptEvent::Ended) => {
                        eager.get_or_insert(EAGER_FIRST);
                        look_at = Instant::now();
                    }
                    None => events_open = false,
                },
                changed = subscription.link.changed() => {
                    if changed.is_ok() {
                        look_at = Instant::now();
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// One look at `/history` while following: a transient failure is
    /// "not ended yet" until failures in a row (since `failing`) have lasted
    /// `outage_patience`.
    async fn look(
        &self,
        prompt_id: &str,
        failing: &mut Option<Instant>,
    ) -> Result<Option<Outcome>, ClientError> {
        match self.ended_or_forgotten(prompt_id).await {
            Ok(found) => {
                *failing = None;
                Ok(found)
            }
            Err(e) if e.is_transient() => {
                let since = *failing.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.limits.outage_patience {
                    return Err(e);
                }
                tracing::debug!(prompt_id, error = %e, "history look failed; the prompt may go on, looking again");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::history`]'s outcome, and [`ClientError::Forgotten`] when
    /// ComfyUI has the prompt neither in its history nor in its queue. A
    /// `/queue` that cannot be read says nothing: the prompt is taken as
    /// still there.
    async fn ended_or_forgotten(&self, prompt_id: &str) -> Result<Option<Outcome>, ClientError> {
        if let Some(entry) = self.history(prompt_id).await? {
            return Ok(ended(&entry));
        }
        if self.in_queue(prompt_id).await.unwrap_or(true) {
            return Ok(None);
        }
        match self.history(prompt_id).await? {
            Some(entry) => Ok(ended(&entry)),
            None => Err(ClientError::Forgotten(prompt_id.to_string())),
        }
    }
}

/// The outcome of a history entry, none while it has not ended.
fn ended(entry: &HistoryEntry) -> Option<Outcome> {
    match entry.outcome() {
        Outcome::Pending => None,
        outcome => Some(outcome),
    }
}
