//! A ComfyUI server without a GPU: the rehearsal backend, and the fake
//! ComfyUI the tests run against.
//!
//! It speaks the protocol of the captured traffic in `tests/fixtures/comfyui`
//! (same endpoints, same websocket message order, same `/history` shape) and
//! "runs" a prompt by walking its nodes: a cold start before the first
//! prompt, `progress` messages for every sampling step of a node that has a
//! `steps` input, a placeholder file for every Save/Preview node, then
//! `execution_success`. Faults for tests: a node class that raises, a
//! websocket that is refused, a delay per step long enough to cancel in,
//! `/history` answering 500 for a while (an overloaded server), a restart
//! that forgets every prompt.
//!
//! Everything it produces is labelled as rehearsal: file names start with
//! `rehearsal_`, and the placeholder images are a 256×256 striped gradient
//! coloured by the prompt id.

mod run;
pub mod run_ledger;
pub mod verda_gateway;
pub mod verda_management;
pub mod verda_switches;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How the rehearsal backend behaves.
#[derive(Debug, Clone)]
pub struct RehearsalConfig {
    /// Delay before the first prompt runs (a cold GPU replica).
    pub cold_start: Duration,
    /// Time per sampling step.
    pub step_time: Duration,
    /// Steps simulated per sampler node at most (real templates ask for 20+).
    pub max_steps: u32,
    /// A node class that raises when it runs (tests of `execution_error`).
    pub fail_class: Option<String>,
    /// Refuse websocket connections (tests of the polling fallback).
    pub refuse_websocket: bool,
    /// The node catalogue `/object_info` serves, if any.
    pub object_info: Option<Arc<Value>>,
}

impl Default for RehearsalConfig {
    fn default() -> Self {
        RehearsalConfig {
            cold_start: Duration::ZERO,
            step_time: Duration::from_millis(10),
            max_steps: 4,
            fail_class: None,
            refuse_websocket: false,
            object_info: None,
        }
    }
}

/// The server's state.
pub struct Rehearsal {
    config: RehearsalConfig,
    warm: AtomicBool,
    number: AtomicI64,
    history: Mutex<HashMap<String, Value>>,
    files: Mutex<HashMap<(String, String, String), Vec<u8>>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    interrupted: Mutex<HashSet<String>>,
    running: Mutex<HashSet<String>>,
    /// `/history` requests still to answer with a 500.
    history_failures: AtomicU32,
    /// Restarts so far: a prompt begun before the latest one was lost
    /// with the process.
    restarts: AtomicU64,
    /// (client id it is for, or none for everyone; message text).
    sockets: broadcast::Sender<(Option<String>, String)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rehearsal {
    /// A backend with `config`.
    pub fn new(config: RehearsalConfig) -> Arc<Self> {
        let (sockets, _) = broadcast::channel(1024);
        Arc::new(Rehearsal {
            config,
            warm: AtomicBool::new(false),
            number: AtomicI64::new(0),
            history: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            interrupted: Mutex::new(HashSet::new()),
            running: Mutex::new(HashSet::new()),
            history_failures: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            sockets,
        })
    }

    /// The next `count` `/history` requests fail as aiohttp answers an
    /// exception in a handler (500, plain text); prompts keep running.
    pub fn fail_history(&self, count: u32) {
        self.history_failures.store(count, Ordering::SeqCst);
    }

    /// Plays a ComfyUI process that died and came back (an out-of-memory
    /// kill, a crash): its queue, running prompts and history are gone (they
    /// live in memory), prompts in flight never end, and the next prompt
    /// loads the models again. Output files on disk stay.
    pub fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
        self.warm.store(false, Ordering::SeqCst);
        lock(&self.running).clear();
        lock(&self.history).clear();
        lock(&self.interrupted).clear();
    }

    /// The routes ComfyUI serves, at the root (ComfyUI also serves them under `/api`).
    pub fn router(self: &Arc<Self>) -> Router {
        let routes = Router::new()
            .route("/prompt", post(submit))
            .route("/history/{id}", get(history))
            .route("/view", get(view))
            .route("/upload/image", post(upload))
            .route("/interrupt", post(interrupt))
            .route("/queue", post(queue).get(queue_state))
            .route("/object_info", get(object_info))
            .route("/ws", get(socket));
        Router::new()
            .merge(routes.clone())
            .nest("/api", routes)
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1` on a free port; returns the address.
    pub async fn serve(self: &Arc<Self>) -> std::io::Result<SocketAddr> {
        serve_on_loopback(self.router()).await
    }

    /// The bytes of an uploaded input, if it arrived.
    pub fn uploaded(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.uploads).get(name).cloned()
    }

    fn send(&self, to: Option<&str>, kind: &str, data: Value) {
        let text = json!({ "type": kind, "data": data }).to_string();
        let _ = self.sockets.send((to.map(str::to_owned), text));
    }
}

/// Serves `router` on `127.0.0.1` on a free port, in the background;
/// returns the address. Shared by the test doubles.
pub(crate) async fn serve_on_loopback(router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

#[derive(Deserialize)]
struct PromptBody {
    prompt: Option<Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    prompt_id: Option<String>,
}

fn refusal(kind: &str, message: &str) -> Response {
    let body = json!({
        "error": {"type": kind, "message": message, "details": message, "extra_info": {}},
        "node_errors": {}
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn submit(State(r): State<Arc<Rehearsal>>, Json(body): Json<PromptBody>) -> Response {
    let Some(prompt) = body.prompt else {
        return refusal("no_prompt", "No prompt provided");
    };
    let Some(nodes) = prompt.as_object() else {
        return refusal(
            "invalid_prompt",
            "Invalid prompt: the prompt must be an object",
        );
    };
    if nodes
        .values()
        .any(|n| n.get("class_type").and_then(Value::as_str).is_none())
    {
        return refusal(
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
        );
    }
    let prompt_id = body
        .prompt_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let number = r.number.fetch_add(1, Ordering::SeqCst);
    lock(&r.running).insert(prompt_id.clone());
    tokio::spawn(run::execute(
        r.clone(),
        prompt_id.clone(),
        body.client_id,
        prompt,
    ));
    Json(json!({ "prompt_id": prompt_id, "number": number, "node_errors": {} })).into_response()
}

async fn history(State(r): State<Arc<Rehearsal>>, Path(id): Path<String>) -> Response {
    let failing = r
        .history_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
            .into_response();
    }
    let entry = lock(&r.history).get(&id).cloned();
    Json(match entry {
        Some(entry) => json!({ id: entry }),
        None => json!({}),
    })
    .into_response()
}

#[derive(Deserialize)]
struct ViewQuery {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default)]
    kind: String,
}

async fn view(State(r): State<Arc<Rehearsal>>, Query(q): Query<ViewQuery>) -> Response {
    match lock(&r.files).get(&(q.subfolder, q.filename, q.kind)) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn upload(State(r): State<Arc<Rehearsal>>, mut form: Multipart) -> Response {
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() != Some("image") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload.png").to_string();
        let Ok(bytes) = field.bytes().await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        lock(&r.uploads).insert(name.clone(), bytes.to_vec());
        return Json(json!({ "name": name, "subfolder": "", "type": "input" })).into_response();
    }
    StatusCode::BAD_REQUEST.into_response()
}

async fn interrupt(State(r): State<Arc<Rehearsal>>, body: Option<Json<Value>>) -> StatusCode {
    if let Some(id) = body
        .as_ref()
        .and_then(|b| b.get("prompt_id"))
        .and_then(Value::as_str)
    {
        lock(&r.interrupted).insert(id.to_string());
    }
    StatusCode::OK
}

async fn queue(State(r): State<Arc<Rehearsal>>, Json(body): Json<Value>) -> StatusCode {
    for id in body
        .get("delete")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = id.as_str() {
            lock(&r.interrupted).insert(id.to_string());
        }
    }
    StatusCode::OK
}

async fn queue_state(State(r): State<Arc<Rehearsal>>) -> Json<Value> {
    let running: Vec<Value> = lock(&r.running)
        .iter()
        .map(|id| json!([0, id, {}, {}, []]))
        .collect();
    Json(json!({ "queue_running": running, "queue_pending": [] }))
}

async fn object_info(State(r): State<Arc<Rehearsal>>) -> Response {
    match &r.config.object_info {
        Some(catalogue) => Json(catalogue.as_ref().clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no node catalogue configured for rehearsal",
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

async fn socket(
    State(r): State<Arc<Rehearsal>>,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if r.config.refuse_websocket {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    upgrade.on_upgrade(move |ws| talk(r, q.client_id, ws))
}

async fn talk(r: Arc<Rehearsal>, client_id: Option<String>, mut ws: WebSocket) {
    let mut events = r.sockets.subscribe();
    let sid = client_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}});
    if ws
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    while let Ok((to, text)) = events.recv().await {
        if (to.is_none() || to == client_id) && ws.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}
