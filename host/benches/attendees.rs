//! Load benchmark: N simulated attendees against one `comfyume serve`.
//!
//! Each attendee logs in, opens the editor's websocket (and keeps it open),
//! submits prompts against the rehearsal backend, and reads their job list,
//! as the editor does after Run. The host runs as its own process so its
//! resident memory is measured alone (from `/proc/<pid>/status`).
//!
//! Reported per N: submit latency p50/p99 and, as the same-run baseline, the
//! latency of an authenticated trivial request (`GET /api/users`) measured
//! the same way; submits per second over the burst; host RSS idle and with
//! N attendees connected, and the difference per attendee.
//!
//! `cargo bench -p comfyume --bench attendees [-- 50 200 1000]`
//!
//! Attendee passwords are hashed with cheap argon2 parameters: the first
//! login of 1,000 attendees at the default cost is 50 CPU-seconds of
//! argon2, which would measure the password hash rather than the host
//! (`benches/auth.rs` measures that separately).

#[path = "common/host.rs"]
mod host;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const PASSWORD: &str = "load-test";
const PROMPTS_PER_ATTENDEE: usize = 3;

fn start_host(attendees: usize) -> host::Host {
    let data = tempfile::tempdir().expect("tempdir");
    let cheap = argon2::Params::new(8, 1, 1, None).expect("params");
    let hash = comfyume::auth::hash_password(PASSWORD, &cheap).expect("hash");
    comfyume::auth::UsersFile::update(data.path(), |file| {
        for i in 0..attendees {
            file.add(
                &format!("load{i:04}"),
                comfyume::auth::Role::Attendee,
                hash.clone(),
            )?;
        }
        Ok(())
    })
    .expect("users");
    let port = host::free_port();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/ui");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n\
             [frontend]\nauto_install = false\n\
             [attendees]\ntemplates_dir = {templates:?}\n\
             [queue]\nmax_pending = 50\nmax_running = 4\n\
             [pools.rehearsal]\nkind = \"rehearsal\"\ncapacity = 64\ncold_start_ms = 0\nstep_ms = 2\n",
        data = data.path().display().to_string(),
        templates = templates.display().to_string(),
    );
    host::start(
        Path::new(env!("CARGO_BIN_EXE_comfyume")),
        data,
        port,
        &config,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn prompt() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/api/image_flux2_klein_text_to_image.api.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("template")).expect("json")
}

struct Sample {
    baseline: Vec<Duration>,
    submits: Vec<Duration>,
    errors: usize,
}

/// One attendee's session; returns once its prompts are in and listed, and
/// keeps its websocket open until `hold` is released.
async fn attendee(
    port: u16,
    name: String,
    http: reqwest::Client,
    prompt: Arc<Value>,
    hold: Arc<Semaphore>,
    [connected, submitted]: [Arc<tokio::sync::Barrier>; 2],
) -> Sample {
    let mut sample = Sample {
        baseline: Vec::new(),
        submits: Vec::new(),
        errors: 0,
    };
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let login = http
        .get(format!("{base}/api/users"))
        .basic_auth(&name, Some(PASSWORD))
        .send()
        .await;
    if !login.is_ok_and(|r| r.status().is_success()) {
        sample.errors += 1;
    }
    sample.baseline.push(t.elapsed());
    let mut request = format!("ws://127.0.0.1:{port}/ws?clientId={name}")
        .into_client_request()
        .expect("ws request");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{PASSWORD}"));
    request.headers_mut().insert(
        "authorization",
        format!("Basic {token}").parse().expect("header"),
    );
    let socket = tokio_tungstenite::connect_async(request).await.ok();
    if socket.is_none() {
        sample.errors += 1;
    }
    // Everyone connected first: then the burst, as after a demo.
    connected.wait().await;
    for _ in 0..PROMPTS_PER_ATTENDEE {
        let t = Instant::now();
        let answer = http
            .post(format!("{base}/api/prompt"))
            .basic_auth(&name, Some(PASSWORD))
            .json(&json!({"prompt": *prompt, "client_id": name}))
            .send()
            .await;
        sample.submits.push(t.elapsed());
        if !answer.is_ok_and(|r| r.status().is_success()) {
            sample.errors += 1;
        }
        let t = Instant::now();
        let listed = http
            .get(format!("{base}/api/users"))
            .basic_auth(&name, Some(PASSWORD))
            .send()
            .await;
        sample.baseline.push(t.elapsed());
        if !listed.is_ok_and(|r| r.status().is_success()) {
            sample.errors += 1;
        }
        let jobs = http
            .get(format!(
                "{base}/api/jobs?status=in_progress,pending&limit=200&offset=0"
            ))
            .basic_auth(&name, Some(PASSWORD))
            .send()
            .await;
        if !jobs.is_ok_and(|r| r.status().is_success()) {
            sample.errors += 1;
        }
    }
    // Keep the socket open (and drained) until every attendee is measured.
    let drained = socket.map(|(socket, _)| {
        let (sink, mut stream) = socket.split();
        (
            sink,
            tokio::spawn(async move { while stream.next().await.is_some() {} }),
        )
    });
    submitted.wait().await;
    if let Some((mut sink, drain)) = drained {
        let _ = hold.acquire().await;
        let _ = sink.close().await;
        drain.abort();
    }
    sample
}

async fn run(attendees: usize) -> Value {
    let host = start_host(attendees);
    let pid = host.child.id();
    // Let the host settle (plugins compiled, rehearsal up) before "idle".
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = host::rss_kib(pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let prompt = Arc::new(prompt());
    let hold = Arc::new(Semaphore::new(0));
    let connected = Arc::new(tokio::sync::Barrier::new(attendees + 1));
    let submitted = Arc::new(tokio::sync::Barrier::new(attendees + 1));
    let mut tasks = Vec::new();
    for i in 0..attendees {
        tasks.push(tokio::spawn(attendee(
            host.port,
            format!("load{i:04}"),
            http.clone(),
            prompt.clone(),
            hold.clone(),
            [connected.clone(), submitted.clone()],
        )));
    }
    connected.wait().await;
    let burst = Instant::now();
    // Every attendee has submitted and listed; their sockets are still open.
    submitted.wait().await;
    let elapsed = burst.elapsed();
    let connected_rss = host::rss_kib(pid);
    hold.add_permits(attendees);
    let mut baseline = Vec::new();
    let mut submits = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let sample = task.await.expect("attendee task");
        baseline.extend(sample.baseline);
        submits.extend(sample.submits);
        errors += sample.errors;
    }
    baseline.sort();
    submits.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let p50 = percentile(&submits, 0.5);
    let p99 = percentile(&submits, 0.99);
    let b50 = percentile(&baseline, 0.5);
    let b99 = percentile(&baseline, 0.99);
    json!({
        "attendees": attendees,
        "submits": submits.len(),
        "errors": errors,
        "submit_p50_ms": ms(p50),
        "submit_p99_ms": ms(p99),
        "baseline_p50_ms": ms(b50),
        "baseline_p99_ms": ms(b99),
        "p99_ratio_to_baseline": (p99.as_secs_f64() / b99.as_secs_f64().max(1e-9) * 10.0).round() / 10.0,
        "submits_per_second": (submits.len() as f64 / elapsed.as_secs_f64()).round(),
        "rss_idle_mib": idle / 1024,
        "rss_connected_mib": connected_rss / 1024,
        "rss_per_attendee_kib": (connected_rss.saturating_sub(idle)) / attendees as u64,
    })
}

fn main() {
    comfyume::tls::install_provider();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![50, 200, 1000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| attendees | submit p50 | submit p99 | baseline p99 (GET /api/users) | p99 ratio | submits/s | RSS idle | RSS connected | RSS per attendee | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let report = runtime.block_on(run(n));
        println!(
            "| {} | {} ms | {} ms | {} ms | {}× | {} | {} MiB | {} MiB | {} KiB | {} |",
            report["attendees"],
            report["submit_p50_ms"],
            report["submit_p99_ms"],
            report["baseline_p99_ms"],
            report["p99_ratio_to_baseline"],
            report["submits_per_second"],
            report["rss_idle_mib"],
            report["rss_connected_mib"],
            report["rss_per_attendee_kib"],
            report["errors"],
        );
        eprintln!("{report}");
    }
}
