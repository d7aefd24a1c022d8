//! The built-in schedulers' behaviour, driven through the Wasm runtime (not
//! by calling their Rust code natively).

mod common;

use comfyume::plugins::api::PriorityClass;
use common::*;

#[test]
fn fair_share_picks_the_user_with_the_least_gpu_seconds() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("fair-share"));
    let mut heavy = user("heavy");
    heavy.gpu_seconds_used = 900.0;
    let mut light = user("light");
    light.gpu_seconds_used = 30.0;
    let middle = {
        let mut u = user("middle");
        u.gpu_seconds_used = 200.0;
        u
    };
    // heavy's job is the oldest; fair-share must still pick light's.
    let s = snapshot(
        vec![heavy, light, middle],
        vec![
            job(1, 0, NOW - 3000),
            job(2, 2, NOW - 2000),
            job(3, 1, NOW - 1000),
        ],
    );
    assert_eq!(plugin.pick_next(&s).unwrap(), Some(2));

    // Running work counts too: light has a long render on a GPU now.
    let mut s = s;
    s.running.push(comfyume::plugins::api::RunningJob {
        id: 9,
        user: 1,
        kind: 1,
        started_at_ms: NOW - 500,
        est_gpu_seconds: 600.0,
    });
    assert_eq!(
        plugin.pick_next(&s).unwrap(),
        Some(1),
        "middle (200) before light (30 + 600 running)"
    );
}

#[test]
fn fair_share_respects_the_per_user_running_cap() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("fair-share"));
    let mut capped = user("capped");
    capped.max_running = Some(1);
    capped.running = 1;
    let mut other = user("other");
    other.gpu_seconds_used = 5000.0;
    let s = snapshot(
        vec![capped, other],
        vec![job(1, 0, NOW - 10), job(2, 1, NOW)],
    );
    assert_eq!(plugin.pick_next(&s).unwrap(), Some(1));
}

#[test]
fn round_robin_alternates_between_a_busy_and_a_light_user() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("round-robin"));
    // alice queued 10 jobs first, bob 1 job after all of them.
    let mut pending: Vec<_> = (0..10)
        .map(|i| job(i + 1, 0, NOW - 10_000 + i * 10))
        .collect();
    pending.push(job(11, 1, NOW - 100));
    let s = snapshot(vec![user("alice"), user("bob")], pending);
    let order = dispatch_order(s, 11, |s| plugin.pick_next(s).unwrap());
    assert_eq!(
        &order[..3],
        ["alice", "bob", "alice"],
        "bob's single job runs second, not eleventh"
    );
    assert_eq!(order.iter().filter(|u| *u == "alice").count(), 10);

    // Two users with several jobs each alternate strictly.
    let mut pending: Vec<_> = (0..4).map(|i| job(i + 1, 0, NOW - 1000 + i)).collect();
    pending.extend((0..4).map(|i| job(i + 10, 1, NOW - 500 + i)));
    let order = dispatch_order(snapshot(vec![user("a"), user("b")], pending), 8, |s| {
        plugin.pick_next(s).unwrap()
    });
    assert_eq!(order, ["a", "b", "a", "b", "a", "b", "a", "b"]);
}

#[test]
fn priority_puts_the_instructor_lane_first_then_submit_time() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("priority"));
    let mut old_low = job(1, 0, NOW - 9000);
    old_low.priority = PriorityClass::Low;
    let normal = job(2, 0, NOW - 5000);
    let mut instructor = job(3, 1, NOW);
    instructor.priority = PriorityClass::Instructor;
    let mut high = job(4, 0, NOW - 10);
    high.priority = PriorityClass::High;
    let s = snapshot(
        vec![user("a"), user("teacher")],
        vec![old_low, normal, instructor, high],
    );
    let order: Vec<u64> = {
        let mut s = s;
        let mut ids = Vec::new();
        while let Some(i) = plugin.pick_next(&s).unwrap() {
            ids.push(s.pending.remove(i as usize).id);
            recount(&mut s);
        }
        ids
    };
    assert_eq!(order, [3, 4, 2, 1]);
}

#[test]
fn fifo_runs_the_oldest_job_and_skips_users_at_their_cap() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("fifo"));
    let mut busy = user("busy");
    busy.max_running = Some(2);
    busy.running = 2;
    let s = snapshot(
        vec![busy, user("free")],
        vec![
            job(5, 1, NOW - 100),
            job(1, 0, NOW - 900),
            job(7, 1, NOW - 50),
        ],
    );
    assert_eq!(
        plugin.pick_next(&s).unwrap(),
        Some(0),
        "busy's older job is skipped"
    );
    let mut s = s;
    s.users[0].running = 0;
    assert_eq!(plugin.pick_next(&s).unwrap(), Some(1));
}

#[test]
fn every_builtin_scheduler_returns_none_for_an_empty_queue() {
    let engine = engine();
    for name in ["fifo", "round-robin", "priority", "fair-share"] {
        let plugin = load(&engine, builtin_bytes(name));
        let s = snapshot(vec![user("a")], vec![]);
        assert_eq!(plugin.pick_next(&s).unwrap(), None, "{name}");
        assert_eq!(plugin.info().name, name);
    }
}
