//! The fault schedule: what goes wrong, when, and for how long.
//!
//! Each fault is played once, in this order, half a burst after a demo
//! (fault *k* after demo *k*; the hostile plugin just before its demo), so every fault lands while attendees' jobs
//! are queued and running, and a run is repeatable:
//!
//! | fault | what the platform must do |
//! |---|---|
//! | scheduler swap (fair-share → round-robin, every host) | keep dispatching, no failed request |
//! | spot reclaim of the H200 replicas running jobs | re-queue the jobs, run each again once |
//! | kill -9 of the host holding the dispatcher lease | the other host leads (one host: it restarts and resumes); attendees move; nothing lost |
//! | the H200 pool's gateway answers 500 to everything | jobs retry or fail with a reason, never a 5xx to attendees |
//! | kill -9 of Redis, restarted from its AOF | 503 while it is gone, nothing lost after |
//! | a hostile scheduler (an endless loop) forced in before the last burst | the built-in default decides, the leader disables it |
//!
//! The Redis outage is the one window in which attendees may see 5xx (a
//! 503 saying the queue is unreachable); [`Window`]s record it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::cluster::Cluster;
use super::{Clock, Plan};
use crate::dispatch::rehearsal::verda_gateway::Fault;

/// One fault as played.
#[derive(Debug, Clone, Serialize)]
pub struct Played {
    /// Its name.
    pub fault: &'static str,
    /// When it began and when the platform was whole again (ms since the epoch).
    pub from_ms: u64,
    /// See `from_ms`.
    pub to_ms: u64,
    /// What happened, in the fault's own terms.
    pub detail: Value,
}

/// Plays every fault in order; returns what was played.
pub async fn play(plan: Arc<Plan>, clock: Clock, cluster: Arc<Mutex<Cluster>>) -> Vec<Played> {
    let mut played = Vec::new();
    let at =
        |k: u32| plan.demo_at(k % plan.demos) + Duration::from_millis(plan.burst_spread_ms() / 2);
    clock.sleep_until(at(0)).await;
    played.push(swap_scheduler(&cluster).await);
    clock.sleep_until(at(1)).await;
    played.push(reclaim_spot(&plan, &cluster).await);
    clock.sleep_until(at(2)).await;
    played.push(kill_leader(&plan, &cluster).await);
    clock.sleep_until(at(3)).await;
    played.push(pool_500(&plan, &cluster).await);
    if plan.redis {
        clock.sleep_until(at(4)).await;
        played.push(restart_redis(&plan, &cluster).await);
    }
    // Forced in just before the last burst: a scheduler is only asked
    // while jobs wait.
    clock
        .sleep_until(
            plan.demo_at(5 % plan.demos)
                .saturating_sub(Duration::from_millis(500)),
        )
        .await;
    played.push(hostile_scheduler(&cluster).await);
    played
}

/// Uploads `bytes` to every live host and activates it there (plugins are
/// per host: each host's registry is its own).
async fn upload_and_activate(cluster: &Cluster, bytes: &[u8], forced: bool) -> Vec<Value> {
    let mut answers = Vec::new();
    for host in cluster.hosts.iter().filter(|h| h.alive()) {
        let path = if forced {
            "/admin/api/plugins?override=unchecked"
        } else {
            "/admin/api/plugins"
        };
        let uploaded = cluster
            .admin_on(host, reqwest::Method::POST, path)
            .header("content-type", "application/wasm")
            .body(bytes.to_vec())
            .send()
            .await;
        let (status, answer) = match uploaded {
            Ok(r) => (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            ),
            Err(e) => (0, json!({"error": e.to_string()})),
        };
        let activated = match answer["hash"].as_str() {
            Some(hash) => cluster
                .admin_on(
                    host,
                    reqwest::Method::POST,
                    &format!("/admin/api/plugins/{hash}/activate"),
                )
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0),
            None => 0,
        };
        answers.push(json!({
            "host": host.name, "upload": status, "activate": activated,
            "plugin": answer["label"], "check_failed": answer["check_failed"],
        }));
    }
    answers
}

async fn swap_scheduler(cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    let cluster = cluster.lock().await;
    let bytes = crate::plugins::builtin::component("round-robin").unwrap_or_default();
    let hosts = upload_and_activate(&cluster, bytes, false).await;
    Played {
        fault: "scheduler-swap",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({"to": "round-robin", "hosts": hosts}),
    }
}

async fn reclaim_spot(plan: &Plan, cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    let spot = cluster.lock().await.gateways[0].clone();
    let before = spot.reclaims();
    // Long enough into a job that it is on a GPU, short of its end.
    spot.set_fault(Fault::ReclaimAfter(plan.step_time * 2));
    tokio::time::sleep(plan.fault_window).await;
    spot.set_fault(Fault::None);
    let reclaimed = spot.reclaims() - before;
    // Verda brings up new replicas for the reclaimed ones.
    spot.replace_reclaimed();
    Played {
        fault: "spot-reclaim",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({"pool": "h200-spot", "replicas_reclaimed": reclaimed}),
    }
}

async fn pool_500(plan: &Plan, cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    // The busy pool: the selector sends most work to the H200s.
    let pool = cluster.lock().await.gateways[0].clone();
    pool.set_fault(Fault::Http500);
    tokio::time::sleep(plan.fault_window).await;
    pool.set_fault(Fault::None);
    Played {
        fault: "pool-500",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({"pool": "h200-spot", "seconds": plan.fault_window.as_secs_f64()}),
    }
}

/// Kills the leader (or the only host), shows who takes over, restarts it.
///
/// With several hosts another one must take the lease over while the victim
/// is down; with one host, the restarted host must pick its work up again.
async fn kill_leader(plan: &Plan, cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    let mut guard = cluster.lock().await;
    let mut leader = guard.leader().await;
    // Between two holders (a lease just lapsed, a health answer too slow):
    // wait for one, so the kill tests a takeover rather than a follower's
    // death. Without a leader after three leases, host 0 goes, and the
    // report says the kill missed.
    let deadline = tokio::time::Instant::now() + plan.lease() * 3;
    while leader.is_none() && tokio::time::Instant::now() < deadline {
        drop(guard);
        tokio::time::sleep(Duration::from_millis(200)).await;
        guard = cluster.lock().await;
        leader = guard.leader().await;
    }
    let victim = leader.unwrap_or(0);
    let name = guard.hosts[victim].name.clone();
    guard.hosts[victim].kill9();
    tracing::info!(host = %name, "rehearsal: kill -9 of the dispatcher leader");
    let alone = !guard.hosts.iter().any(|h| h.alive());
    drop(guard);
    let mut restarted = None;
    if alone {
        tokio::time::sleep(plan.fault_window).await;
        restarted = Some(restart(cluster, victim).await);
    }
    // Who leads next, and how long it took (the lease has to lapse).
    let takeover = takeover(plan, cluster, from_ms).await;
    let restarted = match restarted {
        Some(restarted) => restarted,
        None => {
            tokio::time::sleep(plan.fault_window).await;
            restart(cluster, victim).await
        }
    };
    Played {
        fault: "host-kill",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({
            "killed": name, "was_leader": leader.is_some(), "alone": alone,
            "takeover": takeover,
            "restarted": restarted.is_ok(), "restart_error": restarted.err(),
        }),
    }
}

/// Waits for a live host to hold the dispatcher lease: `{host, after_ms}`,
/// or null when none did within three leases.
async fn takeover(plan: &Plan, cluster: &Mutex<Cluster>, from_ms: u64) -> Value {
    let deadline = tokio::time::Instant::now() + plan.lease() * 3 + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let guard = cluster.lock().await;
        if let Some(leader) = guard.leader().await {
            return json!({"host": guard.hosts[leader].name,
                "after_ms": Clock::now_ms().saturating_sub(from_ms)});
        }
        drop(guard);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Value::Null
}

/// Restarts host `i` and waits until it answers `/health`.
async fn restart(cluster: &Mutex<Cluster>, i: usize) -> Result<(), String> {
    let mut guard = cluster.lock().await;
    guard.restart(i).map_err(|e| e.to_string())?;
    guard
        .wait_healthy(i, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())
}

async fn restart_redis(plan: &Plan, cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    let mut guard = cluster.lock().await;
    if let Some(redis) = guard.redis.as_mut() {
        redis.kill();
    }
    drop(guard);
    tracing::info!("rehearsal: kill -9 of redis-server");
    tokio::time::sleep(plan.fault_window).await;
    let mut guard = cluster.lock().await;
    let restarted = guard
        .redis
        .as_mut()
        // The restart waits (blocking) for the port while Redis loads its
        // AOF: off the async workers, which serve the attendees meanwhile.
        .map(|r| tokio::task::block_in_place(|| r.restart()).map_err(|e| e.to_string()));
    // Whole again once every live host says its queue is reachable.
    for i in 0..guard.hosts.len() {
        if guard.hosts[i].alive() {
            let _ = guard.wait_healthy(i, Duration::from_secs(60)).await;
        }
    }
    Played {
        fault: "redis-restart",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({"down_seconds": plan.fault_window.as_secs_f64(),
            "restarted": matches!(restarted, Some(Ok(()))), "error": restarted.and_then(Result::err)}),
    }
}

async fn hostile_scheduler(cluster: &Mutex<Cluster>) -> Played {
    let from_ms = Clock::now_ms();
    let guard = cluster.lock().await;
    // The test fixture (an endless loop) is there in builds of this
    // repository; a binary installed elsewhere has none.
    let bytes =
        crate::plugins::builtin::fixture("hostile-loop").and_then(|p| std::fs::read(p).ok());
    let Some(bytes) = bytes else {
        return Played {
            fault: "hostile-plugin",
            from_ms,
            to_ms: Clock::now_ms(),
            detail: json!({"skipped": "the hostile-loop fixture is not in this build"}),
        };
    };
    let refused = guard
        .admin(reqwest::Method::POST, "/admin/api/plugins")
        .header("content-type", "application/wasm")
        .body(bytes.clone())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let hosts = upload_and_activate(&guard, &bytes, true).await;
    drop(guard);
    // Only the leader's dispatcher calls its scheduler: there the slot's
    // failure policy must disable the plugin after a few timed-out calls
    // (the other hosts hold it, uncalled, until they lead).
    let mut hosts_now = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let guard = cluster.lock().await;
        hosts_now.clear();
        for (i, host) in guard.hosts.iter().enumerate().filter(|(_, h)| h.alive()) {
            let leader = guard
                .health(i)
                .await
                .is_some_and(|(_, h)| h["leader"] == true);
            let slots: Value = match guard
                .admin_on(host, reqwest::Method::GET, "/admin/api/plugins")
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let slot = slots["slots"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["slot"] == "scheduler")
                .cloned()
                .unwrap_or(Value::Null);
            hosts_now.push(json!({"host": host.name, "leader": leader,
                "disabled": !slot["disabled"].is_null(), "failures": slot["total_failures"]}));
        }
        drop(guard);
        if hosts_now
            .iter()
            .any(|h| h["leader"] == true && h["disabled"] == true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Played {
        fault: "hostile-plugin",
        from_ms,
        to_ms: Clock::now_ms(),
        detail: json!({"plugin": "hostile-loop", "refused_without_override": refused,
            "forced_in": hosts, "hosts": hosts_now,
            "disabled_by_the_leader": hosts_now.iter().any(|h| h["leader"] == true && h["disabled"] == true)}),
    }
}
