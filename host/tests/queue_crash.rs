//! Crash tests with real processes. A child process (this test binary,
//! re-run as `child_host`) fills a store with 50 queued and 10 leased jobs,
//! records backend ids for 5 of the leased ones and "submits" them to a fake
//! GPU backend (a ledger file), then is killed with SIGKILL. The test then
//! restarts on the same store (embedded), or takes over the leader lease as
//! a second host (Redis), recovers the expired leases and drives every job
//! to the end: no job is lost, and no job reaches the GPU twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use comfyume::queue::{
    BackendProbe, BackendRef, EmbeddedStore, JobState, JobStore, Page, Priority, RedisStore,
    StoreLimits, UserLimits, recover_expired, system_clock,
};
use common::queue::new_job;
use common::redis::RedisServer;

const CHILD_ENV: &str = "COMFYUME_CRASH_CHILD";
const LEDGER_ENV: &str = "COMFYUME_CRASH_LEDGER";
const CHILD_LEASE: Duration = Duration::from_millis(1500);

/// The fake GPU backend: every submission is a line in an append-only file.
struct Ledger(PathBuf);

impl Ledger {
    fn submit(&self, prompt_id: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .unwrap();
        writeln!(file, "{prompt_id}").unwrap();
        file.sync_all().unwrap();
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[async_trait]
impl BackendProbe for Ledger {
    async fn knows(&self, backend: &BackendRef) -> anyhow::Result<bool> {
        Ok(self.runs().contains(&backend.job_id))
    }
}

async fn open(spec: &str) -> Arc<dyn JobStore> {
    let limits = StoreLimits::default();
    match spec.split_once(':') {
        Some(("embedded", path)) => {
            Arc::new(EmbeddedStore::open(Path::new(path), limits, system_clock()).unwrap())
        }
        Some(("redis", url)) => Arc::new(
            RedisStore::connect(url, "crash", limits, system_clock())
                .await
                .unwrap(),
        ),
        _ => panic!("bad spec {spec}"),
    }
}

/// The child host: fills the store, then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the crash tests"]
async fn child_host() {
    let spec = std::env::var(CHILD_ENV).expect("run by the crash tests");
    let ledger = Ledger(std::env::var(LEDGER_ENV).unwrap().into());
    let store = open(&spec).await;
    assert!(store.lead("host-1", Duration::from_secs(2)).await.unwrap());
    store
        .set_user(UserLimits {
            name: "alice".into(),
            max_pending: 1000,
            max_running: 100,
            priority: Priority::Normal,
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(store.enqueue(new_job("alice")).await.unwrap().id);
    }
    for (n, id) in ids.iter().take(10).enumerate() {
        let job = store.claim(*id, "host-1", CHILD_LEASE).await.unwrap();
        if n < 5 {
            // Record the backend id first, then submit: the order the dispatcher keeps.
            store
                .dispatched(
                    *id,
                    "host-1",
                    BackendRef {
                        pool: "fake".into(),
                        job_id: job.prompt_id.clone(),
                    },
                )
                .await
                .unwrap();
            ledger.submit(&job.prompt_id);
        }
    }
    println!("CHILD-HOST-READY");
    std::io::stdout().flush().unwrap();
    // Renew like a live host until killed; give up after two minutes so an
    // orphan (a parent that panicked before killing us) cannot linger.
    let born = Instant::now();
    while born.elapsed() < Duration::from_secs(120) {
        store.lead("host-1", Duration::from_secs(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("child host was never killed");
}

/// Runs `child_host` against `spec` and kills it with SIGKILL once it is ready.
fn run_and_kill_child(spec: &str, ledger: &Path) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_host",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env(LEDGER_ENV, ledger)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .any(|l| l.is_ok_and(|l| l.contains("CHILD-HOST-READY")));
    assert!(ready, "the child host never got ready");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// As the surviving host: recover, then run every job to the end.
async fn recover_and_finish(store: Arc<dyn JobStore>, ledger: &Ledger) {
    let before = store.snapshot().await.unwrap();
    assert_eq!(
        (before.pending.len(), before.running.len()),
        (50, 10),
        "nothing lost in the crash"
    );
    let dispatched_before: HashSet<String> = ledger.runs().into_iter().collect();
    assert_eq!(dispatched_before.len(), 5);

    let lease = Duration::from_secs(30);
    let started = Instant::now();
    let mut reattached = Vec::new();
    let mut requeued = Vec::new();
    while reattached.len() + requeued.len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "leases never expired"
        );
        let now = comfyume::queue::Clock::now_ms(&comfyume::queue::SystemClock);
        let report = recover_expired(&*store, ledger, "host-2", lease, now)
            .await
            .unwrap();
        assert!(
            report.dead.is_empty() && report.skipped.is_empty(),
            "{report:?}"
        );
        reattached.extend(report.reattached);
        requeued.extend(report.requeued);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "recovered after {:?}: {} re-attached, {} requeued",
        started.elapsed(),
        reattached.len(),
        requeued.len()
    );
    let reattached_prompts: HashSet<String> = {
        let mut set = HashSet::new();
        for id in &reattached {
            set.insert(
                store
                    .get(*id, comfyume::queue::Requester::Admin)
                    .await
                    .unwrap()
                    .prompt_id,
            );
        }
        set
    };
    assert_eq!(
        reattached_prompts, dispatched_before,
        "exactly the jobs with a backend id are re-attached"
    );

    // Re-attached jobs: follow the same backend job to its result, no new run.
    for id in &reattached {
        store.running(*id, "host-2", None).await.unwrap();
        store.succeed(*id, "host-2", vec![], 10.0).await.unwrap();
    }
    // Everything else: claim, record the backend id, submit, finish.
    loop {
        let snapshot = store.snapshot().await.unwrap();
        if snapshot.pending.is_empty() {
            break;
        }
        for pending in snapshot.pending {
            let job = store.claim(pending.id, "host-2", lease).await.unwrap();
            let backend = BackendRef {
                pool: "fake".into(),
                job_id: job.prompt_id.clone(),
            };
            store.dispatched(job.id, "host-2", backend).await.unwrap();
            ledger.submit(&job.prompt_id);
            store.running(job.id, "host-2", None).await.unwrap();
            store.succeed(job.id, "host-2", vec![], 10.0).await.unwrap();
        }
    }

    let jobs = store
        .list_user(
            "alice",
            Page {
                offset: 0,
                limit: 500,
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 60, "no job lost");
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded),
        "all reach a terminal state"
    );
    let mut runs: HashMap<String, usize> = HashMap::new();
    for run in ledger.runs() {
        *runs.entry(run).or_default() += 1;
    }
    assert_eq!(runs.len(), 60, "every job ran");
    assert!(
        runs.values().all(|n| *n == 1),
        "a job reached the GPU twice: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_sigkill_without_double_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger(dir.path().join("ledger"));
    let spec = format!("embedded:{}", dir.path().join("queue.sqlite").display());
    run_and_kill_child(&spec, &ledger.0);
    // Restart: the same journal, a new process's view of it.
    recover_and_finish(open(&spec).await, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_takes_over_from_a_killed_one_on_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger(dir.path().join("ledger"));
    let spec = format!("redis:{}", server.url());
    let store = open(&spec).await;
    run_and_kill_child(&spec, &ledger.0);
    // host-2 was running all along; it becomes leader once host-1's lease lapses.
    let started = Instant::now();
    assert!(
        !store.lead("host-2", Duration::from_secs(2)).await.unwrap(),
        "host-1's lease is still live"
    );
    while !store.lead("host-2", Duration::from_secs(2)).await.unwrap() {
        assert!(started.elapsed() < Duration::from_secs(10), "no takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "host-2 took over the leader lease after {:?}",
        started.elapsed()
    );
    recover_and_finish(store, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_fast_and_recovers_by_itself() {
    let mut server = RedisServer::start_with_aof();
    let store = open(&format!("redis:{}", server.url())).await;
    store
        .set_user(UserLimits {
            name: "alice".into(),
            max_pending: 100,
            max_running: 10,
            priority: Priority::Normal,
        })
        .await
        .unwrap();
    let kept = store.enqueue(new_job("alice")).await.unwrap();

    server.kill();
    let started = Instant::now();
    // A guard against hanging, not a performance assertion.
    let outcome =
        tokio::time::timeout(Duration::from_secs(20), store.enqueue(new_job("alice"))).await;
    let error = outcome
        .expect("the store hung during the outage")
        .unwrap_err();
    eprintln!(
        "enqueue during the outage failed after {:?}: {error}",
        started.elapsed()
    );
    assert_eq!(error.http_status(), 503, "{error}");
    assert!(matches!(
        store.snapshot().await,
        Err(comfyume::queue::StoreError::Unavailable(_))
    ));

    server.restart();
    let started = Instant::now();
    let job = loop {
        match store.enqueue(new_job("alice")).await {
            Ok(job) => break job,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "never recovered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    eprintln!("recovered {:?} after the restart", started.elapsed());
    assert!(job.id > kept.id);
    // The AOF kept what was acknowledged before the outage.
    let admin = comfyume::queue::Requester::Admin;
    assert_eq!(store.get(kept.id, admin).await.unwrap(), kept);
    assert_eq!(store.snapshot().await.unwrap().pending.len(), 2);
}
