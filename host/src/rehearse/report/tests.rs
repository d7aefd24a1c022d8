//! Unit tests of the report: the arithmetic, and each promise's check.

use super::*;
use crate::rehearse::attendee::Request;

#[test]
fn jain_is_one_for_equal_shares_and_one_over_n_for_one_taker() {
    assert!((jain(&[3.0, 3.0, 3.0]) - 1.0).abs() < 1e-12);
    assert!((jain(&[9.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
    assert!((jain(&[1.0, 2.0]) - 0.9).abs() < 1e-12);
}

#[test]
fn percentiles_are_nearest_rank() {
    let s = Spread::of((1..=100).map(f64::from).collect());
    assert_eq!((s.p50, s.p95, s.max, s.n), (50.0, 95.0, 100.0, 100));
    assert_eq!(Spread::of(vec![]).n, 0);
}

fn job(user: &str, state: &str, updated_at_ms: u64) -> StoredJob {
    StoredJob {
        id: 0,
        user: user.into(),
        state: state.into(),
        wait: Some(1.0),
        gpu_seconds: 1.0,
        reason: (state == "failed").then(|| "backend: gave up".into()),
        attempts: 1,
        updated_at_ms,
    }
}

fn inputs(records: Vec<Record>, jobs: &[(&str, StoredJob)]) -> Inputs {
    Inputs {
        plan: Value::Null,
        records,
        jobs: jobs
            .iter()
            .map(|(id, j)| (id.to_string(), j.clone()))
            .collect(),
        duplicates: vec![],
        gpu_runs: BTreeMap::new(),
        cost: Value::Null,
        rss_kib: BTreeMap::new(),
        faults: vec![],
        outages: vec![(100_000, 104_000)],
        host_losses: vec![(200_000, 208_000)],
    }
}

#[test]
fn a_clean_attendee_passes() {
    let record = Record {
        name: "ana".into(),
        accepted: vec!["a".into(), "b".into()],
        cancel_asked: vec!["b".into()],
        refused: vec![429],
        events: vec![("a".into(), "execution_success".into(), 50_000)],
        // Cut by the host kill, back soon after.
        gaps: vec![(200_500, 210_000)],
        ..Record::default()
    };
    let report = build(inputs(
        vec![record],
        &[
            ("a", job("ana", "succeeded", 50_000)),
            ("b", job("ana", "cancelled", 60_000)),
        ],
    ));
    assert!(report.violations.none(), "{:?}", report.violations);
}

#[test]
fn failures_unasked_cancels_refusals_and_dark_sockets_are_violations() {
    let record = Record {
        name: "ana".into(),
        accepted: vec!["a".into(), "b".into(), "c".into()],
        refused: vec![400],
        abandoned: 1,
        requests: vec![
            Request {
                at_ms: 50_000,
                what: "history",
                status: None,
                error: Some("reset".into()),
            },
            // Inside the host kill: excused.
            Request {
                at_ms: 201_000,
                what: "history",
                status: None,
                error: Some("refused".into()),
            },
        ],
        // Never connected: the gap spans the run and would excuse
        // every missed event.
        gaps: vec![(1_000, 300_000)],
        ..Record::default()
    };
    let report = build(inputs(
        vec![record],
        &[
            ("a", job("ana", "failed", 50_000)),
            ("b", job("ana", "cancelled", 60_000)),
            ("c", job("ana", "succeeded", 70_000)),
        ],
    ));
    let v = &report.violations;
    assert_eq!(v.failed_jobs.len(), 1, "{v:?}");
    assert_eq!(v.unasked_cancels, vec!["ana b".to_string()]);
    assert_eq!(v.refused_or_abandoned.len(), 2, "{v:?}");
    assert_eq!(v.unanswered_requests.len(), 1, "{v:?}");
    assert_eq!(v.dropped_sockets.len(), 1, "{v:?}");
    assert!(
        v.missed_events.is_empty(),
        "excused by the gap, which is itself flagged"
    );
    assert_eq!(v.lines().count(), 6);
}

#[test]
fn a_host_that_refused_the_swap_or_never_came_back_is_a_fault_failure() {
    let mut inputs = inputs(vec![], &[]);
    let played = |fault, detail| Played {
        fault,
        from_ms: 0,
        to_ms: 1,
        detail,
    };
    inputs.faults = vec![
        played(
            "scheduler-swap",
            serde_json::json!({"hosts": [{"host": "h1", "upload": 201, "activate": 200},
                                         {"host": "h2", "upload": 201, "activate": 0}]}),
        ),
        played(
            "host-kill",
            serde_json::json!({"restarted": true, "takeover": {"host": "h2"}}),
        ),
        played(
            "redis-restart",
            serde_json::json!({"restarted": false, "error": "gone"}),
        ),
        played(
            "host-kill",
            serde_json::json!({"restarted": true, "takeover": {"host": "h1"},
                               "was_leader": false}),
        ),
    ];
    let v = build(inputs).violations;
    assert_eq!(v.faults.len(), 3, "{v:?}");
    assert!(v.faults[0].contains("h2"), "{v:?}");
    assert!(v.faults[2].contains("no host held"), "{v:?}");
}

#[test]
fn windows_excuse_with_grace() {
    assert!(inside(&[(10_000, 20_000)], 21_500));
    assert!(inside(&[(10_000, 20_000)], 8_500));
    assert!(!inside(&[(10_000, 20_000)], 22_500));
}

#[test]
fn a_rerun_is_a_violation_unless_its_first_run_was_never_recorded_in_a_kill() {
    let duplicate = |prompt: &str, recorded: bool, started: u64| Duplicate {
        run: DuplicateRun {
            prompt_id: prompt.into(),
            earlier: vec![format!("inf-{prompt}")],
            earlier_started_ms: vec![started],
        },
        recorded,
        history: vec![],
    };
    let mut inputs = inputs(vec![], &[]);
    inputs.duplicates = vec![
        // Recorded: the host should have re-attached, whenever it was.
        duplicate("a", true, 201_000),
        // Never recorded, sent during the host kill: the one window.
        duplicate("b", false, 201_000),
        // Never recorded, but no fault explains it.
        duplicate("c", false, 150_000),
    ];
    let report = build(inputs);
    let v = &report.violations.duplicated_gpu_runs;
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("a ") && v[0].contains("recorded"), "{v:?}");
    assert!(v[1].starts_with("c ") && v[1].contains("outside"), "{v:?}");
    let excused = &report.totals.unrecorded_reruns;
    assert_eq!(excused.len(), 1);
    assert_eq!(excused[0].run.prompt_id, "b");
}

#[test]
fn a_job_never_acknowledged_and_a_download_from_a_cancelled_one_are_counted() {
    let record = Record {
        name: "ana".into(),
        accepted: vec!["a".into(), "b".into()],
        cancel_asked: vec!["b".into()],
        events: vec![("a".into(), "executed".into(), 50_000)],
        downloaded_from: vec![("a".into(), 1), ("b".into(), 1), ("z".into(), 2)],
        ..Record::default()
    };
    let report = build(inputs(
        vec![record],
        &[
            ("a", job("ana", "succeeded", 50_000)),
            ("b", job("ana", "cancelled", 60_000)),
            // Queued by a submit whose answer was lost.
            ("z", job("ana", "succeeded", 70_000)),
        ],
    ));
    assert!(report.violations.none(), "{:?}", report.violations);
    let t = &report.totals;
    assert_eq!(t.unacknowledged, vec!["ana z (succeeded)".to_string()]);
    assert_eq!(t.odd_downloads.len(), 2, "{:?}", t.odd_downloads);
    assert!(
        t.odd_downloads[0].contains("job cancelled"),
        "{:?}",
        t.odd_downloads
    );
    assert!(
        t.odd_downloads[1].contains("2 file(s), job succeeded, never acknowledged"),
        "{:?}",
        t.odd_downloads
    );
    assert!(
        report.summary().contains("never acknowledged 1"),
        "{}",
        report.summary()
    );
}
