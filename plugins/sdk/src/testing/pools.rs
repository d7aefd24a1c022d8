//! Jobs and GPU pools for native tests of selectors.

use crate::selector::{Backend, JobInfo};
use crate::types::{CostEstimate, PriorityClass, Tier};

/// Job 7 of `ada`: a light FLUX.2 Klein still (1024², 4 steps), first
/// attempt.
pub fn job() -> JobInfo {
    JobInfo {
        id: 7,
        user: "ada".into(),
        workflow_kind: "flux2-klein".into(),
        priority: PriorityClass::Normal,
        cost: CostEstimate {
            frames: 1,
            width: 1024,
            height: 1024,
            steps: 4,
            gpu_seconds: 3.0,
        },
        attempts: 0,
        lost_to_reclaim: false,
    }
}

/// `job` on its second attempt, the first lost to a spot reclaim.
pub fn lost(job: JobInfo) -> JobInfo {
    JobInfo {
        attempts: 1,
        lost_to_reclaim: true,
        ..job
    }
}

/// A healthy, warm, empty pool of capacity 4 at the early-2026 Verda price.
pub fn pool(name: &str, gpu: &str, tier: Tier) -> Backend {
    let price_per_hour = match (gpu.to_ascii_uppercase().as_str(), tier) {
        ("H200", Tier::Spot) => 1.15,
        ("H200", Tier::OnDemand) => 3.29,
        ("B300", Tier::Spot) => 1.91,
        _ => 5.45,
    };
    Backend {
        name: name.into(),
        gpu: gpu.into(),
        tier,
        healthy: true,
        warm: true,
        in_flight: 0,
        capacity: 4,
        recent_failures: 0,
        price_per_hour,
    }
}

/// The name of the pool a selector picked; panics if it picked none.
pub fn name_of(backends: &[Backend], picked: Result<u32, String>) -> String {
    let index = picked.expect("a pool should fit") as usize;
    backends[index].name.clone()
}

/// Three pools of `make` that differ only in price: `negative-nan` (−NaN),
/// `nan` (NaN) and `name` at `price`. Only the last may win on price.
pub fn nan_priced(make: impl Fn(&str) -> Backend, name: &str, price: f64) -> [Backend; 3] {
    [
        Backend {
            price_per_hour: -f64::NAN,
            ..make("negative-nan")
        },
        Backend {
            price_per_hour: f64::NAN,
            ..make("nan")
        },
        Backend {
            price_per_hour: price,
            ..make(name)
        },
    ]
}

/// `base` with every counter near `u32::MAX` and a price of −∞, yet one
/// free slot: it can take a job.
pub fn extreme(base: Backend) -> Backend {
    Backend {
        in_flight: u32::MAX - 1,
        capacity: u32::MAX,
        recent_failures: u32::MAX,
        price_per_hour: f64::NEG_INFINITY,
        ..base
    }
}

/// `count` unhealthy pools of `make`, named `pool-0`, `pool-1`, …: more
/// than a reason names one by one.
pub fn unhealthy_many(make: impl Fn(&str) -> Backend, count: usize) -> Vec<Backend> {
    (0..count)
        .map(|n| Backend {
            healthy: false,
            ..make(&format!("pool-{n}"))
        })
        .collect()
}

/// A workshop where no pool can take a job: `h200-spot` full 4/4,
/// `h200-od` full 2/2, `b300-od` unhealthy.
pub fn nothing_free() -> [Backend; 3] {
    [
        Backend {
            in_flight: 4,
            capacity: 4,
            ..pool("h200-spot", "H200", Tier::Spot)
        },
        Backend {
            in_flight: 2,
            capacity: 2,
            ..pool("h200-od", "H200", Tier::OnDemand)
        },
        Backend {
            healthy: false,
            ..pool("b300-od", "B300", Tier::OnDemand)
        },
    ]
}

/// Two pools of `make` alike but for their load: `half` (1 of 2 in
/// flight) and `three-eighths` (3 of 8), the less loaded although it runs
/// more jobs.
pub fn half_and_three_eighths(make: impl Fn(&str) -> Backend) -> [Backend; 2] {
    [
        Backend {
            in_flight: 1,
            capacity: 2,
            ..make("half")
        },
        Backend {
            in_flight: 3,
            capacity: 8,
            ..make("three-eighths")
        },
    ]
}
