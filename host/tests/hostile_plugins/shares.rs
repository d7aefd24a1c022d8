//! Resource exhaustion is never blamed on a plugin that did not cause it:
//! each slot and the shadow hold a bounded share of the instance pool, a
//! call beyond its share is answered by the default without a counted
//! failure, and a call slowed by a busy host is not the plugin's failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::plugins::cache::CompileCache;
use comfyume::plugins::graph::graph_from_prompt;
use comfyume::plugins::slot::{FailurePolicy, SlotStatus};
use comfyume::plugins::{
    CallLimits, DecidedBy, PluginEngine, Registry, RuntimeConfig, Unclaimed, Validation, builtin,
};
use serde_json::{Value, json};

use crate::common::*;

fn registry(max_instances: u32, instances_per_slot: u32) -> Registry {
    let engine = PluginEngine::new(
        &RuntimeConfig {
            max_instances,
            instances_per_slot,
            ..RuntimeConfig::default()
        },
        CompileCache::new(None),
    )
    .expect("engine");
    Registry::new(
        engine,
        FailurePolicy {
            max_failures: 5,
            window: Duration::from_secs(60),
            retry_after: None,
        },
        Unclaimed::Accept,
    )
}

fn activate(registry: &Registry, bytes: &[u8], limits: CallLimits) {
    let plugin = registry.load(bytes, limits).expect("load");
    registry.activate(plugin.hash()).expect("activate");
}

fn template(word: &str) -> Value {
    let (_, json) = builtin::templates()
        .iter()
        .find(|(file, _)| file.contains(word))
        .expect("template");
    serde_json::from_str(json).unwrap()
}

fn slot(registry: &Registry, name: &str) -> SlotStatus {
    registry
        .status()
        .into_iter()
        .find(|s| s.slot == name)
        .unwrap_or_else(|| panic!("no slot {name}"))
}

#[test]
fn a_sleeping_validator_under_a_burst_fills_only_its_own_share() {
    // A small pool: 3 instances per slot, 16 in all.
    let registry = Arc::new(registry(16, 3));
    activate(
        &registry,
        builtin_bytes("flux2-klein"),
        CallLimits::default(),
    );
    activate(&registry, builtin_bytes("ltx2"), CallLimits::default());
    activate(&registry, builtin_bytes("fifo"), CallLimits::default());
    let sleepy = CallLimits {
        deadline_ms: 150,
        memory_mib: 64,
    };
    activate(&registry, &fixture_bytes("hostile-sleep-validator"), sleepy);
    let graph = Arc::new(graph_from_prompt(&template("flux2_klein")).unwrap());
    let queue = Arc::new(snapshot(
        vec![user("a"), user("b")],
        vec![job(1, 0, NOW - 500), job(2, 1, NOW - 900)],
    ));

    // 40 prompts at once, and the dispatcher deciding meanwhile.
    let prompts: Vec<_> = (0..40)
        .map(|_| {
            let (registry, graph) = (registry.clone(), graph.clone());
            std::thread::spawn(move || registry.validate(&graph))
        })
        .collect();
    let mut scheduler_fallbacks = Vec::new();
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        if let DecidedBy::Fallback(why) = registry.pick_next(&queue).by {
            scheduler_fallbacks.push(why);
        }
    }
    let outcomes: Vec<Validation> = prompts.into_iter().map(|t| t.join().unwrap()).collect();

    assert!(
        scheduler_fallbacks.is_empty(),
        "the scheduler lost its instances to the validator: {scheduler_fallbacks:?}"
    );
    for name in ["validator:flux2-klein", "validator:ltx2", "scheduler"] {
        let status = slot(&registry, name);
        assert_eq!(status.total_failures, 0, "{status:?}");
        assert!(status.disabled.is_none(), "{status:?}");
    }
    let sleepy = slot(&registry, "validator:a-sleepy");
    eprintln!("a-sleepy after the burst: {sleepy:?}");
    // Its own overruns are counted; the calls its share could not take are not.
    assert!(sleepy.total_failures >= 1, "{sleepy:?}");
    assert!(sleepy.not_counted >= 1, "{sleepy:?}");
    for outcome in &outcomes {
        if let Validation::Refused { reason } = outcome {
            assert!(!reason.contains("concurrent"), "{reason}");
        }
    }
    let (in_use, _) = registry.engine().pool_usage();
    assert_eq!(in_use, 0, "every instance was given back");
}

#[test]
fn a_slow_shadow_runs_one_call_at_a_time_and_drops_the_rest() {
    let registry = Arc::new(registry(16, 3));
    activate(&registry, builtin_bytes("fifo"), CallLimits::default());
    let slow = registry
        .load(
            &fixture_bytes("hostile-sleep"),
            CallLimits {
                deadline_ms: 200,
                memory_mib: 64,
            },
        )
        .unwrap();
    registry.set_shadow(slow.hash()).unwrap();
    let queue = Arc::new(snapshot(vec![user("a")], vec![job(1, 0, NOW - 10)]));

    // Twenty live decisions in quick succession, each handed to the shadow
    // on a thread of its own as the dispatcher does.
    let mut asked = Vec::new();
    for _ in 0..20 {
        let decision = registry.pick_next(&queue);
        assert!(matches!(decision.by, DecidedBy::Plugin(_)), "{decision:?}");
        let (registry, queue) = (registry.clone(), queue.clone());
        asked.push(std::thread::spawn(move || {
            registry.shadow().compare(&queue, &[1], Some(1), NOW)
        }));
        std::thread::sleep(Duration::from_millis(5));
    }
    for thread in asked {
        thread.join().unwrap();
    }
    let status = registry.shadow().status();
    eprintln!("shadow: {status:?}");
    assert!(status.decisions >= 1 && status.decisions <= 3, "{status:?}");
    assert_eq!(status.decisions + status.dropped, 20, "{status:?}");
    assert_eq!(status.failed, status.decisions, "{status:?}");
    assert_eq!(slot(&registry, "scheduler").total_failures, 0);
}

/// A validator call made slow by other work on the host (issue 18 item 2):
/// many concurrent prompts on two cores stretch each call's wall time past
/// the deadline while its own CPU time stays well inside it.
#[test]
fn a_validator_slowed_by_a_busy_host_is_not_counted() {
    let mut prompt = template("ltx2_t2v");
    // A large prompt: 600 extra nodes with 40 inputs each.
    for i in 0..600 {
        let inputs: serde_json::Map<String, Value> =
            (0..40).map(|k| (format!("k{k}"), json!(i * k))).collect();
        prompt[format!("{}", 10_000 + i)] = json!({"class_type": "PrimitiveInt", "inputs": inputs});
    }
    let graph = Arc::new(graph_from_prompt(&prompt).unwrap());

    let probe = registry(128, 64);
    activate(&probe, builtin_bytes("ltx2"), CallLimits::default());
    let alone = (0..3)
        .map(|_| {
            let started = Instant::now();
            probe.validate(&graph);
            started.elapsed()
        })
        .min()
        .unwrap();
    // Three times what one call needs on its own.
    let deadline_ms = (alone.as_millis() as u64 * 3).max(20);

    let registry = Arc::new(registry(128, 64));
    activate(
        &registry,
        builtin_bytes("ltx2"),
        CallLimits {
            deadline_ms,
            memory_mib: 256,
        },
    );
    let threads = 8 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let outcomes: Vec<Validation> = (0..threads)
        .map(|_| {
            let (registry, graph) = (registry.clone(), graph.clone());
            std::thread::spawn(move || registry.validate(&graph))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let took = started.elapsed();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, Validation::Refused { .. }))
        .count();
    let status = slot(&registry, "validator:ltx2");
    eprintln!(
        "one call alone {alone:?}, deadline {deadline_ms} ms, {threads} at once in {took:?}: \
         {busy} answered busy; {status:?}"
    );
    assert_eq!(status.total_failures, 0, "{status:?}");
    assert!(status.disabled.is_none(), "{status:?}");
}
