//! The `b300-on-demand` policy: heavy LTX-2 jobs only on B300, on-demand
//! first; every other job on the cheapest healthy pool with room.
//!
//! A pool is a *candidate* only when the host reports it healthy and it has
//! free capacity (`in-flight < capacity`; a pool with capacity 0 is always
//! full). A spot pool is *reliable* while its `recent-failures` stay below
//! [`UNRELIABLE_FAILURES`]. GPU names and the workflow kind compare
//! case-insensitively, ignoring surrounding spaces.
//!
//! # Heavy jobs
//!
//! A job is heavy when its workflow kind is `ltx2` and
//! `width * height * frames` is strictly above [`HEAVY_PIXEL_FRAMES`]
//! (1280 × 720 × 97: a 720p clip of 97 frames is still light, one frame more
//! is heavy). A job whose size is unknown (zeros from the validator) is light.
//!
//! Heavy jobs run only on B300 pools, because a large LTX-2 render may run
//! out of memory on an H200 (or any smaller GPU) and fail after minutes of
//! GPU time; waiting for a B300 is cheaper than a crash. Ranked best first:
//!
//! 1. B300 on-demand, warm, then cold — never reclaimed, so a long render is
//!    never lost halfway;
//! 2. reliable B300 spot, warm, then cold — only when the job has *not*
//!    already been lost to a reclaim (`lost-to-reclaim`); an unreliable B300
//!    spot pool is never used for a heavy job, as a reclaim there wastes the
//!    most GPU time.
//!
//! Otherwise the job waits, with a reason naming the B300 pools and the
//! memory rule. Within a class: fewer recent failures, then the lower price
//! per hour, then the lower `in-flight / capacity` ratio, then list order.
//!
//! # Light jobs
//!
//! Every other job may run on any GPU; cost decides. Ranked best first by:
//!
//! 1. after a reclaim (`lost-to-reclaim`), on-demand before spot (spot is
//!    still used when no on-demand pool has room, so the job never stalls);
//! 2. reliable pools before unreliable spot pools;
//! 3. warm before cold (a cold start costs minutes an attendee waits);
//! 4. the lower price per hour (the point of the policy);
//! 5. fewer recent failures, then the lower `in-flight / capacity` ratio,
//!    then list order.
//!
//! A NaN price counts as the most expensive. The function never panics: an
//! empty list, capacity 0, `u32::MAX` sizes and counters and NaN prices are
//! all handled.

use comfyume_plugin_sdk::select::{
    best, busy, by_failures_then_price, by_price_then_failures, has_room, is_gpu, list,
    no_pool_reason, reliable,
};
use comfyume_plugin_sdk::selector::{Backend, JobInfo};
use comfyume_plugin_sdk::types::Tier;

pub use comfyume_plugin_sdk::select::UNRELIABLE_FAILURES;

/// `width * height * frames` above which an `ltx2` job is heavy.
pub const HEAVY_PIXEL_FRAMES: u64 = 1280 * 720 * 97;

/// The workflow kind that can be heavy.
pub const HEAVY_KIND: &str = "ltx2";

/// The only GPU model heavy jobs may use.
pub const HEAVY_GPU: &str = "B300";

/// True when `job` is an LTX-2 job too large for anything but a B300.
pub fn is_heavy(job: &JobInfo) -> bool {
    let cost = &job.cost;
    let size = u128::from(cost.width) * u128::from(cost.height) * u128::from(cost.frames);
    job.workflow_kind.trim().eq_ignore_ascii_case(HEAVY_KIND)
        && size > u128::from(HEAVY_PIXEL_FRAMES)
}

/// Chooses the pool for `job`: an index into `backends`, or why none fits.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    if is_heavy(job) {
        best(
            backends,
            |pool| heavy_class(job, pool),
            by_failures_then_price,
        )
        .ok_or_else(|| heavy_reason(job, backends))
    } else {
        best(
            backends,
            |pool| light_class(job, pool),
            by_price_then_failures,
        )
        .ok_or_else(|| light_reason(job, backends))
    }
}

fn is_heavy_gpu(pool: &Backend) -> bool {
    is_gpu(pool, HEAVY_GPU)
}

/// Heavy jobs: B300 on-demand (0 warm, 1 cold), then reliable B300 spot
/// (2, 3) unless the job was lost to a reclaim. Ranked by class, fewer
/// failures, lower price, lower load, list order.
fn heavy_class(job: &JobInfo, pool: &Backend) -> Option<u8> {
    if !has_room(pool) || !is_heavy_gpu(pool) {
        return None;
    }
    let cold = u8::from(!pool.warm);
    match pool.tier {
        Tier::OnDemand => Some(cold),
        Tier::Spot if !job.lost_to_reclaim && reliable(pool) => Some(2 + cold),
        Tier::Spot => None,
    }
}

/// Light jobs: spot after a reclaim last, unreliable after reliable, cold
/// after warm. Ranked by class, lower price, fewer failures, lower load,
/// list order.
fn light_class(job: &JobInfo, pool: &Backend) -> Option<u8> {
    if !has_room(pool) {
        return None;
    }
    let spot_after_reclaim = job.lost_to_reclaim && matches!(pool.tier, Tier::Spot);
    Some(4 * u8::from(spot_after_reclaim) + 2 * u8::from(!reliable(pool)) + u8::from(!pool.warm))
}

fn heavy_reason(job: &JobInfo, backends: &[Backend]) -> String {
    let cost = &job.cost;
    let b300: Vec<(&Backend, String)> = backends
        .iter()
        .filter(|pool| is_heavy_gpu(pool))
        .map(|pool| {
            let status = busy(pool).unwrap_or_else(|| {
                if job.lost_to_reclaim {
                    "spot, skipped: the job was lost to a spot reclaim".into()
                } else {
                    format!(
                        "spot, unreliable ({} recent failures)",
                        pool.recent_failures
                    )
                }
            });
            (pool, status)
        })
        .collect();
    let others = match backends.len() - b300.len() {
        0 => String::new(),
        1 => " (1 pool of another GPU not used)".into(),
        n => format!(" ({n} pools of other GPUs not used)"),
    };
    let pools = if b300.is_empty() {
        format!("no {HEAVY_GPU} pool is configured")
    } else {
        list(&b300)
    };
    format!(
        "heavy LTX-2 job {} ({}x{}, {} frames) needs a {HEAVY_GPU} pool, as it may run \
         out of memory on an H200 or smaller GPU{others}: {pools}; job waits",
        job.id, cost.width, cost.height, cost.frames
    )
}

fn light_reason(job: &JobInfo, backends: &[Backend]) -> String {
    let pools: Vec<(&Backend, String)> = backends
        .iter()
        .map(|pool| (pool, busy(pool).unwrap_or_else(|| "free".into())))
        .collect();
    no_pool_reason(job, &pools, &[], "")
}

#[cfg(test)]
mod tests;
