//! A whole host on a loopback port for the attendee API tests: users
//! `ann` and `bob`, a fast rehearsal pool, HTTP and websocket helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use comfyume::auth::{Role, UsersFile, hash_password};
use comfyume::config::{Config, PoolConfig};
use serde_json::Value;

pub const PASSWORD: &str = "correct horse";

pub struct Running {
    pub dir: std::sync::Arc<tempfile::TempDir>,
    pub data: PathBuf,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A host on a loopback port with attendees `ann` and `bob` and a fast
/// rehearsal pool.
pub async fn start() -> Running {
    start_with(|_| {}).await
}

/// [`start`] with a change to the config (e.g. a Redis queue) and, when
/// given, an existing data folder shared with another host.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Running {
    start_in(
        std::sync::Arc::new(tempfile::tempdir().expect("tempdir")),
        tweak,
    )
    .await
}

pub async fn start_in(
    dir: std::sync::Arc<tempfile::TempDir>,
    tweak: impl FnOnce(&mut Config),
) -> Running {
    comfyume::tls::install_provider();
    let data = dir.path().to_path_buf();
    let cheap = argon2::Params::new(8, 1, 1, None).expect("params");
    if UsersFile::load(&data).map_or(true, |f| f.get("ann").is_none()) {
        for name in ["ann", "bob"] {
            let hash = hash_password(PASSWORD, &cheap).expect("hash");
            UsersFile::update(&data, |f| f.add(name, Role::Attendee, hash)).expect("add user");
        }
    }
    let mut config = Config::default();
    config.server.data_dir = data.clone();
    config.frontend.auto_install = false;
    config.attendees.templates_dir = repo().join("workflows/ui");
    let mut pool = PoolConfig::rehearsal();
    pool.cold_start_ms = 0;
    pool.step_ms = 5;
    config.pools.insert("rehearsal".into(), pool);
    tweak(&mut config);
    let host = comfyume::server::build(config).await.expect("host builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let app = host.app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(comfyume::server::no_delay(listener), app).await;
    });
    Running {
        dir,
        data,
        addr,
        http: reqwest::Client::new(),
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, user: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .basic_auth(user, Some(PASSWORD))
    }

    pub fn post(&self, user: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .basic_auth(user, Some(PASSWORD))
    }

    pub async fn json(&self, user: &str, path: &str) -> Value {
        let response = self.get(user, path).send().await.expect("request");
        assert_eq!(response.status(), 200, "GET {path} as {user}");
        response.json().await.expect("json")
    }

    /// Submits `prompt` as `user`; the answer's status and body.
    pub async fn submit(&self, user: &str, body: Value) -> (u16, Value) {
        let response = self
            .post(user, "/api/prompt")
            .json(&body)
            .send()
            .await
            .expect("submit");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `user`'s job `id` ends; its `/api/jobs/{id}` entry.
    pub async fn finished(&self, user: &str, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let job = self.json(user, &format!("/api/jobs/{id}")).await;
            if ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or(""))
            {
                return job;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job never ended: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn flux_prompt() -> Value {
    let path = repo().join("workflows/api/image_flux2_klein_text_to_image.api.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("template")).expect("json")
}

/// Reads text frames until `until` matches one or `limit` passes.
pub async fn frames(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    limit: Duration,
    until: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    use futures_util::StreamExt as _;
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), socket.next()).await
    {
        if let Ok(text) = message.to_text()
            && let Ok(value) = serde_json::from_str::<Value>(text)
        {
            let done = until(&value);
            seen.push(value);
            if done {
                break;
            }
        }
    }
    seen
}

pub async fn connect(
    host: &Running,
    user: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/ws?clientId={user}tab", host.addr)
        .into_client_request()
        .expect("request");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
    request.headers_mut().insert(
        "authorization",
        format!("Basic {token}").parse().expect("header"),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    socket
}
