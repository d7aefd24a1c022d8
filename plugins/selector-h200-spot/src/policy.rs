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

use core::cmp::Ordering;
use core::fmt::Write as _;

use crate::comfyume::plugin::types::Tier;
use crate::exports::comfyume::plugin::selection::{Backend, JobInfo};

/// Recent failures at which a spot pool stops being preferred.
pub const UNRELIABLE_FAILURES: u32 = 3;

/// The GPU model this selector prefers (compared case-insensitively).
pub const PREFERRED_GPU: &str = "H200";

/// Pools named one by one in an error before the rest are only counted.
const MAX_LISTED: usize = 8;

/// Chooses the pool for `job`: an index into `backends`, or why none fits.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    let spot_fallback = spot_fallback_allowed(job, backends);
    let mut best: Option<Candidate<'_>> = None;
    for (index, pool) in backends.iter().enumerate() {
        let Some(class) = class(job, pool, spot_fallback) else {
            continue;
        };
        let candidate = Candidate { class, index, pool };
        if best
            .as_ref()
            .is_none_or(|b| rank(&candidate, b) == Ordering::Less)
        {
            best = Some(candidate);
        }
    }
    match best.and_then(|b| u32::try_from(b.index).ok()) {
        Some(index) => Ok(index),
        None => Err(reason(job, backends, spot_fallback)),
    }
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
    if !pool.healthy || pool.in_flight >= pool.capacity {
        return None;
    }
    let cold = u8::from(!pool.warm);
    let preferred = pool.gpu.trim().eq_ignore_ascii_case(PREFERRED_GPU);
    let reliable = pool.recent_failures < UNRELIABLE_FAILURES;
    match pool.tier {
        Tier::Spot if preferred && reliable && !job.lost_to_reclaim => Some(cold),
        Tier::OnDemand if preferred => Some(2 + cold),
        Tier::OnDemand => Some(4 + cold),
        Tier::Spot if spot_fallback => Some(6 + 2 * u8::from(!reliable) + cold),
        Tier::Spot => None,
    }
}

/// A pool that can take the job, with its class.
struct Candidate<'a> {
    class: u8,
    index: usize,
    pool: &'a Backend,
}

/// Orders candidate `a` against candidate `b`: `Less` means `a` is better.
fn rank(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (x, y) = (a.pool, b.pool);
    a.class
        .cmp(&b.class)
        .then(x.recent_failures.cmp(&y.recent_failures))
        .then(price(x).total_cmp(&price(y)))
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

/// A human reason naming every pool and why it could not take the job.
fn reason(job: &JobInfo, backends: &[Backend], spot_fallback: bool) -> String {
    if backends.is_empty() {
        return format!("no GPU pool is configured, so job {} waits", job.id);
    }
    let (mut full, mut unhealthy, mut skipped) = (0usize, 0usize, 0usize);
    let mut list = String::new();
    for (n, pool) in backends.iter().enumerate() {
        let status = if !pool.healthy {
            unhealthy += 1;
            "unhealthy".to_string()
        } else if pool.in_flight >= pool.capacity {
            full += 1;
            format!("full {}/{}", pool.in_flight, pool.capacity)
        } else if matches!(pool.tier, Tier::Spot) && !spot_fallback {
            skipped += 1;
            "spot, skipped after a reclaim".to_string()
        } else {
            "free".to_string()
        };
        if n < MAX_LISTED {
            if n > 0 {
                list.push_str(", ");
            }
            let _ = write!(
                list,
                "{} ({} {}): {status}",
                pool.name,
                pool.gpu,
                tier_name(pool.tier)
            );
        }
    }
    if backends.len() > MAX_LISTED {
        let _ = write!(list, " and {} more", backends.len() - MAX_LISTED);
    }
    let mut counts = Vec::new();
    for (count, what) in [
        (full, "full"),
        (unhealthy, "unhealthy"),
        (skipped, "skipped"),
    ] {
        if count > 0 {
            counts.push(format!("{count} {what}"));
        }
    }
    let after_reclaim = if job.lost_to_reclaim && !spot_fallback {
        "; it was lost to a spot reclaim, so it waits for an on-demand pool"
    } else {
        ""
    };
    let counts = if counts.is_empty() {
        String::new()
    } else {
        format!(" ({})", counts.join(", "))
    };
    format!(
        "no pool can take job {}{counts}{after_reclaim}: {list}; job waits",
        job.id
    )
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Spot => "spot",
        Tier::OnDemand => "on-demand",
    }
}

#[cfg(test)]
mod tests;
