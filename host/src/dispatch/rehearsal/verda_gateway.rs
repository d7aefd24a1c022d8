//! A fake Verda container gateway, for tests and rehearsals: the async
//! inference API in front of several `comfyume worker` replicas, each
//! beside its own rehearsal ComfyUI.
//!
//! It behaves like the documented service where it matters to us:
//! - `POST /<deployment>/<path>` with `Prefer: respond-async` queues the
//!   request and answers `{"Id","StatusPath","ResultPath"}` with
//!   `X-Inference-Id` and `Location`; the request then runs on a **random**
//!   live replica (the load balancer is not sticky); without the header the
//!   request is proxied synchronously, again to a random replica.
//! - `GET /status/<deployment>` and `GET /result/<deployment>` with
//!   `X-Inference-Id`: the status (`Queued`, `Running`, `Completed`,
//!   `Failed`), and the replica's stored answer (status code and body).
//! - `Authorization: Bearer <key>` on everything, 401 otherwise.
//!
//! Faults a test or a rehearsal can switch on: every call answers 500; the
//! gateway accepts jobs but never runs them (a hang); the replica running a
//! job is reclaimed after it ran for a while (a spot reclaim: the job ends
//! `Failed` with no answer, the replica is gone); a result that can be
//! fetched only a while after the status says `Completed` (the two are
//! separate endpoints, read from separate stores). Every request it forwards
//! is counted per prompt id, so a test can prove one GPU run per job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::run_ledger::{RunLedger, RunOutcome};
use super::{Rehearsal, RehearsalConfig};
use crate::worker::{Worker, WorkerConfig};

/// A fault the gateway plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Answer every call with HTTP 500.
    Http500,
    /// Accept jobs, never run them: the status stays `Queued`.
    Hang,
    /// Reclaim the replica of every job this long after it started.
    ReclaimAfter(Duration),
    /// A finished job's result answers 202 (not there yet) for this long
    /// after its status says `Completed`.
    LateResult(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Running,
    Completed,
    Failed,
}

struct Inference {
    status: Status,
    answer: Option<(u16, Bytes)>,
    /// When the answer was stored.
    answered: Option<std::time::Instant>,
}

struct Replica {
    url: String,
    alive: bool,
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
    reclaims: AtomicUsize,
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
                    .map(|url| Replica { url, alive: true })
                    .collect(),
            ),
            inferences: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            ledger,
            fault: Mutex::new(Fault::None),
            reclaims: AtomicUsize::new(0),
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

    /// Brings every reclaimed replica back (Verda starting new ones).
    pub fn replace_reclaimed(&self) {
        for replica in lock(&self.replicas).iter_mut() {
            replica.alive = true;
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

    fn check(
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
        if *lock(&self.fault) == Fault::Http500 {
            return Err((StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
        }
        Ok(())
    }

    /// A random live replica: `(index, url)`.
    fn pick(&self) -> Option<(usize, String)> {
        let replicas = lock(&self.replicas);
        let alive: Vec<usize> = (0..replicas.len()).filter(|&i| replicas[i].alive).collect();
        if alive.is_empty() {
            return None;
        }
        let i = alive[(uuid::Uuid::new_v4().as_u128() % alive.len() as u128) as usize];
        Some((i, replicas[i].url.clone()))
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
            inference.answered = answer.as_ref().map(|_| std::time::Instant::now());
            inference.answer = answer;
        }
    }

    /// Runs one queued request on a random replica, playing the faults.
    async fn run(self: Arc<Self>, id: String, path: String, body: Bytes) {
        if *lock(&self.fault) == Fault::Hang {
            return;
        }
        // Verda's queue: wait for a live replica.
        let (index, url) = loop {
            if let Some(replica) = self.pick() {
                break replica;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The fault as it is when the run reaches its replica: a run that
        // waited out a reclaim window is not reclaimed afterwards.
        let fault = *lock(&self.fault);
        self.set(&id, Status::Running, None);
        self.count_run(&body);
        let run = self.ledger.start(&self.deployment, &body, &id);
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
        match outcome {
            Some(Ok((code, bytes))) => {
                // Verda sees any 200 as done; the worker's answer says
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
                self.set(&id, Status::Completed, Some((code, bytes)))
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "fake verda: replica unreachable");
                self.ledger.finish(&run, RunOutcome::Unreachable);
                self.set(&id, Status::Failed, None);
            }
            None => {
                self.ledger.finish(&run, RunOutcome::Reclaimed);
                lock(&self.replicas)[index].alive = false;
                self.reclaims.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    replica = index,
                    "fake verda: spot replica reclaimed mid-job"
                );
                self.set(&id, Status::Failed, None);
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
    if let Err(refused) = g.check(&deployment, &headers) {
        return refused.into_response();
    }
    let asynchronous = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("respond-async"));
    if !asynchronous {
        let Some((_, url)) = g.pick() else {
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
            status: Status::Queued,
            answer: None,
            answered: None,
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
    if let Err(refused) = g.check(&deployment, &headers) {
        return refused.into_response();
    }
    let id = inference_id(&headers);
    match lock(&g.inferences).get(&id) {
        Some(inference) => {
            Json(json!({"Id": id, "Status": format!("{:?}", inference.status)})).into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown inference").into_response(),
    }
}

async fn result(
    State(g): State<Arc<FakeVerda>>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = g.check(&deployment, &headers) {
        return refused.into_response();
    }
    let id = inference_id(&headers);
    let late = match *lock(&g.fault) {
        Fault::LateResult(after) => after,
        _ => Duration::ZERO,
    };
    match lock(&g.inferences).get(&id) {
        Some(Inference {
            answer: Some((code, body)),
            answered: Some(at),
            ..
        }) if at.elapsed() >= late => {
            let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, [("content-type", "application/json")], body.clone()).into_response()
        }
        Some(inference) => (
            StatusCode::ACCEPTED,
            Json(json!({"Id": id, "Status": format!("{:?}", inference.status)})),
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
