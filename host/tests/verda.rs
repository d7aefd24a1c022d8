//! The Verda backend end to end: the dispatcher, the embedded queue, the
//! built-in plugins, and a fake Verda gateway (async API, non-sticky load
//! balancer, spot reclaims, 500s, hangs) in front of real `comfyume worker`
//! replicas, each beside a rehearsal ComfyUI.

mod common;
#[path = "verda/deploy.rs"]
mod deploy;
#[path = "verda/protocol.rs"]
mod protocol;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use comfyume::config::{PluginsConfig, Secret};
use comfyume::dispatch::backend::PoolInfo;
use comfyume::dispatch::dispatcher::{Dispatcher, DispatcherConfig};
use comfyume::dispatch::pool::Pool;
use comfyume::dispatch::rehearsal::RehearsalConfig;
use comfyume::dispatch::rehearsal::run_ledger::RunLedger;
use comfyume::dispatch::rehearsal::verda_gateway::{FakeVerda, Fault};
use comfyume::dispatch::rehearsal::verda_switches::{ReclaimEnd, Switches};
use comfyume::dispatch::verda::{VerdaBackend, VerdaSettings};
use comfyume::plugins::registry_from_config;
use comfyume::queue::{
    Cost, EmbeddedStore, Job, JobState, JobStore, NewJob, Priority, Requester, StoreLimits,
    UserLimits, system_clock,
};
use serde_json::json;

use common::flaky_store::FlakyDispatched;

const KEY: &str = "test-inference-key";

fn settings(url: &str, deployment: &str) -> VerdaSettings {
    VerdaSettings {
        base_url: url.to_string(),
        deployment: deployment.to_string(),
        api_key: Secret::from(KEY.to_string()),
        request: Duration::from_secs(2),
        submit: Duration::from_secs(5),
        download: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        max_result_bytes: 16 << 20,
        request_ttl: Duration::from_secs(60),
        max_request_bytes: 64 << 20,
        outage_patience: Duration::from_secs(3),
    }
}

fn pool(name: &str, spot: bool, price: f64, capacity: u32, url: &str) -> Arc<Pool> {
    pool_with(name, spot, price, capacity, settings(url, name))
}

fn pool_with(
    name: &str,
    spot: bool,
    price: f64,
    capacity: u32,
    settings: VerdaSettings,
) -> Arc<Pool> {
    let info = PoolInfo {
        name: name.into(),
        gpu: "H200".into(),
        spot,
        capacity,
        price_per_hour: price,
    };
    Pool::new(Arc::new(VerdaBackend::new(info, settings).unwrap()))
}

fn comfy(step_ms: u64, steps: u32) -> RehearsalConfig {
    RehearsalConfig {
        step_time: Duration::from_millis(step_ms),
        max_steps: steps,
        ..RehearsalConfig::default()
    }
}

struct Host {
    store: Arc<dyn JobStore>,
    data: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn config(
    data: &std::path::Path,
    host: &str,
    job_wait: Duration,
    callback: Option<String>,
) -> DispatcherConfig {
    DispatcherConfig {
        host: host.into(),
        lease: Duration::from_secs(3),
        job_wait,
        tick: Duration::from_millis(50),
        data_dir: data.to_path_buf(),
        max_input_bytes: 1 << 20,
        callback_url: callback,
    }
}

async fn store_in(data: &std::path::Path, max_attempts: u32) -> Arc<dyn JobStore> {
    let limits = StoreLimits {
        max_attempts,
        ..StoreLimits::default()
    };
    let store: Arc<dyn JobStore> =
        Arc::new(EmbeddedStore::open(&data.join("queue.sqlite"), limits, system_clock()).unwrap());
    for user in ["ana", "ben", "cho"] {
        store
            .set_user(UserLimits {
                name: user.into(),
                max_pending: 10,
                max_running: 3,
                priority: Priority::Normal,
            })
            .await
            .unwrap();
    }
    store
}

async fn host(pools: Vec<Arc<Pool>>, max_attempts: u32, job_wait: Duration) -> Host {
    host_wrapping(pools, max_attempts, job_wait, |store| store).await
}

/// [`host`] whose dispatcher sees the store through `wrap`.
async fn host_wrapping(
    pools: Vec<Arc<Pool>>,
    max_attempts: u32,
    job_wait: Duration,
    wrap: impl FnOnce(Arc<dyn JobStore>) -> Arc<dyn JobStore>,
) -> Host {
    let data = tempfile::tempdir().unwrap();
    let store = wrap(store_in(data.path(), max_attempts).await);
    let plugins = Arc::new(registry_from_config(&PluginsConfig::default(), data.path()).unwrap());
    let dispatcher = Dispatcher::new(
        store.clone(),
        plugins,
        pools,
        config(data.path(), "host-a", job_wait, None),
    );
    let tasks = vec![
        tokio::spawn(dispatcher.clone().run()),
        tokio::spawn(dispatcher.clone().recovery_loop()),
    ];
    Host { store, data, tasks }
}

fn prompt_with(extra: serde_json::Value) -> serde_json::Value {
    let mut prompt = json!({
        "3": {"class_type": "KSampler", "inputs": {"steps": 20, "seed": 1}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "verda", "images": ["3", 0]}}
    });
    if let (Some(p), Some(e)) = (prompt.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    prompt
}

async fn enqueue(store: &Arc<dyn JobStore>, user: &str, prompt: serde_json::Value) -> Job {
    store
        .enqueue(NewJob {
            user: user.into(),
            prompt_id: uuid::Uuid::new_v4().to_string(),
            client_id: None,
            priority: Priority::Normal,
            workflow_kind: "other".into(),
            cost: Cost::default(),
            payload: serde_json::to_vec(&json!({ "prompt": prompt })).unwrap(),
        })
        .await
        .unwrap()
}

async fn wait_for(store: &Arc<dyn JobStore>, id: u64, done: impl Fn(&Job) -> bool) -> Job {
    let started = Instant::now();
    loop {
        let job = store.get(id, Requester::Admin).await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "job {id} stuck: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn finished(job: &Job) -> bool {
    matches!(
        job.state,
        JobState::Succeeded | JobState::Failed | JobState::Dead | JobState::Cancelled
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_through_workers_behind_a_non_sticky_gateway() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 3, comfy(5, 2))
        .await
        .unwrap();
    let host = host(
        vec![pool("h200-spot", true, 1.15, 3, &url)],
        3,
        Duration::from_secs(20),
    )
    .await;
    let mut jobs = Vec::new();
    for user in ["ana", "ben", "cho", "ana", "ben", "cho"] {
        jobs.push(enqueue(&host.store, user, prompt_with(json!({}))).await);
    }
    for job in &jobs {
        let done = wait_for(&host.store, job.id, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        assert_eq!(done.outputs.len(), 1, "{done:?}");
        let file = host
            .data
            .path()
            .join("users")
            .join(&done.user)
            .join("output")
            .join(&done.outputs[0].filename);
        assert!(file.is_file(), "{file:?} missing");
        // The backend id is Verda's inference id, not our prompt id.
        let backend = done.backend.expect("backend recorded");
        assert_eq!(backend.pool, "h200-spot");
        assert_ne!(backend.job_id, done.prompt_id);
        assert_eq!(gateway.runs(&done.prompt_id), 1, "one GPU run per job");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_reclaim_requeues_the_job_and_on_demand_finishes_it() {
    // Verda's SDK knows no failed status: a reclaimed request may end
    // `Completed` with the gateway's own error, or be forgotten (404). In
    // both, the host runs the job again elsewhere (the form where Verda
    // delivers it again itself is in `protocol`).
    for end in [ReclaimEnd::GatewayError, ReclaimEnd::Gone] {
        let (spot, spot_url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(100, 10))
            .await
            .unwrap();
        spot.set_switches(Switches {
            reclaim_end: end,
            ..Switches::default()
        });
        spot.set_fault(Fault::ReclaimAfter(Duration::from_millis(300)));
        let (on_demand, on_demand_url) =
            FakeVerda::with_replicas("h200-on-demand", KEY, 1, comfy(5, 2))
                .await
                .unwrap();
        let host = host(
            vec![
                pool("h200-spot", true, 1.15, 1, &spot_url),
                pool("h200-on-demand", false, 3.29, 1, &on_demand_url),
            ],
            3,
            Duration::from_secs(20),
        )
        .await;
        let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
        let done = wait_for(&host.store, job.id, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{end:?}: {done:?}");
        assert_eq!(spot.reclaims(), 1);
        assert_eq!(
            done.attempts, 2,
            "{end:?}: claimed twice (spot, then on-demand): {done:?}"
        );
        assert!(done.lost_to_reclaim, "{done:?}");
        assert_eq!(done.backend.unwrap().pool, "h200-on-demand");
        assert_eq!(spot.runs(&done.prompt_id), 1);
        assert_eq!(on_demand.runs(&done.prompt_id), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_answering_500_requeues_until_the_job_is_dead_with_the_reason() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(5, 2))
        .await
        .unwrap();
    gateway.set_fault(Fault::Http500);
    let host = host(
        vec![pool("h200-spot", true, 1.15, 1, &url)],
        2,
        Duration::from_secs(20),
    )
    .await;
    let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
    let done = wait_for(&host.store, job.id, finished).await;
    assert_eq!(done.state, JobState::Dead, "{done:?}");
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert_eq!(gateway.runs(&done.prompt_id), 0);
}

/// A spot and an on-demand deployment on one run ledger, so a run of the
/// same job on either counts, and a host that uses both (spot first), its
/// dispatcher seeing the store through `wrap`.
struct TwoPools {
    ledger: Arc<RunLedger>,
    spot: Arc<FakeVerda>,
    on_demand: Arc<FakeVerda>,
    host: Host,
}

impl TwoPools {
    async fn start(
        spot_comfy: RehearsalConfig,
        wrap: impl FnOnce(Arc<dyn JobStore>) -> Arc<dyn JobStore>,
    ) -> Self {
        let ledger = Arc::new(RunLedger::default());
        let (spot, spot_url) =
            FakeVerda::with_replicas_sharing(ledger.clone(), "h200-spot", KEY, 1, spot_comfy)
                .await
                .unwrap();
        let (on_demand, on_demand_url) =
            FakeVerda::with_replicas_sharing(ledger.clone(), "h200-on-demand", KEY, 1, comfy(5, 2))
                .await
                .unwrap();
        let pools = vec![
            pool("h200-spot", true, 1.15, 1, &spot_url),
            pool("h200-on-demand", false, 3.29, 1, &on_demand_url),
        ];
        let host = host_wrapping(pools, 3, Duration::from_secs(20), wrap).await;
        TwoPools {
            ledger,
            spot,
            on_demand,
            host,
        }
    }

    /// The job succeeded on the spot pool, sent once, and ran on one GPU.
    fn assert_ran_once_on_spot(&self, done: &Job) {
        let outcomes = self.ledger.outcomes();
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        assert_eq!(done.attempts, 1, "sent once: {done:?}");
        let backend = done.backend.as_ref().expect("the inference id is recorded");
        assert_eq!(backend.pool, "h200-spot");
        assert_eq!(self.spot.runs(&done.prompt_id), 1, "{outcomes:?}");
        assert_eq!(self.on_demand.runs(&done.prompt_id), 0, "{outcomes:?}");
        assert!(self.ledger.duplicates().is_empty(), "{outcomes:?}");
    }
}

/// A gateway that answers 500 to the polls of a running job says nothing
/// about the run: the host keeps polling (within `outage_patience`) rather
/// than send the job to the other pool while its first run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_blip_while_a_job_runs_does_not_send_it_elsewhere() {
    let two = TwoPools::start(comfy(100, 15), |store| store).await;
    let job = enqueue(&two.host.store, "ana", prompt_with(json!({}))).await;
    // Once the run is on the spot replica, the gateway fails every call
    // for far longer than a handful of polls (50 ms apart).
    while two.spot.runs(&job.prompt_id) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    two.spot.set_fault(Fault::Http500);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    two.spot.set_fault(Fault::None);
    let done = wait_for(&two.host.store, job.id, finished).await;
    two.assert_ran_once_on_spot(&done);
}

/// Status and result are separate endpoints: a status of `Completed` whose
/// result is not there yet (202) is polled again, not taken as a lost
/// replica; running the job elsewhere would pay for it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_lags_its_status_is_waited_for_not_run_again() {
    let two = TwoPools::start(comfy(5, 2), |store| store).await;
    // Well past a handful of polls (50 ms apart), within the patience (3 s).
    two.spot
        .set_fault(Fault::LateResult(Duration::from_millis(1200)));
    let job = enqueue(&two.host.store, "ana", prompt_with(json!({}))).await;
    let done = wait_for(&two.host.store, job.id, finished).await;
    two.assert_ran_once_on_spot(&done);
}

/// Verda chooses the inference id, so it is recorded after Verda took the
/// job. A store that cannot take that record (Redis restarting), or took
/// it and lost the answer, must not make the host give the running job up:
/// it records the id once the store answers and follows the one GPU run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_at_the_record_does_not_run_the_job_twice() {
    let flaky = std::sync::OnceLock::new();
    // Four refusals (250 ms apart, well within the 3 s lease), then a
    // write whose answer is lost, then the store answers again.
    let two = TwoPools::start(comfy(50, 10), |store| {
        let wrapped = Arc::new(FlakyDispatched::new(store, 4, 1));
        let _ = flaky.set(wrapped.clone());
        wrapped
    })
    .await;
    let job = enqueue(&two.host.store, "ana", prompt_with(json!({}))).await;
    let done = wait_for(&two.host.store, job.id, finished).await;
    two.assert_ran_once_on_spot(&done);
    let calls = flaky.get().unwrap().calls.load(Ordering::SeqCst);
    assert!(
        calls >= 6,
        "the record was retried until it was answered: {calls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_finishes_fails_with_the_reason_after_the_job_wait() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(5, 2))
        .await
        .unwrap();
    gateway.set_fault(Fault::Hang);
    let host = host(
        vec![pool("h200-spot", true, 1.15, 1, &url)],
        3,
        Duration::from_secs(1),
    )
    .await;
    let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
    let done = wait_for(&host.store, job.id, finished).await;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.contains("no result from verda h200-spot within 1 s of the job starting on a GPU"),
        "{reason}"
    );
    assert_eq!(gateway.runs(&done.prompt_id), 1, "it ran, and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_the_prompt_references_reaches_the_gpu_side() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 2, comfy(5, 2))
        .await
        .unwrap();
    let host = host(
        vec![pool("h200-spot", true, 1.15, 1, &url)],
        3,
        Duration::from_secs(20),
    )
    .await;
    let input = host.data.path().join("users/ana/input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("reference.png"), b"\x89PNG ana's reference").unwrap();
    let prompt = prompt_with(json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "reference.png [input]"}}
    }));
    let job = enqueue(&host.store, "ana", prompt).await;
    let done = wait_for(&host.store, job.id, finished).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    // Under the job's own folder: no other job can name or replace it.
    assert_eq!(
        gateway
            .uploaded(&format!("comfyume/{}/input/reference.png", job.prompt_id))
            .as_deref(),
        Some(&b"\x89PNG ana's reference"[..])
    );
    assert_eq!(gateway.uploaded("reference.png"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_worker_through_its_progress_callback() {
    let (_gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(300, 40))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = store_in(data.path(), 3).await;
    let plugins = Arc::new(registry_from_config(&PluginsConfig::default(), data.path()).unwrap());
    // The host's callback route, on loopback.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let callback_url = format!("http://{}", listener.local_addr().unwrap());
    let dispatcher = Dispatcher::new(
        store.clone(),
        plugins,
        vec![pool("h200-spot", true, 1.15, 1, &url)],
        config(
            data.path(),
            "host-a",
            Duration::from_secs(30),
            Some(callback_url),
        ),
    );
    let routes = comfyume::server::progress::router(dispatcher.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, routes).await.unwrap();
    });
    let run = tokio::spawn(dispatcher.clone().run());
    let job = enqueue(&store, "ana", prompt_with(json!({}))).await;
    // Real step progress arrives through the callback…
    wait_for(&store, job.id, |j| j.progress.is_some_and(|p| p.value >= 1)).await;
    let started = Instant::now();
    store.cancel(job.id, Requester::User("ana")).await.unwrap();
    // …and the cancel reaches the GPU, long before the 12 s the job needs.
    let done = wait_for(&store, job.id, finished).await;
    assert_eq!(done.state, JobState::Cancelled, "{done:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    run.abort();
    server.abort();
}

/// A host dies after Verda took the job: another host re-attaches to the
/// same inference id and collects the result; the GPU ran once.
#[test]
fn a_dispatcher_crash_after_the_submit_reattaches_by_inference_id() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (gateway, url, store) = main.block_on(async {
        let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(200, 10))
            .await
            .unwrap();
        let store = store_in(data.path(), 3).await;
        (gateway, url, store)
    });
    let plugins = Arc::new(registry_from_config(&PluginsConfig::default(), data.path()).unwrap());

    // Host A, on a runtime of its own so that dropping it kills every task.
    let doomed = tokio::runtime::Runtime::new().unwrap();
    let a = Dispatcher::new(
        store.clone(),
        plugins.clone(),
        vec![pool("h200-spot", true, 1.15, 1, &url)],
        config(data.path(), "host-a", Duration::from_secs(30), None),
    );
    doomed.spawn(a.run());
    let job = main.block_on(enqueue(&store, "ana", prompt_with(json!({}))));
    let sent = main.block_on(wait_for(&store, job.id, |j| j.backend.is_some()));
    let inference_id = sent.backend.clone().unwrap().job_id;
    doomed.shutdown_background(); // kill -9, as far as this process can tell

    // Host B recovers the expired lease and follows the same inference.
    let done = main.block_on(async {
        let b = Dispatcher::new(
            store.clone(),
            plugins,
            vec![pool("h200-spot", true, 1.15, 1, &url)],
            config(data.path(), "host-b", Duration::from_secs(30), None),
        );
        let tasks = [
            tokio::spawn(b.clone().run()),
            tokio::spawn(b.clone().recovery_loop()),
        ];
        let done = wait_for(&store, job.id, finished).await;
        for task in tasks {
            task.abort();
        }
        done
    });
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.backend.unwrap().job_id, inference_id);
    assert!(done.lease.is_none(), "{:?}", done.lease);
    assert_eq!(gateway.runs(&done.prompt_id), 1, "the GPU ran once");
    assert_eq!(done.outputs.len(), 1);
}

/// A replica that answers what no worker would: each case must end the job
/// with a reason and write nothing outside the owner's folder.
async fn hostile_replica(answer: &'static str) -> String {
    replica_answering(200, answer).await
}

/// A replica that answers every `/run` with `code` and `answer`, and whose
/// health check passes.
async fn replica_answering(code: u16, answer: &'static str) -> String {
    let code = axum::http::StatusCode::from_u16(code).unwrap();
    let router = axum::Router::new()
        .route(
            "/run",
            axum::routing::post(move || async move {
                (code, [("content-type", "application/json")], answer)
            }),
        )
        .route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_from_a_replica_end_the_job_with_a_reason_and_write_nothing_outside() {
    let traversal = r#"{"prompt_id":"x","status":"success","run_ms":1,"outputs":[
        {"node_id":"9","filename":"../../../escaped.png","subfolder":"","type":"output",
         "animated":false,"data_base64":"aGVsbG8="}]}"#;
    let not_base64 = r#"{"prompt_id":"x","status":"success","run_ms":1,"outputs":[
        {"node_id":"9","filename":"ok.png","subfolder":"","type":"output",
         "animated":false,"data_base64":"%%%"}]}"#;
    let cases = [
        (traversal, JobState::Failed, "unsafe output path"),
        (not_base64, JobState::Failed, "not base64"),
        ("{not json", JobState::Dead, "not the worker's answer"),
    ];
    for (answer, state, reason) in cases {
        let replica = hostile_replica(answer).await;
        let gateway = FakeVerda::new("h200-spot", KEY, vec![replica]);
        let url = format!("http://{}", gateway.serve().await.unwrap());
        let host = host(
            vec![pool("h200-spot", true, 1.15, 1, &url)],
            2,
            Duration::from_secs(10),
        )
        .await;
        let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
        let done = wait_for(&host.store, job.id, finished).await;
        assert_eq!(done.state, state, "{answer}: {done:?}");
        let why = done.reason.unwrap_or_default();
        assert!(why.contains(reason), "{answer}: {why}");
        assert!(!host.data.path().join("escaped.png").exists());
        assert!(!host.data.path().join("users/escaped.png").exists());
    }
}
