//! Plugins that block in a host call (`std::thread::sleep`: a clock
//! subscription, then `wasi:io/poll`) are stopped at their deadline, like
//! a loop; so is `plugin check` of one.

use std::time::{Duration, Instant};

use comfyume::plugins::check::{check, sample_backends, sample_job};
use comfyume::plugins::{CallLimits, LoadedPlugin, PluginError};

use crate::common::*;

const DEADLINE_MS: u64 = 100;

/// What the assertions allow over the deadline. Generous, for a shared
/// 2-core machine: the target is 20 ms and the measured overrun is printed;
/// before the fix these calls ran 15–20 s.
const SLACK: Duration = Duration::from_millis(400);

fn limits() -> CallLimits {
    CallLimits {
        deadline_ms: DEADLINE_MS,
        memory_mib: 64,
    }
}

fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = call();
    (value, started.elapsed())
}

fn stopped_at_deadline(what: &str, outcome: Result<(), PluginError>, took: Duration) {
    eprintln!(
        "{what}: stopped after {took:?} (deadline {DEADLINE_MS} ms, overrun {:?})",
        took.saturating_sub(Duration::from_millis(DEADLINE_MS))
    );
    assert!(
        matches!(
            outcome,
            Err(PluginError::Deadline {
                deadline_ms: DEADLINE_MS
            })
        ),
        "{what}: {outcome:?}"
    );
    assert!(
        took < Duration::from_millis(DEADLINE_MS) + SLACK,
        "{what} took {took:?}"
    );
}

#[test]
fn a_sleeping_scheduler_validator_and_selector_are_stopped_at_their_deadline() {
    let engine = engine();
    let load = |name| LoadedPlugin::load(&engine, &fixture_bytes(name), limits()).unwrap();

    let scheduler = load("hostile-sleep");
    let queue = snapshot(vec![user("a")], vec![job(1, 0, NOW - 10)]);
    let (outcome, took) = timed(|| scheduler.pick_next(&queue).map(drop));
    stopped_at_deadline("sleeping scheduler", outcome, took);

    let validator = load("hostile-sleep-validator");
    let (outcome, took) = timed(|| validator.validate(&[]).map(drop));
    stopped_at_deadline("sleeping validator", outcome, took);

    let selector = load("hostile-sleep-selector");
    let job = sample_job("flux2-klein", 1024, 1024, 1);
    let (outcome, took) = timed(|| selector.select(&job, &sample_backends()).map(drop));
    stopped_at_deadline("sleeping selector", outcome, took);

    // A loop is stopped as close to the deadline (issue 17 item 8).
    let looping = load("hostile-loop");
    let (outcome, took) = timed(|| looping.pick_next(&queue).map(drop));
    stopped_at_deadline("looping scheduler", outcome, took);
}

#[test]
fn a_sleeping_scheduler_is_counted_and_disabled_like_any_other_failure() {
    let error = crate::misbehave("hostile-sleep", limits());
    assert_eq!(error.cause(), "deadline");
}

#[test]
fn plugin_check_of_a_sleeping_component_stops_at_the_deadline() {
    let engine = engine();
    for name in [
        "hostile-sleep",
        "hostile-sleep-validator",
        "hostile-sleep-selector",
    ] {
        let plugin = LoadedPlugin::load(&engine, &fixture_bytes(name), limits()).unwrap();
        let (report, took) = timed(|| check(&plugin));
        let fixtures = report.fixtures.len() as u32;
        eprintln!("check of {name}: {fixtures} fixtures in {took:?}");
        assert!(!report.passed, "{name}");
        let failure = comfyume::plugins::check::first_failure(&report).unwrap();
        assert!(failure.contains("deadline"), "{name}: {failure}");
        // One fixture runs out of time; the rest are not asked.
        assert!(
            took < Duration::from_millis(DEADLINE_MS) + SLACK,
            "{name}: check took {took:?}"
        );
        assert!(report.note.contains("not a security boundary"));
    }
}
