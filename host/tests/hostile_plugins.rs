//! Misbehaving plugins cannot stall or crash the host: each failure returns
//! an error, the built-in default decides, the next call works, and after N
//! failures the plugin is disabled.

mod common;
#[path = "hostile_plugins/shares.rs"]
mod shares;
#[path = "hostile_plugins/sleep.rs"]
mod sleep;

use std::time::Instant;

use comfyume::plugins::{CallLimits, DecidedBy, LoadedPlugin, PluginError};
use common::*;

fn queue() -> comfyume::plugins::api::Snapshot {
    snapshot(
        vec![user("a"), user("b")],
        vec![job(1, 0, NOW - 500), job(2, 1, NOW - 900)],
    )
}

/// Runs the hostile scheduler `name` through a registry with a 3-failure
/// policy and checks the whole failure path. Returns the first error.
pub(crate) fn misbehave(name: &str, limits: CallLimits) -> PluginError {
    let registry = registry_with_scheduler(&fixture_bytes(name), limits);
    let plugin = registry.scheduler().active().expect("active");
    let direct = plugin
        .pick_next(&queue())
        .expect_err("hostile plugin must fail");

    for attempt in 1..=3 {
        let decision = registry.pick_next(&queue());
        // The built-in FIFO decides: job 2 is the oldest.
        assert_eq!(decision.value, Some(1), "{name} attempt {attempt}");
        assert!(
            matches!(&decision.by, DecidedBy::Fallback(why) if why.contains(name)),
            "{name}: {:?}",
            decision.by
        );
        let status = registry.scheduler().status();
        assert_eq!(
            status.disabled.is_some(),
            attempt == 3,
            "{name} attempt {attempt}: {status:?}"
        );
    }
    // Disabled: the default decides without calling the plugin at all.
    let status = registry.scheduler().status();
    assert!(status.active.is_none());
    assert!(
        status
            .disabled
            .as_deref()
            .unwrap()
            .contains("disabled after 3 failures")
    );
    let decision = registry.pick_next(&queue());
    assert_eq!(decision.value, Some(1));
    // It is kept aside, by hash, not in history: rollback never returns to it.
    let disabled = status.disabled_version.as_ref().expect("disabled version");
    assert_eq!(disabled.label, format!("{name}@0.0.1"));
    assert!(status.history.iter().all(|v| v.hash != disabled.hash));
    direct
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline() {
    let limits = CallLimits {
        deadline_ms: 50,
        memory_mib: 64,
    };
    let engine = engine();
    let plugin = LoadedPlugin::load(&engine, &fixture_bytes("hostile-loop"), limits).unwrap();
    let started = Instant::now();
    let error = plugin.pick_next(&queue()).unwrap_err();
    let took = started.elapsed();
    // Reported, not asserted: timing on a shared machine is noise.
    eprintln!(
        "hostile-loop stopped after {took:?} (deadline 50 ms, tick {:?})",
        comfyume::plugins::TICK
    );
    assert!(
        matches!(error, PluginError::Deadline { deadline_ms: 50 }),
        "{error}"
    );
    // The next call on the same plugin gets a fresh instance and fails the same way.
    assert!(matches!(
        plugin.pick_next(&queue()),
        Err(PluginError::Deadline { .. })
    ));

    let error = misbehave("hostile-loop", limits);
    assert_eq!(error.cause(), "deadline");
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let limits = CallLimits {
        deadline_ms: 5_000,
        memory_mib: 8,
    };
    let error = misbehave("hostile-memory", limits);
    match error {
        PluginError::MemoryCap { cap_mib, asked_mib } => {
            assert_eq!(cap_mib, 8);
            assert!(asked_mib > 8, "asked for {asked_mib} MiB");
        }
        other => panic!("expected the memory cap, got {other}"),
    }
}

#[test]
fn a_panicking_plugin_traps_and_its_message_is_kept() {
    let error = misbehave("hostile-panic", CallLimits::default());
    match &error {
        PluginError::Trap(message) => {
            assert!(message.contains("refusing 2 pending jobs"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn an_out_of_range_answer_counts_as_a_failure() {
    let error = misbehave("hostile-nonsense", CallLimits::default());
    assert!(
        matches!(&error, PluginError::BadAnswer(m) if m.contains("index 1002") && m.contains("2 jobs")),
        "{error}"
    );
}

#[test]
fn a_good_plugin_works_right_after_a_hostile_one_is_disabled() {
    let registry = registry_with_scheduler(&fixture_bytes("hostile-panic"), CallLimits::default());
    for _ in 0..3 {
        registry.pick_next(&queue());
    }
    assert!(registry.scheduler().status().disabled.is_some());
    let good = registry
        .load(builtin_bytes("priority"), CallLimits::default())
        .unwrap();
    registry.activate(good.hash()).unwrap();
    let decision = registry.pick_next(&queue());
    assert_eq!(decision.by, DecidedBy::Plugin("priority@0.1.0".into()));
    assert_eq!(decision.value, Some(1));
    assert!(registry.scheduler().status().disabled.is_none());
}

#[test]
fn a_scheduler_that_picks_a_capped_users_job_is_counted_and_the_default_decides() {
    let registry = registry_with_scheduler(&fixture_bytes("hostile-capped"), CallLimits::default());
    let mut capped = user("a");
    capped.running = 2;
    capped.max_running = Some(2);
    // Job 1 (index 0) is a's, who is at their cap; job 2 is b's.
    let queue = snapshot(
        vec![capped, user("b")],
        vec![job(1, 0, NOW - 900), job(2, 1, NOW - 500)],
    );
    for attempt in 1..=3 {
        let decision = registry.pick_next(&queue);
        assert_eq!(decision.value, Some(1), "attempt {attempt}");
        assert!(
            matches!(&decision.by, DecidedBy::Fallback(why) if why.contains("running cap")),
            "{:?}",
            decision.by
        );
    }
    let status = registry.scheduler().status();
    assert_eq!(status.total_failures, 3, "{status:?}");
    assert!(status.disabled.is_some(), "{status:?}");
}

#[test]
fn an_answer_the_dispatcher_could_not_use_counts_against_the_active_scheduler_only() {
    let registry = registry_with_scheduler(builtin_bytes("fifo"), CallLimits::default());
    let decision = registry.pick_next(&queue());
    assert!(registry.scheduler_answer_unusable(&decision.by, "job 2 is no longer pending"));
    let status = registry.scheduler().status();
    assert_eq!(status.total_failures, 1);
    assert!(status.last_error.unwrap().contains("no longer pending"));
    // A default's decision is nobody's failure.
    assert!(!registry.scheduler_answer_unusable(&DecidedBy::Fallback("x".into()), "gone"));
    assert_eq!(registry.scheduler().status().total_failures, 1);
}

#[test]
fn rollback_after_a_disable_returns_to_the_version_active_before_the_failing_one() {
    let registry = registry_with_scheduler(builtin_bytes("fifo"), CallLimits::default());
    let fifo = registry.scheduler().status().active_hash.unwrap();
    let priority = registry
        .load(builtin_bytes("priority"), CallLimits::default())
        .unwrap();
    registry.activate(priority.hash()).unwrap();
    let hostile = registry
        .load(&fixture_bytes("hostile-panic"), CallLimits::default())
        .unwrap();
    registry.activate(hostile.hash()).unwrap();
    for _ in 0..3 {
        registry.pick_next(&queue());
    }
    let status = registry.scheduler().status();
    assert!(status.disabled.is_some(), "{status:?}");
    assert!(
        status.disabled.as_deref().unwrap().contains("stays off"),
        "{status:?}"
    );
    // History by hash, newest first: priority, then fifo.
    let history: Vec<&str> = status.history.iter().map(|v| v.hash.as_str()).collect();
    assert_eq!(history, [priority.hash(), fifo.as_str()]);
    let back = registry.rollback("scheduler").unwrap();
    assert_eq!(
        back.hash(),
        priority.hash(),
        "rollback re-activated the failing version"
    );
    // Any stored version can be activated by hash, the disabled one too.
    registry.activate(&fifo).unwrap();
    assert_eq!(
        registry.scheduler().status().active_hash.as_deref(),
        Some(fifo.as_str())
    );
    registry.activate(hostile.hash()).unwrap();
    assert_eq!(registry.pick_next(&queue()).value, Some(1));
}

#[test]
fn a_disabled_plugin_is_retried_after_its_cool_down_only_when_the_operator_enables_it() {
    use comfyume::plugins::slot::FailurePolicy;
    use comfyume::plugins::{Registry, Unclaimed};
    let registry = Registry::new(
        engine(),
        FailurePolicy {
            max_failures: 2,
            window: std::time::Duration::from_secs(60),
            retry_after: Some(std::time::Duration::from_millis(200)),
        },
        Unclaimed::Accept,
    );
    let hostile = registry
        .load(&fixture_bytes("hostile-panic"), CallLimits::default())
        .unwrap();
    registry.activate(hostile.hash()).unwrap();
    registry.pick_next(&queue());
    registry.pick_next(&queue());
    let status = registry.scheduler().status();
    assert!(
        status
            .disabled
            .as_deref()
            .unwrap()
            .contains("retried automatically")
    );
    assert!(status.retry_in_secs.is_some(), "{status:?}");
    assert!(registry.scheduler().active().is_none());
    std::thread::sleep(std::time::Duration::from_millis(250));
    // Half-open: back on probation; one failure disables it again.
    assert!(registry.scheduler().active().is_some());
    assert!(registry.scheduler().status().on_probation);
    assert!(matches!(
        registry.pick_next(&queue()).by,
        DecidedBy::Fallback(_)
    ));
    let status = registry.scheduler().status();
    assert!(
        status.disabled.as_deref().unwrap().contains("on probation"),
        "{status:?}"
    );
    assert!(registry.scheduler().active().is_none());

    // Without the operator's setting it stays off (see `misbehave`).
    let off = registry_with_scheduler(&fixture_bytes("hostile-panic"), CallLimits::default());
    for _ in 0..3 {
        off.pick_next(&queue());
    }
    assert_eq!(off.scheduler().status().retry_in_secs, None);
}
