//! Example selector `ltx2-to-b300`, written outside the built-ins with the
//! Rust SDK: long LTX-2 videos go to a B300 pool, every other job to the
//! cheapest healthy pool with room.
//!
//! - A job is *heavy* when its workflow kind is `ltx2` (any LTX-2 or 2.3
//!   template, as the built-in `ltx2` validator names them) and its cost
//!   estimate has more than [`FRAME_BUDGET`] frames. A heavy job runs on a
//!   B300 pool (the H200's 141 GB hold a long LTX-2 render only with
//!   offloading; the B300's 288 GB do not need it): the cheapest B300 pool
//!   with room, then the one with fewer recent failures, the lower load, the
//!   earlier in the list. When every B300 pool is full or unhealthy the job
//!   waits for one, with a reason naming the pools. Only when no B300 pool is
//!   configured at all is a heavy job treated like any other (a config
//!   without B300 must not stall LTX-2 forever).
//! - Every other job takes the cheapest pool that is healthy and has room
//!   (same tie-breaks).
//!
//! The function never panics: empty lists, capacity 0 and NaN prices are
//! handled by the SDK's helpers.

use comfyume_plugin_sdk::select::{
    best, busy, by_price_then_failures, has_room, is_gpu, no_pool_reason,
};
use comfyume_plugin_sdk::selector::{Backend, Guest, JobInfo, PluginInfo, selection};
use comfyume_plugin_sdk::types::PluginKind;

/// Frames above which an LTX-2 job needs a B300: 121 frames (about 5 s at
/// 24 fps) is what the workshop's LTX-2 templates render.
pub const FRAME_BUDGET: u32 = 121;

/// The GPU that heavy jobs go to (compared case-insensitively).
pub const BIG_GPU: &str = "B300";

/// True for an LTX-2 job above the frame budget.
pub fn is_heavy(job: &JobInfo) -> bool {
    job.workflow_kind.trim().eq_ignore_ascii_case("ltx2") && job.cost.frames > FRAME_BUDGET
}

/// Chooses the pool for `job`: an index into `backends`, or why none fits.
pub fn select(job: &JobInfo, backends: &[Backend]) -> Result<u32, String> {
    let b300_configured = backends.iter().any(|p| is_gpu(p, BIG_GPU));
    let needs_b300 = is_heavy(job) && b300_configured;
    let class =
        |pool: &Backend| (has_room(pool) && (!needs_b300 || is_gpu(pool, BIG_GPU))).then_some(0);
    if let Some(index) = best(backends, class, by_price_then_failures) {
        return Ok(index);
    }
    let statuses: Vec<(&Backend, String)> = backends
        .iter()
        .map(|pool| {
            let status = busy(pool).unwrap_or_else(|| {
                if needs_b300 && !is_gpu(pool, BIG_GPU) {
                    "not a B300".into()
                } else {
                    "free".into()
                }
            });
            (pool, status)
        })
        .collect();
    let skipped = statuses.iter().filter(|(_, s)| s == "not a B300").count();
    let note = if needs_b300 {
        format!(
            "; {} frames is above the {FRAME_BUDGET}-frame budget, so it waits for a B300",
            job.cost.frames
        )
    } else {
        String::new()
    };
    Err(no_pool_reason(
        job,
        &statuses,
        &[(skipped, "not B300")],
        &note,
    ))
}

/// The component's exports.
pub struct Ltx2ToB300;

impl selection::Guest for Ltx2ToB300 {
    fn select(job: JobInfo, backends: Vec<Backend>) -> Result<u32, String> {
        select(&job, &backends)
    }
}

impl Guest for Ltx2ToB300 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "ltx2-to-b300".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Selector,
            summary: format!(
                "LTX-2 videos over {FRAME_BUDGET} frames to the cheapest free B300 pool; \
                 everything else to the cheapest healthy pool."
            ),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_selector!(Ltx2ToB300);

#[cfg(test)]
mod tests {
    use super::*;
    use comfyume_plugin_sdk::testing::pools::{job, name_of, pool};
    use comfyume_plugin_sdk::types::Tier;

    fn ltx2(frames: u32) -> JobInfo {
        let mut j = job();
        j.workflow_kind = "ltx2".into();
        j.cost.frames = frames;
        j
    }

    fn pools() -> Vec<Backend> {
        vec![
            pool("h200-spot", "H200", Tier::Spot),
            pool("h200-od", "H200", Tier::OnDemand),
            pool("b300-spot", "B300", Tier::Spot),
            pool("b300-od", "B300", Tier::OnDemand),
        ]
    }

    #[test]
    fn long_ltx2_goes_to_the_cheapest_b300_and_the_rest_to_the_cheapest_pool() {
        let p = pools();
        assert_eq!(name_of(&p, select(&ltx2(257), &p)), "b300-spot");
        assert_eq!(name_of(&p, select(&ltx2(FRAME_BUDGET), &p)), "h200-spot");
        assert_eq!(name_of(&p, select(&job(), &p)), "h200-spot");
    }

    #[test]
    fn long_ltx2_waits_for_a_b300_but_not_when_none_is_configured() {
        let mut p = pools();
        p[2].healthy = false;
        p[3].in_flight = p[3].capacity;
        let reason = select(&ltx2(257), &p).unwrap_err();
        assert!(reason.contains("waits for a B300"), "{reason}");
        let h200_only = &pools()[..2];
        assert_eq!(
            name_of(h200_only, select(&ltx2(257), h200_only)),
            "h200-spot"
        );
        assert!(select(&job(), &[]).is_err());
    }
}
