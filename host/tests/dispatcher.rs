//! The dispatcher end to end: the embedded queue, the built-in plugins, and
//! a rehearsal ComfyUI backend on loopback. Jobs run to the end with their
//! outputs in their owner's folder, a cancel reaches the GPU, and an
//! unreachable backend requeues the job until it goes dead with the reason.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::config::PluginsConfig;
use comfyume::dispatch::backend::PoolInfo;
use comfyume::dispatch::comfyui::client::{ClientLimits, ComfyClient};
use comfyume::dispatch::comfyui_backend::ComfyBackend;
use comfyume::dispatch::dispatcher::{Dispatcher, DispatcherConfig};
use comfyume::dispatch::pool::Pool;
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use comfyume::plugins::registry_from_config;
use comfyume::queue::{
    Cost, EmbeddedStore, JobState, JobStore, NewJob, Page, Priority, Requester, StoreLimits,
    UserLimits, system_clock,
};

struct Setup {
    store: Arc<dyn JobStore>,
    data: tempfile::TempDir,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

async fn setup(comfy_url: &str, capacity: u32, limits: StoreLimits) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn JobStore> = Arc::new(
        EmbeddedStore::open(&data.path().join("queue.sqlite"), limits, system_clock()).unwrap(),
    );
    for user in ["ana", "ben", "cho"] {
        store
            .set_user(UserLimits {
                name: user.into(),
                max_pending: 10,
                max_running: 1,
                priority: Priority::Normal,
            })
            .await
            .unwrap();
    }
    let plugins = Arc::new(registry_from_config(&PluginsConfig::default(), data.path()).unwrap());
    let client = ComfyClient::new(
        comfy_url,
        ClientLimits {
            request: Duration::from_secs(2),
            poll: Duration::from_millis(50),
            max_output_bytes: 1 << 20,
            ws_idle: Duration::from_millis(250),
            submit: Duration::from_secs(2),
            download: Duration::from_secs(2),
            ..ClientLimits::default()
        },
    )
    .unwrap();
    let info = PoolInfo {
        name: "local".into(),
        gpu: "rehearsal".into(),
        spot: false,
        capacity,
        price_per_hour: 1.0,
    };
    let pools = vec![Pool::new(Arc::new(ComfyBackend::new(info, client)))];
    let config = DispatcherConfig {
        host: "host-test".into(),
        lease: Duration::from_secs(3),
        job_wait: Duration::from_secs(20),
        tick: Duration::from_millis(50),
        data_dir: data.path().to_path_buf(),
        max_input_bytes: 1 << 20,
        callback_url: None,
    };
    let dispatcher = tokio::spawn(Dispatcher::new(store.clone(), plugins, pools, config).run());
    Setup {
        store,
        data,
        dispatcher,
    }
}

fn flux_job(user: &str) -> NewJob {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/api/image_flux2_klein_text_to_image.api.json");
    let prompt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    NewJob {
        user: user.into(),
        prompt_id: uuid::Uuid::new_v4().to_string(),
        client_id: None,
        priority: Priority::Normal,
        workflow_kind: "flux2-klein".into(),
        cost: Cost {
            frames: 1,
            width: 1024,
            height: 1024,
            steps: 20,
            gpu_seconds: 10.4,
        },
        payload: serde_json::to_vec(&serde_json::json!({ "prompt": prompt })).unwrap(),
    }
}

async fn wait_until(
    store: &Arc<dyn JobStore>,
    id: u64,
    done: impl Fn(JobState) -> bool,
) -> comfyume::queue::Job {
    let started = Instant::now();
    loop {
        let job = store.get(id, Requester::Admin).await.unwrap();
        if done(job.state) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "job {id} stuck in {:?}: {:?}",
            job.state,
            job.history
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_and_its_outputs_land_in_the_owners_folder() {
    let rehearsal = Rehearsal::new(RehearsalConfig::default());
    let addr = rehearsal.serve().await.unwrap();
    let s = setup(&format!("http://{addr}"), 2, StoreLimits::default()).await;
    let mut ids = Vec::new();
    for user in ["ana", "ben", "cho", "ana", "ben", "cho"] {
        ids.push((user, s.store.enqueue(flux_job(user)).await.unwrap().id));
    }
    for (user, id) in &ids {
        let job = wait_until(&s.store, *id, |st| st.is_terminal()).await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.history);
        assert_eq!(
            job.backend.as_ref().unwrap().job_id,
            job.prompt_id,
            "ComfyUI keeps our prompt id"
        );
        assert_eq!(job.outputs.len(), 1);
        let output = &job.outputs[0];
        let path = s
            .data
            .path()
            .join("users")
            .join(user)
            .join("output")
            .join(&output.filename);
        assert!(
            std::fs::read(&path).unwrap().starts_with(b"\x89PNG"),
            "{path:?}"
        );
        let states: Vec<JobState> = job.history.iter().map(|t| t.state).collect();
        assert_eq!(
            &states[..4],
            [
                JobState::Queued,
                JobState::Leased,
                JobState::Dispatched,
                JobState::Running
            ]
        );
    }
    // Nobody's output is in anybody else's folder.
    for user in ["ana", "ben", "cho"] {
        let mine: Vec<String> = s
            .store
            .list_user(
                user,
                Page {
                    offset: 0,
                    limit: 10,
                },
            )
            .await
            .unwrap()
            .iter()
            .flat_map(|j| j.outputs.iter().map(|o| o.filename.clone()))
            .collect();
        let files: Vec<String> =
            std::fs::read_dir(s.data.path().join("users").join(user).join("output"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        assert_eq!(files.len(), 2);
        assert!(
            files.iter().all(|f| mine.contains(f)),
            "{user}: {files:?} vs {mine:?}"
        );
    }
}

/// A one-slot pool on a rehearsal ComfyUI whose sampler takes `steps` of
/// `step_time`, and one job of `ana` already running on it.
async fn one_running_job(step_time: Duration, steps: u32) -> (Arc<Rehearsal>, Setup, u64) {
    let config = RehearsalConfig {
        step_time,
        max_steps: steps,
        ..Default::default()
    };
    let rehearsal = Rehearsal::new(config);
    let addr = rehearsal.serve().await.unwrap();
    let s = setup(&format!("http://{addr}"), 1, StoreLimits::default()).await;
    let id = s.store.enqueue(flux_job("ana")).await.unwrap().id;
    wait_until(&s.store, id, |st| st == JobState::Running).await;
    (rehearsal, s, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_the_gpu_work() {
    let (_rehearsal, s, id) = one_running_job(Duration::from_millis(200), 100).await;
    assert_eq!(
        s.store.cancel(id, Requester::User("ana")).await.unwrap(),
        comfyume::queue::CancelOutcome::Requested
    );
    let job = wait_until(&s.store, id, |st| st.is_terminal()).await;
    assert_eq!(job.state, JobState::Cancelled, "{:?}", job.history);
}

/// A ComfyUI that restarts under a running job (an out-of-memory kill)
/// forgets it: the job is run again at once, with the reason in its
/// history, instead of waiting out the job wait for an end that never
/// comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_a_comfyui_that_restarted_runs_again() {
    let (rehearsal, s, id) = one_running_job(Duration::from_millis(100), 10).await;
    rehearsal.restart();
    // Well inside the 20 s job wait that an unnoticed restart would cost.
    let job = wait_until(&s.store, id, |st| st.is_terminal()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.history);
    assert_eq!(job.attempts, 2, "{:?}", job.history);
    assert!(
        job.history
            .iter()
            .any(|t| t.note.as_deref().is_some_and(|n| n.contains("restarted"))),
        "{:?}",
        job.history
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_requeues_until_the_job_is_dead() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limits = StoreLimits {
        max_attempts: 2,
        ..StoreLimits::default()
    };
    let s = setup(&format!("http://127.0.0.1:{port}"), 1, limits).await;
    let id = s.store.enqueue(flux_job("ben")).await.unwrap().id;
    let job = wait_until(&s.store, id, |st| st.is_terminal()).await;
    assert_eq!(job.state, JobState::Dead, "{:?}", job.history);
    assert_eq!(job.attempts, 2);
    assert!(
        job.reason
            .as_deref()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{:?}",
        job.reason
    );
}
