//! Verda as it is documented, and every form of what it leaves open: the
//! fake gateway's switches ([`Switches`]) played against the host, each
//! with the fake's count of GPU runs, so no rule pays for a job twice.

use super::*;
use comfyume::dispatch::rehearsal::verda_switches::{ResultCode, TtlScope};

/// The gateway's answers to a request sent by hand, status by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_speaks_verdas_statuses_and_nothing_else() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(100, 3))
        .await
        .unwrap();
    gateway.set_switches(Switches {
        cold_start: Duration::from_millis(300),
        ..Switches::default()
    });
    let http = reqwest::Client::new();
    let body =
        json!({"prompt_id": uuid::Uuid::new_v4().to_string(), "prompt": prompt_with(json!({}))});
    let accepted: serde_json::Value = http
        .post(format!("{url}/h200-spot/run"))
        .bearer_auth(KEY)
        .header("Prefer", "respond-async")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["Id"].as_str().unwrap().to_string();
    assert_eq!(accepted["StatusPath"], "/status/h200-spot");
    let mut seen = Vec::<String>::new();
    let started = Instant::now();
    while seen.last().map(String::as_str) != Some("Completed") {
        assert!(started.elapsed() < Duration::from_secs(20), "{seen:?}");
        let status: serde_json::Value = http
            .get(format!("{url}/status/h200-spot"))
            .bearer_auth(KEY)
            .header("X-Inference-Id", &id)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = status["Status"].as_str().unwrap().to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `Initialized` lasts only until the request is queued.
    seen.retain(|s| s != "Initialized");
    assert_eq!(seen, ["Queue", "Inference", "Completed"]);
    let result = http
        .get(format!("{url}/result/h200-spot"))
        .bearer_auth(KEY)
        .header("X-Inference-Id", &id)
        .send()
        .await
        .unwrap();
    let answer: comfyume::worker::RunResponse = result.json().await.unwrap();
    assert_eq!(answer.status, "success", "the container's own body");
}

/// One spot deployment playing `switches`, and a host using it alone.
async fn one_pool(switches: Switches, job_wait: Duration) -> (Arc<FakeVerda>, Host) {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(5, 2))
        .await
        .unwrap();
    gateway.set_switches(switches);
    let host = host(vec![pool("h200-spot", true, 1.15, 1, &url)], 5, job_wait).await;
    (gateway, host)
}

/// The job's wait starts when Verda says `Inference`: a cold start longer
/// than the job wait (and the old allowance for Verda's queue) is waited
/// out; the job is not failed while the GPU later runs it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_longer_than_the_job_wait_is_waited_for_not_failed() {
    let switches = Switches {
        cold_start: Duration::from_millis(2500),
        ..Switches::default()
    };
    let (gateway, host) = one_pool(switches, Duration::from_secs(1)).await;
    let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
    let done = wait_for(&host.store, job.id, finished).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 1, "{done:?}");
    assert_eq!(gateway.runs(&done.prompt_id), 1);
    assert!(gateway.ledger().duplicates().is_empty());
}

/// Past the request TTL, a request still in Verda's queue is dropped (404):
/// it never ran, so the host sends it again, and it runs once. Played with
/// the TTL bounding the queue only, and the whole request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dropped_in_the_queue_after_the_ttl_is_sent_again_and_runs_once() {
    for scope in [TtlScope::Queued, TtlScope::FromSubmit] {
        let switches = Switches {
            ttl: Some(Duration::from_millis(700)),
            ttl_scope: scope,
            cold_start: Duration::from_millis(1200),
            ..Switches::default()
        };
        let (gateway, host) = one_pool(switches, Duration::from_secs(20)).await;
        let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
        let done = wait_for(&host.store, job.id, finished).await;
        let outcomes = gateway.ledger().outcomes();
        assert_eq!(done.state, JobState::Succeeded, "{scope:?}: {done:?}");
        assert!(done.attempts >= 2, "{scope:?}: sent again: {done:?}");
        assert_eq!(gateway.runs(&done.prompt_id), 1, "{scope:?}: {outcomes:?}");
        assert!(gateway.ledger().duplicates().is_empty(), "{outcomes:?}");
    }
}

/// A status that lags the submit (404 for a moment) is "not yet known",
/// not a lost job; with no lag the same job runs the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_lagging_the_submit_is_not_yet_known_not_lost() {
    for lag in [Duration::ZERO, Duration::from_millis(600)] {
        let two = TwoPools::start(comfy(5, 2), |store| store).await;
        two.spot.set_switches(Switches {
            status_lag: lag,
            ..Switches::default()
        });
        let job = enqueue(&two.host.store, "ana", prompt_with(json!({}))).await;
        let done = wait_for(&two.host.store, job.id, finished).await;
        two.assert_ran_once_on_spot(&done);
    }
}

/// A 429 on the polls of a running job backs off, for the `Retry-After`
/// it gives or, without one, doubling from the poll interval; it is not an
/// outage and the job is not sent elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_backs_off_with_or_without_retry_after() {
    for retry_after in [Some(1), None] {
        let two = TwoPools::start(comfy(100, 20), |store| store).await;
        two.spot.set_switches(Switches {
            retry_after,
            ..Switches::default()
        });
        let job = enqueue(&two.host.store, "ana", prompt_with(json!({}))).await;
        while two.spot.runs(&job.prompt_id) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = two.spot.status_calls();
        two.spot.set_fault(Fault::TooManyRequests);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        two.spot.set_fault(Fault::None);
        let during = two.spot.status_calls() - before;
        // Polling every 50 ms would be about 30 calls.
        assert!(
            during <= 7,
            "{retry_after:?}: {during} polls during the 429s"
        );
        let done = wait_for(&two.host.store, job.id, finished).await;
        two.assert_ran_once_on_spot(&done);
    }
}

/// A replica that cannot run the job (draining) says so in its answer's
/// body; the job runs elsewhere whether `/result` passes the worker's 503
/// on or answers 200 with the body only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_the_body_runs_the_job_elsewhere_whatever_results_status_code() {
    let draining = r#"{"prompt_id":"x","status":"retry","reason":"this replica is draining","run_ms":0,"outputs":[]}"#;
    for code in [ResultCode::Propagated, ResultCode::AlwaysOk] {
        let ledger = Arc::new(RunLedger::default());
        let replica = replica_answering(503, draining).await;
        let spot = FakeVerda::sharing(ledger.clone(), "h200-spot", KEY, vec![replica]);
        spot.set_switches(Switches {
            result_code: code,
            ..Switches::default()
        });
        let spot_url = format!("http://{}", spot.serve().await.unwrap());
        let (on_demand, on_demand_url) =
            FakeVerda::with_replicas_sharing(ledger.clone(), "h200-on-demand", KEY, 1, comfy(5, 2))
                .await
                .unwrap();
        let host = host(
            vec![
                pool("h200-spot", true, 1.15, 1, &spot_url),
                pool("h200-on-demand", false, 3.29, 1, &on_demand_url),
            ],
            3,
            Duration::from_secs(20),
        )
        .await;
        let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
        let done = wait_for(&host.store, job.id, finished).await;
        assert_eq!(done.state, JobState::Succeeded, "{code:?}: {done:?}");
        assert_eq!(done.backend.unwrap().pool, "h200-on-demand");
        assert_eq!(spot.runs(&done.prompt_id), 1, "{code:?}");
        assert_eq!(on_demand.runs(&done.prompt_id), 1, "{code:?}");
    }
}

/// A reclaimed request that Verda delivers again itself: the host waits
/// (the status goes back to `Queue`), and does not send it elsewhere too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclaimed_request_verda_delivers_again_is_not_also_sent_elsewhere() {
    let ledger = Arc::new(RunLedger::default());
    let (spot, spot_url) =
        FakeVerda::with_replicas_sharing(ledger.clone(), "h200-spot", KEY, 2, comfy(100, 10))
            .await
            .unwrap();
    spot.set_switches(Switches {
        reclaim_end: ReclaimEnd::Redeliver,
        ..Switches::default()
    });
    spot.set_fault(Fault::ReclaimAfter(Duration::from_millis(300)));
    let (on_demand, on_demand_url) =
        FakeVerda::with_replicas_sharing(ledger.clone(), "h200-on-demand", KEY, 1, comfy(5, 2))
            .await
            .unwrap();
    let host = host(
        vec![
            pool("h200-spot", true, 1.15, 1, &spot_url),
            pool("h200-on-demand", false, 3.29, 1, &on_demand_url),
        ],
        3,
        Duration::from_secs(20),
    )
    .await;
    let job = enqueue(&host.store, "ana", prompt_with(json!({}))).await;
    while spot.reclaims() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spot.set_fault(Fault::None);
    let done = wait_for(&host.store, job.id, finished).await;
    let outcomes = ledger.outcomes();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 1, "Verda's own second delivery: {done:?}");
    assert_eq!(done.backend.unwrap().pool, "h200-spot");
    assert_eq!(
        spot.runs(&done.prompt_id),
        2,
        "reclaimed, then run: {outcomes:?}"
    );
    assert_eq!(on_demand.runs(&done.prompt_id), 0, "{outcomes:?}");
    assert!(ledger.duplicates().is_empty(), "{outcomes:?}");
}

/// Inputs travel base64 in the request: one whose encoded size is over the
/// worker's body limit fails at once with the reason, and runs nowhere
/// (the replica's 413 would have been a lost replica, run again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_workers_limit_fails_at_once_and_runs_nowhere() {
    let (gateway, url) = FakeVerda::with_replicas("h200-spot", KEY, 1, comfy(5, 2))
        .await
        .unwrap();
    let small = VerdaSettings {
        max_request_bytes: 96 << 10,
        ..settings(&url, "h200-spot")
    };
    let host = host(
        vec![pool_with("h200-spot", true, 1.15, 1, small)],
        3,
        Duration::from_secs(20),
    )
    .await;
    let input = host.data.path().join("users/ana/input");
    std::fs::create_dir_all(&input).unwrap();
    // 80 KiB raw: under the limit, but 107 KiB in base64.
    std::fs::write(input.join("big.png"), vec![7u8; 80 << 10]).unwrap();
    let prompt = prompt_with(json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "big.png [input]"}}
    }));
    let job = enqueue(&host.store, "ana", prompt).await;
    let done = wait_for(&host.store, job.id, finished).await;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains("over the GPU worker's limit"), "{reason}");
    assert_eq!(done.attempts, 1);
    assert_eq!(gateway.runs(&done.prompt_id), 0);
}

/// The deployment's request TTL must cover a job: its wait once on a GPU
/// plus the cold-start allowance. Read through the management API, a
/// shorter one refuses the start, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_ttl_shorter_than_a_job_refuses_the_start() {
    use comfyume::config::{Config, PoolConfig, PoolKind};
    use comfyume::dispatch::rehearsal::verda_management::FakeManagement;
    let fake = FakeManagement::new("workshop", "s3cret", &["comfyume-h200"]);
    let addr = fake.serve().await.unwrap();
    let mut config = Config::default();
    config.verda.management_url = format!("http://{addr}/v1");
    config.verda.client_id = Some("workshop".into());
    config.verda.client_secret = Some("s3cret".to_string().into());
    config.verda.api_key = Some("inference-key".to_string().into());
    config.timeouts.job_wait_secs = 600;
    config.verda.queue_grace_secs = 120;
    config.pools.insert(
        "h200".into(),
        PoolConfig {
            kind: PoolKind::Verda,
            deployment: Some("comfyume-h200".into()),
            ..PoolConfig::rehearsal()
        },
    );
    // The CLI's default TTL: five minutes.
    fake.set_request_ttl("comfyume-h200", 300);
    let error = match comfyume::dispatch::pools::build(&config).await {
        Ok(_) => panic!("a 300 s TTL for 720 s jobs was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("comfyume-h200's request TTL") && error.contains("= 720 s"),
        "{error}"
    );
    fake.set_request_ttl("comfyume-h200", 720);
    assert!(comfyume::dispatch::pools::build(&config).await.is_ok());
}
