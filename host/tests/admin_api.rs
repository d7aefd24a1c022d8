//! The operator's API over HTTP against a whole host: only the admin gets
//! in; jobs of every attendee are visible and cancellable; a plugin is
//! uploaded, checked, activated and rolled back while the host runs, and a
//! hostile one is refused; the job wait changes for the next job; the
//! session drains; `/metrics` parses as Prometheus text; the dashboard's
//! page, assets and live feed are behind the same login.

#[path = "common/attendee.rs"]
mod attendee;

use std::sync::Arc;
use std::time::{Duration, Instant};

use attendee::{PASSWORD, Running, flux_prompt, start_in};
use comfyume::auth::{Role, UsersFile, hash_password};
use comfyume::plugins::builtin;
use serde_json::{Value, json};

/// A host with the admin `boss` beside `ann` and `bob`; `step_ms` per
/// rehearsal sampling step (long to keep a job on the GPU).
async fn start(step_ms: u64) -> Running {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let cheap = argon2::Params::new(8, 1, 1, None).expect("params");
    let hash = hash_password(PASSWORD, &cheap).expect("hash");
    UsersFile::update(dir.path(), |f| f.add("boss", Role::Admin, hash)).expect("admin");
    start_in(dir, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.step_ms = step_ms;
        }
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
    assert!(!text.contains("ann"), "no attendee names in metrics");
    for probe in ["/healthz", "/readyz"] {
        let response = host.http.get(host.url(probe)).send().await.expect("probe");
        assert_eq!(response.status(), 200, "{probe}");
    }
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
