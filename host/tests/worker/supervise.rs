//! `comfyume worker --comfyui-cmd`: the worker process starts a fake
//! ComfyUI (python3's static file server, answering `/system_stats`),
//! answers `/health` 503 until it answers and the model files are in
//! place, starts it again after it is killed, and stops it at SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn health(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(format!("{url}/health")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Waits until `/health` answers `status` and `pred` holds; returns the body.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    status: u16,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, body) = health(http, url).await;
        if got == status && pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health never answered {status} as expected; last {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the worker, and the fake ComfyUI it supervises (its pid is in the
/// pid file), if the test fails before it stops them: a fake left running
/// holds the test runner's output pipe open.
struct KillOnDrop(i32, std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
        if let Some(comfyui) = pid_in(&self.1).filter(|pid| alive(*pid)) {
            unsafe { libc::kill(comfyui, libc::SIGKILL) };
        }
    }
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn the_worker_supervises_comfyui_and_health_waits_for_it_and_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("system_stats"), "{}").unwrap();
    let pid_file = dir.path().join("comfyui.pid");
    let comfy_port = free_port();
    let worker_port = free_port();
    let models = dir.path().join("models");
    let manifest = dir.path().join("models.toml");
    std::fs::write(
        &manifest,
        "[[model]]\nfile = \"a.safetensors\"\nfolder = \"vae\"\nurl = \"https://example.org/a\"\n",
    )
    .unwrap();
    // Slow to start on purpose, as ComfyUI is.
    let cmd = format!(
        "echo $$ > '{}'; sleep 0.5; exec python3 -m http.server {comfy_port} --bind 127.0.0.1 --directory '{}'",
        pid_file.display(),
        site.display()
    );
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .arg("worker")
        .args(["--listen", &format!("127.0.0.1:{worker_port}")])
        .args(["--comfyui", &format!("http://127.0.0.1:{comfy_port}")])
        .args(["--comfyui-cmd", &cmd])
        .arg("--models-manifest")
        .arg(&manifest)
        .arg("--models-dir")
        .arg(&models)
        .spawn()
        .unwrap();
    let worker_pid = worker.id() as i32;
    let _kill = KillOnDrop(worker_pid, pid_file.clone());
    let url = format!("http://127.0.0.1:{worker_port}");
    comfyume::tls::install_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    // ComfyUI answers, but a model file is missing: still 503.
    let body = wait_for(&http, &url, 503, |b| {
        b["reason"]
            .as_str()
            .is_some_and(|r| r.contains("model files") && r.contains("vae/a.safetensors"))
    })
    .await;
    assert_eq!(body["status"], "starting");
    std::fs::create_dir_all(models.join("vae")).unwrap();
    std::fs::write(models.join("vae/a.safetensors"), b"weights").unwrap();
    wait_for(&http, &url, 200, |b| b["status"] == "healthy").await;

    // ComfyUI dies: 503 until the worker has started it again.
    let first = pid_in(&pid_file).unwrap();
    unsafe { libc::kill(first, libc::SIGKILL) };
    wait_for(&http, &url, 503, |b| b["status"] == "starting").await;
    wait_for(&http, &url, 200, |b| b["status"] == "healthy").await;
    let second = pid_in(&pid_file).unwrap();
    assert_ne!(first, second, "ComfyUI was not started again");
    assert!(alive(second));

    // SIGTERM: the worker drains, stops ComfyUI and exits cleanly.
    unsafe { libc::kill(worker_pid, libc::SIGTERM) };
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || worker.wait()),
    )
    .await
    .expect("the worker did not exit after SIGTERM")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(second) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(second), "ComfyUI outlived the worker");
}
