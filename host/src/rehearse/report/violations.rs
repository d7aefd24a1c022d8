//! The promises a rehearsal checks, and the windows that excuse a broken
//! one: a 5xx or a missed event inside the Redis outage, an unanswered
//! request or a websocket gap inside a host kill (until the host is healthy
//! again), each with a little grace on both sides for clocks and retries.

use serde::Serialize;

use crate::rehearse::faults::Played;

/// The promises.
#[derive(Debug, Default, Serialize)]
pub struct Violations {
    /// Acknowledged prompt ids the store lost or never finished.
    pub lost_jobs: Vec<String>,
    /// Prompt ids run twice on a GPU.
    pub duplicated_gpu_runs: Vec<String>,
    /// 5xx answered to an attendee outside the Redis outage.
    pub server_errors: Vec<String>,
    /// Events an attendee received for another attendee's job.
    pub misdelivered_events: Vec<String>,
    /// Succeeded jobs whose owner got no completion event although their
    /// websocket was open when it ended (outside the Redis outage; a host
    /// kill excuses only the attendees whose socket it cut).
    pub missed_events: Vec<String>,
    /// Faults that did not play out (a host that did not come back…).
    pub faults: Vec<String>,
    /// Jobs that ended failed or dead: every fault played is one the
    /// platform is meant to recover from, so no job should fail.
    pub failed_jobs: Vec<String>,
    /// Jobs cancelled although their owner never asked.
    pub unasked_cancels: Vec<String>,
    /// Submissions of the attendees' valid prompts refused with anything
    /// but 429 (a cap), and submissions given up after every retry.
    pub refused_or_abandoned: Vec<String>,
    /// Requests the host did not answer (no HTTP answer at all) outside a
    /// host kill or the Redis outage.
    pub unanswered_requests: Vec<String>,
    /// Websocket gaps that began outside a host kill or the Redis outage,
    /// or outlasted it by more than [`SOCKET_BACK_MS`]: they would
    /// otherwise excuse missed events.
    pub dropped_sockets: Vec<String>,
}

/// How long after a host kill or the Redis outage an attendee's websocket
/// may still be reconnecting.
pub const SOCKET_BACK_MS: u64 = 15_000;

impl Violations {
    /// Whether every promise held.
    pub fn none(&self) -> bool {
        self.lost_jobs.is_empty()
            && self.duplicated_gpu_runs.is_empty()
            && self.server_errors.is_empty()
            && self.misdelivered_events.is_empty()
            && self.missed_events.is_empty()
            && self.faults.is_empty()
            && self.failed_jobs.is_empty()
            && self.unasked_cancels.is_empty()
            && self.refused_or_abandoned.is_empty()
            && self.unanswered_requests.is_empty()
            && self.dropped_sockets.is_empty()
    }

    /// Every violation, one line each, in the order of the fields.
    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.lost_jobs
            .iter()
            .chain(&self.duplicated_gpu_runs)
            .chain(&self.server_errors)
            .chain(&self.misdelivered_events)
            .chain(&self.missed_events)
            .chain(&self.faults)
            .chain(&self.failed_jobs)
            .chain(&self.unasked_cancels)
            .chain(&self.refused_or_abandoned)
            .chain(&self.unanswered_requests)
            .chain(&self.dropped_sockets)
    }
}

const GRACE_MS: u64 = 2_000;

/// Whether `at` falls in one of `windows`, with [`GRACE_MS`] either side.
pub(super) fn inside(windows: &[(u64, u64)], at: u64) -> bool {
    windows
        .iter()
        .any(|&(from, to)| at + GRACE_MS >= from && at <= to + GRACE_MS)
}

/// Whether a websocket gap from `lost` to `back` is one of `losses`: it
/// began inside one (with grace) and was over within [`SOCKET_BACK_MS`] of
/// its end.
pub(super) fn gap_explained(losses: &[(u64, u64)], lost: u64, back: u64) -> bool {
    losses.iter().any(|&(from, to)| {
        lost + GRACE_MS >= from && lost <= to + GRACE_MS && back <= to + SOCKET_BACK_MS
    })
}

/// Why a fault did not play out as the rehearsal meant it to (a killed host
/// that did not come back, no leader to kill…), as a violation line.
pub(super) fn fault_failure(fault: &Played) -> Option<String> {
    let d = &fault.detail;
    let broken = match fault.fault {
        "host-kill" => (d["restarted"] != true)
            .then(|| format!("the killed host did not come back: {}", d["restart_error"]))
            .or_else(|| {
                d["takeover"]
                    .is_null()
                    .then(|| "no host took the dispatcher lease over".to_string())
            })
            .or_else(|| {
                (d["was_leader"] == false)
                    .then(|| "no host held the dispatcher lease when the kill came".to_string())
            }),
        "scheduler-swap" => d["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["upload"] != 201 || h["activate"] != 200)
            .map(|h| format!("a host did not take the new scheduler: {h}")),
        "redis-restart" => {
            (d["restarted"] != true).then(|| format!("redis did not come back: {}", d["error"]))
        }
        "hostile-plugin" if d["skipped"].is_null() => {
            (d["disabled_by_the_leader"] != true).then(|| {
                format!(
                    "the leader did not disable the hostile plugin: {}",
                    d["hosts"]
                )
            })
        }
        _ => None,
    };
    broken.map(|broken| format!("{}: {broken}", fault.fault))
}
