//! `cargo bench -p comfyume --bench dispatch`: what the dispatcher costs per
//! job, against the same backend driven directly.
//!
//! 50 rehearsal ComfyUI pools (no cold start, no sampling steps: every job
//! is as short as a job can be), capacity 4 each, and 1,000 trivial jobs
//! from 100 attendees on the embedded queue with the built-in plugins. The
//! baseline, in the same run: the same jobs driven straight through the
//! ComfyUI client (submit, follow, download) with the same concurrency and
//! no queue, plugins or leases. The ratio is the dispatcher's overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::config::PluginsConfig;
use comfyume::dispatch::backend::PoolInfo;
use comfyume::dispatch::comfyui::client::{ClientLimits, ComfyClient};
use comfyume::dispatch::comfyui::protocol::Outcome;
use comfyume::dispatch::comfyui_backend::ComfyBackend;
use comfyume::dispatch::dispatcher::{Dispatcher, DispatcherConfig};
use comfyume::dispatch::pool::Pool;
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use comfyume::plugins::registry_from_config;
use comfyume::queue::{
    Cost, EmbeddedStore, JobStore, NewJob, Priority, StoreLimits, UserLimits, system_clock,
};
use serde_json::json;

const POOLS: usize = 50;
const CAPACITY: u32 = 4;
const JOBS: usize = 1000;
const USERS: usize = 100;

fn prompt() -> serde_json::Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
    })
}

fn limits() -> ClientLimits {
    ClientLimits {
        request: Duration::from_secs(10),
        poll: Duration::from_millis(20),
        max_output_bytes: 1 << 20,
        ws_idle: Duration::from_millis(250),
        submit: Duration::from_secs(2),
        download: Duration::from_secs(2),
        ..ClientLimits::default()
    }
}

async fn backends() -> Vec<String> {
    let mut urls = Vec::new();
    for _ in 0..POOLS {
        let config = RehearsalConfig {
            step_time: Duration::ZERO,
            ..RehearsalConfig::default()
        };
        let addr = Rehearsal::new(config).serve().await.unwrap();
        urls.push(format!("http://{addr}"));
    }
    urls
}

/// The baseline: the same jobs straight through the client.
async fn direct(urls: &[String]) -> Duration {
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(POOLS * CAPACITY as usize));
    let mut tasks = Vec::new();
    for n in 0..JOBS {
        let client = ComfyClient::new(&urls[n % POOLS], limits()).unwrap();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let id = uuid::Uuid::new_v4().to_string();
            client.submit(&prompt(), &id, "bench", None).await.unwrap();
            let Outcome::Success(outputs) = client
                .follow(&id, "bench", Duration::from_secs(60), |_, _| {})
                .await
                .unwrap()
            else {
                panic!("job failed")
            };
            for output in outputs.values() {
                for (file, _) in output.files() {
                    client.download(file).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// The dispatcher: queue, plugins, leases, outputs on disk.
async fn dispatched(urls: &[String]) -> Duration {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn JobStore> = Arc::new(
        EmbeddedStore::open(
            &data.path().join("queue.sqlite"),
            StoreLimits::default(),
            system_clock(),
        )
        .unwrap(),
    );
    for u in 0..USERS {
        store
            .set_user(UserLimits {
                name: format!("u{u}"),
                max_pending: 1000,
                max_running: 10,
                priority: Priority::Normal,
            })
            .await
            .unwrap();
    }
    let plugins = Arc::new(registry_from_config(&PluginsConfig::default(), data.path()).unwrap());
    let pools = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let info = PoolInfo {
                name: format!("p{i}"),
                gpu: "H200".into(),
                spot: false,
                capacity: CAPACITY,
                price_per_hour: 3.29,
            };
            Pool::new(Arc::new(ComfyBackend::new(
                info,
                ComfyClient::new(url, limits()).unwrap(),
            )))
        })
        .collect();
    let payload = serde_json::to_vec(&json!({ "prompt": prompt() })).unwrap();
    for n in 0..JOBS {
        let job = NewJob {
            user: format!("u{}", n % USERS),
            prompt_id: uuid::Uuid::new_v4().to_string(),
            client_id: None,
            priority: Priority::Normal,
            workflow_kind: "other".into(),
            cost: Cost::default(),
            payload: payload.clone(),
        };
        store.enqueue(job).await.unwrap();
    }
    let config = DispatcherConfig {
        host: "bench".into(),
        lease: Duration::from_secs(30),
        job_wait: Duration::from_secs(60),
        tick: Duration::from_millis(20),
        data_dir: data.path().to_path_buf(),
        max_input_bytes: 1 << 20,
        callback_url: None,
    };
    let started = Instant::now();
    let task = tokio::spawn(Dispatcher::new(store.clone(), plugins, pools, config).run());
    loop {
        let snapshot = store.snapshot().await.unwrap();
        if snapshot.pending.is_empty() && snapshot.running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    task.abort();
    took
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let urls = backends().await;
        let base = direct(&urls).await;
        let with = dispatched(&urls).await;
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / JOBS as f64;
        println!("| path | {JOBS} jobs | per job | jobs/s |");
        println!("|---|---|---|---|");
        println!(
            "| client only (baseline) | {base:.2?} | {:.2} ms | {:.0} |",
            per(base),
            JOBS as f64 / base.as_secs_f64()
        );
        println!(
            "| dispatcher | {with:.2?} | {:.2} ms | {:.0} |",
            per(with),
            JOBS as f64 / with.as_secs_f64()
        );
        println!(
            "ratio dispatcher / baseline: {:.2}",
            with.as_secs_f64() / base.as_secs_f64()
        );
    });
}
