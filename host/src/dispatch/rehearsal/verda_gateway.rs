//! A fake Verda container gateway, for tests and rehearsals: the async
//! inference API in front of several `comfyume worker` replicas, each
//! beside its own rehearsal ComfyUI.
//!
//! It speaks what Verda documents (its docs' "Async Inference" page and the
//! `AsyncStatus` of its Python SDK; sources in `docs/worker.md`):
//! - `POST /<deployment>/<path>` with `Prefer: respond-async` queues the
//!   request and answers `{"Id","StatusPath","ResultPath"}` with
//!   `X-Inference-Id` and `Location`; the request then runs on a **random**
//!   routable replica (the load balancer is not sticky); without the header
//!   the request is proxied synchronously, again to a random replica.
//! - `GET /status/<deployment>` with `X-Inference-Id`: `{"Id","Status"}`,
//!   the status one of `Initialized`, `Queue`, `Inference`, `Completed` and
//!   nothing else. `GET /result/<deployment>`: the container's body once
//!   `Completed` (202 before).
//! - A request TTL (`queue_message_ttl_seconds`): past it the request is
//!   gone, status and result answer 404.
//! - Cold starts: a cold replica takes a while to come up, and a request is
//!   routed only to a replica whose `GET /health` answers 200.
//! - `Authorization: Bearer <key>` on everything, 401 otherwise.
//!
//! What Verda leaves open is a switch ([`Switches`]): whether `/result`
//! carries the container's status code, a status that lags the submit, what
//! the TTL bounds, what a reclaimed request becomes, `Retry-After` on a 429.
//!
//! Faults a test or a rehearsal can switch on: every call answers 500 or
//! 429; a replica takes a job and never answers (a hang); the replica
//! running a job is reclaimed after it ran for a while (a spot reclaim); a
//! result that can be fetched only a while after the status says
//! `Completed`. Every request it forwards is counted per prompt id, so a
//! test can prove one GPU run per job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::run_ledger::{RunLedger, RunOutcome};
use super::verda_switches::{ReclaimEnd, ResultCode, Switches, TtlScope};
use super::{Rehearsal, RehearsalConfig};
use crate::worker::{Worker, WorkerConfig};

/// A fault the gateway plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Answer every call with HTTP 500.
    Http500,
    /// Answer every call with HTTP 429 (with `Retry-After` as switched).
    TooManyRequests,
    /// A replica takes each job and never answers: `Inference` forever.
    Hang,
    /// Reclaim the replica of every job this long after it started.
    ReclaimAfter(Duration),
    /// A finished job's result answers 202 (not there yet) for this long
    /// after its status says `Completed`.
    LateResult(Duration),
}

/// The statuses of Verda's SDK (`AsyncStatus`), and only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Initialized,
    Queue,
    Inference,
    Completed,
}

struct Inference {
    status: Status,
    answer: Option<(u16, Bytes)>,
    /// When the answer was stored.
    answered: Option<Instant>,
    submitted: Instant,
}

struct Replica {
    url: String,
    alive: bool,
    /// When it is (or was) up; `None`: cold, not started.
    up_at: Option<Instant>,
}

/// The fake gateway.
pub struct FakeVerda {
    deployment: String,
    api_key: String,
    replicas: Mutex<Vec<Replica>>,
    inferences: Mutex<HashMap<String, Inference>>,
    runs: Mutex<HashMap<String, usize>>,
    ledger: Arc<RunLedger>,
    fault: Mutex<Fault>,
    switches: Mutex<Switches>,
    reclaims: AtomicUsize,
    status_calls: AtomicUsize,
    http: reqwest::Client,
    comfys: Mutex<Vec<Arc<Rehearsal>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeVerda {
    /// A gateway for `deployment` over the worker replicas at `replicas`.
    pub fn new(deployment: &str, api_key: &str, replicas: Vec<String>) -> Arc<Self> {
        Self::sharing(Arc::default(), deployment, api_key, replicas)
    }

    /// [`FakeVerda::new`], recording its runs in `ledger`.
    pub fn sharing(
        ledger: Arc<RunLedger>,
        deployment: &str,
        api_key: &str,
        replicas: Vec<String>,
    ) -> Arc<Self> {
        crate::tls::install_provider();
        Arc::new(FakeVerda {
            deployment: deployment.to_string(),
            api_key: api_key.to_string(),
            replicas: Mutex::new(
                replicas
                    .into_iter()
                    .map(|url| Replica {
                        url,
                        alive: true,
                        up_at: None,
                    })
                    .collect(),
            ),
            inferences: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            ledger,
            fault: Mutex::new(Fault::None),
            switches: Mutex::new(Switches::default()),
            reclaims: AtomicUsize::new(0),
            status_calls: AtomicUsize::new(0),
            http: reqwest::Client::new(),
            comfys: Mutex::new(Vec::new()),
        })
    }

    /// Starts `count` replicas (a rehearsal ComfyUI and a worker each) on
    /// loopback and a gateway in front of them; returns it with its URL.
    pub async fn with_replicas(
        deployment: &str,
        api_key: &str,
        count: usize,
        comfy: RehearsalConfig,
    ) -> std::io::Result<(Arc<Self>, String)> {
        Self::with_replicas_sharing(Arc::default(), deployment, api_key, count, comfy).await
    }

    /// [`FakeVerda::with_replicas`], recording its runs in `ledger`.
    pub async fn with_replicas_sharing(
        ledger: Arc<RunLedger>,
        deployment: &str,
        api_key: &str,
        count: usize,
        comfy: RehearsalConfig,
    ) -> std::io::Result<(Arc<Self>, String)> {
        let mut urls = Vec::new();
        let mut comfys = Vec::new();
        for _ in 0..count {
            let rehearsal = Rehearsal::new(comfy.clone());
            let comfy_addr = rehearsal.serve().await?;
            comfys.push(rehearsal);
            let worker = Worker::new(WorkerConfig {
                comfyui_url: format!("http://{comfy_addr}"),
                ..WorkerConfig::default()
            })
            .map_err(std::io::Error::other)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            urls.push(format!("http://{}", listener.local_addr()?));
            tokio::spawn(async move {
                let _ = worker.serve(listener, std::future::pending()).await;
            });
        }
        let gateway = FakeVerda::sharing(ledger, deployment, api_key, urls);
        *lock(&gateway.comfys) = comfys;
        let addr = gateway.serve().await?;
        Ok((gateway, format!("http://{addr}")))
    }

    /// Plays `fault` from now on.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    /// Plays `switches` from now on.
    pub fn set_switches(&self, switches: Switches) {
        *lock(&self.switches) = switches;
    }

    /// The switches in play.
    pub fn switches(&self) -> Switches {
        *lock(&self.switches)
    }

    /// `GET /status` calls so far (answered or refused).
    pub fn status_calls(&self) -> usize {
        self.status_calls.load(Ordering::SeqCst)
    }

    /// How many times a request for `prompt_id` reached a replica.
    pub fn runs(&self, prompt_id: &str) -> usize {
        lock(&self.runs).get(prompt_id).copied().unwrap_or(0)
    }

    /// The bytes of an input uploaded to any replica's ComfyUI.
    pub fn uploaded(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.comfys).iter().find_map(|c| c.uploaded(name))
    }

    /// Replicas reclaimed so far.
    pub fn reclaims(&self) -> usize {
        self.reclaims.load(Ordering::SeqCst)
    }

    /// Brings every reclaimed replica back (Verda starting new ones, cold).
    pub fn replace_reclaimed(&self) {
        for replica in lock(&self.replicas).iter_mut() {
            if !replica.alive {
                replica.alive = true;
                replica.up_at = None;
            }
        }
    }

    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/status/{deployment}", get(status))
            .route("/result/{deployment}", get(result))
            .route("/{deployment}/{*path}", post(call).get(call))
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1` on a free port; returns the address.
    pub async fn serve(self: &Arc<Self>) -> std::io::Result<SocketAddr> {
        super::serve_on_loopback(self.router()).await
    }

    /// One gateway address for several deployments, as Verda has: each
    /// request goes to the fake serving its deployment (404 for others).
    pub async fn serve_all(gateways: Vec<Arc<Self>>) -> std::io::Result<SocketAddr> {
        let all = Arc::new(gateways);
        let router = Router::new()
            .route("/status/{deployment}", get(any_status))
            .route("/result/{deployment}", get(any_result))
            .route("/{deployment}/{*path}", post(any_call).get(any_call))
            .with_state(all);
        super::serve_on_loopback(router).await
    }

    /// Why the call is refused (a fault, a wrong key or deployment), if it
    /// is.
    fn refusal(&self, deployment: &str, headers: &HeaderMap) -> Option<Response> {
        self.check_plain(deployment, headers)
            .err()
            .map(|(code, text)| {
                let mut response = (code, text).into_response();
                if code == StatusCode::TOO_MANY_REQUESTS
                    && let Some(secs) = self.switches().retry_after
                    && let Ok(value) = secs.to_string().parse()
                {
                    response.headers_mut().insert("retry-after", value);
                }
                response
            })
    }

    fn check_plain(
        &self,
        deployment: &str,
        headers: &HeaderMap,
    ) -> Result<(), (StatusCode, &'static str)> {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if key != Some(self.api_key.as_str()) {
            return Err((StatusCode::UNAUTHORIZED, "invalid inference key"));
        }
        if deployment != self.deployment {
            return Err((StatusCode::NOT_FOUND, "no such deployment"));
        }
        match *lock(&self.fault) {
            Fault::Http500 => Err((StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
            Fault::TooManyRequests => Err((StatusCode::TOO_MANY_REQUESTS, "too many requests")),
            _ => Ok(()),
        }
    }

    /// A random live replica that is up: `(index, url)`. With none up,
    /// the cold ones start (Verda scaling up): they are up `cold_start`
    /// later.
    fn pick(&self) -> Option<(usize, String)> {
        let cold_start = self.switches().cold_start;
        let mut replicas = lock(&self.replicas);
        let now = Instant::now();
        let up: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].alive && replicas[i].up_at.is_some_and(|t| t <= now))
            .collect();
        if up.is_empty() {
            for replica in replicas.iter_mut().filter(|r| r.alive && r.up_at.is_none()) {
                replica.up_at = Some(now + cold_start);
            }
            return None;
        }
        let i = up[(uuid::Uuid::new_v4().as_u128() % up.len() as u128) as usize];
        Some((i, replicas[i].url.clone()))
    }

    /// A replica that is up and whose health check answers 200: Verda
    /// routes only to healthy replicas.
    async fn routable(&self) -> Option<(usize, String)> {
        let (index, url) = self.pick()?;
        let healthy = self
            .http
            .get(format!("{url}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        healthy.then_some((index, url))
    }

    fn count_run(&self, body: &Bytes) {
        if let Some(id) = super::run_ledger::prompt_id(body) {
            *lock(&self.runs).entry(id).or_default() += 1;
        }
    }

    /// Where this gateway records its runs.
    pub fn ledger(&self) -> &Arc<RunLedger> {
        &self.ledger
    }

    fn reclaiming(&self) -> bool {
        matches!(*lock(&self.fault), Fault::ReclaimAfter(_))
    }

    /// The deployment this gateway serves.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    fn set(&self, id: &str, status: Status, answer: Option<(u16, Bytes)>) {
        if let Some(inference) = lock(&self.inferences).get_mut(id) {
            inference.status = status;
            inference.answered = answer.as_ref().map(|_| Instant::now());
            inference.answer = answer;
        }
    }

    /// Whether the request TTL has removed `inference`.
    fn expired(&self, inference: &Inference) -> bool {
        let switches = self.switches();
        let Some(ttl) = switches.ttl else {
            return false;
        };
        let queued = matches!(inference.status, Status::Initialized | Status::Queue);
        let counts = switches.ttl_scope == TtlScope::FromSubmit || queued;
        counts && inference.submitted.elapsed() >= ttl
    }

    /// The request `id` as status and result see it: `None` when unknown,
    /// not known yet (the status lags the submit), or removed by the TTL.
    fn visible<T>(&self, id: &str, read: impl FnOnce(&Inference) -> T) -> Option<T> {
        let lag = self.switches().status_lag;
        let mut inferences = lock(&self.inferences);
        let inference = inferences.get(id)?;
        if self.expired(inference) {
            inferences.remove(id);
            return None;
        }
        (inference.submitted.elapsed() >= lag).then(|| read(inference))
    }

    /// Runs one queued request on a random replica, playing the faults.
    async fn run(self: Arc<Self>, id: String, path: String, body: Bytes) {
        self.set(&id, Status::Queue, None);
        loop {
            // Verda's queue: wait for a routable replica, unless the TTL
            // drops the request first.
            let (index, url) = loop {
                let expired = match lock(&self.inferences).get(&id) {
                    Some(inference) => self.expired(inference),
                    None => true,
                };
                if expired {
                    lock(&self.inferences).remove(&id);
                    tracing::debug!(inference = %id, "fake verda: request TTL passed in the queue");
                    return;
                }
                if let Some(replica) = self.routable().await {
                    break replica;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if self.run_on(&id, index, &url, &path, body.clone()).await {
                return;
            }
            // Reclaimed, and Verda delivers the request again.
            self.set(&id, Status::Queue, None);
        }
    }

    /// One run on replica `index`; `false` when its replica was reclaimed
    /// and the request goes back to the queue.
    async fn run_on(&self, id: &str, index: usize, url: &str, path: &str, body: Bytes) -> bool {
        // The fault as it is when the run reaches its replica: a run that
        // waited out a reclaim window is not reclaimed afterwards.
        let fault = *lock(&self.fault);
        self.set(id, Status::Inference, None);
        self.count_run(&body);
        let run = self.ledger.start(&self.deployment, &body, id);
        if fault == Fault::Hang {
            std::future::pending::<()>().await;
        }
        let request = self
            .http
            .post(format!("{url}/{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send();
        let forwarded = async {
            let response = request.await?;
            let code = response.status().as_u16();
            Ok::<_, reqwest::Error>((code, response.bytes().await?))
        };
        tokio::pin!(forwarded);
        let outcome = match fault {
            Fault::ReclaimAfter(after) => tokio::select! {
                done = &mut forwarded => Some(done),
                // Reclaimed only if the window is still open.
                _ = tokio::time::sleep(after) => match self.reclaiming() {
                    true => None,
                    false => Some(forwarded.await),
                },
            },
            _ => Some(forwarded.await),
        };
        let gateway_error = || Some((502, Bytes::from_static(b"Bad Gateway")));
        match outcome {
            Some(Ok((code, bytes))) => {
                // Verda sees any answer as done; the worker's answer says
                // whether the prompt ran to its end (`success`) or raised
                // or was interrupted by a cancel (`error`).
                let succeeded = code == 200
                    && serde_json::from_slice::<Value>(&bytes)
                        .is_ok_and(|answer| answer["status"] == "success");
                let outcome = if succeeded {
                    RunOutcome::Completed
                } else {
                    RunOutcome::Errored
                };
                self.ledger.finish(&run, outcome);
                self.set(id, Status::Completed, Some((code, bytes)));
                true
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "fake verda: replica unreachable");
                self.ledger.finish(&run, RunOutcome::Unreachable);
                self.set(id, Status::Completed, gateway_error());
                true
            }
            None => {
                self.ledger.finish(&run, RunOutcome::Reclaimed);
                lock(&self.replicas)[index].alive = false;
                self.reclaims.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    replica = index,
                    "fake verda: spot replica reclaimed mid-job"
                );
                match self.switches().reclaim_end {
                    ReclaimEnd::Redeliver => return false,
                    ReclaimEnd::GatewayError => {
                        self.set(id, Status::Completed, gateway_error());
                    }
                    ReclaimEnd::Gone => {
                        lock(&self.inferences).remove(id);
                    }
                }
                true
            }
        }
    }
}

async fn call(
    State(g): State<Arc<FakeVerda>>,
    Path((deployment, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = g.refusal(&deployment, &headers) {
        return refused;
    }
    let asynchronous = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("respond-async"));
    if !asynchronous {
        // A synchronous request waits in the queue too (for a while).
        let mut replica = None;
        for _ in 0..600 {
            replica = g.routable().await;
            if replica.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some((_, url)) = replica else {
            return (StatusCode::SERVICE_UNAVAILABLE, "no replica").into_response();
        };
        let request = if body.is_empty() {
            g.http.get(format!("{url}/{path}"))
        } else {
            g.count_run(&body);
            g.http
                .post(format!("{url}/{path}"))
                .header("content-type", "application/json")
                .body(body)
        };
        return match request.send().await {
            Ok(r) => {
                let code =
                    StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                (code, r.bytes().await.unwrap_or_default()).into_response()
            }
            Err(_) => (StatusCode::BAD_GATEWAY, "replica unreachable").into_response(),
        };
    }
    let id = uuid::Uuid::new_v4().to_string();
    lock(&g.inferences).insert(
        id.clone(),
        Inference {
            status: Status::Initialized,
            answer: None,
            answered: None,
            submitted: Instant::now(),
        },
    );
    tokio::spawn(g.clone().run(id.clone(), path, body));
    let result_path = format!("/result/{deployment}");
    (
        StatusCode::ACCEPTED,
        [
            ("x-inference-id", id.clone()),
            ("location", result_path.clone()),
        ],
        Json(json!({"Id": id, "StatusPath": format!("/status/{deployment}"), "ResultPath": result_path})),
    )
        .into_response()
}

fn inference_id(headers: &HeaderMap) -> String {
    headers
        .get("x-inference-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn status(
    State(g): State<Arc<FakeVerda>>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
) -> Response {
    g.status_calls.fetch_add(1, Ordering::SeqCst);
    if let Some(refused) = g.refusal(&deployment, &headers) {
        return refused;
    }
    let id = inference_id(&headers);
    match g.visible(&id, |inference| inference.status) {
        Some(status) => Json(json!({"Id": id, "Status": format!("{status:?}")})).into_response(),
        None => (StatusCode::NOT_FOUND, "unknown inference").into_response(),
    }
}

async fn result(
    State(g): State<Arc<FakeVerda>>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = g.refusal(&deployment, &headers) {
        return refused;
    }
    let id = inference_id(&headers);
    let late = match *lock(&g.fault) {
        Fault::LateResult(after) => after,
        _ => Duration::ZERO,
    };
    let propagated = g.switches().result_code == ResultCode::Propagated;
    let stored = g.visible(&id, |inference| {
        match (&inference.answer, inference.answered) {
            (Some((code, body)), Some(at)) if at.elapsed() >= late => Ok((*code, body.clone())),
            _ => Err(inference.status),
        }
    });
    match stored {
        Some(Ok((code, body))) => {
            let code = match propagated {
                true => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                false => StatusCode::OK,
            };
            (code, [("content-type", "application/json")], body).into_response()
        }
        Some(Err(status)) => (
            StatusCode::ACCEPTED,
            Json(json!({"Id": id, "Status": format!("{status:?}")})),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "unknown inference").into_response(),
    }
}

type Gateways = Arc<Vec<Arc<FakeVerda>>>;

fn by_deployment(all: &Gateways, deployment: &str) -> Option<Arc<FakeVerda>> {
    all.iter().find(|g| g.deployment == deployment).cloned()
}

fn no_such_deployment() -> Response {
    (StatusCode::NOT_FOUND, "no such deployment").into_response()
}

async fn any_call(
    State(all): State<Gateways>,
    Path((deployment, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match by_deployment(&all, &deployment) {
        Some(g) => call(State(g), Path((deployment, path)), headers, body).await,
        None => no_such_deployment(),
    }
}

async fn any_status(
    State(all): State<Gateways>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
) -> Response {
    match by_deployment(&all, &deployment) {
        Some(g) => status(State(g), Path(deployment), headers).await,
        None => no_such_deployment(),
    }
}

async fn any_result(
    State(all): State<Gateways>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
) -> Response {
    match by_deployment(&all, &deployment) {
        Some(g) => result(State(g), Path(deployment), headers).await,
        None => no_such_deployment(),
    }
}
