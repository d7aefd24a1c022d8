//! The operator's API over HTTP against a whole host: only the admin gets
//! in; jobs of every attendee are visible and cancellable; a plugin is
//! uploaded, checked, activated and rolled back while the host runs, and a
//! hostile one is refused; the job wait changes for the next job; the
//! session drains; `/metrics` parses as Prometheus text; jobs are
//! reprioritised and retried; the budget holds dispatch; accounts are
//! managed and outputs exported; the dashboard's page, assets and live
//! feed are behind the same login. In `admin_api/`: swapping the scheduler
//! under load, shadow runs and a hostile scheduler forced past the check
//! (`swap.rs`); pools in and out of use and pre-warm (`pools.rs`); backups
//! to S3 (`backup.rs`); the OpenAPI document (`openapi.rs`).

#[path = "common/attendee.rs"]
mod attendee;

use std::sync::Arc;
use std::time::{Duration, Instant};

use attendee::{PASSWORD, Running, flux_prompt, start_in};
use comfyume::auth::{Role, UsersFile, hash_password};
use comfyume::plugins::builtin;
use serde_json::{Value, json};

#[path = "admin_api/backup.rs"]
mod backup;
#[path = "admin_api/openapi.rs"]
mod openapi;
#[path = "admin_api/pools.rs"]
mod pools;
#[path = "admin_api/swap.rs"]
mod swap;

/// A host with the admin `boss` beside `ann` and `bob`; `step_ms` per
/// rehearsal sampling step (long to keep a job on the GPU).
async fn start(step_ms: u64) -> Running {
    start_with(step_ms, |_| {}).await
}

/// [`start`] with a further change to the configuration.
async fn start_with(step_ms: u64, tweak: impl FnOnce(&mut comfyume::config::Config)) -> Running {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let cheap = argon2::Params::new(8, 1, 1, None).expect("params");
    let hash = hash_password(PASSWORD, &cheap).expect("hash");
    UsersFile::update(dir.path(), |f| f.add("boss", Role::Admin, hash)).expect("admin");
    start_in(dir, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.step_ms = step_ms;
        }
        tweak(config);
    })
    .await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_gets_in() {
    let host = start(5).await;
    for path in [
        "/admin/api/jobs",
        "/admin/api/attendees",
        "/admin/api/plugins",
        "/admin/api/pools",
        "/admin/api/settings",
        "/admin/api/session",
    ] {
        assert_eq!(
            host.get("ann", path).send().await.expect("get").status(),
            403,
            "{path}"
        );
        let anonymous = host.http.get(host.url(path)).send().await.expect("get");
        assert_eq!(anonymous.status(), 401, "{path}");
        assert_eq!(
            host.get("boss", path).send().await.expect("get").status(),
            200,
            "{path}"
        );
    }
    let (status, _) = send(
        host.http
            .put(host.url("/admin/api/session"))
            .basic_auth("ann", Some(PASSWORD))
            .json(&json!({"state": "closed"})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_and_cancels_any_job_and_sees_the_attendees() {
    // 2 s per step: the job stays on the GPU long enough to cancel.
    let host = start(2000).await;
    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
    let prompt_id = answer["prompt_id"].as_str().expect("id").to_string();
    let number = answer["number"].as_u64().expect("number");

    let listed = host.json("boss", "/admin/api/jobs?user=ann").await;
    assert_eq!(listed["jobs"][0]["prompt_id"], prompt_id.as_str());
    assert_eq!(
        host.json("boss", "/admin/api/jobs?user=bob").await["jobs"],
        json!([])
    );
    let (status, body) = send(host.get("boss", "/admin/api/jobs?state=bogus")).await;
    assert_eq!(status, 400, "{body}");

    let attendees = host.json("boss", "/admin/api/attendees").await;
    let ann = attendees["attendees"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["name"] == "ann")
        .expect("ann listed")
        .clone();
    assert_eq!(ann["role"], "attendee");
    assert_eq!(
        ann["pending"].as_u64().unwrap_or(0) + ann["running"].as_u64().unwrap_or(0),
        1,
        "{ann}"
    );

    let (status, body) = send(host.post("boss", &format!("/admin/api/jobs/{number}/cancel"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        ["cancelled", "requested"].contains(&body["outcome"].as_str().unwrap_or("")),
        "{body}"
    );
    let job = host.finished("ann", &prompt_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let detail = host
        .json("boss", &format!("/admin/api/jobs/{number}"))
        .await;
    let states: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"queued"));
    assert_eq!(states.last(), Some(&"cancelled"), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_uploaded_checked_activated_and_rolled_back_live() {
    let host = start(5).await;
    let fifo = builtin::component("fifo").expect("built-in fifo");
    let upload = |bytes: Vec<u8>| {
        host.post("boss", "/admin/api/plugins")
            .header("content-type", "application/wasm")
            .body(bytes)
    };
    let (status, body) = send(upload(fifo.to_vec())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "scheduler");
    let hash = body["hash"].as_str().expect("hash").to_string();

    let (status, body) =
        send(host.post("boss", &format!("/admin/api/plugins/{hash}/activate"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slot"], "scheduler");
    let slots = host.json("boss", "/admin/api/plugins").await;
    let scheduler = &slots["slots"][0];
    assert!(
        scheduler["active"]
            .as_str()
            .expect("active")
            .starts_with("fifo@"),
        "{slots}"
    );

    // Jobs still run under the new scheduler.
    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
    let job = host
        .finished("ann", answer["prompt_id"].as_str().expect("id"))
        .await;
    assert_eq!(job["status"], "completed");

    let (status, body) =
        send(host.post("boss", "/admin/api/plugins/slots/scheduler/rollback")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["active"]
            .as_str()
            .expect("active")
            .starts_with("fair-share@"),
        "{body}"
    );

    // A component that loops forever fails the check and cannot be activated.
    let hostile = std::fs::read(builtin::fixture("hostile-loop").expect("fixture")).expect("file");
    let (status, body) = send(upload(hostile)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("failed the check"),
        "{body}"
    );
    let (status, body) = send(upload(b"not wasm at all".to_vec())).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = send(host.post("boss", "/admin/api/plugins/0000/activate")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_wait_changes_for_the_next_job_and_the_session_drains() {
    // 4 steps of 5 s: a job needs 20 s on the GPU.
    let host = start(5000).await;
    let put = |path: &str, body: Value| {
        host.http
            .put(host.url(path))
            .basic_auth("boss", Some(PASSWORD))
            .json(&body)
    };
    let (status, body) = send(put("/admin/api/settings", json!({"job_wait_secs": 1}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(put("/admin/api/settings", json!({"job_wait_secs": 10}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job_wait_secs"], 10);
    let started = Instant::now();
    let (_, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    let job = host
        .finished("ann", answer["prompt_id"].as_str().expect("id"))
        .await;
    assert_eq!(
        job["status"], "failed",
        "the 10 s wait stopped the 20 s job: {job}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
    assert!(host.data.join("admin_settings.json").exists(), "persisted");

    let (status, body) = send(put("/admin/api/session", json!({"state": "drain"}))).await;
    assert_eq!((status, body["state"].clone()), (200, json!("drain")));
    let (status, refused) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["type"], "workshop_not_accepting");
    let (status, _) = send(put("/admin/api/session", json!({"state": "sideways"}))).await;
    assert_eq!(status, 400);
    send(put("/admin/api/session", json!({"state": "open"}))).await;
    let (status, _) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_probes_answer() {
    let host = start(5).await;
    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
    host.finished("ann", answer["prompt_id"].as_str().expect("id"))
        .await;
    let text = host
        .http
        .get(host.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("comfyume_queue_up"), 1.0);
    assert_eq!(value("comfyume_jobs_done_total"), 1.0);
    assert_eq!(value("comfyume_pool_capacity"), 2.0);
    assert_eq!(value("comfyume_session_open"), 1.0);
    assert_eq!(value("comfyume_dispatch_held"), 0.0);
    assert!(!text.contains("ann"), "no attendee names in metrics");
    // Recorded as the job ran (the recorder is per process, shared by the
    // tests in this binary: at least this job is in it).
    let recorded = |name: &str, label: (&str, &str)| {
        scrape.samples.iter().any(|s| {
            s.metric.starts_with(name)
                && s.labels.get(label.0) == Some(label.1)
                && match &s.value {
                    prometheus_parse::Value::Histogram(buckets) => {
                        buckets.iter().any(|b| b.count > 0.0)
                    }
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Untyped(v)
                    | prometheus_parse::Value::Gauge(v) => *v > 0.0,
                    _ => false,
                }
        })
    };
    for (name, label) in [
        ("comfyume_job_queued_seconds", ("pool", "rehearsal")),
        ("comfyume_job_run_seconds", ("outcome", "succeeded")),
        ("comfyume_pool_gpu_seconds_total", ("pool", "rehearsal")),
        ("comfyume_plugin_call_seconds", ("slot", "scheduler")),
        ("comfyume_plugin_call_seconds", ("slot", "selector")),
    ] {
        assert!(
            recorded(name, label),
            "{name}{{{label:?}}} not recorded in\n{text}"
        );
    }
    // Every metric the shipped Grafana dashboard queries is one we expose.
    let grafana: Value = serde_json::from_str(
        &std::fs::read_to_string(attendee::repo().join("config/grafana-dashboard.json"))
            .expect("config/grafana-dashboard.json"),
    )
    .expect("the dashboard is JSON");
    let exposed: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut queried = 0;
    for panel in grafana["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("comfyume_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| exposed.contains(b)))
                    .unwrap_or(&name);
                assert!(
                    exposed.contains(base),
                    "{} queries {name}, which /metrics lacks",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried > 10, "the dashboard queries {queried} metrics");
    for probe in ["/healthz", "/readyz"] {
        let response = host.http.get(host.url(probe)).send().await.expect("probe");
        assert_eq!(response.status(), 200, "{probe}");
    }
}

/// Waits until the operator sees job `id` in `state`.
async fn wait_state(host: &Running, id: u64, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let job = host.json("boss", &format!("/admin/api/jobs/{id}")).await;
        if job["state"] == state {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "job {id} never {state}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_moves_a_waiting_job_to_the_instructor_lane_and_retries_a_failed_one() {
    // One slot and 4 × 300 ms steps: the first job holds the GPU while the
    // operator reorders the others.
    let host = start_with(300, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.capacity = 1;
        }
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["number"].as_u64().expect("number"));
    }
    wait_state(&host, ids[0], "running").await;
    let priority = |id: u64, body: Value| {
        host.post("boss", &format!("/admin/api/jobs/{id}/priority"))
            .json(&body)
    };
    let (status, moved) = send(priority(ids[2], json!({"priority": "instructor"}))).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["priority"], "instructor");
    let (status, body) = send(priority(ids[0], json!({"priority": "low"}))).await;
    assert_eq!(status, 409, "a running job cannot be moved: {body}");
    let (status, _) = send(priority(ids[1], json!({"priority": "urgent"}))).await;
    assert_eq!(status, 400);
    let (status, _) = send(
        host.post("ann", &format!("/admin/api/jobs/{}/priority", ids[1]))
            .json(&json!({"priority": "instructor"})),
    )
    .await;
    assert_eq!(status, 403, "an attendee cannot jump the queue");

    // The instructor lane goes next: job 3 is claimed before job 2.
    let third = wait_state(&host, ids[2], "succeeded").await;
    let second = host
        .json("boss", &format!("/admin/api/jobs/{}", ids[1]))
        .await;
    let claimed = |job: &Value| {
        job["history"]
            .as_array()
            .and_then(|h| h.iter().find(|t| t["state"] == "leased"))
            .and_then(|t| t["at_ms"].as_u64())
    };
    assert!(
        claimed(&second).is_none_or(|t| t > claimed(&third).expect("claimed")),
        "the moved job ran first: {second} / {third}"
    );
    assert!(
        third
            .to_string()
            .contains("normal → instructor by the operator"),
        "{third}"
    );

    // Cancel the waiting one, retry it: a new job of the same attendee.
    let (status, _) = send(host.post("boss", &format!("/admin/api/jobs/{}/cancel", ids[1]))).await;
    assert_eq!(status, 200);
    wait_state(&host, ids[1], "cancelled").await;
    let (status, body) =
        send(host.post("boss", &format!("/admin/api/jobs/{}/retry", ids[2]))).await;
    assert_eq!(status, 409, "a job that succeeded is not retried: {body}");
    let (status, retried) =
        send(host.post("boss", &format!("/admin/api/jobs/{}/retry", ids[1]))).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        (retried["user"].clone(), retried["retry_of"].clone()),
        (json!("ann"), json!(ids[1]))
    );
    let prompt_id = retried["prompt_id"].as_str().expect("prompt id");
    let job = host.finished("ann", prompt_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let (status, _) = send(host.post("boss", "/admin/api/jobs/999999/retry")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_summed_per_attendee_and_pool_and_a_spent_budget_holds_dispatch() {
    let host = start_with(5, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.price_per_hour = 3600.0;
        }
    })
    .await;
    for user in ["ann", "bob"] {
        let (_, answer) = host.submit(user, json!({"prompt": flux_prompt()})).await;
        host.finished(user, answer["prompt_id"].as_str().expect("id"))
            .await;
    }
    let costs = host.json("boss", "/admin/api/costs").await;
    let total = costs["total"]["cost"].as_f64().expect("total");
    let gpu = costs["total"]["gpu_seconds"].as_f64().expect("gpu");
    assert!(gpu > 0.0, "{costs}");
    assert!(
        (total - gpu).abs() < 1e-6,
        "price 3600/h = 1 per GPU-second: {costs}"
    );
    assert_eq!(costs["total"]["jobs"], 2);
    let users = costs["users"].as_array().expect("users");
    assert_eq!(users.len(), 2, "{costs}");
    assert!(users.iter().all(|u| u["jobs"] == 1));
    assert_eq!(costs["pools"][0]["pool"], "rehearsal");
    assert_eq!(costs["budget"]["reached"], false);
    assert_eq!(
        host.get("ann", "/admin/api/costs")
            .send()
            .await
            .expect("get")
            .status(),
        403
    );

    // A budget already spent holds dispatch at once; a new job waits.
    let put = |body: Value| {
        host.http
            .put(host.url("/admin/api/settings"))
            .basic_auth("boss", Some(PASSWORD))
            .json(&body)
    };
    let (status, body) = send(put(json!({"budget": total / 2.0}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["dispatch_held"]
            .as_str()
            .expect("held")
            .contains("budget"),
        "{body}"
    );
    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "attendees can still queue: {answer}");
    let id = answer["number"].as_u64().expect("number");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let job = host.json("boss", &format!("/admin/api/jobs/{id}")).await;
    assert_eq!(job["state"], "queued", "held by the budget: {job}");
    let costs = host.json("boss", "/admin/api/costs").await;
    assert_eq!(costs["budget"]["reached"], true, "{costs}");

    // Removing the budget releases it.
    let (status, body) = send(put(json!({"budget": 0}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["dispatch_held"].is_null(), "{body}");
    wait_state(&host, id, "succeeded").await;
    let (status, _) = send(put(json!({"budget": "lots"}))).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_resets_disables_and_caps_attendees_over_http() {
    // One slot and slow steps: bob's job holds the GPU while ann's wait.
    let host = start_with(2000, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.capacity = 1;
        }
    })
    .await;
    let as_boss = |method: reqwest::Method, path: &str| {
        host.http
            .request(method, host.url(path))
            .basic_auth("boss", Some(PASSWORD))
    };
    let (status, body) = send(
        as_boss(reqwest::Method::POST, "/admin/api/attendees")
            .json(&json!({"count": 3, "prefix": "seat"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created = body["created"].as_array().expect("created");
    assert_eq!(created.len(), 3, "{body}");
    assert_eq!(created[0]["name"], "seat01");
    let password = created[0]["password"]
        .as_str()
        .expect("password")
        .to_string();
    let login = |user: &str, password: &str| {
        host.http
            .get(host.url("/api/users"))
            .basic_auth(user, Some(password.to_string()))
            .send()
    };
    assert_eq!(
        login("seat01", &password).await.expect("login").status(),
        200
    );
    let (status, body) = send(
        as_boss(reqwest::Method::POST, "/admin/api/attendees")
            .json(&json!({"names": ["seat01", "guest"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["skipped"],
        json!(["seat01"]),
        "existing accounts are kept: {body}"
    );
    for bad in [
        json!({"names": ["../etc"]}),
        json!({"count": 0}),
        json!({"count": 2, "names": ["x"]}),
        json!({"count": 1, "role": "admin"}),
    ] {
        let (status, body) =
            send(as_boss(reqwest::Method::POST, "/admin/api/attendees").json(&bad)).await;
        assert!(status == 400 || status == 403, "{bad}: {status} {body}");
    }

    // A reset password works at once, the old one no longer.
    let (status, body) = send(as_boss(
        reqwest::Method::POST,
        "/admin/api/attendees/seat01/password",
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["password"].as_str().expect("password").to_string();
    assert_ne!(fresh, password);
    assert_eq!(
        login("seat01", &password).await.expect("login").status(),
        401
    );
    assert_eq!(login("seat01", &fresh).await.expect("login").status(), 200);

    // Disabled: 403 on the next request; enabled again: back in.
    let put = |path: &str, body: Value| as_boss(reqwest::Method::PUT, path).json(&body);
    let (status, body) = send(put(
        "/admin/api/attendees/seat01",
        json!({"disabled": true}),
    ))
    .await;
    assert_eq!(
        (status, body["disabled"].clone()),
        (200, json!(true)),
        "{body}"
    );
    assert_eq!(login("seat01", &fresh).await.expect("login").status(), 403);
    send(put(
        "/admin/api/attendees/seat01",
        json!({"disabled": false}),
    ))
    .await;
    assert_eq!(login("seat01", &fresh).await.expect("login").status(), 200);

    // Caps and class, before the attendee's first job.
    let (status, body) = send(put(
        "/admin/api/attendees/ann",
        json!({"max_pending": 1, "priority": "high"}),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["max_pending"].clone(), body["priority"].clone()),
        (json!(1), json!("high")),
        "{body}"
    );
    let (status, busy) = host.submit("bob", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200);
    wait_state(&host, busy["number"].as_u64().expect("number"), "running").await;
    let (status, _) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200);
    let (status, refused) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 429, "the cap of 1 waiting job holds: {refused}");
    let jobs = host.json("boss", "/admin/api/jobs?user=ann").await;
    assert_eq!(jobs["jobs"][0]["priority"], "high", "{jobs}");

    for (path, body) in [
        ("/admin/api/attendees/boss", json!({"disabled": true})),
        ("/admin/api/attendees/ann", json!({"max_running": 0})),
        ("/admin/api/attendees/ann", json!({"colour": "blue"})),
        ("/admin/api/attendees/nobody", json!({"disabled": true})),
    ] {
        let (status, answer) = send(put(path, body.clone())).await;
        assert!(
            [400, 403, 404].contains(&status),
            "{path} {body}: {status} {answer}"
        );
    }
    let (status, _) = send(as_boss(
        reqwest::Method::POST,
        "/admin/api/attendees/boss/password",
    ))
    .await;
    assert_eq!(status, 403, "admins are changed with `comfyume user` only");
    let (status, _) = send(
        host.http
            .post(host.url("/admin/api/attendees"))
            .basic_auth("ann", Some(PASSWORD))
            .json(&json!({"count": 1})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_is_exported_in_one_streamed_zip_with_a_manifest() {
    let host = start(5).await;
    let mut prompts = Vec::new();
    for user in ["ann", "bob"] {
        let (_, answer) = host.submit(user, json!({"prompt": flux_prompt()})).await;
        let id = answer["prompt_id"].as_str().expect("id").to_string();
        let job = host.finished(user, &id).await;
        assert_eq!(job["status"], "completed", "{job}");
        prompts.push((user, id));
    }
    let response = host
        .get("boss", "/admin/api/export")
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .contains(".zip")
    );
    assert_eq!(response.headers()["x-comfyume-export-files"], "2");
    let bytes = response.bytes().await.expect("zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a valid zip");
    let manifest: Value = {
        let file = zip.by_name("manifest.json").expect("manifest.json");
        serde_json::from_reader(file).expect("manifest JSON")
    };
    let jobs = manifest["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{manifest}");
    for (user, prompt_id) in &prompts {
        let job = jobs
            .iter()
            .find(|j| j["prompt_id"] == prompt_id.as_str())
            .unwrap_or_else(|| panic!("{prompt_id} in {manifest}"));
        assert_eq!(job["user"], *user);
        assert_eq!(job["workflow_kind"], "flux2-klein");
        assert!(job["started_at_ms"].as_u64() >= job["submitted_at_ms"].as_u64());
        let files = job["files"].as_array().expect("files");
        assert_eq!(files.len(), 1, "{job}");
        let name = files[0].as_str().expect("name");
        assert!(name.starts_with(&format!("{user}/")), "{name}");
        let mut png = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(name).expect("file in the zip"), &mut png)
            .expect("read");
        assert_eq!(
            &png[..8],
            b"\x89PNG\r\n\x1a\n",
            "{name} is the PNG the job made"
        );
    }
    let status = host.json("boss", "/admin/api/export/status").await;
    assert_eq!(
        (
            status["running"].clone(),
            status["files_done"].clone(),
            status["files_total"].clone()
        ),
        (json!(false), json!(2), json!(2)),
        "{status}"
    );
    assert_eq!(
        host.get("ann", "/admin/api/export")
            .send()
            .await
            .expect("get")
            .status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_its_live_feed_are_the_admins_only() {
    let host = start(2000).await;
    for path in [
        "/admin",
        "/admin/",
        "/admin/assets/app.js",
        "/admin/assets/style.css",
        "/admin/api/snapshot",
        "/admin/api/events",
    ] {
        let anonymous = host.http.get(host.url(path)).send().await.expect("get");
        assert_eq!(anonymous.status(), 401, "{path}");
        let attendee = host.get("ann", path).send().await.expect("get");
        assert_eq!(attendee.status(), 403, "{path}");
        // The page itself says so in words (issue 19), the API in JSON.
        let kind = attendee.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_string();
        let text = attendee.text().await.expect("body");
        if path.starts_with("/admin/api/") || path.starts_with("/admin/assets/") {
            assert!(kind.starts_with("application/json"), "{path}: {kind}");
        } else {
            assert!(kind.starts_with("text/html"), "{path}: {kind}");
            assert!(text.contains("not an operator account"), "{path}: {text}");
        }
    }
    let page = host.get("boss", "/admin").send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/admin/assets/app.js")
    );
    let script = host
        .get("boss", "/admin/assets/app.js")
        .send()
        .await
        .expect("js");
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    // A route this host lacks answers JSON, not the editor's files.
    let (status, body) = send(host.post("boss", "/admin/api/jobs/1/nothing")).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("/admin/api/jobs/1/nothing")),
        "{body}"
    );

    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
    let snapshot = host.json("boss", "/admin/api/snapshot").await;
    assert_eq!(
        snapshot["jobs"][0]["prompt_id"], answer["prompt_id"],
        "{snapshot}"
    );
    assert_eq!(snapshot["session"], "open");
    assert!(
        snapshot["attendees"]
            .as_array()
            .is_some_and(|a| a.len() == 3),
        "{snapshot}"
    );
    assert!(snapshot["pools"][0]["name"].is_string(), "{snapshot}");
    assert!(snapshot["plugins"]["slots"].is_array(), "{snapshot}");
    assert!(snapshot["settings"]["job_wait_secs"].is_u64(), "{snapshot}");
    assert_eq!(snapshot["errors"], json!([]));

    // The event stream: a snapshot at once, then another as time passes.
    let mut events = host
        .get("boss", "/admin/api/events")
        .send()
        .await
        .expect("sse");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.matches("event: snapshot").count() < 2 && Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .expect("an event within 5 s")
            .expect("reading the stream")
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.matches("event: snapshot").count() >= 2, "{text}");
    let first = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let first: Value = serde_json::from_str(first).expect("a JSON snapshot");
    assert_eq!(first["jobs"][0]["prompt_id"], answer["prompt_id"]);
}
