//! Built-in scheduler `round-robin`: rotate over the users who have pending jobs.
//!
//! The rotation is computed from the snapshot, not from counters kept in the
//! plugin (a plugin keeps no state between calls): the user whose last
//! dispatch is the longest ago goes next, a user never served goes first, and
//! within a user the oldest job runs first. An attendee who queued ten jobs
//! therefore alternates with one who queued a single job instead of running
//! all ten first. Users at their running cap are skipped.

use comfyume_plugin_sdk::schedule::users_with_room;
use comfyume_plugin_sdk::scheduler::{Guest, PluginInfo, Snapshot, scheduling};
use comfyume_plugin_sdk::types::PluginKind;

/// The component's exports.
pub struct RoundRobin;

/// The policy itself, callable natively (benchmarks) and from the export.
pub fn pick_next(snapshot: &Snapshot) -> Option<u32> {
    // Per user: the index of their oldest pending job (users without one stay None).
    let mut oldest: Vec<Option<usize>> = vec![None; snapshot.users.len()];
    for (index, job) in snapshot.pending.iter().enumerate() {
        let Some(slot) = oldest.get_mut(job.user as usize) else {
            continue; // a job naming an unknown user is never picked
        };
        let older = match *slot {
            None => true,
            Some(current) => {
                let c = &snapshot.pending[current];
                (job.submitted_at_ms, job.id) < (c.submitted_at_ms, c.id)
            }
        };
        if older {
            *slot = Some(index);
        }
    }
    let mut best: Option<((u64, u64, u64), usize)> = None;
    for (user, usage) in users_with_room(snapshot) {
        let Some(index) = oldest[user] else { continue };
        let job = &snapshot.pending[index];
        // Never served sorts as 0: before anyone who was.
        let key = (
            usage
                .last_dispatched_at_ms
                .map_or(0, |t| t.saturating_add(1)),
            job.submitted_at_ms,
            job.id,
        );
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, index));
        }
    }
    best.map(|(_, index)| index as u32)
}

impl scheduling::Guest for RoundRobin {
    fn pick_next(snapshot: Snapshot) -> Option<u32> {
        pick_next(&snapshot)
    }
}

impl Guest for RoundRobin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "round-robin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Scheduler,
            summary: "Rotate over users with pending jobs: least recently served user first."
                .into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_scheduler!(RoundRobin);
