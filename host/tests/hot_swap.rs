//! Swapping the scheduler while four threads call it in a loop: no call
//! fails, and every call that starts after the swap sees the new version.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use comfyume::plugins::{CallLimits, DecidedBy};
use common::*;

#[test]
fn hot_swap_under_load_loses_no_call() {
    let registry = Arc::new(registry_with_scheduler(
        builtin_bytes("fifo"),
        CallLimits::default(),
    ));
    let next = registry
        .load(builtin_bytes("round-robin"), CallLimits::default())
        .unwrap();
    let queue = Arc::new(snapshot(
        vec![user("a"), user("b"), user("c")],
        (0..30)
            .map(|i| job(i + 1, (i % 3) as u32, NOW - 10_000 + i))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(5));

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, queue, stop, calls, start) = (
                registry.clone(),
                queue.clone(),
                stop.clone(),
                calls.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let decision = registry.pick_next(&queue);
                    calls.fetch_add(1, Ordering::Relaxed);
                    seen.push((began, decision.by, decision.value));
                }
                seen
            })
        })
        .collect();
    start.wait();
    // Let every worker make calls on the old version first.
    while calls.load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    registry.activate(next.hash()).unwrap();
    let swapped = Instant::now();
    let at_swap = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < at_swap + 200 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);

    let (mut old, mut new) = (0, 0);
    for worker in workers {
        for (began, by, value) in worker.join().expect("worker panicked") {
            assert_eq!(value, Some(0), "both policies pick the oldest job here");
            match by {
                DecidedBy::Plugin(label) if label == "fifo@0.1.0" => {
                    assert!(
                        began < swapped,
                        "a call that started after the swap saw the old version"
                    );
                    old += 1;
                }
                DecidedBy::Plugin(label) if label == "round-robin@0.1.0" => new += 1,
                other => panic!("a call failed or fell back during the swap: {other:?}"),
            }
        }
    }
    eprintln!("hot swap: {old} calls on the old version, {new} on the new one");
    assert!(old >= 200 && new >= 200);
    let history = registry.scheduler().status().history;
    assert_eq!(
        history.iter().map(|v| v.label.as_str()).collect::<Vec<_>>(),
        ["fifo@0.1.0"]
    );
    // Rollback is one call.
    registry.rollback("scheduler").unwrap();
    assert_eq!(
        registry.pick_next(&queue).by,
        DecidedBy::Plugin("fifo@0.1.0".into())
    );
}
