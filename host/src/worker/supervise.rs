//! `comfyume worker --comfyui-cmd "…"`: the worker starts ComfyUI as its
//! child and keeps it running, and `/health` says ready only when it is.
//!
//! Policy:
//! - the command runs under `sh -c` in its own process group, so a wrapper
//!   script and everything it starts are stopped together;
//! - a ComfyUI that exits (an out-of-memory kill, a crash) is started again
//!   after a pause that doubles from `backoff_start` to `backoff_max`, and
//!   starts again from `backoff_start` once a run lasted a minute; a job it
//!   lost is answered 502 by `/run` (the ComfyUI client finds the prompt
//!   forgotten), so the host runs it elsewhere;
//! - `/health` answers 503 `starting` until ComfyUI answers
//!   `GET /system_stats` and, with a models manifest, until every model
//!   file is in place (checked without reading them, see
//!   [`crate::models::check`]); 503 again while ComfyUI is down; 503
//!   `draining` after SIGTERM, as without supervision;
//! - at shutdown, once the runs in flight have answered, ComfyUI gets
//!   SIGTERM, then SIGKILL after ten seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Worker, WorkerConfig};
use crate::models::Manifest;

/// How the worker supervises ComfyUI.
#[derive(Debug, Clone)]
pub struct SuperviseOptions {
    /// The shell command that starts ComfyUI in the foreground.
    pub comfyui_cmd: Option<String>,
    /// The models manifest and folder `/health` waits for.
    pub models: Option<(Manifest, PathBuf)>,
    /// First pause before a restart.
    pub backoff_start: Duration,
    /// Longest pause before a restart.
    pub backoff_max: Duration,
    /// Between two looks at ComfyUI (and at the model files).
    pub probe_interval: Duration,
}

impl Default for SuperviseOptions {
    fn default() -> Self {
        SuperviseOptions {
            comfyui_cmd: None,
            models: None,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            probe_interval: Duration::from_secs(1),
        }
    }
}

/// What `/health` needs to know besides the worker's own state.
#[derive(Debug, Default)]
pub struct Readiness {
    comfyui_alive: AtomicBool,
    comfyui_answers: AtomicBool,
    models_ready: AtomicBool,
    models_problem: Mutex<String>,
    restarts: AtomicU32,
}

impl Readiness {
    /// Why the replica must not get work yet, if it must not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.comfyui_alive.load(Ordering::SeqCst) {
            return Some("ComfyUI is not running (starting or restarting)".into());
        }
        if !self.comfyui_answers.load(Ordering::SeqCst) {
            return Some("ComfyUI does not answer yet".into());
        }
        if !self.models_ready.load(Ordering::SeqCst) {
            let problem = self
                .models_problem
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            return Some(format!("model files not in place: {problem}"));
        }
        None
    }

    /// Times ComfyUI was started again after it exited.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }
}

/// `comfyume worker` with supervision: serves until SIGTERM or Ctrl-C,
/// drains, then stops ComfyUI.
pub async fn main(
    listen: SocketAddr,
    config: WorkerConfig,
    options: SuperviseOptions,
) -> anyhow::Result<()> {
    let worker = Worker::new(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let readiness = Arc::new(Readiness::default());
    // Without a command, ComfyUI is someone else's: only probed.
    readiness
        .comfyui_alive
        .store(options.comfyui_cmd.is_none(), Ordering::SeqCst);
    readiness
        .models_ready
        .store(options.models.is_none(), Ordering::SeqCst);
    let _ = worker.readiness.set(readiness.clone());
    let (stop, stopped) = watch::channel(false);
    let child = options.comfyui_cmd.clone().map(|cmd| {
        tokio::spawn(run_comfyui(
            cmd,
            readiness.clone(),
            options.clone(),
            stopped.clone(),
        ))
    });
    tokio::spawn(probe_comfyui(
        worker.config.comfyui_url.clone(),
        readiness.clone(),
        options.probe_interval,
        stopped.clone(),
    ));
    if let Some((manifest, dir)) = options.models.clone() {
        tokio::spawn(watch_models(
            manifest,
            dir,
            readiness.clone(),
            options.probe_interval,
        ));
    }
    tracing::info!(%listen, comfyui = %worker.config.comfyui_url, "worker listening");
    worker
        .serve(listener, crate::server::shutdown_signal())
        .await?;
    let _ = stop.send(true);
    if let Some(child) = child {
        let _ = child.await;
    }
    Ok(())
}

async fn probe_comfyui(
    url: String,
    readiness: Arc<Readiness>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    crate::tls::install_provider();
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        tracing::error!("no HTTP client to probe ComfyUI");
        return;
    };
    let url = format!("{}/system_stats", url.trim_end_matches('/'));
    while !*stopped.borrow() {
        let answers = matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
        let was = readiness.comfyui_answers.swap(answers, Ordering::SeqCst);
        if answers != was {
            tracing::info!(
                answers,
                "ComfyUI {}",
                if answers {
                    "answers"
                } else {
                    "stopped answering"
                }
            );
        }
        let _ = tokio::time::timeout(every, stopped.changed()).await;
    }
}

async fn watch_models(
    manifest: Manifest,
    dir: PathBuf,
    readiness: Arc<Readiness>,
    every: Duration,
) {
    loop {
        let problems = crate::models::check(&manifest, &dir);
        match problems.first() {
            None => {
                tracing::info!(files = manifest.models.len(), "model files in place");
                readiness.models_ready.store(true, Ordering::SeqCst);
                return;
            }
            Some((file, why)) => {
                let text = format!(
                    "{} of {} ({file}: {why})",
                    problems.len(),
                    manifest.models.len()
                );
                if let Ok(mut p) = readiness.models_problem.lock() {
                    *p = text;
                }
            }
        }
        tokio::time::sleep(every.max(Duration::from_millis(200))).await;
    }
}

async fn run_comfyui(
    cmd: String,
    readiness: Arc<Readiness>,
    options: SuperviseOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = options.backoff_start;
    loop {
        if *stopped.borrow() {
            return;
        }
        let started = Instant::now();
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(&cmd);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match command.spawn() {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, "ComfyUI started");
                readiness.comfyui_answers.store(false, Ordering::SeqCst);
                readiness.comfyui_alive.store(true, Ordering::SeqCst);
                // Waiting is blocking in std; tokio's `process` feature is
                // not enabled in this workspace.
                let mut waiter = tokio::task::spawn_blocking(move || child.wait());
                let exited = tokio::select! {
                    status = &mut waiter => Some(status),
                    _ = stopped.changed() => None,
                };
                readiness.comfyui_alive.store(false, Ordering::SeqCst);
                readiness.comfyui_answers.store(false, Ordering::SeqCst);
                match exited {
                    None => {
                        stop_child(waiter, pid).await;
                        return;
                    }
                    Some(status) => {
                        tracing::error!(status = ?status, ran_secs = started.elapsed().as_secs(), "ComfyUI exited; restarting");
                        // Whatever the shell started in its group goes too.
                        signal_group(pid, libc::SIGKILL);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not start ComfyUI"),
        }
        if started.elapsed() >= Duration::from_secs(60) {
            backoff = options.backoff_start;
        }
        let _ = tokio::time::timeout(backoff, stopped.changed()).await;
        backoff = (backoff * 2).min(options.backoff_max);
        readiness.restarts.fetch_add(1, Ordering::SeqCst);
    }
}

async fn stop_child(
    mut waiter: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>,
    pid: u32,
) {
    tracing::info!("stopping ComfyUI");
    signal_group(pid, libc::SIGTERM);
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut waiter)
        .await
        .is_ok();
    // Whatever else the command started in its group goes too.
    signal_group(pid, libc::SIGKILL);
    if !stopped {
        tracing::warn!("ComfyUI did not stop within 10 s; killed it");
        let _ = waiter.await;
    }
}

fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group the
    // child leads (`process_group(0)`); it touches no memory of ours.
    unsafe {
        libc::kill(-pid, signal);
    }
}
