//! `cargo bench -p comfyume --bench plugins`: the cost of a scheduling
//! decision through Wasm versus the same policy compiled natively.
//!
//! - `decision/native/N`: the `fair-share` crate's `pick_next`, linked natively,
//!   on a snapshot already in its own types (the best a native host could do).
//! - `decision/wasm/N`: the built-in `fair-share` component through the host
//!   runtime as the dispatcher calls it: a fresh instance from the pool, the
//!   snapshot lowered into guest memory, the decision, the store dropped.
//! - `instance/fresh`: a fresh instance plus `describe()`, the fixed cost.
//!
//! - `language/<example>/…`: the plugins of `examples/plugins/` (Python,
//!   JavaScript, C, Rust), each next to the Rust built-in of the same kind in
//!   the same run: a decision (`call`) and a fresh instance plus `describe()`
//!   (`instance`). Their size and compile time are printed once (a compile is
//!   seconds for the interpreted guests, too slow for criterion's loop).
//!   Build the examples first (`examples/plugins/*/build.sh`); one that is
//!   not built is skipped with a message.
//!
//! Results, as ratios to the native baseline of the same run, are recorded in
//! `docs/benchmarks.md`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use comfyume::plugins::api::{PriorityClass, Snapshot};
use comfyume::plugins::cache::CompileCache;
use comfyume::plugins::check::sample_snapshot;
use comfyume::plugins::{CallLimits, LoadedPlugin, PluginEngine, RuntimeConfig, builtin};
use scheduler_fair_share::sdk::scheduler as guest;
use scheduler_fair_share::sdk::types::PriorityClass as GuestPriority;

fn guest_priority(p: PriorityClass) -> GuestPriority {
    match p {
        PriorityClass::Instructor => GuestPriority::Instructor,
        PriorityClass::High => GuestPriority::High,
        PriorityClass::Normal => GuestPriority::Normal,
        PriorityClass::Low => GuestPriority::Low,
    }
}

/// The host snapshot in the native crate's own types (done once, outside timing).
fn to_guest(s: &Snapshot) -> guest::Snapshot {
    guest::Snapshot {
        now_ms: s.now_ms,
        pending: s
            .pending
            .iter()
            .map(|j| guest::PendingJob {
                id: j.id,
                user: j.user,
                kind: j.kind,
                priority: guest_priority(j.priority),
                submitted_at_ms: j.submitted_at_ms,
                est_gpu_seconds: j.est_gpu_seconds,
                attempts: j.attempts,
            })
            .collect(),
        running: s
            .running
            .iter()
            .map(|j| guest::RunningJob {
                id: j.id,
                user: j.user,
                kind: j.kind,
                started_at_ms: j.started_at_ms,
                est_gpu_seconds: j.est_gpu_seconds,
            })
            .collect(),
        users: s
            .users
            .iter()
            .map(|u| guest::UserUsage {
                name: u.name.clone(),
                priority: guest_priority(u.priority),
                running: u.running,
                pending: u.pending,
                gpu_seconds_used: u.gpu_seconds_used,
                jobs_done: u.jobs_done,
                max_running: u.max_running,
                last_dispatched_at_ms: u.last_dispatched_at_ms,
            })
            .collect(),
        kinds: s.kinds.clone(),
    }
}

fn decisions(c: &mut Criterion) {
    let engine = PluginEngine::new(&RuntimeConfig::default(), CompileCache::new(None)).unwrap();
    let bytes = builtin::component("fair-share").unwrap();
    let plugin = LoadedPlugin::load(&engine, bytes, CallLimits::default()).unwrap();

    let mut group = c.benchmark_group("decision");
    for jobs in [10usize, 100, 1000] {
        // ~1 user per 5 jobs, as in a workshop burst.
        let snapshot = sample_snapshot(jobs.div_ceil(5), jobs);
        let native = to_guest(&snapshot);
        assert_eq!(
            plugin.pick_next(&snapshot).unwrap(),
            scheduler_fair_share::pick_next(&native),
            "Wasm and native agree"
        );
        group.bench_with_input(BenchmarkId::new("native", jobs), &native, |b, s| {
            b.iter(|| scheduler_fair_share::pick_next(black_box(s)))
        });
        group.bench_with_input(BenchmarkId::new("wasm", jobs), &snapshot, |b, s| {
            b.iter(|| plugin.pick_next(black_box(s)).unwrap())
        });
    }
    group.finish();

    c.bench_function("instance/fresh", |b| b.iter(|| plugin.describe().unwrap()));
}

/// Limits that fit the interpreted guests.
const INTERPRETED: CallLimits = CallLimits {
    deadline_ms: 5_000,
    memory_mib: 256,
};

/// The examples, each with the built-in it is compared with.
const EXAMPLES: &[(&str, &str)] = &[
    ("python-fair-share", "fair-share"),
    ("js-priority", "priority"),
    ("c-validator", "flux2-klein"),
    ("rust-ltx2-to-b300", "b300-on-demand"),
];

fn languages(c: &mut Criterion) {
    use comfyume::plugins::api::PluginKind;
    use comfyume::plugins::check::{sample_backends, sample_job};
    use std::time::Instant;

    let engine = PluginEngine::new(&RuntimeConfig::default(), CompileCache::new(None)).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = std::fs::read_to_string(
        root.join("workflows/api/image_flux2_klein_text_to_image.api.json"),
    )
    .unwrap();
    let graph =
        comfyume::plugins::graph::graph_from_prompt(&serde_json::from_str(&template).unwrap())
            .unwrap();
    let snapshot = sample_snapshot(20, 100);
    let backends = sample_backends();
    let job = sample_job("ltx2", 1280, 720, 257);

    let mut group = c.benchmark_group("language");
    for (example, builtin_name) in EXAMPLES {
        let file = root
            .join("examples/plugins")
            .join(example)
            .join("plugin.wasm");
        let Ok(bytes) = std::fs::read(&file) else {
            eprintln!(
                "language/{example}: skipped, {} is not built",
                file.display()
            );
            continue;
        };
        let started = Instant::now();
        let compiled = wasmtime::component::Component::new(engine.engine(), &bytes).unwrap();
        let compile = started.elapsed();
        drop(compiled);
        let plugin = LoadedPlugin::load(&engine, &bytes, INTERPRETED).unwrap();
        let builtin_bytes = builtin::component(builtin_name).unwrap();
        let builtin = LoadedPlugin::load(&engine, builtin_bytes, CallLimits::default()).unwrap();
        eprintln!(
            "language/{example}: {:.1} MB, compile {:.2} s (built-in {builtin_name}: {:.0} KB)",
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64(),
            builtin_bytes.len() as f64 / 1e3
        );
        for (who, p) in [(*example, &plugin), (*builtin_name, &builtin)] {
            let id = format!("{example}/{who}");
            match p.kind() {
                PluginKind::Scheduler => {
                    group.bench_function(BenchmarkId::new("call", &id), |b| {
                        b.iter(|| p.pick_next(black_box(&snapshot)).unwrap())
                    });
                }
                PluginKind::Validator => {
                    group.bench_function(BenchmarkId::new("call", &id), |b| {
                        b.iter(|| p.validate(black_box(&graph)).unwrap())
                    });
                }
                PluginKind::Selector => {
                    group.bench_function(BenchmarkId::new("call", &id), |b| {
                        b.iter(|| p.select(black_box(&job), black_box(&backends)).unwrap())
                    });
                }
            }
            group.bench_function(BenchmarkId::new("instance", &id), |b| {
                b.iter(|| p.describe().unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decisions, languages);
criterion_main!(benches);
