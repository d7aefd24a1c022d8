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
//! that forgets every prompt, websockets dropped under their clients.
//!
//! Behaviours of the real ComfyUI 0.33.0 it reproduces (each observed on the
//! real server, `shared/peers/comfyui/README.md`):
//! - One websocket per `clientId`: a second socket with the same id
//!   replaces the first, which receives nothing more; and a socket that
//!   closes unregisters its id, even if a newer socket holds it
//!   (`server.py`'s `finally: self.sockets.pop(sid)`). Prompt events go
//!   only to the socket of the prompt's `client_id`; `status` to every
//!   registered socket.
//! - `execution_success` is sent before the history entry is written
//!   (`history_lag` later here); `executing` with `node: null` follows
//!   once it is written.
//! - `POST /upload/image` stores under its `subfolder` field, replacing a
//!   file of the same name; every prompt shares one input folder.
//!
//! Everything it produces is labelled as rehearsal: file names start with
//! `rehearsal_`, and the placeholder images are a 256×256 striped gradient
//! coloured by the prompt id.

mod run;
pub mod run_ledger;
pub mod verda_deployments;
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
    /// Between `execution_success` and the history write (ComfyUI announces
    /// the end first).
    pub history_lag: Duration,
    /// Where uploads are also written, as ComfyUI writes them to its input
    /// folder (tests of removing a job's inputs); memory only when unset.
    pub input_dir: Option<std::path::PathBuf>,
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
            history_lag: Duration::from_millis(20),
            input_dir: None,
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
    /// The socket each client id is registered with (ComfyUI's
    /// `self.sockets`), by a number per socket.
    registered: Mutex<HashMap<String, u64>>,
    /// Sockets opened so far (numbers them), and so on.
    sockets_opened: AtomicU64,
    /// Bumped to close every open socket from the server's side.
    hang_up: tokio::sync::watch::Sender<u64>,
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
            registered: Mutex::new(HashMap::new()),
            sockets_opened: AtomicU64::new(0),
            hang_up: tokio::sync::watch::Sender::new(0),
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
        self.drop_sockets();
        self.warm.store(false, Ordering::SeqCst);
        lock(&self.running).clear();
        lock(&self.history).clear();
        lock(&self.interrupted).clear();
    }

    /// Closes every open websocket from the server's side (a proxy or
    /// network hiccup, a restart); prompts go on running.
    pub fn drop_sockets(&self) {
        self.hang_up.send_modify(|n| *n += 1);
    }

    /// The prompt as it ran (from its history entry), once it ended.
    pub fn prompt_of(&self, prompt_id: &str) -> Option<Value> {
        lock(&self.history)
            .get(prompt_id)
            .and_then(|entry| entry.pointer("/prompt/2"))
            .cloned()
    }

    /// Websockets opened so far.
    pub fn sockets_opened(&self) -> u64 {
        self.sockets_opened.load(Ordering::SeqCst)
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

    /// The bytes of an uploaded input (`subfolder/name`, or `name` at the
    /// root of the input folder), if it arrived.
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
        let _ = axum::serve(crate::server::no_delay(listener), router).await;
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
    let mut image = None;
    let mut subfolder = String::new();
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("image") => {
                let name = field.file_name().unwrap_or("upload.png").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                image = Some((name, bytes));
            }
            Some("subfolder") => subfolder = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    let Some((name, bytes)) = image else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // ComfyUI refuses a subfolder leaving its input folder ("..", a root).
    let subfolder = subfolder.trim_matches('/').to_string();
    if subfolder
        .split('/')
        .any(|part| part == ".." || part.contains('\\'))
        || name.contains(['/', '\\'])
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let path = if subfolder.is_empty() {
        name.clone()
    } else {
        format!("{subfolder}/{name}")
    };
    if let Some(dir) = &r.config.input_dir {
        let file = dir.join(&path);
        let written = match file.parent() {
            Some(parent) => {
                std::fs::create_dir_all(parent).and_then(|()| std::fs::write(&file, &bytes))
            }
            None => Ok(()),
        };
        if written.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    lock(&r.uploads).insert(path, bytes.to_vec());
    Json(json!({ "name": name, "subfolder": subfolder, "type": "input" })).into_response()
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

async fn talk(r: Arc<Rehearsal>, client_id: Option<String>, ws: WebSocket) {
    use futures_util::{SinkExt as _, StreamExt as _};
    let mut events = r.sockets.subscribe();
    let mut hang_up = r.hang_up.subscribe();
    let me = r.sockets_opened.fetch_add(1, Ordering::SeqCst) + 1;
    let sid = client_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // A newer socket of the same client id replaces the older one.
    lock(&r.registered).insert(sid.clone(), me);
    let (mut tx, mut rx) = ws.split();
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}});
    if tx
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Ok((to, text)) = event else { break };
                    let current = lock(&r.registered).get(&sid) == Some(&me);
                    let for_me = to.as_deref().is_none_or(|to| to == sid);
                    if current && for_me && tx.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                message = rx.next() => match message {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = hang_up.changed() => break,
            }
        }
    }
    // As ComfyUI does, whichever socket of the id is registered now.
    lock(&r.registered).remove(&sid);
    let _ = tx.close().await;
}
