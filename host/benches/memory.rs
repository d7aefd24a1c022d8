//! Memory benchmark: a full workshop queue and a room of open editors
//! against one `comfyume serve`, measured as the host's resident memory.
//!
//! The shape is issue 20's: 200 attendees each log in with a real argon2id
//! password (the default cost, 19 MiB per verification, as on the day), each
//! queues 20 Flux2 Klein prompts that wait (one GPU slot, held by a job that
//! sleeps), then 1,000 editor websockets open (five per attendee), then they
//! close. RSS (`VmRSS`) is read after the host settles at each point, and
//! the last reading, after everything closed, is compared with the one
//! before the burst: an allocator that keeps freed memory shows there.
//!
//! `cargo bench -p comfyume --bench memory [-- ATTENDEES PROMPTS SOCKETS]`
//!
//! `COMFYUME_BENCH_BIN=/path/to/comfyume` runs another build of the host
//! (e.g. the previous commit's, for a before/after ratio in the same run
//! conditions); by default it is this build's binary.

#[path = "common/host.rs"]
mod host;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const PASSWORD: &str = "a workshop password";

fn binary() -> PathBuf {
    std::env::var_os("COMFYUME_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_comfyume")))
}

fn start_host(attendees: usize, prompts: usize) -> host::Host {
    let data = tempfile::tempdir().expect("tempdir");
    // The default argon2id cost: every first login is a real verification.
    let hash = comfyume::auth::hash_password(PASSWORD, &argon2::Params::default()).expect("hash");
    comfyume::auth::UsersFile::update(data.path(), |file| {
        for i in 0..attendees {
            file.add(
                &format!("mem{i:04}"),
                comfyume::auth::Role::Attendee,
                hash.clone(),
            )?;
        }
        Ok(())
    })
    .expect("users");
    let port = host::free_port();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/ui");
    // One slot whose steps take an hour: the first job holds it, every other
    // prompt waits in the queue, as behind a busy GPU.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n\
             [frontend]\nauto_install = false\n\
             [attendees]\ntemplates_dir = {templates:?}\n\
             [queue]\nmax_pending = {prompts}\nmax_running = 1\n\
             [pools.rehearsal]\nkind = \"rehearsal\"\ncapacity = 1\ncold_start_ms = 0\nstep_ms = 3600000\n",
        data = data.path().display().to_string(),
        templates = templates.display().to_string(),
    );
    host::start(&binary(), data, port, &config)
}

fn rss_mib(pid: u32) -> f64 {
    (host::rss_kib(pid) as f64 / 1024.0 * 10.0).round() / 10.0
}

/// RSS once the host has had time to hand back what it freed.
async fn settled_rss(pid: u32) -> f64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    rss_mib(pid)
}

fn prompt() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/api/image_flux2_klein_text_to_image.api.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("template")).expect("json")
}

/// Logs in (one argon2 verification) and queues `prompts` prompts; returns
/// how many were refused.
async fn queue_prompts(
    port: u16,
    name: String,
    http: reqwest::Client,
    prompt: Arc<Value>,
    prompts: usize,
) -> usize {
    let base = format!("http://127.0.0.1:{port}");
    let mut refused = 0;
    for _ in 0..prompts {
        let answer = http
            .post(format!("{base}/api/prompt"))
            .basic_auth(&name, Some(PASSWORD))
            .json(&json!({"prompt": *prompt, "client_id": name}))
            .send()
            .await;
        if !answer.is_ok_and(|r| r.status().is_success()) {
            refused += 1;
        }
    }
    refused
}

async fn open_socket(port: u16, name: &str) -> Option<tokio::task::JoinHandle<()>> {
    let mut request = format!("ws://127.0.0.1:{port}/ws?clientId={name}-{}", rand_suffix())
        .into_client_request()
        .ok()?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{PASSWORD}"));
    request
        .headers_mut()
        .insert("authorization", format!("Basic {token}").parse().ok()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    // Drained until aborted, as an editor reads its events.
    Some(tokio::spawn(async move {
        let (_sink, mut stream) = socket.split();
        while stream.next().await.is_some() {}
    }))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn run(attendees: usize, prompts: usize, sockets: usize) -> Value {
    let host = start_host(attendees, prompts);
    let pid = host.child.id();
    let port = host.port;
    let idle = settled_rss(pid).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let prompt = Arc::new(prompt());
    let names: Vec<String> = (0..attendees).map(|i| format!("mem{i:04}")).collect();

    // Every attendee at once, as after a demo: 200 first logins (argon2,
    // a few at a time inside the host), then their prompts.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for name in &names {
        tasks.push(tokio::spawn(queue_prompts(
            port,
            name.clone(),
            http.clone(),
            prompt.clone(),
            prompts,
        )));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await.expect("attendee");
    }
    let queued_in = started.elapsed();
    let queued = settled_rss(pid).await;

    let mut open = Vec::new();
    let mut socket_errors = 0;
    for i in 0..sockets {
        match open_socket(port, &names[i % names.len()]).await {
            Some(task) => open.push(task),
            None => socket_errors += 1,
        }
    }
    let connected = settled_rss(pid).await;
    for task in &open {
        task.abort();
    }
    drop(open);
    let closed = settled_rss(pid).await;
    json!({
        "attendees": attendees,
        "prompts_waiting": attendees * prompts - refused,
        "refused": refused,
        "sockets": sockets - socket_errors,
        "socket_errors": socket_errors,
        "queue_filled_s": (queued_in.as_secs_f64() * 10.0).round() / 10.0,
        "rss_idle_mib": idle,
        "rss_queued_mib": queued,
        "rss_connected_mib": connected,
        "rss_after_close_mib": closed,
    })
}

fn main() {
    comfyume::tls::install_provider();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let attendees = args.first().copied().unwrap_or(200);
    let prompts = args.get(1).copied().unwrap_or(20);
    let sockets = args.get(2).copied().unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("host binary: {}", binary().display());
    let report = runtime.block_on(run(attendees, prompts, sockets));
    println!(
        "| attendees | prompts waiting | sockets | RSS idle | RSS queue full | RSS + sockets | RSS after close | refused | socket errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} MiB | {} MiB | {} MiB | {} MiB | {} | {} |",
        report["attendees"],
        report["prompts_waiting"],
        report["sockets"],
        report["rss_idle_mib"],
        report["rss_queued_mib"],
        report["rss_connected_mib"],
        report["rss_after_close_mib"],
        report["refused"],
        report["socket_errors"],
    );
    println!("{report}");
}
