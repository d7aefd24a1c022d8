//! `/metrics` in Prometheus' text format, `/healthz` and `/readyz`.
//!
//! Policy: every value is read at scrape time from the queue snapshot, the
//! pools, the plugin slots and the open sockets, so there is no second
//! bookkeeping to drift. Labels are pool, slot and workflow-kind names the
//! operator configured, never attendee names or prompts. A queue outage
//! makes `/readyz` 503 (the load balancer stops sending attendees) and
//! `comfyume_queue_up` 0, while `/healthz` stays 200 (the process is fine).
//! The histograms and counters recorded as jobs run (wait and run time,
//! dispatch failures by cause, cold starts, plugin call latency, GPU time
//! and cost per pool) come from [`crate::observe`] and follow these
//! gauges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Admin;
use crate::session::SessionState;

/// Accumulates metric families in the exposition format.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let rendered: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", rendered.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "probes", security(()),
    responses((status = 200, description = "Prometheus text (counts only, no names or prompts)", content_type = "text/plain", body = String))
)]
/// `GET /metrics`.
pub(super) async fn render(State(admin): State<Arc<Admin>>) -> Response {
    let mut text = Text::default();
    let snapshot = admin.state.queue.snapshot().await;
    text.family(
        "comfyume_queue_up",
        "gauge",
        "1 when the job store answers.",
    );
    text.sample(
        "comfyume_queue_up",
        &[],
        f64::from(u8::from(snapshot.is_ok())),
    );
    if let Ok(snapshot) = &snapshot {
        let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
        for job in &snapshot.pending {
            *pending.entry(job.kind.as_str()).or_default() += 1;
        }
        let mut running: BTreeMap<&str, usize> = BTreeMap::new();
        for job in &snapshot.running {
            *running.entry(job.kind.as_str()).or_default() += 1;
        }
        text.family(
            "comfyume_jobs",
            "gauge",
            "Jobs waiting or on a GPU, by workflow kind.",
        );
        for (kind, count) in &pending {
            text.sample(
                "comfyume_jobs",
                &[("state", "pending"), ("kind", kind)],
                *count as f64,
            );
        }
        for (kind, count) in &running {
            text.sample(
                "comfyume_jobs",
                &[("state", "running"), ("kind", kind)],
                *count as f64,
            );
        }
        text.family(
            "comfyume_gpu_seconds_total",
            "counter",
            "GPU seconds used by finished jobs, all attendees.",
        );
        let used: f64 = snapshot.users.iter().map(|u| u.gpu_seconds_used).sum();
        text.sample("comfyume_gpu_seconds_total", &[], used);
        text.family(
            "comfyume_jobs_done_total",
            "counter",
            "Jobs finished, all attendees.",
        );
        let done: u32 = snapshot.users.iter().map(|u| u.jobs_done).sum();
        text.sample("comfyume_jobs_done_total", &[], f64::from(done));
    }
    let pools = admin.state.dispatcher.pools();
    text.family("comfyume_pool_in_flight", "gauge", "Jobs on the pool now.");
    for pool in pools {
        text.sample(
            "comfyume_pool_in_flight",
            &[("pool", &pool.backend().info().name)],
            f64::from(pool.in_flight()),
        );
    }
    text.family(
        "comfyume_pool_capacity",
        "gauge",
        "Jobs the pool takes at once.",
    );
    for pool in pools {
        let info = pool.backend().info();
        text.sample(
            "comfyume_pool_capacity",
            &[("pool", &info.name)],
            f64::from(info.capacity),
        );
    }
    text.family("comfyume_pool_warm", "gauge", "1 when a replica is warm.");
    for pool in pools {
        text.sample(
            "comfyume_pool_warm",
            &[("pool", &pool.backend().info().name)],
            f64::from(u8::from(pool.backend().warm())),
        );
    }
    text.family(
        "comfyume_pool_recent_failures",
        "gauge",
        "Failures in the last five minutes.",
    );
    for pool in pools {
        text.sample(
            "comfyume_pool_recent_failures",
            &[("pool", &pool.backend().info().name)],
            f64::from(pool.recent_failures()),
        );
    }
    let slots = admin.state.plugins.status();
    text.family(
        "comfyume_plugin_failures_total",
        "counter",
        "Plugin failures since the active version was activated.",
    );
    for slot in &slots {
        text.sample(
            "comfyume_plugin_failures_total",
            &[("slot", &slot.slot)],
            slot.total_failures as f64,
        );
    }
    text.family(
        "comfyume_plugin_disabled",
        "gauge",
        "1 when the slot's plugin was disabled after failures.",
    );
    for slot in &slots {
        text.sample(
            "comfyume_plugin_disabled",
            &[("slot", &slot.slot)],
            f64::from(u8::from(slot.disabled.is_some())),
        );
    }
    text.family(
        "comfyume_websockets",
        "gauge",
        "Open editor websockets on this host.",
    );
    let sockets: usize = admin
        .front
        .sockets
        .lock()
        .map(|s| s.values().sum())
        .unwrap_or(0);
    text.sample("comfyume_websockets", &[], sockets as f64);
    text.family(
        "comfyume_session_open",
        "gauge",
        "1 while attendees' prompts are accepted.",
    );
    text.sample(
        "comfyume_session_open",
        &[],
        f64::from(u8::from(admin.session.get() == SessionState::Open)),
    );
    text.family(
        "comfyume_job_wait_seconds",
        "gauge",
        "How long a job may run on a GPU.",
    );
    text.sample(
        "comfyume_job_wait_seconds",
        &[],
        admin.state.dispatcher.job_wait().as_secs_f64(),
    );
    text.family(
        "comfyume_dispatch_held",
        "gauge",
        "1 while dispatch is held (the budget is spent).",
    );
    text.sample(
        "comfyume_dispatch_held",
        &[],
        f64::from(u8::from(admin.state.dispatcher.held().is_some())),
    );
    text.out.push_str(&crate::observe::recorder().render());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text.out,
    )
        .into_response()
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "probes", security(()),
    responses((status = 200, description = "The process answers: `ok`", content_type = "text/plain", body = String))
)]
/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "probes", security(()),
    responses(
        (status = 200, description = "The job store answers: `ready`", content_type = "text/plain", body = String),
        (status = 503, description = "The job store is unavailable", content_type = "text/plain", body = String),
    )
)]
/// `GET /readyz`: the job store answers; otherwise 503.
pub(super) async fn readyz(State(admin): State<Arc<Admin>>) -> (StatusCode, &'static str) {
    match admin.state.queue.snapshot().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the job store is unavailable\n",
        ),
    }
}
