//! `comfyume worker` against a rehearsal ComfyUI: one request runs a whole
//! job and returns its outputs; health says starting until ComfyUI
//! answers, then healthy, busy, then draining after shutdown while the job
//! in flight still finishes; every refusal the host acts on says `retry`
//! in its body.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use comfyume::dispatch::comfyui::client::ClientLimits;
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use comfyume::worker::{RunInput, RunRequest, RunResponse, Worker, WorkerConfig};
use serde_json::Value;

async fn start(
    rehearsal: RehearsalConfig,
) -> (
    Arc<Rehearsal>,
    Arc<Worker>,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let comfy = Rehearsal::new(rehearsal);
    let comfy_addr = comfy.serve().await.unwrap();
    let worker = Worker::new(WorkerConfig {
        comfyui_url: format!("http://{comfy_addr}"),
        job_wait: Duration::from_secs(20),
        client: ClientLimits {
            request: Duration::from_secs(2),
            poll: Duration::from_millis(50),
            max_output_bytes: 1 << 20,
            ws_idle: Duration::from_millis(250),
            submit: Duration::from_secs(2),
            download: Duration::from_secs(2),
            ..ClientLimits::default()
        },
        ..WorkerConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = worker.clone();
    let task = tokio::spawn(async move {
        served
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (comfy, worker, url, stop, task)
}

fn request(template: &str) -> RunRequest {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/api")
        .join(template);
    RunRequest {
        prompt_id: uuid::Uuid::new_v4().to_string(),
        prompt: serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
        extra_data: None,
        inputs: vec![RunInput {
            name: "guide.png".into(),
            subfolder: String::new(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(b"png bytes"),
        }],
        job_wait_secs: None,
        callback: None,
    }
}

async fn health(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(format!("{url}/health")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_runs_a_job_and_returns_its_outputs() {
    let (comfy, _worker, url, _stop, _task) = start(RehearsalConfig::default()).await;
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    assert_eq!(
        health(&http, &url).await,
        (200, serde_json::json!({"status": "healthy", "running": 0}))
    );
    let req = request("video_ltx2_t2v.api.json");
    let answer: RunResponse = http
        .post(format!("{url}/run"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.prompt_id.as_str()),
        ("success", req.prompt_id.as_str()),
        "{answer:?}"
    );
    assert_eq!(answer.outputs.len(), 1);
    let video = &answer.outputs[0];
    assert!(video.animated && video.filename.ends_with(".mp4"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&video.data_base64)
        .unwrap();
    assert_eq!(bytes, b"rehearsal placeholder video");
    assert_eq!(
        comfy.uploaded("guide.png").as_deref(),
        Some(&b"png bytes"[..]),
        "inputs reach ComfyUI first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_prompt_and_a_bad_request_are_answered_not_dropped() {
    let config = RehearsalConfig {
        fail_class: Some("SaveImage".into()),
        ..Default::default()
    };
    let (_comfy, _worker, url, _stop, _task) = start(config).await;
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let answer: RunResponse = http
        .post(format!("{url}/run"))
        .json(&request("image_flux2_klein_text_to_image.api.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer.status, "error");
    assert_eq!(
        answer.reason.as_deref(),
        Some("SaveImage failed: rehearsal: this node is set to fail")
    );
    let mut bad = request("image_flux2_klein_text_to_image.api.json");
    bad.prompt_id = "NOT-A-UUID".into();
    let r = http
        .post(format!("{url}/run"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

/// The replica's ComfyUI restarts under the run (an out-of-memory kill):
/// the worker answers 502, which Verda's side reads as a lost replica, so
/// the host runs the job again instead of failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfyui_restart_under_the_run_is_a_502_not_a_failed_job() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(100),
        max_steps: 10,
        ..Default::default()
    };
    let (comfy, _worker, url, _stop, _task) = start(config).await;
    comfyume::tls::install_provider();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        comfy.restart();
    });
    let response = reqwest::Client::new()
        .post(format!("{url}/run"))
        .json(&request("image_flux2_klein_text_to_image.api.json"))
        .send()
        .await
        .unwrap();
    restart.await.unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let answer: RunResponse = response.json().await.unwrap();
    assert_eq!(answer.status, "retry", "the signal is in the body too");
    let reason = answer.reason.unwrap_or_default();
    assert!(reason.contains("restarted"), "{reason}");
}

/// Verda routes only to a replica whose health check answers 200: the
/// worker says 503 until its ComfyUI answers, and a draining worker puts
/// `retry` in the body of its refusal (Verda's `/result` is documented to
/// carry the body only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_waits_for_comfyui_and_a_draining_refusal_says_retry_in_its_body() {
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    // A ComfyUI that is not up yet.
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let starting = Worker::new(WorkerConfig {
        comfyui_url: nowhere,
        ..WorkerConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = starting.clone();
    tokio::spawn(async move {
        let _ = served.serve(listener, std::future::pending()).await;
    });
    let (code, body) = health(&http, &url).await;
    assert_eq!(
        (code, body["status"].clone()),
        (503, "starting".into()),
        "{body}"
    );

    let (_comfy, worker, url, _stop, _task) = start(RehearsalConfig::default()).await;
    assert_eq!(health(&http, &url).await.0, 200);
    worker.drain();
    let response = http
        .post(format!("{url}/run"))
        .json(&request("image_flux2_klein_text_to_image.api.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let answer: RunResponse = response.json().await.unwrap();
    assert_eq!(answer.status, "retry");
    assert_eq!(answer.reason.as_deref(), Some("this replica is draining"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_job_in_flight_then_stops() {
    let slow = RehearsalConfig {
        step_time: Duration::from_millis(150),
        max_steps: 8,
        ..Default::default()
    };
    let (_comfy, worker, url, stop, task) = start(slow).await;
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let job = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/run"))
                .json(&request("image_flux2_klein_text_to_image.api.json"))
                .send()
                .await
                .unwrap()
                .json::<RunResponse>()
                .await
                .unwrap()
        })
    };
    while worker.running() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(health(&http, &url).await.1["status"], "busy");
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining: new work is refused, the health check says so (new
    // connections may already be refused too, which is just as good).
    if let Ok(r) = http.get(format!("{url}/health")).send().await {
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "draining");
    }
    let answer = job.await.unwrap();
    assert_eq!(
        answer.status, "success",
        "the job in flight finished: {answer:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the worker stopped after draining")
        .unwrap();
}
