//! One conformance suite, run against both job stores: the embedded store
//! and the Redis store on a real `redis-server` the test starts itself.

#[path = "../common/mod.rs"]
mod common;

mod durability;
mod events;
mod jobs;
mod scheduling;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use comfyume::queue::{
    BackendRef, CancelOutcome, JobState, Output, Page, Priority, Progress, Recovery, Requester,
    StoreError,
};
use common::queue::{Harness, T0, new_job};

const LEASE: Duration = Duration::from_secs(30);

fn page() -> Page {
    Page {
        offset: 0,
        limit: 50,
    }
}

fn backend(id: &str) -> BackendRef {
    BackendRef {
        pool: "local".into(),
        job_id: id.into(),
    }
}

impl HarnessExt for Harness {
    fn clock_now(&self) -> u64 {
        use comfyume::queue::Clock as _;
        self.clock.now_ms()
    }
}

trait HarnessExt {
    fn clock_now(&self) -> u64;
}

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(super::Harness::embedded().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(super::Harness::redis().await).await;
                }
            )*
        }
    };
}

conformance!(
    jobs::enqueue_get_list_and_isolation,
    jobs::refused_enqueues_write_nothing,
    jobs::a_job_goes_through_every_state_with_timestamps,
    jobs::leases_belong_to_one_dispatcher,
    jobs::cancel_stops_waiting_and_running_jobs,
    jobs::requeue_counts_attempts_and_gives_up,
    durability::recovery_reattaches_requeues_and_gives_up,
    durability::retention_trims_only_old_finished_jobs,
    scheduling::the_scheduler_snapshot_matches_the_queue,
    events::changes_are_announced,
    durability::a_restart_keeps_everything,
    scheduling::eight_claimers_never_claim_the_same_job_twice,
    scheduling::one_leader_at_a_time,
    scheduling::the_operator_reprioritises_a_waiting_job,
);
