//! Native tests of the `b300-on-demand` policy.

use super::*;
use comfyume_plugin_sdk::testing::pools::{
    extreme, half_and_three_eighths, job, lost, name_of, nan_priced, nothing_free, pool,
    unhealthy_many,
};
use comfyume_plugin_sdk::types::CostEstimate;

/// A light Flux.2 Klein still.
fn light() -> JobInfo {
    job()
}

/// An LTX-2 clip of the given size.
fn ltx2(width: u32, height: u32, frames: u32) -> JobInfo {
    JobInfo {
        workflow_kind: "ltx2".into(),
        cost: CostEstimate {
            frames,
            width,
            height,
            steps: 20,
            gpu_seconds: 120.0,
        },
        ..light()
    }
}

/// A 1080p, 121-frame LTX-2 clip: heavy.
fn heavy() -> JobInfo {
    ltx2(1920, 1080, 121)
}

fn b300_od(name: &str) -> Backend {
    pool(name, "B300", Tier::OnDemand)
}

fn b300_spot(name: &str) -> Backend {
    pool(name, "B300", Tier::Spot)
}

fn h200_od(name: &str) -> Backend {
    pool(name, "H200", Tier::OnDemand)
}

fn h200_spot(name: &str) -> Backend {
    pool(name, "H200", Tier::Spot)
}

/// The usual four pools of a workshop.
fn all_four() -> [Backend; 4] {
    [
        h200_spot("h200-spot"),
        h200_od("h200-od"),
        b300_spot("b300-spot"),
        b300_od("b300-od"),
    ]
}

#[test]
fn heavy_threshold_is_strictly_above_720p_97_frames() {
    assert!(!is_heavy(&ltx2(1280, 720, 97)));
    assert!(is_heavy(&ltx2(1280, 720, 98)));
    assert!(is_heavy(&ltx2(1920, 1080, 121)));
    assert!(!is_heavy(&ltx2(0, 0, 0)), "unknown size is light");
    assert!(is_heavy(&ltx2(u32::MAX, u32::MAX, u32::MAX)), "no overflow");
    let upper = JobInfo {
        workflow_kind: " LTX2 ".into(),
        ..heavy()
    };
    assert!(is_heavy(&upper), "kind compares case-insensitively");
    let other_kind = JobInfo {
        workflow_kind: "flux2-klein".into(),
        ..heavy()
    };
    assert!(!is_heavy(&other_kind), "only ltx2 can be heavy");
}

#[test]
fn heavy_ltx2_goes_to_b300_on_demand_and_light_to_cheapest() {
    let pools = all_four();
    assert_eq!(name_of(&pools, select(&heavy(), &pools)), "b300-od");
    assert_eq!(
        name_of(&pools, select(&ltx2(1280, 720, 97), &pools)),
        "h200-spot"
    );
    assert_eq!(name_of(&pools, select(&light(), &pools)), "h200-spot");
}

#[test]
fn heavy_prefers_warm_b300_on_demand() {
    let pools = [
        Backend {
            warm: false,
            price_per_hour: 1.0,
            ..b300_od("cold")
        },
        b300_od("warm"),
    ];
    assert_eq!(name_of(&pools, select(&heavy(), &pools)), "warm");
}

#[test]
fn heavy_falls_back_to_b300_spot_when_on_demand_is_full() {
    let pools = [
        Backend {
            in_flight: 4,
            ..b300_od("b300-od")
        },
        h200_od("h200-od"),
        Backend {
            warm: false,
            ..b300_spot("b300-spot")
        },
    ];
    assert_eq!(name_of(&pools, select(&heavy(), &pools)), "b300-spot");
}

#[test]
fn heavy_skips_unreliable_b300_spot() {
    let pools = [
        Backend {
            in_flight: 4,
            ..b300_od("b300-od")
        },
        Backend {
            recent_failures: UNRELIABLE_FAILURES,
            ..b300_spot("b300-spot")
        },
    ];
    let err = select(&heavy(), &pools).unwrap_err();
    assert!(
        err.contains("b300-spot (B300 spot): spot, unreliable"),
        "{err}"
    );

    let below = [Backend {
        recent_failures: UNRELIABLE_FAILURES - 1,
        ..b300_spot("b300-spot")
    }];
    assert_eq!(select(&heavy(), &below), Ok(0));
}

#[test]
fn heavy_lost_to_reclaim_goes_to_on_demand_even_if_spot_is_healthy() {
    let pools = [
        b300_spot("b300-spot"),
        Backend {
            warm: false,
            ..b300_od("b300-od")
        },
    ];
    assert_eq!(name_of(&pools, select(&lost(heavy()), &pools)), "b300-od");
}

#[test]
fn heavy_lost_to_reclaim_waits_rather_than_use_spot() {
    let pools = [
        Backend {
            in_flight: 2,
            capacity: 2,
            ..b300_od("b300-od")
        },
        b300_spot("b300-spot"),
        h200_od("h200-od"),
    ];
    let err = select(&lost(heavy()), &pools).unwrap_err();
    assert_eq!(
        err,
        "heavy LTX-2 job 7 (1920x1080, 121 frames) needs a B300 pool, as it may run \
         out of memory on an H200 or smaller GPU (1 pool of another GPU not used): \
         b300-od (B300 on-demand): full 2/2, \
         b300-spot (B300 spot): spot, skipped: the job was lost to a spot reclaim; job waits"
    );
}

#[test]
fn heavy_never_goes_to_h200() {
    let pools = [
        h200_od("h200-od"),
        h200_spot("h200-spot"),
        Backend {
            healthy: false,
            ..b300_od("b300-od")
        },
    ];
    let err = select(&heavy(), &pools).unwrap_err();
    assert!(err.contains("out of memory"), "{err}");
    assert!(err.contains("b300-od (B300 on-demand): unhealthy"), "{err}");
    assert!(err.contains("2 pools of other GPUs not used"), "{err}");

    let no_b300 = [h200_od("h200-od")];
    let err = select(&heavy(), &no_b300).unwrap_err();
    assert!(err.contains("no B300 pool is configured"), "{err}");
}

#[test]
fn heavy_ties_broken_by_failures_then_price() {
    let failures = [
        Backend {
            recent_failures: 1,
            price_per_hour: 4.0,
            ..b300_od("cheap-flaky")
        },
        b300_od("dear-steady"),
    ];
    assert_eq!(
        name_of(&failures, select(&heavy(), &failures)),
        "dear-steady"
    );

    let price = [
        b300_od("dear"),
        Backend {
            price_per_hour: 4.0,
            ..b300_od("cheap")
        },
    ];
    assert_eq!(name_of(&price, select(&heavy(), &price)), "cheap");

    // Equal failures and price: the lower in-flight/capacity ratio wins.
    let load = half_and_three_eighths(b300_od);
    assert_eq!(name_of(&load, select(&heavy(), &load)), "three-eighths");
}

#[test]
fn light_prefers_warm_over_cheaper_cold() {
    let pools = [
        Backend {
            warm: false,
            ..h200_spot("cold-h200-spot")
        },
        b300_spot("warm-b300-spot"),
    ];
    assert_eq!(name_of(&pools, select(&light(), &pools)), "warm-b300-spot");
}

#[test]
fn light_ties_broken_by_price_then_failures() {
    let price = [
        b300_spot("dear"),
        Backend {
            recent_failures: 2,
            ..h200_spot("cheap")
        },
    ];
    assert_eq!(name_of(&price, select(&light(), &price)), "cheap");

    let failures = [
        Backend {
            recent_failures: 1,
            ..h200_od("flaky")
        },
        h200_od("steady"),
    ];
    assert_eq!(name_of(&failures, select(&light(), &failures)), "steady");
}

#[test]
fn light_unhealthy_spot_goes_to_on_demand() {
    let pools = [
        Backend {
            healthy: false,
            ..h200_spot("h200-spot")
        },
        h200_od("h200-od"),
    ];
    assert_eq!(name_of(&pools, select(&light(), &pools)), "h200-od");
}

#[test]
fn light_unreliable_spot_ranks_after_reliable_pools() {
    let pools = [
        Backend {
            recent_failures: UNRELIABLE_FAILURES,
            ..h200_spot("flaky-spot")
        },
        b300_od("b300-od"),
    ];
    assert_eq!(name_of(&pools, select(&light(), &pools)), "b300-od");
}

#[test]
fn light_lost_to_reclaim_prefers_on_demand_then_falls_back_to_spot() {
    let pools = [
        h200_spot("h200-spot"),
        Backend {
            warm: false,
            ..h200_od("h200-od")
        },
    ];
    assert_eq!(name_of(&pools, select(&lost(light()), &pools)), "h200-od");

    let od_full = [
        h200_spot("h200-spot"),
        Backend {
            in_flight: 4,
            ..h200_od("h200-od")
        },
    ];
    assert_eq!(
        name_of(&od_full, select(&lost(light()), &od_full)),
        "h200-spot"
    );
}

#[test]
fn full_pools_are_skipped() {
    let pools = [
        Backend {
            in_flight: 4,
            ..h200_spot("full")
        },
        Backend {
            capacity: 0,
            ..h200_spot("no-capacity")
        },
        Backend {
            in_flight: 9,
            ..h200_spot("over-full")
        },
        b300_od("b300-od"),
    ];
    assert_eq!(name_of(&pools, select(&light(), &pools)), "b300-od");
}

#[test]
fn light_nothing_fits_names_every_pool() {
    let pools = nothing_free();
    assert_eq!(
        select(&light(), &pools).unwrap_err(),
        "no pool can take job 7 (2 full, 1 unhealthy): \
         h200-spot (H200 spot): full 4/4, h200-od (H200 on-demand): full 2/2, \
         b300-od (B300 on-demand): unhealthy; job waits"
    );
    let err = select(&light(), &[]).unwrap_err();
    assert!(err.contains("no GPU pool"), "{err}");
}

#[test]
fn long_pool_lists_are_shortened() {
    let pools = unhealthy_many(b300_od, 12);
    for job in [light(), heavy()] {
        let err = select(&job, &pools).unwrap_err();
        assert!(err.contains("pool-7"), "{err}");
        assert!(!err.contains("pool-8"), "{err}");
        assert!(err.contains("and 4 more"), "{err}");
    }
}

#[test]
fn gpu_names_compare_case_insensitively() {
    let pools = [
        h200_od("h200-od"),
        pool("lower-b300", " b300 ", Tier::OnDemand),
    ];
    assert_eq!(name_of(&pools, select(&heavy(), &pools)), "lower-b300");
}

#[test]
fn odd_input_never_panics_and_nan_price_ranks_last() {
    let pools = nan_priced(h200_spot, "nine", 9.0);
    assert_eq!(name_of(&pools, select(&light(), &pools)), "nine");

    let extremes = [extreme(b300_od("extreme"))];
    assert_eq!(
        select(&ltx2(u32::MAX, u32::MAX, u32::MAX), &extremes),
        Ok(0)
    );

    let zero = [Backend {
        capacity: 0,
        ..b300_od("zero")
    }];
    let err = select(&heavy(), &zero).unwrap_err();
    assert!(err.contains("zero (B300 on-demand): full 0/0"), "{err}");
}
