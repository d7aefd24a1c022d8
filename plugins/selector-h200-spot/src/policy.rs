//! The `h200-spot` policy: cheap H200 spot capacity first, H200 on-demand as
//! the safe fallback, any other free pool only as a last resort.
//!
//! A pool is a *candidate* only when the host reports it healthy and it has
//! free capacity (`in-flight < capacity`; a pool with capacity 0 is always
//! full). A spot pool is *reliable* while its `recent-failures` stay below
//! [`UNRELIABLE_FAILURES`]; at or above it the pool counts as unhealthy for
//! the spot preference (a burst of reclaims usually means more are coming).
//!
//! Candidates are ranked by class, best first:
//!
//! 1. reliable H200 spot, warm — the cheapest way to run without a cold start;
//! 2. reliable H200 spot, cold;
//! 3. H200 on-demand, warm;
//! 4. H200 on-demand, cold;
//! 5. on-demand of any other GPU, warm, then cold (last resort);
//! 6. any other spot pool (unreliable H200 spot included): reliable warm,
//!    reliable cold, unreliable warm, unreliable cold (last resort).
//!
//! Classes 1–2 are skipped when the job was already lost to a spot reclaim
//! (`lost-to-reclaim`): it goes straight to on-demand, because losing the
//! same job twice costs an attendee more than the price difference. While any
//! on-demand pool is healthy such a job waits for it (even when it is full)
//! rather than returning to spot; only when no on-demand pool is healthy at
//! all may it use spot again (class 6, which then includes reliable H200
//! spot), so a spot-only setup never stalls it forever.
//!
//! Within a class the pool with fewer recent failures wins, then the lower
//! price per hour (a NaN price counts as the most expensive), then the lower
//! `in-flight / capacity` ratio, then the earlier pool in the list.
//!
//! Why other GPUs at all: the H200 preference is about price, not about
//! correctness, so when no H200 pool can take the job right now a healthy
//! pool of another GPU runs it rather than letting a workshop stall on a
//! GPU-model preference. On-demand is preferred there, as those pools are
//! the ones the operator pays to keep safe. An operator who wants H200 only
//! configures H200 pools only.
//!
//! When nothing fits the job waits, and the error names every pool and why it
//! was not used, e.g. `no pool can take job 7 (2 full): h200-spot (H200
//! spot): full 4/4, h200-od (H200 on-demand): full 2/2; job waits`.
//!
//! The function never panics: an empty list, capacity 0, `u32::MAX` counters
//! and NaN prices are all handled.

use comfyume_plugin_sdk::select::{
    best, busy, by_failures_then_price, has_room, is_gpu, no_pool_reason, reliable,
};
use comfyume_plugin_sdk::selector::{Backend, JobInfo};
use comfyume_plugin_sdk::types::Tier;

pub use comfyume_plugin_sdk::select::UNRELIABLE_FAILURES;

/// The GPU model this selector prefers (compared case-insensitively).
pub const PREFERRED_GPU: &str = "H200";

/// Chooses the pool for `job`: an index into `backends`, or why none fits.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    let spot_fallback = spot_fallback_allowed(job, backends);
    best(
        backends,
        |pool| class(job, pool, spot_fallback),
        by_failures_then_price,
    )
    .ok_or_else(|| reason(job, backends, spot_fallback))
}

/// May a job use a spot pool from the last-resort class?
fn spot_fallback_allowed(job: &JobInfo, backends: &[Backend]) -> bool {
    !job.lost_to_reclaim
        || !backends
            .iter()
            .any(|b| b.healthy && matches!(b.tier, Tier::OnDemand))
}

/// The pool's class (lower is better), or `None` when it cannot take the job.
fn class(job: &JobInfo, pool: &Backend, spot_fallback: bool) -> Option<u8> {
    if !has_room(pool) {
        return None;
    }
    let cold = u8::from(!pool.warm);
    let preferred = is_gpu(pool, PREFERRED_GPU);
    let reliable = reliable(pool);
    match pool.tier {
        Tier::Spot if preferred && reliable && !job.lost_to_reclaim => Some(cold),
        Tier::OnDemand if preferred => Some(2 + cold),
        Tier::OnDemand => Some(4 + cold),
        Tier::Spot if spot_fallback => Some(6 + 2 * u8::from(!reliable) + cold),
        Tier::Spot => None,
    }
}

/// A human reason naming every pool and why it could not take the job.
fn reason(job: &JobInfo, backends: &[Backend], spot_fallback: bool) -> String {
    let mut skipped = 0;
    let pools: Vec<(&Backend, String)> = backends
        .iter()
        .map(|pool| {
            let status = busy(pool).unwrap_or_else(|| {
                if matches!(pool.tier, Tier::Spot) && !spot_fallback {
                    skipped += 1;
                    "spot, skipped after a reclaim".into()
                } else {
                    "free".into()
                }
            });
            (pool, status)
        })
        .collect();
    let after_reclaim = if job.lost_to_reclaim && !spot_fallback {
        "; it was lost to a spot reclaim, so it waits for an on-demand pool"
    } else {
        ""
    };
    no_pool_reason(job, &pools, &[(skipped, "skipped")], after_reclaim)
}

#[cfg(test)]
mod tests;
