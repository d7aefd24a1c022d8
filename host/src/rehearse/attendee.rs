//! One simulated attendee: logs in, keeps the editor's websocket open,
//! presses Run after every demo (a burst of their persona's size), cancels
//! now and then, uploads the image an edit workflow needs, and downloads
//! what came out, over the same HTTP API the ComfyUI editor uses.
//!
//! Like a browser behind a load balancer it is "stuck" to one host and
//! moves to the next when its host stops answering (a kill -9), and it
//! presses Run again when the host says 503 (a Redis outage). Everything it
//! sees is recorded for the report: every request's outcome, every
//! websocket event, every gap in its websocket.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Clock, Persona, Plan};

/// How long an attendee keeps pressing Run (or retrying a download) on a
/// host that does not answer or answers 503 before giving up: longer than a
/// killed single host takes to come back (the rehearsal allows it 60 s) and
/// than the default fault window, as a person in the room would wait.
const KEEP_TRYING: Duration = Duration::from_secs(90);

/// The outcome of one HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it was answered (ms since the epoch).
    pub at_ms: u64,
    /// `submit`, `cancel`, `upload`, `view`, `history`, `login`.
    pub what: &'static str,
    /// The status code, or none when the host did not answer.
    pub status: Option<u16>,
    /// The transport error, when there was no answer.
    pub error: Option<String>,
}

/// What one attendee did and saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Login name.
    pub name: String,
    /// The persona's name.
    pub persona: &'static str,
    /// Prompt ids the host acknowledged (200 to `POST /api/prompt`).
    pub accepted: Vec<String>,
    /// Submissions refused with a 4xx (caps, validation), by status.
    pub refused: Vec<u16>,
    /// Submissions given up after retries (no answer or 5xx every time).
    pub abandoned: u32,
    /// Prompt ids the attendee asked to cancel.
    pub cancel_asked: Vec<String>,
    /// Uploads that came back as stored.
    pub uploads: u32,
    /// Output files downloaded (200 with a body).
    pub downloads: u32,
    /// Output downloads that failed (status or transport).
    pub download_errors: u32,
    /// Prompt ids whose history entry listed outputs, with how many files:
    /// the report checks each is a succeeded job this attendee was told of.
    pub downloaded_from: Vec<(String, usize)>,
    /// Every websocket event that named a prompt: (prompt id, type, ms).
    pub events: Vec<(String, String, u64)>,
    /// Websocket gaps: (lost at, back at) in ms; an open gap ends at the end.
    pub gaps: Vec<(u64, u64)>,
    /// Times it moved to another host (its host stopped answering).
    pub failovers: u32,
    /// Every request.
    pub requests: Vec<Request>,
}

/// A running attendee: its record, shared with its websocket task.
struct Shared {
    record: Mutex<Record>,
    host: AtomicUsize,
}

impl Shared {
    /// Moves on from the host at `turn`, unless the websocket (or another
    /// request) already moved on from it: one lost host, one move.
    fn fail_over(&self, turn: usize) {
        if self
            .host
            .compare_exchange(turn, turn + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            lock(&self.record).failovers += 1;
        }
    }

    fn log(&self, what: &'static str, outcome: &Result<reqwest::Response, reqwest::Error>) {
        let (status, error) = match outcome {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(transport_cause(e))),
        };
        lock(&self.record).requests.push(Request {
            at_ms: Clock::now_ms(),
            what,
            status,
            error,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn transport_cause(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        "connection cut".into()
    }
}

/// One attendee's run.
pub struct Attendee {
    name: String,
    password: String,
    persona: Persona,
    hosts: Arc<Vec<String>>,
    http: reqwest::Client,
    shared: Arc<Shared>,
    rng: StdRng,
    downloaded: HashSet<String>,
    upload: Option<String>,
}

impl Attendee {
    /// An attendee on `hosts[first]` to begin with.
    pub fn new(
        name: String,
        password: String,
        persona: Persona,
        hosts: Arc<Vec<String>>,
        first: usize,
        seed: u64,
    ) -> Self {
        let record = Record {
            name: name.clone(),
            persona: persona.name,
            ..Record::default()
        };
        Attendee {
            name,
            password,
            persona,
            hosts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                // Under the host's idle close (server.header_timeout_secs,
                // 10 s): a kept-alive connection reused just as the host
                // closes it is cut, which a browser retries by itself.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            shared: Arc::new(Shared {
                record: Mutex::new(record),
                host: AtomicUsize::new(first),
            }),
            rng: StdRng::seed_from_u64(seed),
            downloaded: HashSet::new(),
            upload: None,
        }
    }

    /// Plays the script until `stop` says so (the websocket stays open
    /// until then); returns the record.
    pub async fn run(
        mut self,
        plan: Arc<Plan>,
        clock: Clock,
        stop: watch::Receiver<bool>,
    ) -> Record {
        let socket = tokio::spawn(websocket(
            self.name.clone(),
            self.password.clone(),
            self.hosts.clone(),
            self.shared.clone(),
            stop.clone(),
        ));
        for demo in 0..plan.demos {
            // Attendees press Run over the minute after the demo, not at once.
            let jitter =
                Duration::from_millis(self.rng.random_range(0..plan.burst_spread_ms().max(1)));
            clock.sleep_until(plan.demo_at(demo) + jitter).await;
            self.download_new().await;
            if self.persona.edits {
                self.upload_image(demo).await;
            }
            let mut burst = Vec::new();
            for _ in 0..self.persona.burst {
                if let Some(id) = self.submit().await {
                    burst.push(id);
                }
            }
            // Second thoughts: cancel the last of the burst, still queued.
            if burst.len() > 1 && self.rng.random_bool(self.persona.cancel_chance) {
                let id = burst.pop().unwrap_or_default();
                self.cancel(&id).await;
            }
        }
        clock.sleep_until(plan.script_end()).await;
        self.wait_for_own_jobs(&plan).await;
        self.download_new().await;
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        let _ = socket.await;
        std::mem::take(&mut *lock(&self.shared.record))
    }

    /// The host this attendee is on: its turn number and URL.
    fn host(&self) -> (usize, String) {
        let turn = self.shared.host.load(Ordering::Relaxed);
        (turn, self.hosts[turn % self.hosts.len()].clone())
    }

    /// A request to the current host, moving on when it does not answer
    /// and pressing again on a 503, like an attendee would.
    async fn send(
        &self,
        what: &'static str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Option<reqwest::Response> {
        let started = tokio::time::Instant::now();
        let mut attempt = 0u64;
        while started.elapsed() < KEEP_TRYING {
            attempt += 1;
            let (turn, host) = self.host();
            let request = build(&self.http, &host).basic_auth(&self.name, Some(&self.password));
            let outcome = request.send().await;
            self.shared.log(what, &outcome);
            match outcome {
                Ok(r) if r.status() == 503 => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(r) => return Some(r),
                Err(_) => {
                    self.shared.fail_over(turn);
                    let backoff = (100 + 50 * attempt).min(2_000);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
            }
        }
        None
    }

    async fn submit(&mut self) -> Option<String> {
        let prompt = self.prompt();
        let body = json!({"prompt": prompt, "client_id": format!("{}-tab", self.name)});
        let response = self
            .send("submit", |c, h| {
                c.post(format!("{h}/api/prompt")).json(&body)
            })
            .await;
        let Some(response) = response else {
            lock(&self.shared.record).abandoned += 1;
            return None;
        };
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let mut record = lock(&self.shared.record);
        match answer["prompt_id"].as_str() {
            Some(id) if status == 200 => {
                record.accepted.push(id.to_string());
                Some(id.to_string())
            }
            _ => {
                record.refused.push(status);
                None
            }
        }
    }

    /// A workshop template with a fresh seed; edit workflows use the
    /// attendee's upload.
    fn prompt(&mut self) -> Value {
        let templates = &self.persona.templates;
        let pick = templates[self.rng.random_range(0..templates.len())];
        let mut prompt = super::template(pick);
        if let Some(nodes) = prompt.as_object_mut() {
            for node in nodes.values_mut() {
                let inputs = &mut node["inputs"];
                for key in ["seed", "noise_seed"] {
                    if inputs.get(key).is_some_and(Value::is_number) {
                        inputs[key] = json!(self.rng.random_range(0..1u64 << 48));
                    }
                }
                if node["class_type"] == "LoadImage"
                    && let Some(name) = &self.upload
                {
                    node["inputs"]["image"] = json!(name);
                }
            }
        }
        prompt
    }

    async fn cancel(&self, id: &str) {
        lock(&self.shared.record).cancel_asked.push(id.to_string());
        let body = json!({"delete": [id]});
        self.send("cancel", |c, h| {
            c.post(format!("{h}/api/queue")).json(&body)
        })
        .await;
    }

    async fn upload_image(&mut self, demo: u32) {
        let name = format!("{}-reference-{demo}.png", self.name);
        let png = super::png::striped(64, 48, self.rng.random());
        let response = self
            .send("upload", |c, h| {
                let part = reqwest::multipart::Part::bytes(png.clone())
                    .file_name(name.clone())
                    .mime_str("image/png")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
                let form = reqwest::multipart::Form::new()
                    .part("image", part)
                    .text("overwrite", "true");
                c.post(format!("{h}/api/upload/image")).multipart(form)
            })
            .await;
        if let Some(r) = response
            && r.status() == 200
            && let Ok(answer) = r.json::<Value>().await
            && let Some(stored) = answer["name"].as_str()
        {
            self.upload = Some(stored.to_string());
            lock(&self.shared.record).uploads += 1;
        }
    }

    /// Downloads every output of the attendee's finished jobs not yet
    /// downloaded, the way the editor's queue panel shows them.
    async fn download_new(&mut self) {
        let Some(response) = self
            .send("history", |c, h| {
                c.get(format!("{h}/api/history?max_items=10000"))
            })
            .await
        else {
            return;
        };
        let Ok(history) = response.json::<Value>().await else {
            return;
        };
        let mut files = Vec::new();
        for (id, entry) in history.as_object().into_iter().flatten() {
            if self.downloaded.contains(id) {
                continue;
            }
            self.downloaded.insert(id.clone());
            let before = files.len();
            for outputs in entry["outputs"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, o)| o)
            {
                for list in outputs.as_object().into_iter().flatten().map(|(_, l)| l) {
                    for file in list.as_array().into_iter().flatten() {
                        if let Some(name) = file["filename"].as_str() {
                            files.push((
                                name.to_string(),
                                file["subfolder"].as_str().unwrap_or("").to_string(),
                                file["type"].as_str().unwrap_or("output").to_string(),
                            ));
                        }
                    }
                }
            }
            if files.len() > before {
                lock(&self.shared.record)
                    .downloaded_from
                    .push((id.clone(), files.len() - before));
            }
        }
        for (name, subfolder, kind) in files {
            let query = [("filename", name), ("subfolder", subfolder), ("type", kind)];
            let response = self
                .send("view", |c, h| c.get(format!("{h}/api/view")).query(&query))
                .await;
            let ok = match response {
                Some(r) if r.status() == 200 => r.bytes().await.is_ok_and(|b| !b.is_empty()),
                _ => false,
            };
            let mut record = lock(&self.shared.record);
            if ok {
                record.downloads += 1;
            } else {
                record.download_errors += 1;
            }
        }
    }

    /// After the script: waits (bounded) until none of this attendee's
    /// jobs is waiting or running, as an attendee waits for the last result.
    async fn wait_for_own_jobs(&self, plan: &Plan) {
        let deadline = tokio::time::Instant::now() + plan.drain;
        while tokio::time::Instant::now() < deadline {
            let Some(r) = self
                .send("queue", |c, h| c.get(format!("{h}/api/queue")))
                .await
            else {
                return;
            };
            let queue: Value = r.json().await.unwrap_or(Value::Null);
            let waiting = ["queue_running", "queue_pending"]
                .iter()
                .map(|k| queue[k].as_array().map_or(0, Vec::len))
                .sum::<usize>();
            if waiting == 0 && !queue.is_null() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Keeps the editor's websocket open on the attendee's current host,
/// reconnecting (and failing over) when it drops, until `stop`.
async fn websocket(
    name: String,
    password: String,
    hosts: Arc<Vec<String>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
    let mut lost_at: Option<u64> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let turn = shared.host.load(Ordering::Relaxed);
        let host = hosts[turn % hosts.len()].replace("http://", "ws://");
        let Ok(mut request) = format!("{host}/ws?clientId={name}-tab").into_client_request() else {
            break;
        };
        if let Ok(value) = format!("Basic {token}").parse() {
            request.headers_mut().insert("authorization", value);
        }
        let connected = tokio::select! {
            c = tokio_tungstenite::connect_async(request) => c,
            _ = stop.changed() => break,
        };
        let mut socket = match connected {
            Ok((socket, _)) => socket,
            Err(refused) => {
                lost_at.get_or_insert(Clock::now_ms());
                // A host that did not answer is gone: the browser's reconnect
                // lands on the next host, and so do the attendee's HTTP calls
                // (one sticky host, as behind a balancer). One that answered
                // (a 503 while its queue is unreachable) is alive: a balancer
                // keeps the attendee there, and the browser tries again.
                if !matches!(refused, tokio_tungstenite::tungstenite::Error::Http(_)) {
                    shared.fail_over(turn);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if let Some(from) = lost_at.take() {
            lock(&shared.record).gaps.push((from, Clock::now_ms()));
        }
        loop {
            let message = tokio::select! {
                m = socket.next() => m,
                _ = stop.changed() => { let _ = socket.close(None).await; return finish(&shared, lost_at) },
            };
            let Some(Ok(message)) = message else {
                lost_at = Some(Clock::now_ms());
                break;
            };
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if let Some(id) = value["data"]["prompt_id"].as_str() {
                let kind = value["type"].as_str().unwrap_or("").to_string();
                lock(&shared.record)
                    .events
                    .push((id.to_string(), kind, Clock::now_ms()));
            }
        }
    }
    finish(&shared, lost_at)
}

fn finish(shared: &Shared, lost_at: Option<u64>) {
    if let Some(from) = lost_at {
        lock(&shared.record).gaps.push((from, Clock::now_ms()));
    }
}
