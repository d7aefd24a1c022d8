//! The built-in defaults that decide when a slot's plugin cannot.
//!
//! Native Rust, no Wasm: they must work when the plugin runtime itself is in
//! trouble (pool exhausted, a plugin disabled). They are deliberately plain
//! and safe, not clever: the scheduler is FIFO within per-user caps, the
//! selector takes a healthy pool with room, warm and cheap first, and avoids
//! spot for a job already lost to a reclaim.

use super::api::{Backend, JobInfo, Snapshot, Tier};

/// FIFO over pending jobs, skipping users at their running cap.
pub fn pick_next(snapshot: &Snapshot) -> Option<u32> {
    snapshot
        .pending
        .iter()
        .enumerate()
        .filter(|(_, job)| {
            snapshot
                .users
                .get(job.user as usize)
                .is_some_and(|u| u.max_running.is_none_or(|cap| u.running < cap))
        })
        .min_by_key(|(_, job)| (job.submitted_at_ms, job.id))
        .map(|(index, _)| index as u32)
}

/// A healthy pool with free capacity: warm first, then on-demand for a job
/// lost to a reclaim, then cheapest.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.healthy && b.in_flight < b.capacity)
        .min_by(|(_, a), (_, b)| {
            let spot_penalty = |x: &Backend| job.lost_to_reclaim && x.tier == Tier::Spot;
            (!a.warm)
                .cmp(&!b.warm)
                .then(spot_penalty(a).cmp(&spot_penalty(b)))
                .then(a.price_per_hour.total_cmp(&b.price_per_hour))
        })
        .map(|(index, _)| index as u32)
        .ok_or_else(|| {
            if backends.is_empty() {
                "no GPU pools are configured".to_string()
            } else {
                format!(
                    "no healthy pool has a free slot ({})",
                    backends
                        .iter()
                        .map(|b| format!(
                            "{} {}/{}{}",
                            b.name,
                            b.in_flight,
                            b.capacity,
                            if b.healthy { "" } else { " unhealthy" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
}
