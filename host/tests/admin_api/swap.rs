//! The scheduler changed while attendees keep submitting: a new scheduler
//! uploaded and activated mid-run over HTTP, a candidate run in shadow, a
//! hostile one forced in past the check. Dispatch order is read back from
//! each job's history (the time it was claimed), so the tests show which
//! policy decided, not just that jobs ran.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use comfyume::plugins::builtin;
use serde_json::{Value, json};

use super::attendee::{PASSWORD, Running, flux_prompt};
use super::{send, start_with};

/// One GPU slot, so dispatch is one decision at a time and its order is
/// the scheduler's order.
async fn one_slot_host(step_ms: u64) -> Running {
    start_with(step_ms, |config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.capacity = 1;
        }
        // The load submits as fast as it can, past the per-attendee rate a
        // workshop allows: this test is about the swap, not that limit.
        config.attendees.submits_per_minute = 100_000;
        config.attendees.submit_burst = 10_000;
    })
    .await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Submits bursts and reads the attendee API without pause until stopped;
/// every answer that is not a 200 is a failed request.
struct Load {
    stop: Arc<AtomicBool>,
    submitted: Arc<std::sync::Mutex<Vec<u64>>>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    rounds: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Rounds of: ann submits 4 jobs at once, then bob 2, then both read
    /// their queue and jobs; the next round once the queue is short.
    fn start(host: &Running) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let submitted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (http, base) = (host.http.clone(), host.url(""));
        let task = tokio::spawn({
            let (stop, submitted, failed, rounds) = (
                stop.clone(),
                submitted.clone(),
                failed.clone(),
                rounds.clone(),
            );
            async move {
                while !stop.load(Ordering::Acquire) {
                    for (user, n) in [("ann", 4), ("bob", 2)] {
                        for _ in 0..n {
                            let answer = http
                                .post(format!("{base}/api/prompt"))
                                .basic_auth(user, Some(PASSWORD))
                                .json(&json!({"prompt": flux_prompt()}))
                                .send()
                                .await;
                            match answer {
                                Ok(r) if r.status() == 200 => {
                                    let body: Value = r.json().await.unwrap_or(Value::Null);
                                    match body["number"].as_u64() {
                                        Some(id) => submitted.lock().unwrap().push(id),
                                        None => failed.lock().unwrap().push(format!("{body}")),
                                    }
                                }
                                Ok(r) => {
                                    let status = r.status();
                                    let text = r.text().await.unwrap_or_default();
                                    failed
                                        .lock()
                                        .unwrap()
                                        .push(format!("submit as {user}: {status} {text}"));
                                }
                                Err(e) => failed.lock().unwrap().push(format!("submit: {e}")),
                            }
                        }
                    }
                    rounds.fetch_add(1, Ordering::AcqRel);
                    // Read while waiting until the round has mostly drained.
                    loop {
                        let mut remaining = 0;
                        for user in ["ann", "bob"] {
                            for path in ["/api/queue", "/api/jobs?limit=5"] {
                                match http
                                    .get(format!("{base}{path}"))
                                    .basic_auth(user, Some(PASSWORD))
                                    .send()
                                    .await
                                {
                                    Ok(r) if r.status() == 200 => {
                                        if path == "/api/queue" {
                                            let q: Value = r.json().await.unwrap_or(Value::Null);
                                            remaining += q["queue_pending"]
                                                .as_array()
                                                .map_or(0, |a| a.len());
                                        }
                                    }
                                    Ok(r) => failed
                                        .lock()
                                        .unwrap()
                                        .push(format!("GET {path} as {user}: {}", r.status())),
                                    Err(e) => failed.lock().unwrap().push(format!("GET: {e}")),
                                }
                            }
                        }
                        if remaining <= 1 || stop.load(Ordering::Acquire) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            }
        });
        Load {
            stop,
            submitted,
            failed,
            rounds,
            task,
        }
    }

    async fn until_rounds(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.rounds.load(Ordering::Acquire) < n {
            assert!(std::time::Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops submitting; every job it submitted.
    async fn stop(self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("load task");
        let submitted = self.submitted.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (submitted, failed)
    }
}

/// Waits until every job ended; each job's detail (with its history).
async fn all_finished(host: &Running, ids: &[u64]) -> BTreeMap<u64, Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut done = BTreeMap::new();
    for &id in ids {
        loop {
            let job = host.json("boss", &format!("/admin/api/jobs/{id}")).await;
            if ["succeeded", "failed", "cancelled", "dead"]
                .contains(&job["state"].as_str().unwrap_or(""))
            {
                done.insert(id, job);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} never ended: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    done
}

/// When the job was first claimed for a GPU (ms).
fn claimed_at(job: &Value) -> u64 {
    job["history"]
        .as_array()
        .and_then(|h| h.iter().find(|t| t["state"] == "leased"))
        .and_then(|t| t["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("never claimed: {job}"))
}

/// Pairs (older, newer) where the newer job was claimed first: a FIFO
/// scheduler never makes one.
fn overtakes(jobs: &BTreeMap<u64, Value>, claimed_after: u64) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for (&old, a) in jobs {
        for (&new, b) in jobs.range(old + 1..) {
            let (ta, tb) = (claimed_at(a), claimed_at(b));
            if tb > claimed_after && tb < ta {
                found.push((old, new));
            }
        }
    }
    found
}

async fn upload(host: &Running, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    send(
        host.post("boss", &format!("/admin/api/plugins{query}"))
            .header("content-type", "application/wasm")
            .body(bytes),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_activated_under_load_decides_the_next_dispatch_and_no_request_fails() {
    let host = one_slot_host(30).await;
    let load = Load::start(&host);
    load.until_rounds(3).await;

    // Mid-run: upload FIFO and activate it over HTTP.
    let (status, body) = upload(
        &host,
        builtin::component("fifo").expect("fifo").to_vec(),
        "",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let hash = body["hash"].as_str().expect("hash").to_string();
    let (status, body) =
        send(host.post("boss", &format!("/admin/api/plugins/{hash}/activate"))).await;
    assert_eq!(status, 200, "{body}");
    let activated = now_ms();
    let rounds = load.rounds.load(Ordering::Acquire);
    load.until_rounds(rounds + 4).await;
    let (ids, failed) = load.stop().await;
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    let jobs = all_finished(&host, &ids).await;
    let lost: Vec<_> = jobs
        .iter()
        .filter(|(_, j)| j["state"] != "succeeded")
        .collect();
    assert!(lost.is_empty(), "every job succeeds: {lost:#?}");
    let (before, after): (BTreeMap<_, _>, BTreeMap<_, _>) = jobs
        .into_iter()
        .partition(|(_, j)| claimed_at(j) <= activated);
    // Fair-share (the default) lets bob's newer jobs overtake ann's burst…
    assert!(
        !overtakes(&before, 0).is_empty(),
        "fair-share should reorder the bursts before the swap"
    );
    // …FIFO, once active, never does. The one decision that may have been
    // in flight at the swap is skipped: the first claim after it.
    let first_after = after
        .values()
        .map(claimed_at)
        .min()
        .expect("jobs after the swap");
    let all: BTreeMap<u64, Value> = before.into_iter().chain(after).collect();
    let late = overtakes(&all, first_after);
    assert!(
        late.is_empty(),
        "after activation dispatch is FIFO, but these were overtaken: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_scheduler_is_compared_on_every_live_decision_and_decides_nothing() {
    let host = one_slot_host(30).await;
    let (status, body) = upload(
        &host,
        builtin::component("fifo").expect("fifo").to_vec(),
        "",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let hash = body["hash"].as_str().expect("hash").to_string();
    let put_shadow = |hash: &str| {
        host.http
            .put(host.url("/admin/api/plugins/shadow"))
            .basic_auth("boss", Some(PASSWORD))
            .json(&json!({ "hash": hash }))
    };
    let (status, _) = send(put_shadow("00ff")).await;
    assert_eq!(status, 404);
    let selector = builtin::component("h200-spot").expect("selector").to_vec();
    let (_, body) = upload(&host, selector, "").await;
    let (status, body) = send(put_shadow(body["hash"].as_str().expect("hash"))).await;
    assert_eq!(status, 400, "a selector cannot run as a scheduler: {body}");
    let (status, body) = send(put_shadow(&hash)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shadow"]["decisions"], 0);

    let load = Load::start(&host);
    load.until_rounds(4).await;
    let (ids, failed) = load.stop().await;
    assert!(failed.is_empty(), "{failed:#?}");
    let jobs = all_finished(&host, &ids).await;

    let status = host.json("boss", "/admin/api/plugins").await;
    let shadow = &status["shadow"];
    let count = |k: &str| {
        shadow[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {shadow}"))
    };
    assert!(
        shadow["label"]
            .as_str()
            .expect("label")
            .starts_with("fifo@"),
        "{shadow}"
    );
    assert!(count("decisions") >= ids.len() as u64 / 2, "{shadow}");
    assert_eq!(
        count("agreed") + count("disagreed") + count("failed"),
        count("decisions")
    );
    assert!(count("agreed") > 0, "{shadow}");
    // Fair-share reorders the bursts, FIFO would not: they disagree, and
    // fair-share's order is the one that ran.
    assert!(count("disagreed") > 0, "{shadow}");
    assert!(!shadow["recent"].as_array().expect("recent").is_empty());
    assert!(
        !overtakes(&jobs, 0).is_empty(),
        "the shadow decided nothing"
    );
    let active = &status["slots"][0]["active"];
    assert!(
        active.as_str().expect("active").starts_with("fair-share@"),
        "{active}"
    );

    let response = host
        .http
        .delete(host.url("/admin/api/plugins/shadow"))
        .basic_auth("boss", Some(PASSWORD));
    let (status, body) = send(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["shadow"]["decisions"], shadow["decisions"]);
    let status = host.json("boss", "/admin/api/plugins").await;
    assert!(status["shadow"]["label"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_scheduler_forced_past_the_check_fails_over_without_losing_a_job() {
    let host = one_slot_host(10).await;
    let hostile = std::fs::read(builtin::fixture("hostile-loop").expect("fixture")).expect("file");
    let (status, body) = upload(&host, hostile.clone(), "").await;
    assert_eq!(status, 422, "{body}");
    // Refused means not kept: its hash cannot be activated.
    let refused = body["report"]["sha256"]
        .as_str()
        .expect("sha256")
        .to_string();
    let (status, _) =
        send(host.post("boss", &format!("/admin/api/plugins/{refused}/activate"))).await;
    assert_eq!(status, 404, "a refused upload is never activatable");
    let (status, _) = upload(&host, hostile.clone(), "?override=yes-please").await;
    assert_eq!(status, 400);

    let (status, body) = upload(&host, hostile, "?override=unchecked").await;
    assert_eq!(status, 201, "{body}");
    assert!(body["check_failed"].is_string(), "{body}");
    let hash = body["hash"].as_str().expect("hash").to_string();
    let (status, _) = send(host.post("boss", &format!("/admin/api/plugins/{hash}/activate"))).await;
    assert_eq!(status, 200);

    let load = Load::start(&host);
    load.until_rounds(3).await;
    let (ids, failed) = load.stop().await;
    assert!(failed.is_empty(), "{failed:#?}");
    let jobs = all_finished(&host, &ids).await;
    let lost: Vec<_> = jobs
        .iter()
        .filter(|(_, j)| j["state"] != "succeeded")
        .collect();
    assert!(
        lost.is_empty(),
        "the built-in default ran every job: {lost:#?}"
    );
    let plugins = host.json("boss", "/admin/api/plugins").await;
    let scheduler = &plugins["slots"][0];
    assert!(
        scheduler.to_string().contains("deadline") || scheduler.to_string().contains("interrupt"),
        "the loop's failures are recorded: {scheduler}"
    );
    assert!(
        !scheduler["disabled"].is_null(),
        "five failures disable it: {scheduler}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_versions_by_hash_orders_and_removes_validators() {
    let host = one_slot_host(10).await;
    let plugins = host.json("boss", "/admin/api/plugins").await;
    // Every stored version is listed with its hash; built-ins are marked.
    let versions = plugins["versions"].as_array().expect("versions");
    let round_robin = versions
        .iter()
        .find(|v| {
            v["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("round-robin@"))
        })
        .unwrap_or_else(|| panic!("{plugins}"));
    assert_eq!(round_robin["builtin"], true, "{round_robin}");
    assert_eq!(
        plugins["validators"],
        json!({"order": ["validator:flux2-klein", "validator:ltx2"], "disabled": "skip", "unclaimed": "accept"})
    );

    // A built-in that was never in the slot's history is activated by hash.
    let hash = round_robin["hash"].as_str().expect("hash");
    let (status, body) =
        send(host.post("boss", &format!("/admin/api/plugins/{hash}/activate"))).await;
    assert_eq!(status, 200, "{body}");
    let plugins = host.json("boss", "/admin/api/plugins").await;
    let scheduler = &plugins["slots"][0];
    assert_eq!(scheduler["active_hash"], hash, "{scheduler}");
    assert!(
        scheduler["history"][0]["hash"].is_string(),
        "history by hash: {scheduler}"
    );

    // A validator named to be asked first, then removed.
    let sleepy =
        std::fs::read(builtin::fixture("hostile-sleep-validator").expect("fixture")).expect("file");
    let (status, body) = upload(&host, sleepy, "?override=unchecked").await;
    assert_eq!(status, 201, "{body}");
    let hash = body["hash"].as_str().expect("hash").to_string();
    let (status, body) =
        send(host.post("boss", &format!("/admin/api/plugins/{hash}/activate"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slot"], "validator:a-sleepy");
    let order = host.json("boss", "/admin/api/plugins").await["validators"]["order"].clone();
    assert_eq!(order[0], "validator:a-sleepy", "{order}");

    let delete = |slot: &str| {
        host.http
            .delete(host.url(&format!("/admin/api/plugins/slots/{slot}")))
            .basic_auth("boss", Some(PASSWORD))
    };
    let (status, body) = send(delete("validator:a-sleepy")).await;
    assert_eq!(status, 200, "{body}");
    let plugins = host.json("boss", "/admin/api/plugins").await;
    assert!(
        !plugins["slots"].to_string().contains("a-sleepy"),
        "{plugins}"
    );
    assert_eq!(send(delete("validator:a-sleepy")).await.0, 404);
    assert_eq!(send(delete("scheduler")).await.0, 409);
    // Prompts flow again without the slow validator in front.
    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
}
