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

#[path = "worker/models_sync.rs"]
mod models_sync;
#[path = "worker/supervise.rs"]
mod supervise;

async fn start(
    rehearsal: RehearsalConfig,
) -> (
    Arc<Rehearsal>,
    Arc<Worker>,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    start_with(rehearsal, |_| {}).await
}

/// [`start`], with a change to the worker's config; the worker removes
/// inputs from the double's input folder, when it has one.
async fn start_with(
    rehearsal: RehearsalConfig,
    tweak: impl FnOnce(&mut WorkerConfig),
) -> (
    Arc<Rehearsal>,
    Arc<Worker>,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let input_dir = rehearsal.input_dir.clone();
    let comfy = Rehearsal::new(rehearsal);
    let comfy_addr = comfy.serve().await.unwrap();
    let mut config = WorkerConfig {
        comfyui_url: format!("http://{comfy_addr}"),
        comfyui_input_dir: input_dir,
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
    };
    tweak(&mut config);
    let worker = Worker::new(config).unwrap();
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

/// A job's inputs live in a folder of its own in ComfyUI's input folder,
/// and are removed once the job has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_inputs_are_removed_from_the_gpu_after_the_job() {
    let inputs = tempfile::tempdir().unwrap();
    let config = RehearsalConfig {
        input_dir: Some(inputs.path().to_path_buf()),
        ..Default::default()
    };
    let (comfy, _worker, url, _stop, _task) = start(config).await;
    comfyume::tls::install_provider();
    let mut req = request("image_flux2_klein_text_to_image.api.json");
    let folder = format!("comfyume/{}/input", req.prompt_id);
    req.inputs[0].subfolder = folder.clone();
    let answer: RunResponse = reqwest::Client::new()
        .post(format!("{url}/run"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer.status, "success", "{answer:?}");
    assert!(
        comfy.uploaded(&format!("{folder}/guide.png")).is_some(),
        "the input reached ComfyUI"
    );
    let job_folder = inputs.path().join("comfyume").join(&req.prompt_id);
    let started = std::time::Instant::now();
    while job_folder.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} is still there",
            job_folder.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(inputs.path().join("comfyume").is_dir());
}

/// Several runs at once on one worker (one socket for all of them): each
/// answers when its prompt ends, none after an idle timer (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_share_one_socket_and_all_answer_promptly() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(30),
        ..Default::default()
    };
    let (comfy, _worker, url, _stop, _task) = start_with(config, |worker| {
        worker.client.ws_idle = Duration::from_secs(3600);
        worker.client.poll = Duration::from_secs(3600);
    })
    .await;
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let runs: Vec<_> = (0..3)
        .map(|_| {
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
        })
        .collect();
    for run in runs {
        let answer = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("answered when the prompt ended")
            .unwrap();
        assert_eq!(answer.status, "success", "{answer:?}");
    }
    assert_eq!(comfy.sockets_opened(), 1, "one socket for every run");
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
