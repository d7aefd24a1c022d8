//! The rehearsal's report: what every attendee got, how long they waited,
//! how fairly the GPUs were shared, what it cost, and every broken promise.
//!
//! Ground truth is the job store (read through the operator's API after
//! the run) and the fake GPU gateway's own run log, never the attendees'
//! impressions alone: a job is **lost** when an attendee was told its id
//! and the store has no such job or never finished it; a GPU run is
//! **duplicated** when a prompt started on a GPU while an earlier run of it
//! was still on one or had completed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::attendee::Record;
use super::faults::Played;
use crate::dispatch::rehearsal::run_ledger::DuplicateRun;

mod violations;

pub use violations::{SOCKET_BACK_MS, Violations};
use violations::{gap_explained, inside};

/// The whole report, as written to JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was run.
    pub plan: Value,
    /// One line per attendee.
    pub attendees: Vec<AttendeeLine>,
    /// Sums over everyone.
    pub totals: Totals,
    /// Queue waits (submit → sent to a GPU), in seconds, over every job.
    pub wait_seconds: Spread,
    /// Jain's index over attendees' GPU-seconds (1 = equal shares).
    pub fairness_gpu_seconds: f64,
    /// Jain's index over attendees' p95 waits (1 = everyone waits alike).
    pub fairness_wait_p95: f64,
    /// The day's cost from the operator's API (EUR), and per pool.
    pub cost: Value,
    /// Highest resident set size per host, MiB.
    pub host_rss_mib: BTreeMap<String, f64>,
    /// Faults as played.
    pub faults: Vec<Played>,
    /// Errors by cause: what attendees were answered, why jobs failed.
    pub errors_by_cause: BTreeMap<String, u64>,
    /// The promises the rehearsal checks; a run passes when all are empty.
    pub violations: Violations,
}

/// One attendee's line.
#[derive(Debug, Serialize)]
pub struct AttendeeLine {
    /// Login.
    pub name: String,
    /// Persona.
    pub persona: &'static str,
    /// Acknowledged submissions.
    pub submitted: usize,
    /// …of which ended succeeded, failed (or dead), cancelled.
    pub succeeded: usize,
    /// See `succeeded`.
    pub failed: usize,
    /// See `succeeded`.
    pub cancelled: usize,
    /// Refused with a 4xx (caps, validation).
    pub refused: usize,
    /// Outputs downloaded.
    pub downloads: u32,
    /// Waits, seconds.
    pub wait: Spread,
    /// GPU-seconds used.
    pub gpu_seconds: f64,
    /// Host moves after a host stopped answering.
    pub failovers: u32,
}

/// Sums.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Acknowledged submissions.
    pub submitted: usize,
    /// Ended succeeded.
    pub succeeded: usize,
    /// Ended failed or dead.
    pub failed: usize,
    /// Ended cancelled.
    pub cancelled: usize,
    /// Refused with a 4xx.
    pub refused: usize,
    /// Given up after retries.
    pub abandoned: u32,
    /// Acknowledged jobs dispatched more than once (a reclaim, a pool's
    /// 500, a host that died before the GPU took it).
    pub retried: usize,
    /// GPU runs the gateway saw, and how they ended.
    pub gpu_runs: BTreeMap<String, usize>,
    /// HTTP requests made by attendees.
    pub requests: usize,
    /// Outputs downloaded, and failed downloads.
    pub downloads: u32,
    /// See `downloads`.
    pub download_errors: u32,
    /// Websocket events that named a prompt.
    pub events: usize,
    /// Second GPU runs of a prompt whose earlier run the store never
    /// recorded, begun inside a host kill or the Redis outage: the host
    /// died (or lost its store) between Verda's answer and the record. Not
    /// a broken promise, but paid GPU time an operator should see.
    pub unrecorded_reruns: Vec<Duplicate>,
    /// Jobs in the store that no attendee was told of (a submit whose
    /// answer was lost: the attendee pressed Run again). Not lost, but a
    /// second job for one press.
    pub unacknowledged: Vec<String>,
    /// Outputs downloaded from a prompt that is not a succeeded job the
    /// attendee was told of: where those files came from is worth reading.
    pub odd_downloads: Vec<String>,
}

/// p50 / p95 / max.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// Nearest-rank percentiles of `values`.
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Spread {
            p50: rank(0.50),
            p95: rank(0.95),
            max: values[values.len() - 1],
            n: values.len(),
        }
    }
}

/// Jain's fairness index: (Σx)² / (n·Σx²); 1 when all are equal.
pub fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|x| x * x).sum();
    if values.is_empty() || squares == 0.0 {
        return 1.0;
    }
    sum * sum / (values.len() as f64 * squares)
}

/// The store's view of one job (an operator job summary).
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The job number.
    pub id: u64,
    /// Owner.
    pub user: String,
    /// State name.
    pub state: String,
    /// Waiting time in seconds, once it was sent to a GPU.
    pub wait: Option<f64>,
    /// GPU-seconds billed.
    pub gpu_seconds: f64,
    /// Why it failed.
    pub reason: Option<String>,
    /// Dispatch attempts.
    pub attempts: u64,
    /// Last change (ms since the epoch).
    pub updated_at_ms: u64,
}

impl StoredJob {
    /// From an `/admin/api/jobs` entry.
    pub fn from_summary(job: &Value) -> Option<(String, StoredJob)> {
        let created = job["created_at_ms"].as_u64()?;
        Some((
            job["prompt_id"].as_str()?.to_string(),
            StoredJob {
                id: job["id"].as_u64()?,
                user: job["user"].as_str()?.to_string(),
                state: job["state"].as_str()?.to_string(),
                wait: job["started_at_ms"]
                    .as_u64()
                    .map(|s| s.saturating_sub(created) as f64 / 1000.0),
                gpu_seconds: job["gpu_seconds"].as_f64().unwrap_or(0.0),
                reason: job["reason"].as_str().map(str::to_owned),
                attempts: job["attempts"].as_u64().unwrap_or(0),
                updated_at_ms: job["updated_at_ms"].as_u64().unwrap_or(0),
            },
        ))
    }

    fn terminal(&self) -> bool {
        matches!(
            self.state.as_str(),
            "succeeded" | "failed" | "cancelled" | "dead"
        )
    }
}

/// A duplicated GPU run, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    /// The gateway's account of it.
    #[serde(flatten)]
    pub run: DuplicateRun,
    /// Whether the store had recorded an earlier run's inference id. If it
    /// had, the second run broke the promise; if not, the host that sent
    /// the earlier run died (or lost its store) between Verda's answer and
    /// the record, the one window in which a job can run twice.
    pub recorded: bool,
    /// The job's transition notes in the store, to read why it ran twice.
    pub history: Vec<String>,
}

/// What the report is built from.
pub struct Inputs {
    /// The plan, as JSON.
    pub plan: Value,
    /// Every attendee's record.
    pub records: Vec<Record>,
    /// Every job in the store, by prompt id.
    pub jobs: HashMap<String, StoredJob>,
    /// Duplicated GPU runs, from the gateway, judged against the store.
    pub duplicates: Vec<Duplicate>,
    /// GPU runs by how they ended, from the gateway.
    pub gpu_runs: BTreeMap<String, usize>,
    /// `/admin/api/costs`.
    pub cost: Value,
    /// Highest RSS per host, KiB.
    pub rss_kib: BTreeMap<String, u64>,
    /// Faults as played.
    pub faults: Vec<Played>,
    /// The Redis outage (from, to): a 5xx or a missed event is excused in it.
    pub outages: Vec<(u64, u64)>,
    /// Host kills (kill → the host healthy again): an unanswered request or
    /// a websocket gap is excused in it.
    pub host_losses: Vec<(u64, u64)>,
}

/// Builds the report.
pub fn build(inputs: Inputs) -> Report {
    let mut totals = Totals::default();
    let mut violations = Violations::default();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut all_waits = Vec::new();
    let losses: Vec<(u64, u64)> = inputs
        .outages
        .iter()
        .chain(&inputs.host_losses)
        .copied()
        .collect();
    for record in &inputs.records {
        let mut line = AttendeeLine {
            name: record.name.clone(),
            persona: record.persona,
            submitted: record.accepted.len(),
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            refused: record.refused.len(),
            downloads: record.downloads,
            wait: Spread::default(),
            gpu_seconds: 0.0,
            failovers: record.failovers,
        };
        let mut waits = Vec::new();
        for id in &record.accepted {
            let Some(job) = inputs.jobs.get(id).filter(|j| j.terminal()) else {
                let state = inputs.jobs.get(id).map_or("missing", |j| j.state.as_str());
                violations
                    .lost_jobs
                    .push(format!("{} {id} ({state})", record.name));
                continue;
            };
            match job.state.as_str() {
                "succeeded" => line.succeeded += 1,
                "cancelled" => {
                    line.cancelled += 1;
                    if !record.cancel_asked.contains(id) {
                        violations
                            .unasked_cancels
                            .push(format!("{} {id}", record.name));
                    }
                }
                _ => {
                    line.failed += 1;
                    let reason = job.reason.as_deref().unwrap_or("no reason");
                    *errors
                        .entry(format!("job {}: {}", job.state, cause(reason)))
                        .or_default() += 1;
                    violations
                        .failed_jobs
                        .push(format!("{} {id} {}: {reason}", record.name, job.state));
                }
            }
            line.gpu_seconds += job.gpu_seconds;
            if job.attempts > 1 {
                totals.retried += 1;
            }
            if let Some(wait) = job.wait {
                waits.push(wait);
            }
            if job.state == "succeeded" {
                let told = record.events.iter().any(|(p, kind, _)| {
                    p == id && matches!(kind.as_str(), "execution_success" | "executed")
                });
                let excused = inside(&record.gaps, job.updated_at_ms)
                    || inside(&inputs.outages, job.updated_at_ms);
                if !told && !excused {
                    violations
                        .missed_events
                        .push(format!("{} {id}", record.name));
                }
            }
        }
        for (id, kind, at) in &record.events {
            if let Some(job) = inputs.jobs.get(id)
                && job.user != record.name
            {
                violations.misdelivered_events.push(format!(
                    "{} got {kind} of {}'s {id} at {at}",
                    record.name, job.user
                ));
            }
        }
        for (id, files) in &record.downloaded_from {
            let state = inputs
                .jobs
                .get(id)
                .map_or("not in the store", |j| j.state.as_str());
            let told = record.accepted.contains(id);
            if !told || state != "succeeded" {
                let untold = if told { "" } else { ", never acknowledged" };
                totals.odd_downloads.push(format!(
                    "{} {id}: {files} file(s), job {state}{untold}",
                    record.name
                ));
            }
        }
        for request in &record.requests {
            let cause = match (request.status, &request.error) {
                (Some(code), _) if code >= 400 => format!("{} {code}", request.what),
                (None, Some(error)) => format!("{}: {error}", request.what),
                _ => continue,
            };
            *errors.entry(cause.clone()).or_default() += 1;
            if request.status.is_some_and(|c| c >= 500) && !inside(&inputs.outages, request.at_ms) {
                violations
                    .server_errors
                    .push(format!("{} {cause} at {}", record.name, request.at_ms));
            }
            if request.status.is_none() && !inside(&losses, request.at_ms) {
                violations
                    .unanswered_requests
                    .push(format!("{} {cause} at {}", record.name, request.at_ms));
            }
        }
        for status in record.refused.iter().filter(|&&s| s != 429) {
            violations
                .refused_or_abandoned
                .push(format!("{} submit refused with {status}", record.name));
        }
        if record.abandoned > 0 {
            violations.refused_or_abandoned.push(format!(
                "{} gave up on {} submissions after every retry",
                record.name, record.abandoned
            ));
        }
        for &(lost, back) in &record.gaps {
            if !gap_explained(&losses, lost, back) {
                violations.dropped_sockets.push(format!(
                    "{}'s websocket down from {lost} to {back}",
                    record.name
                ));
            }
        }
        totals.submitted += line.submitted;
        totals.succeeded += line.succeeded;
        totals.failed += line.failed;
        totals.cancelled += line.cancelled;
        totals.refused += line.refused;
        totals.abandoned += record.abandoned;
        totals.requests += record.requests.len();
        totals.downloads += record.downloads;
        totals.download_errors += record.download_errors;
        totals.events += record.events.len();
        all_waits.extend(&waits);
        line.wait = Spread::of(waits);
        lines.push(line);
    }
    totals.gpu_runs = inputs.gpu_runs;
    let acknowledged: std::collections::HashSet<&String> =
        inputs.records.iter().flat_map(|r| &r.accepted).collect();
    totals.unacknowledged = inputs
        .jobs
        .iter()
        .filter(|(id, _)| !acknowledged.contains(id))
        .map(|(id, job)| format!("{} {id} ({})", job.user, job.state))
        .collect();
    totals.unacknowledged.sort();
    let losses_and_outages = &losses;
    for duplicate in inputs.duplicates {
        let in_window = duplicate
            .run
            .earlier_started_ms
            .iter()
            .all(|&at| inside(losses_and_outages, at));
        if duplicate.recorded || !in_window {
            violations.duplicated_gpu_runs.push(format!(
                "{} (earlier run {} {}; store: {})",
                duplicate.run.prompt_id,
                duplicate.run.earlier.join(", "),
                if duplicate.recorded {
                    "recorded"
                } else {
                    "never recorded, outside any host kill or outage"
                },
                duplicate.history.join(" | ")
            ));
        } else {
            totals.unrecorded_reruns.push(duplicate);
        }
    }
    violations
        .faults
        .extend(inputs.faults.iter().filter_map(violations::fault_failure));
    let gpu: Vec<f64> = lines.iter().map(|l| l.gpu_seconds).collect();
    let p95s: Vec<f64> = lines
        .iter()
        .filter(|l| l.wait.n > 0)
        .map(|l| l.wait.p95)
        .collect();
    Report {
        plan: inputs.plan,
        fairness_gpu_seconds: jain(&gpu),
        fairness_wait_p95: jain(&p95s),
        attendees: lines,
        totals,
        wait_seconds: Spread::of(all_waits),
        cost: inputs.cost,
        host_rss_mib: inputs
            .rss_kib
            .into_iter()
            .map(|(host, kib)| (host, (kib as f64 / 1024.0 * 10.0).round() / 10.0))
            .collect(),
        faults: inputs.faults,
        errors_by_cause: errors,
        violations,
    }
}

/// The first words of a failure reason, so reasons group.
fn cause(reason: &str) -> String {
    let short: String = reason.chars().take(60).collect();
    short
        .split([':', '('])
        .next()
        .unwrap_or(&short)
        .trim()
        .to_string()
}

impl Report {
    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let mut out = String::new();
        out.push_str(&format!(
            "attendees {}  submitted {}  succeeded {}  failed {}  cancelled {}  refused {}  abandoned {}  retried {}\n",
            self.attendees.len(), t.submitted, t.succeeded, t.failed, t.cancelled, t.refused, t.abandoned, t.retried
        ));
        out.push_str(&format!(
            "wait s: p50 {:.2}  p95 {:.2}  max {:.2}   fairness (Jain) GPU-s {:.3}  p95 wait {:.3}\n",
            self.wait_seconds.p50, self.wait_seconds.p95, self.wait_seconds.max,
            self.fairness_gpu_seconds, self.fairness_wait_p95
        ));
        out.push_str(&format!(
            "GPU runs {:?} (reruns never recorded: {})   cost {:.4} EUR   downloads {} ({} failed)   events {}\n",
            t.gpu_runs,
            t.unrecorded_reruns.len(),
            self.cost["total"]["cost"].as_f64().unwrap_or(0.0),
            t.downloads,
            t.download_errors,
            t.events
        ));
        if !t.unacknowledged.is_empty() || !t.odd_downloads.is_empty() {
            out.push_str(&format!(
                "jobs queued but never acknowledged {}   downloads not from a succeeded job of the attendee's {}\n",
                t.unacknowledged.len(),
                t.odd_downloads.len()
            ));
        }
        out.push_str(&format!("host RSS MiB (max): {:?}\n", self.host_rss_mib));
        for fault in &self.faults {
            out.push_str(&format!(
                "fault {:<15} {:>6} ms  {}\n",
                fault.fault,
                fault.to_ms.saturating_sub(fault.from_ms),
                fault.detail
            ));
        }
        for (cause, n) in &self.errors_by_cause {
            out.push_str(&format!("  {n:>6}  {cause}\n"));
        }
        let v = &self.violations;
        out.push_str(&format!(
            "lost {}  duplicated GPU runs {}  5xx outside outage {}  misdelivered {}  missed events {}  fault failures {}\n\
             failed jobs {}  unasked cancels {}  refused/abandoned {}  unanswered {}  dropped sockets {}\n",
            v.lost_jobs.len(), v.duplicated_gpu_runs.len(), v.server_errors.len(),
            v.misdelivered_events.len(), v.missed_events.len(), v.faults.len(),
            v.failed_jobs.len(), v.unasked_cancels.len(), v.refused_or_abandoned.len(),
            v.unanswered_requests.len(), v.dropped_sockets.len()
        ));
        for line in v.lines().take(30) {
            out.push_str(&format!("  ! {line}\n"));
        }
        out.push_str(if v.none() { "PASS\n" } else { "FAIL\n" });
        out
    }
}

#[cfg(test)]
mod tests;
