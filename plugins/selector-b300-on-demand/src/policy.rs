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

use core::cmp::Ordering;
use core::fmt::Write as _;

use crate::comfyume::plugin::types::Tier;
use crate::exports::comfyume::plugin::selection::{Backend, JobInfo};

/// `width * height * frames` above which an `ltx2` job is heavy.
pub const HEAVY_PIXEL_FRAMES: u64 = 1280 * 720 * 97;

/// The workflow kind that can be heavy.
pub const HEAVY_KIND: &str = "ltx2";

/// The only GPU model heavy jobs may use.
pub const HEAVY_GPU: &str = "B300";

/// Recent failures at which a spot pool counts as unreliable.
pub const UNRELIABLE_FAILURES: u32 = 3;

/// Pools named one by one in an error before the rest are only counted.
const MAX_LISTED: usize = 8;

/// True when `job` is an LTX-2 job too large for anything but a B300.
pub fn is_heavy(job: &JobInfo) -> bool {
    let cost = &job.cost;
    let size = u128::from(cost.width) * u128::from(cost.height) * u128::from(cost.frames);
    job.workflow_kind.trim().eq_ignore_ascii_case(HEAVY_KIND)
        && size > u128::from(HEAVY_PIXEL_FRAMES)
}

/// Chooses the pool for `job`: an index into `backends`, or why none fits.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    let heavy = is_heavy(job);
    let mut best: Option<Candidate<'_>> = None;
    for (index, pool) in backends.iter().enumerate() {
        let class = if heavy {
            heavy_class(job, pool)
        } else {
            light_class(job, pool)
        };
        let Some(class) = class else {
            continue;
        };
        let candidate = Candidate { class, index, pool };
        let better = match &best {
            None => true,
            Some(b) if heavy => rank_heavy(&candidate, b) == Ordering::Less,
            Some(b) => rank_light(&candidate, b) == Ordering::Less,
        };
        if better {
            best = Some(candidate);
        }
    }
    match best.and_then(|b| u32::try_from(b.index).ok()) {
        Some(index) => Ok(index),
        None if heavy => Err(heavy_reason(job, backends)),
        None => Err(light_reason(job, backends)),
    }
}

/// A pool that can take the job, with its class (lower is better).
struct Candidate<'a> {
    class: u8,
    index: usize,
    pool: &'a Backend,
}

fn has_room(pool: &Backend) -> bool {
    pool.healthy && pool.in_flight < pool.capacity
}

fn is_heavy_gpu(pool: &Backend) -> bool {
    pool.gpu.trim().eq_ignore_ascii_case(HEAVY_GPU)
}

fn reliable(pool: &Backend) -> bool {
    matches!(pool.tier, Tier::OnDemand) || pool.recent_failures < UNRELIABLE_FAILURES
}

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

fn light_class(job: &JobInfo, pool: &Backend) -> Option<u8> {
    if !has_room(pool) {
        return None;
    }
    let spot_after_reclaim = job.lost_to_reclaim && matches!(pool.tier, Tier::Spot);
    Some(4 * u8::from(spot_after_reclaim) + 2 * u8::from(!reliable(pool)) + u8::from(!pool.warm))
}

/// Heavy jobs: class, fewer failures, lower price, lower load, list order.
fn rank_heavy(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (x, y) = (a.pool, b.pool);
    a.class
        .cmp(&b.class)
        .then(x.recent_failures.cmp(&y.recent_failures))
        .then(price(x).total_cmp(&price(y)))
        .then(load(x, y))
        .then(a.index.cmp(&b.index))
}

/// Light jobs: class, lower price, fewer failures, lower load, list order.
fn rank_light(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (x, y) = (a.pool, b.pool);
    a.class
        .cmp(&b.class)
        .then(price(x).total_cmp(&price(y)))
        .then(x.recent_failures.cmp(&y.recent_failures))
        .then(load(x, y))
        .then(a.index.cmp(&b.index))
}

/// Price per hour for ranking; NaN (unknown) sorts after every real price.
fn price(pool: &Backend) -> f64 {
    if pool.price_per_hour.is_nan() {
        f64::INFINITY
    } else {
        pool.price_per_hour
    }
}

/// Compares `in-flight / capacity` exactly, without floating point.
fn load(a: &Backend, b: &Backend) -> Ordering {
    let left = u64::from(a.in_flight) * u64::from(b.capacity);
    let right = u64::from(b.in_flight) * u64::from(a.capacity);
    left.cmp(&right)
}

/// Why a pool cannot take the job right now, if it is unhealthy or full.
fn busy(pool: &Backend) -> Option<String> {
    if !pool.healthy {
        Some("unhealthy".into())
    } else if pool.in_flight >= pool.capacity {
        Some(format!("full {}/{}", pool.in_flight, pool.capacity))
    } else {
        None
    }
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
    if backends.is_empty() {
        return format!("no GPU pool is configured, so job {} waits", job.id);
    }
    let pools: Vec<(&Backend, String)> = backends
        .iter()
        .map(|pool| (pool, busy(pool).unwrap_or_else(|| "free".into())))
        .collect();
    let full = backends
        .iter()
        .filter(|p| p.healthy && !has_room(p))
        .count();
    let unhealthy = backends.iter().filter(|p| !p.healthy).count();
    let mut counts = Vec::new();
    for (count, what) in [(full, "full"), (unhealthy, "unhealthy")] {
        if count > 0 {
            counts.push(format!("{count} {what}"));
        }
    }
    format!(
        "no pool can take job {} ({}): {}; job waits",
        job.id,
        counts.join(", "),
        list(&pools)
    )
}

/// `name (GPU tier): status, …`, naming at most [`MAX_LISTED`] pools.
fn list(pools: &[(&Backend, String)]) -> String {
    let mut out = String::new();
    for (n, (pool, status)) in pools.iter().take(MAX_LISTED).enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let tier = match pool.tier {
            Tier::Spot => "spot",
            Tier::OnDemand => "on-demand",
        };
        let _ = write!(out, "{} ({} {tier}): {status}", pool.name, pool.gpu);
    }
    if pools.len() > MAX_LISTED {
        let _ = write!(out, " and {} more", pools.len() - MAX_LISTED);
    }
    out
}

#[cfg(test)]
mod tests;
