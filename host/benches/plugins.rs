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

criterion_group!(benches, decisions);
criterion_main!(benches);
