//! Helpers for selectors: which pools can take a job at all, how to break
//! ties between them, and how to say why a job must wait.
//!
//! - A pool *has room* when the host reports it healthy and its
//!   `in-flight < capacity` (a pool with capacity 0 is always full).
//! - A spot pool is *reliable* while its `recent-failures` stay below
//!   [`UNRELIABLE_FAILURES`] (a burst of reclaims usually means more are
//!   coming); an on-demand pool is never reclaimed and always reliable.
//! - A policy gives each pool that may take the job a *class* (lower is
//!   better); [`best`] keeps the best [`Candidate`] by a ranking such as
//!   [`by_failures_then_price`] or [`by_price_then_failures`], which end in
//!   the same tie-breaks: a NaN price counts as the most expensive
//!   ([`price`]), then the lower `in-flight / capacity` ratio ([`load`]),
//!   then the earlier pool in the list.
//! - When nothing fits, [`no_pool_reason`] names every pool and its status,
//!   e.g. `no pool can take job 7 (2 full): h200-spot (H200 spot): full 4/4,
//!   h200-od (H200 on-demand): full 2/2; job waits`.
//!
//! Everything here is total: empty lists, capacity 0, `u32::MAX` counters
//! and NaN prices never panic.

use core::cmp::Ordering;
use core::fmt::Write as _;

use crate::selector::{Backend, JobInfo};
use crate::types::Tier;

/// Recent failures at which a spot pool counts as unreliable.
pub const UNRELIABLE_FAILURES: u32 = 3;

/// Pools named one by one in a reason before the rest are only counted.
pub const MAX_LISTED: usize = 8;

/// True when the pool is healthy and has free capacity.
pub fn has_room(pool: &Backend) -> bool {
    pool.healthy && pool.in_flight < pool.capacity
}

/// True for an on-demand pool, and for a spot pool with fewer than
/// [`UNRELIABLE_FAILURES`] recent failures.
pub fn reliable(pool: &Backend) -> bool {
    matches!(pool.tier, Tier::OnDemand) || pool.recent_failures < UNRELIABLE_FAILURES
}

/// True when the pool's GPU is `gpu`, compared case-insensitively and
/// ignoring surrounding spaces.
pub fn is_gpu(pool: &Backend, gpu: &str) -> bool {
    pool.gpu.trim().eq_ignore_ascii_case(gpu)
}

/// Price per hour for ranking; NaN (unknown) sorts after every real price.
pub fn price(pool: &Backend) -> f64 {
    if pool.price_per_hour.is_nan() {
        f64::INFINITY
    } else {
        pool.price_per_hour
    }
}

/// Compares `in-flight / capacity` of two pools exactly, without floating
/// point.
pub fn load(a: &Backend, b: &Backend) -> Ordering {
    let left = u64::from(a.in_flight) * u64::from(b.capacity);
    let right = u64::from(b.in_flight) * u64::from(a.capacity);
    left.cmp(&right)
}

/// The tier as reasons name it: `spot` or `on-demand`.
pub fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Spot => "spot",
        Tier::OnDemand => "on-demand",
    }
}

/// A pool that can take the job, with the class its policy gave it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The policy's class: lower is better.
    pub class: u8,
    /// The pool's index in the backend list.
    pub index: usize,
    /// The pool.
    pub pool: &'a Backend,
}

/// Class, fewer recent failures, lower price, lower load, list order:
/// `Less` means `a` is better.
pub fn by_failures_then_price(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (x, y) = (a.pool, b.pool);
    a.class
        .cmp(&b.class)
        .then(x.recent_failures.cmp(&y.recent_failures))
        .then(price(x).total_cmp(&price(y)))
        .then(load(x, y))
        .then(a.index.cmp(&b.index))
}

/// Class, lower price, fewer recent failures, lower load, list order:
/// `Less` means `a` is better.
pub fn by_price_then_failures(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (x, y) = (a.pool, b.pool);
    a.class
        .cmp(&b.class)
        .then(price(x).total_cmp(&price(y)))
        .then(x.recent_failures.cmp(&y.recent_failures))
        .then(load(x, y))
        .then(a.index.cmp(&b.index))
}

/// The index of the best pool: among the pools `class` gives a class to,
/// the first that `rank` orders before every other. `None` when no pool
/// has a class.
pub fn best(
    backends: &[Backend],
    mut class: impl FnMut(&Backend) -> Option<u8>,
    rank: impl Fn(&Candidate<'_>, &Candidate<'_>) -> Ordering,
) -> Option<u32> {
    let mut best: Option<Candidate<'_>> = None;
    for (index, pool) in backends.iter().enumerate() {
        let Some(class) = class(pool) else {
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
    best.and_then(|b| u32::try_from(b.index).ok())
}

/// Why a pool cannot take any job right now: `unhealthy`, or `full n/m`.
pub fn busy(pool: &Backend) -> Option<String> {
    if !pool.healthy {
        Some("unhealthy".into())
    } else if pool.in_flight >= pool.capacity {
        Some(format!("full {}/{}", pool.in_flight, pool.capacity))
    } else {
        None
    }
}

/// `name (GPU tier): status, …`, naming at most [`MAX_LISTED`] pools and
/// counting the rest.
pub fn list(pools: &[(&Backend, String)]) -> String {
    let mut out = String::new();
    for (n, (pool, status)) in pools.iter().take(MAX_LISTED).enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{} ({} {}): {status}",
            pool.name,
            pool.gpu,
            tier_name(pool.tier)
        );
    }
    if pools.len() > MAX_LISTED {
        let _ = write!(out, " and {} more", pools.len() - MAX_LISTED);
    }
    out
}

/// The reason a job waits when no pool can take it: `no pool can take job
/// 7 (2 full, 1 unhealthy, …)<note>: <list>; job waits`.
///
/// `pools` is every pool with its status (see [`busy`]); full and unhealthy
/// pools are counted here, and `extra` adds the policy's own counts (e.g.
/// `(1, "skipped")`); zero counts are left out. `note` (e.g. `; it was lost
/// to …`) goes before the list. With no pools at all the reason says that
/// none is configured.
pub fn no_pool_reason(
    job: &JobInfo,
    pools: &[(&Backend, String)],
    extra: &[(usize, &str)],
    note: &str,
) -> String {
    if pools.is_empty() {
        return format!("no GPU pool is configured, so job {} waits", job.id);
    }
    let full = pools
        .iter()
        .filter(|(p, _)| p.healthy && p.in_flight >= p.capacity)
        .count();
    let unhealthy = pools.iter().filter(|(p, _)| !p.healthy).count();
    let counts: Vec<String> = [(full, "full"), (unhealthy, "unhealthy")]
        .iter()
        .chain(extra)
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
    let counts = if counts.is_empty() {
        String::new()
    } else {
        format!(" ({})", counts.join(", "))
    };
    format!(
        "no pool can take job {}{counts}{note}: {}; job waits",
        job.id,
        list(pools)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pools::{job, pool};

    fn with(base: Backend, edit: impl FnOnce(&mut Backend)) -> Backend {
        let mut pool = base;
        edit(&mut pool);
        pool
    }

    #[test]
    fn room_needs_health_and_free_capacity() {
        let free = pool("a", "H200", Tier::Spot);
        assert!(has_room(&free));
        assert!(!has_room(&with(free.clone(), |p| p.healthy = false)));
        assert!(!has_room(&with(free.clone(), |p| p.in_flight = 4)));
        assert!(!has_room(&with(free.clone(), |p| p.in_flight = 9)));
        assert!(!has_room(&with(free, |p| {
            p.in_flight = 0;
            p.capacity = 0;
        })));
    }

    #[test]
    fn only_spot_pools_become_unreliable_at_the_threshold() {
        let spot = pool("s", "H200", Tier::Spot);
        let od = pool("o", "H200", Tier::OnDemand);
        let failing = |p: &Backend, n| with(p.clone(), |p| p.recent_failures = n);
        assert!(reliable(&failing(&spot, UNRELIABLE_FAILURES - 1)));
        assert!(!reliable(&failing(&spot, UNRELIABLE_FAILURES)));
        assert!(reliable(&failing(&od, u32::MAX)));
    }

    #[test]
    fn gpu_names_compare_case_insensitively_ignoring_spaces() {
        let p = pool("p", " h200 ", Tier::Spot);
        assert!(is_gpu(&p, "H200"));
        assert!(!is_gpu(&p, "B300"));
    }

    #[test]
    fn nan_prices_sort_last_and_load_compares_exactly() {
        let at = |price: f64| with(pool("p", "H200", Tier::Spot), |p| p.price_per_hour = price);
        assert_eq!(price(&at(f64::NAN)), f64::INFINITY);
        assert_eq!(price(&at(-f64::NAN)), f64::INFINITY);
        assert_eq!(price(&at(2.0)), 2.0);
        assert_eq!(price(&at(f64::NEG_INFINITY)), f64::NEG_INFINITY);

        let loaded = |in_flight, capacity| {
            with(pool("p", "H200", Tier::Spot), |p| {
                p.in_flight = in_flight;
                p.capacity = capacity;
            })
        };
        assert_eq!(load(&loaded(3, 8), &loaded(1, 2)), Ordering::Less);
        assert_eq!(load(&loaded(2, 4), &loaded(1, 2)), Ordering::Equal);
        assert_eq!(
            load(&loaded(u32::MAX, u32::MAX), &loaded(u32::MAX - 1, u32::MAX)),
            Ordering::Greater
        );
    }

    #[test]
    fn the_two_rankings_differ_only_in_failures_against_price() {
        let pools = [
            with(pool("cheap-flaky", "H200", Tier::Spot), |p| {
                p.recent_failures = 1;
                p.price_per_hour = 1.0;
            }),
            with(pool("dear-steady", "H200", Tier::Spot), |p| {
                p.price_per_hour = 2.0;
            }),
        ];
        let any = |_: &Backend| Some(0);
        assert_eq!(best(&pools, any, by_failures_then_price), Some(1));
        assert_eq!(best(&pools, any, by_price_then_failures), Some(0));
    }

    #[test]
    fn best_prefers_the_lower_class_then_load_then_list_order() {
        let pools = [
            with(pool("half", "H200", Tier::Spot), |p| {
                p.in_flight = 1;
                p.capacity = 2;
            }),
            with(pool("three-eighths", "H200", Tier::Spot), |p| {
                p.in_flight = 3;
                p.capacity = 8;
            }),
            pool("twin-a", "H200", Tier::Spot),
            pool("twin-b", "H200", Tier::Spot),
        ];
        let any = |_: &Backend| Some(0);
        assert_eq!(best(&pools, any, by_failures_then_price), Some(2));
        assert_eq!(best(&pools[..2], any, by_price_then_failures), Some(1));
        let class = |p: &Backend| (p.name == "half").then_some(0).or(Some(1));
        assert_eq!(best(&pools, class, by_failures_then_price), Some(0));
        assert_eq!(best(&pools, |_| None, by_failures_then_price), None);
        assert_eq!(best(&[], |_| Some(0), by_failures_then_price), None);
    }

    #[test]
    fn busy_names_unhealthy_before_full() {
        let p = pool("p", "H200", Tier::Spot);
        assert_eq!(busy(&p), None);
        assert_eq!(
            busy(&with(p.clone(), |p| p.in_flight = 4)).as_deref(),
            Some("full 4/4")
        );
        assert_eq!(
            busy(&with(p, |p| {
                p.in_flight = 4;
                p.healthy = false;
            }))
            .as_deref(),
            Some("unhealthy")
        );
    }

    #[test]
    fn reasons_count_name_and_shorten() {
        let pools = [
            with(pool("h200-spot", "H200", Tier::Spot), |p| p.in_flight = 4),
            with(pool("h200-od", "H200", Tier::OnDemand), |p| {
                p.in_flight = 2;
                p.capacity = 2;
            }),
            with(pool("b300-od", "B300", Tier::OnDemand), |p| {
                p.healthy = false
            }),
            pool("b300-spot", "B300", Tier::Spot),
        ];
        let statuses: Vec<(&Backend, String)> = pools
            .iter()
            .map(|p| (p, busy(p).unwrap_or_else(|| "spot, skipped".into())))
            .collect();
        assert_eq!(
            no_pool_reason(
                &job(),
                &statuses,
                &[(1, "skipped"), (0, "ignored")],
                "; note"
            ),
            "no pool can take job 7 (2 full, 1 unhealthy, 1 skipped); note: \
             h200-spot (H200 spot): full 4/4, h200-od (H200 on-demand): full 2/2, \
             b300-od (B300 on-demand): unhealthy, b300-spot (B300 spot): spot, skipped; \
             job waits"
        );
        let free: Vec<(&Backend, String)> = pools[3..].iter().map(|p| (p, "free".into())).collect();
        assert_eq!(
            no_pool_reason(&job(), &free, &[], ""),
            "no pool can take job 7: b300-spot (B300 spot): free; job waits"
        );
        assert_eq!(
            no_pool_reason(&job(), &[], &[], "; ignored"),
            "no GPU pool is configured, so job 7 waits"
        );

        let many: Vec<Backend> = (0..12)
            .map(|n| pool(&format!("pool-{n}"), "H200", Tier::Spot))
            .collect();
        let listed: Vec<(&Backend, String)> = many.iter().map(|p| (p, "free".into())).collect();
        let text = list(&listed);
        assert!(text.contains("pool-7 (H200 spot): free"), "{text}");
        assert!(!text.contains("pool-8"), "{text}");
        assert!(text.ends_with(" and 4 more"), "{text}");
        assert_eq!(list(&[]), "");
    }
}
