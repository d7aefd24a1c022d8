//! `cargo bench -p comfyume --bench queue`: enqueue and claim throughput of
//! both job stores with 1 and 8 concurrent clients, next to the raw speed of
//! the same Redis server measured by `redis-benchmark` in the same run.
//!
//! A load binary rather than criterion: what matters is operations per
//! second under concurrency, and the baseline (redis-benchmark against the
//! server this run started) must come from the same machine at the same
//! moment. Results go to `docs/benchmarks.md`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::queue::{
    Cost, EmbeddedStore, JobStore, NewJob, Priority, RedisStore, StoreLimits, UserLimits,
    system_clock,
};

const JOBS: usize = 4000;

fn job(user: &str) -> NewJob {
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
            gpu_seconds: 10.0,
        },
        // About the size of a real Flux2 Klein prompt.
        payload: vec![b'x'; 4096],
    }
}

/// Enqueues `JOBS` jobs from `clients` tasks, then claims them all from
/// `clients` tasks. Returns (enqueues/s, claims/s).
async fn run(store: Arc<dyn JobStore>, clients: usize) -> (f64, f64) {
    for c in 0..clients {
        store
            .set_user(UserLimits {
                name: format!("u{c}"),
                max_pending: u32::MAX,
                max_running: u32::MAX,
                priority: Priority::Normal,
            })
            .await
            .unwrap();
    }
    let per = JOBS / clients;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(per);
                for _ in 0..per {
                    ids.push(store.enqueue(job(&format!("u{c}"))).await.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut batches = Vec::new();
    for t in tasks {
        batches.push(t.await.unwrap());
    }
    let enqueue = (per * clients) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let tasks: Vec<_> = batches
        .into_iter()
        .enumerate()
        .map(|(c, ids)| {
            let store = store.clone();
            tokio::spawn(async move {
                for id in ids {
                    store
                        .claim(id, &format!("d{c}"), Duration::from_secs(30))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let claim = (per * clients) as f64 / started.elapsed().as_secs_f64();
    (enqueue, claim)
}

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(dir: &std::path::Path) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis(child, port)
}

/// `redis-benchmark` SET and EVAL rates against the same server, 1 and 8 clients.
fn redis_benchmark(port: u16, clients: usize) -> (f64, f64) {
    let rate = |args: &[&str]| -> f64 {
        let out = Command::new("redis-benchmark")
            .args([
                "-p",
                &port.to_string(),
                "-c",
                &clients.to_string(),
                "-n",
                "50000",
                "--csv",
            ])
            .args(args)
            .output()
            .expect("redis-benchmark on PATH");
        let text = String::from_utf8_lossy(&out.stdout);
        // CSV: "test","rps",... ; the second line holds the numbers. The
        // test name may contain commas (a script), so split on `","`.
        text.lines()
            .nth(1)
            .and_then(|l| {
                l.trim()
                    .trim_matches('"')
                    .split("\",\"")
                    .nth(1)
                    .map(str::to_owned)
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let set = rate(&["-t", "set"]);
    // A 4-key script shaped like commit.lua's writes.
    let eval = rate(&[
        "eval",
        "redis.call('HSET',KEYS[1],'v',1,'json',ARGV[1]) redis.call('ZADD',KEYS[2],1,ARGV[1]) \
         redis.call('ZREM',KEYS[3],ARGV[1]) redis.call('HINCRBY',KEYS[4],'n',1) return 1",
        "4",
        "job:__rand_int__",
        "queued",
        "active",
        "user:x",
        "__rand_int__",
    ]);
    (set, eval)
}

fn main() {
    // `cargo test --benches` runs this once in test mode: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redis = start_redis(dir.path());
    println!(
        "| store | clients | enqueue/s | claim/s | redis-benchmark SET/s | redis-benchmark 4-key EVAL/s |"
    );
    println!("|---|---|---|---|---|---|");
    for clients in [1usize, 8] {
        let (set, eval) = redis_benchmark(redis.1, clients);
        let path = dir.path().join(format!("embedded-{clients}.sqlite"));
        let embedded: Arc<dyn JobStore> =
            Arc::new(EmbeddedStore::open(&path, StoreLimits::default(), system_clock()).unwrap());
        let (e, c) = rt.block_on(run(embedded, clients));
        println!("| embedded | {clients} | {e:.0} | {c:.0} | | |");
        let url = format!("redis://127.0.0.1:{}/", redis.1);
        let prefix = format!("bench{clients}");
        let store: Arc<dyn JobStore> = Arc::new(
            rt.block_on(RedisStore::connect(
                &url,
                &prefix,
                StoreLimits::default(),
                system_clock(),
            ))
            .unwrap(),
        );
        let (e, c) = rt.block_on(run(store, clients));
        println!("| redis | {clients} | {e:.0} | {c:.0} | {set:.0} | {eval:.0} |");
    }
}
