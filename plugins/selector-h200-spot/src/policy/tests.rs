//! Native tests of the `h200-spot` policy.

use super::*;
use comfyume_plugin_sdk::testing::pools::{
    extreme, half_and_three_eighths, job, lost, name_of, nan_priced, nothing_free, pool,
    unhealthy_many,
};

fn lost_job() -> JobInfo {
    lost(job())
}

fn spot(name: &str) -> Backend {
    pool(name, "H200", Tier::Spot)
}

fn on_demand(name: &str) -> Backend {
    pool(name, "H200", Tier::OnDemand)
}

#[test]
fn warm_spot_preferred_over_cold_spot_and_on_demand() {
    let pools = [
        on_demand("od"),
        // Cheaper, but cold: warmth outranks price.
        Backend {
            warm: false,
            price_per_hour: 0.5,
            ..spot("cold-spot")
        },
        spot("warm-spot"),
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "warm-spot");
}

#[test]
fn cold_spot_preferred_over_warm_on_demand() {
    let pools = [
        on_demand("od"),
        Backend {
            warm: false,
            ..spot("cold-spot")
        },
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "cold-spot");
}

#[test]
fn warm_on_demand_preferred_over_cold_on_demand() {
    let pools = [
        Backend {
            warm: false,
            price_per_hour: 1.0,
            ..on_demand("cold-od")
        },
        on_demand("warm-od"),
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "warm-od");
}

#[test]
fn unhealthy_spot_falls_back_to_on_demand() {
    let pools = [
        Backend {
            healthy: false,
            ..spot("spot")
        },
        Backend {
            warm: false,
            ..on_demand("od")
        },
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "od");
}

#[test]
fn spot_at_failure_threshold_counts_as_unhealthy() {
    let at = [
        Backend {
            recent_failures: UNRELIABLE_FAILURES,
            ..spot("spot")
        },
        on_demand("od"),
    ];
    assert_eq!(name_of(&at, select(&job(), &at)), "od");

    let below = [
        Backend {
            recent_failures: UNRELIABLE_FAILURES - 1,
            ..spot("spot")
        },
        on_demand("od"),
    ];
    assert_eq!(name_of(&below, select(&job(), &below)), "spot");
}

#[test]
fn lost_to_reclaim_goes_to_on_demand_even_if_spot_is_healthy() {
    let pools = [
        spot("spot"),
        Backend {
            warm: false,
            ..on_demand("od")
        },
    ];
    assert_eq!(name_of(&pools, select(&lost_job(), &pools)), "od");
}

#[test]
fn lost_to_reclaim_waits_for_full_on_demand_rather_than_spot() {
    let pools = [
        spot("h200-spot"),
        Backend {
            in_flight: 2,
            capacity: 2,
            ..on_demand("h200-od")
        },
    ];
    let err = select(&lost_job(), &pools).unwrap_err();
    assert!(err.contains("reclaim"), "{err}");
    assert!(err.contains("h200-od (H200 on-demand): full 2/2"), "{err}");
    assert!(
        err.contains("h200-spot (H200 spot): spot, skipped"),
        "{err}"
    );
}

#[test]
fn lost_to_reclaim_uses_spot_when_no_on_demand_pool_is_healthy() {
    let pools = [
        Backend {
            healthy: false,
            ..on_demand("od")
        },
        spot("spot"),
    ];
    assert_eq!(name_of(&pools, select(&lost_job(), &pools)), "spot");
}

#[test]
fn full_pools_are_skipped() {
    let pools = [
        Backend {
            in_flight: 4,
            capacity: 4,
            ..spot("full-spot")
        },
        Backend {
            capacity: 0,
            ..spot("no-capacity-spot")
        },
        Backend {
            in_flight: 9,
            capacity: 4,
            ..spot("over-full-spot")
        },
        on_demand("od"),
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "od");
}

#[test]
fn nothing_fits_names_every_pool() {
    let pools = nothing_free();
    let err = select(&job(), &pools).unwrap_err();
    assert_eq!(
        err,
        "no pool can take job 7 (2 full, 1 unhealthy): \
         h200-spot (H200 spot): full 4/4, h200-od (H200 on-demand): full 2/2, \
         b300-od (B300 on-demand): unhealthy; job waits"
    );
}

#[test]
fn no_pools_is_an_error() {
    let err = select(&job(), &[]).unwrap_err();
    assert!(err.contains("no GPU pool"), "{err}");
}

#[test]
fn long_pool_lists_are_shortened() {
    let pools = unhealthy_many(spot, 12);
    let err = select(&job(), &pools).unwrap_err();
    assert!(err.contains("pool-7"), "{err}");
    assert!(!err.contains("pool-8"), "{err}");
    assert!(err.contains("and 4 more"), "{err}");
}

#[test]
fn ties_broken_by_failures_then_price_then_load() {
    // Fewer failures beats a lower price.
    let failures = [
        Backend {
            recent_failures: 1,
            price_per_hour: 1.0,
            ..spot("cheap-flaky")
        },
        Backend {
            price_per_hour: 2.0,
            ..spot("dear-steady")
        },
    ];
    assert_eq!(name_of(&failures, select(&job(), &failures)), "dear-steady");

    // Equal failures: the lower price wins.
    let price = [
        Backend {
            price_per_hour: 2.0,
            ..spot("dear")
        },
        Backend {
            price_per_hour: 1.0,
            ..spot("cheap")
        },
    ];
    assert_eq!(name_of(&price, select(&job(), &price)), "cheap");

    // Equal failures and price: the lower in-flight/capacity ratio wins
    // (3/8 < 1/2 although 3 > 1 jobs in flight).
    let load = half_and_three_eighths(spot);
    assert_eq!(name_of(&load, select(&job(), &load)), "three-eighths");
}

#[test]
fn other_gpu_is_a_last_resort_preferring_on_demand() {
    let pools = [
        Backend {
            in_flight: 4,
            ..spot("h200-spot")
        },
        Backend {
            healthy: false,
            ..on_demand("h200-od")
        },
        pool("b300-spot", "B300", Tier::Spot),
        pool("b300-od", "B300", Tier::OnDemand),
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "b300-od");

    // Any other spot pool is still better than waiting.
    let spot_only = [
        Backend {
            in_flight: 4,
            ..spot("h200-spot")
        },
        pool("b300-spot", "B300", Tier::Spot),
    ];
    assert_eq!(name_of(&spot_only, select(&job(), &spot_only)), "b300-spot");
}

#[test]
fn h200_on_demand_cold_beats_other_gpu_warm() {
    let pools = [
        pool("b300-od", "B300", Tier::OnDemand),
        Backend {
            warm: false,
            ..on_demand("h200-od")
        },
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "h200-od");
}

#[test]
fn reliable_other_spot_beats_unreliable_h200_spot_in_last_resort() {
    let pools = [
        Backend {
            recent_failures: UNRELIABLE_FAILURES,
            ..spot("h200-spot")
        },
        // Reliability outranks warmth here.
        Backend {
            warm: false,
            ..pool("b300-spot", "B300", Tier::Spot)
        },
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "b300-spot");

    // With nothing else, an unreliable spot pool still runs the job.
    let alone = [Backend {
        recent_failures: 10,
        ..spot("h200-spot")
    }];
    assert_eq!(select(&job(), &alone), Ok(0));
}

#[test]
fn gpu_names_compare_case_insensitively() {
    let pools = [
        pool("b300-od", "B300", Tier::OnDemand),
        pool("lower-spot", " h200 ", Tier::Spot),
    ];
    assert_eq!(name_of(&pools, select(&job(), &pools)), "lower-spot");
}

#[test]
fn odd_input_never_panics_and_nan_price_ranks_last() {
    let pools = nan_priced(spot, "two", 2.0);
    assert_eq!(name_of(&pools, select(&job(), &pools)), "two");

    let extremes = [extreme(spot("extreme"))];
    assert_eq!(select(&job(), &extremes), Ok(0));

    let zero = [Backend {
        capacity: 0,
        ..on_demand("zero")
    }];
    let err = select(&lost_job(), &zero).unwrap_err();
    assert!(err.contains("zero (H200 on-demand): full 0/0"), "{err}");
}
