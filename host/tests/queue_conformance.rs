//! One conformance suite, run against both job stores: the embedded store
//! and the Redis store on a real `redis-server` the test starts itself.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use comfyume::queue::{
    BackendRef, CancelOutcome, JobState, Output, Page, Progress, Recovery, Requester, StoreError,
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

async fn enqueue_get_list_and_isolation(h: Harness) {
    h.user("alice", 10, 2).await;
    h.user("bob", 10, 2).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.store.enqueue(new_job("alice")).await.unwrap().id);
        h.clock.advance(10);
    }
    let bobs = h.store.enqueue(new_job("bob")).await.unwrap();
    let listed: Vec<_> = h
        .store
        .list_user("alice", page())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        listed,
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    let second: Vec<_> = h
        .store
        .list_user(
            "alice",
            Page {
                offset: 1,
                limit: 1,
            },
        )
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(second, [ids[1]]);

    let job = h.store.get(ids[0], Requester::User("alice")).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.created_at_ms, T0);
    assert_eq!(h.store.payload(ids[0]).await.unwrap(), br#"{"prompt":{}}"#);
    // Someone else's job does not exist for bob, by id or by prompt id.
    assert!(matches!(
        h.store.get(ids[0], Requester::User("bob")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store
            .get_by_prompt_id(&job.prompt_id, Requester::User("bob"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        h.store
            .get_by_prompt_id(&job.prompt_id, Requester::User("alice"))
            .await
            .unwrap()
            .id,
        ids[0]
    );
    assert_eq!(
        h.store.get(bobs.id, Requester::Admin).await.unwrap().user,
        "bob"
    );
    assert!(matches!(
        h.store.cancel(ids[0], Requester::User("bob")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        h.store.get(ids[0], Requester::Admin).await.unwrap().state,
        JobState::Queued
    );
}

async fn refused_enqueues_write_nothing(h: Harness) {
    h.user("alice", 2, 1).await;
    let mut big = new_job("alice");
    big.payload = vec![b'x'; 5000];
    assert!(matches!(
        h.store.enqueue(big).await,
        Err(StoreError::PayloadTooLarge {
            size: 5000,
            max: 4096
        })
    ));
    assert!(
        matches!(h.store.enqueue(new_job("mallory")).await, Err(StoreError::UnknownUser(u)) if u == "mallory")
    );
    let mut upper = new_job("alice");
    upper.prompt_id = upper.prompt_id.to_uppercase();
    assert!(matches!(
        h.store.enqueue(upper).await,
        Err(StoreError::BadPromptId(_))
    ));
    let first = h.store.enqueue(new_job("alice")).await.unwrap();
    let mut dup = new_job("alice");
    dup.prompt_id = first.prompt_id.clone();
    assert!(matches!(
        h.store.enqueue(dup).await,
        Err(StoreError::BadPromptId(_))
    ));
    h.store.enqueue(new_job("alice")).await.unwrap();
    let refused = h.store.enqueue(new_job("alice")).await.unwrap_err();
    assert_eq!(
        refused,
        StoreError::TooManyPending {
            user: "alice".into(),
            pending: 2,
            max: 2
        }
    );
    assert_eq!(refused.http_status(), 429);
    assert_eq!(
        h.store.list_user("alice", page()).await.unwrap().len(),
        2,
        "nothing half-written"
    );
    let snapshot = h.store.snapshot().await.unwrap();
    assert_eq!(snapshot.pending.len(), 2);
    assert_eq!(
        snapshot
            .users
            .iter()
            .find(|u| u.name == "alice")
            .unwrap()
            .pending,
        2
    );
}

async fn a_job_goes_through_every_state_with_timestamps(h: Harness) {
    h.user("alice", 10, 1).await;
    let id = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.clock.advance(1000);
    let job = h.store.claim(id, "host-a", LEASE).await.unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Leased, 1));
    assert_eq!(
        job.lease.as_ref().unwrap().expires_at_ms,
        T0 + 1000 + 30_000
    );
    h.clock.advance(1000);
    h.store.renew(id, "host-a", LEASE).await.unwrap();
    let job = h
        .store
        .dispatched(id, "host-a", backend("b-1"))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Dispatched);
    assert_eq!(job.backend, Some(backend("b-1")));
    assert_eq!(
        job.lease.as_ref().unwrap().expires_at_ms,
        T0 + 2000 + 30_000,
        "renewed"
    );
    h.clock.advance(1000);
    h.store.running(id, "host-a", None).await.unwrap();
    let job = h
        .store
        .running(id, "host-a", Some(Progress { value: 5, max: 20 }))
        .await
        .unwrap();
    assert_eq!(
        (job.state, job.progress),
        (JobState::Running, Some(Progress { value: 5, max: 20 }))
    );
    h.clock.advance(1000);
    let output = Output {
        node_id: "9".into(),
        filename: "a_00001_.png".into(),
        subfolder: String::new(),
        kind: "output".into(),
        animated: false,
    };
    let job = h
        .store
        .succeed(id, "host-a", vec![output.clone()], 12.5)
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.outputs, vec![output]);
    assert!(job.lease.is_none());
    let states: Vec<_> = job
        .history
        .iter()
        .map(|t| (t.state, t.at_ms - T0))
        .collect();
    assert_eq!(
        states,
        [
            (JobState::Queued, 0),
            (JobState::Leased, 1000),
            (JobState::Dispatched, 2000),
            (JobState::Running, 3000),
            (JobState::Succeeded, 4000)
        ]
    );
    assert!(job.reason.is_some(), "every terminal state has a reason");
    let snapshot = h.store.snapshot().await.unwrap();
    let alice = snapshot.users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!((alice.running, alice.pending, alice.jobs_done), (0, 0, 1));
    assert_eq!(alice.gpu_seconds_used, 12.5);
    assert_eq!(alice.last_dispatched_at_ms, Some(T0 + 1000));
    // A finished job accepts nothing more.
    assert!(matches!(
        h.store.fail(id, "host-a", "late", 0.0).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

async fn leases_belong_to_one_dispatcher(h: Harness) {
    h.user("alice", 10, 1).await;
    let a = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let b = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.claim(a, "host-a", LEASE).await.unwrap();
    assert!(matches!(
        h.store.claim(a, "host-b", LEASE).await,
        Err(StoreError::InvalidTransition {
            state: JobState::Leased,
            ..
        })
    ));
    assert!(matches!(
        h.store.dispatched(a, "host-b", backend("x")).await,
        Err(StoreError::LeaseLost { holder: Some(ref h), .. }) if h == "host-a"
    ));
    assert!(matches!(
        h.store.running(a, "host-a", None).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    let capped = h.store.claim(b, "host-a", LEASE).await.unwrap_err();
    assert!(
        matches!(
            capped,
            StoreError::AtRunningCap {
                running: 1,
                max: 1,
                ..
            }
        ),
        "{capped:?}"
    );
    assert_eq!(
        h.store.get(b, Requester::Admin).await.unwrap().state,
        JobState::Queued
    );
    h.store
        .fail(a, "host-a", "backend said no", 1.0)
        .await
        .unwrap();
    assert_eq!(
        h.store.claim(b, "host-a", LEASE).await.unwrap().state,
        JobState::Leased
    );
}

async fn cancel_stops_waiting_and_running_jobs(h: Harness) {
    h.user("alice", 10, 5).await;
    let waiting = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let running = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let leased = h.store.enqueue(new_job("alice")).await.unwrap().id;
    assert_eq!(
        h.store
            .cancel(waiting, Requester::User("alice"))
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    let job = h
        .store
        .get(waiting, Requester::User("alice"))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.reason.as_deref(), Some("cancelled by its owner"));
    assert_eq!(
        h.store
            .cancel(waiting, Requester::User("alice"))
            .await
            .unwrap(),
        CancelOutcome::AlreadyFinished
    );

    h.store.claim(running, "host-a", LEASE).await.unwrap();
    h.store
        .dispatched(running, "host-a", backend("r"))
        .await
        .unwrap();
    assert_eq!(
        h.store.cancel(running, Requester::Admin).await.unwrap(),
        CancelOutcome::Requested
    );
    let job = h.store.get(running, Requester::Admin).await.unwrap();
    assert!(job.cancel_requested && job.state == JobState::Dispatched);
    let job = h.store.cancelled(running, "host-a", 3.0).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);

    // A job whose cancel was requested is never run again, even if requeued.
    h.store.claim(leased, "host-a", LEASE).await.unwrap();
    h.store
        .cancel(leased, Requester::User("alice"))
        .await
        .unwrap();
    let job = h
        .store
        .requeue(leased, "host-a", "spot reclaimed", true)
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(h.store.snapshot().await.unwrap().pending.is_empty());
}

async fn requeue_counts_attempts_and_gives_up(h: Harness) {
    h.user("alice", 10, 5).await;
    let id = h.store.enqueue(new_job("alice")).await.unwrap().id;
    for attempt in 1..=3 {
        h.store.claim(id, "host-a", LEASE).await.unwrap();
        h.store
            .dispatched(id, "host-a", backend(&format!("try-{attempt}")))
            .await
            .unwrap();
        let job = h
            .store
            .requeue(id, "host-a", "spot replica reclaimed", true)
            .await
            .unwrap();
        assert_eq!(job.attempts, attempt);
        assert!(job.lost_to_reclaim);
        assert!(
            job.backend.is_none(),
            "the next attempt records its own backend id"
        );
        if attempt < 3 {
            assert_eq!(job.state, JobState::Queued);
        } else {
            assert_eq!(job.state, JobState::Dead);
            assert!(
                job.reason
                    .as_deref()
                    .unwrap()
                    .contains("gave up after 3 attempts")
            );
        }
    }
}

async fn recovery_reattaches_requeues_and_gives_up(h: Harness) {
    h.user("alice", 10, 5).await;
    let with_backend = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let without = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let fresh = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store
        .claim(with_backend, "dead-host", LEASE)
        .await
        .unwrap();
    h.store
        .dispatched(with_backend, "dead-host", backend("gpu-7"))
        .await
        .unwrap();
    h.store.claim(without, "dead-host", LEASE).await.unwrap();
    h.clock.advance(20_000);
    h.store.claim(fresh, "live-host", LEASE).await.unwrap();
    assert!(
        h.store
            .expired_leases(h.clock_now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        matches!(
            h.store
                .recover(
                    with_backend,
                    Recovery::Reattach {
                        owner: "live-host".into()
                    },
                    LEASE
                )
                .await,
            Err(StoreError::LeaseLost { .. })
        ),
        "an unexpired lease cannot be taken"
    );
    h.clock.advance(20_000);
    let mut expired: Vec<_> = h
        .store
        .expired_leases(h.clock_now())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    expired.sort();
    assert_eq!(expired, [with_backend, without]);

    assert!(
        matches!(
            h.store
                .recover(
                    without,
                    Recovery::Reattach {
                        owner: "live-host".into()
                    },
                    LEASE
                )
                .await,
            Err(StoreError::InvalidTransition { .. })
        ),
        "no backend id: nothing to re-attach to"
    );
    let job = h
        .store
        .recover(
            without,
            Recovery::Requeue {
                reason: "never reached a GPU".into(),
            },
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!((job.state, job.recoveries), (JobState::Queued, 1));
    let job = h
        .store
        .recover(
            with_backend,
            Recovery::Reattach {
                owner: "live-host".into(),
            },
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Dispatched);
    assert_eq!(
        job.backend,
        Some(backend("gpu-7")),
        "same backend job: no second GPU run"
    );
    assert_eq!(job.lease.as_ref().unwrap().owner, "live-host");
    assert!(matches!(
        h.store
            .succeed(with_backend, "dead-host", vec![], 1.0)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));

    // Expire it twice more: the third recovery gives up.
    for round in 2..=3 {
        h.clock.advance(31_000);
        let job = h
            .store
            .recover(
                with_backend,
                Recovery::Reattach {
                    owner: "live-host".into(),
                },
                LEASE,
            )
            .await
            .unwrap();
        if round == 3 {
            assert_eq!(job.state, JobState::Dead);
            assert!(job.reason.as_deref().unwrap().contains("expired 3 times"));
        }
    }
    assert_eq!(
        h.store.snapshot().await.unwrap().users[0].running,
        1,
        "only `fresh` is still on a GPU"
    );
}

async fn retention_trims_only_old_finished_jobs(h: Harness) {
    h.user("alice", 10, 5).await;
    let old = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.cancel(old, Requester::Admin).await.unwrap();
    let waiting = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.clock.advance(60_000);
    let recent = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.cancel(recent, Requester::Admin).await.unwrap();
    assert_eq!(h.store.trim(T0 + 30_000).await.unwrap(), 1);
    let left: HashSet<_> = h
        .store
        .list_user("alice", page())
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, HashSet::from([waiting, recent]));
    assert!(matches!(
        h.store.get(old, Requester::Admin).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn the_scheduler_snapshot_matches_the_queue(h: Harness) {
    h.user("alice", 10, 2).await;
    h.user("bob", 10, 2).await;
    let a1 = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.clock.advance(5);
    let mut ltx = new_job("bob");
    ltx.workflow_kind = "ltx2".into();
    ltx.cost.gpu_seconds = 200.0;
    let b1 = h.store.enqueue(ltx).await.unwrap().id;
    let a2 = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.claim(a1, "host-a", LEASE).await.unwrap();
    let snapshot = h.store.snapshot().await.unwrap();
    let (plugin, ids) = snapshot.for_plugin();
    assert_eq!(ids, [b1, a2]);
    assert_eq!(plugin.pending.len(), 2);
    assert_eq!(plugin.running.len(), 1);
    let bob = &plugin.users[plugin.pending[0].user as usize];
    assert_eq!((bob.name.as_str(), bob.pending, bob.running), ("bob", 1, 0));
    assert_eq!(plugin.kinds[plugin.pending[0].kind as usize], "ltx2");
    assert_eq!(plugin.pending[0].est_gpu_seconds, 200.0);
    let alice = &plugin.users[plugin.running[0].user as usize];
    assert_eq!(
        (
            alice.name.as_str(),
            alice.pending,
            alice.running,
            alice.max_running
        ),
        ("alice", 1, 1, Some(2))
    );
}

/// Enqueues warm-up jobs through `to` until one is heard on `events` (a
/// Redis subscriber attaches asynchronously), then drains what is left.
async fn events_flowing(
    to: &dyn comfyume::queue::JobStore,
    events: &mut tokio::sync::broadcast::Receiver<comfyume::queue::JobEvent>,
) {
    to.set_user(comfyume::queue::UserLimits {
        name: "warmup".into(),
        max_pending: 1000,
        max_running: 1,
        priority: comfyume::queue::Priority::Normal,
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no event ever arrived"
        );
        to.enqueue(new_job("warmup")).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_ok()
        {
            break;
        }
    }
    // Let stragglers arrive, then drop every warm-up event.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while events.try_recv().is_ok() {}
}

async fn changes_are_announced(h: Harness) {
    h.user("alice", 10, 2).await;
    let mut events = h.store.events();
    // Redis delivers through pub/sub: wait until the subscriber is live.
    events_flowing(&*h.store, &mut events).await;
    let id = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.claim(id, "host-a", LEASE).await.unwrap();
    h.store
        .dispatched(id, "host-a", backend("e"))
        .await
        .unwrap();
    h.store
        .running(id, "host-a", Some(Progress { value: 1, max: 4 }))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("event")
            .unwrap();
        if e.user == "warmup" {
            continue; // a late warm-up event
        }
        assert_eq!((e.id, e.user.as_str()), (id, "alice"));
        seen.push((e.state, e.progress));
    }
    assert_eq!(
        seen,
        [
            (JobState::Queued, None),
            (JobState::Leased, None),
            (JobState::Dispatched, None),
            (JobState::Running, Some(Progress { value: 1, max: 4 }))
        ]
    );
}

async fn a_restart_keeps_everything(mut h: Harness) {
    h.user("alice", 10, 2).await;
    let queued = h.store.enqueue(new_job("alice")).await.unwrap();
    let leased = h.store.enqueue(new_job("alice")).await.unwrap().id;
    h.store.claim(leased, "host-a", LEASE).await.unwrap();
    h.store
        .dispatched(leased, "host-a", backend("kept"))
        .await
        .unwrap();
    let before = h.store.snapshot().await.unwrap();
    let job_before = h.store.get(leased, Requester::Admin).await.unwrap();
    h.reopen().await;
    assert_eq!(h.store.snapshot().await.unwrap(), before);
    assert_eq!(
        h.store.get(leased, Requester::Admin).await.unwrap(),
        job_before
    );
    assert_eq!(
        h.store.get(queued.id, Requester::Admin).await.unwrap(),
        queued
    );
    assert_eq!(
        h.store.payload(queued.id).await.unwrap(),
        br#"{"prompt":{}}"#
    );
    // New ids continue after the old ones.
    assert!(h.store.enqueue(new_job("alice")).await.unwrap().id > leased);
}

async fn eight_claimers_never_claim_the_same_job_twice(h: Harness) {
    h.user("alice", 100_000, 100_000).await;
    let claims = Arc::new(std::sync::Mutex::new(Vec::new()));
    for round in 0..10 {
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.push(h.store.enqueue(new_job("alice")).await.unwrap().id);
        }
        let tasks: Vec<_> = (0..8)
            .map(|worker| {
                let (store, ids, claims) = (h.store.clone(), ids.clone(), claims.clone());
                tokio::spawn(async move {
                    // Every worker tries every job, in a different order.
                    let n = ids.len();
                    for k in 0..n {
                        let id = ids[(k * (worker + 1) * 7 + worker) % n];
                        match store.claim(id, &format!("w{worker}"), LEASE).await {
                            Ok(job) => claims.lock().unwrap().push((round, job.id)),
                            Err(StoreError::InvalidTransition { .. }) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    let claims = claims.lock().unwrap().clone();
    let unique: HashSet<_> = claims.iter().map(|(_, id)| *id).collect();
    assert_eq!(claims.len(), 1000, "every job claimed exactly once");
    assert_eq!(unique.len(), 1000);
    let snapshot = h.store.snapshot().await.unwrap();
    assert_eq!((snapshot.pending.len(), snapshot.running.len()), (0, 1000));
}

async fn one_leader_at_a_time(h: Harness) {
    let ttl = Duration::from_secs(3);
    assert!(h.store.lead("host-a", ttl).await.unwrap());
    assert!(
        h.store.lead("host-a", ttl).await.unwrap(),
        "the leader keeps leading"
    );
    if matches!(h.backing, common::queue::Backing::Redis(_)) {
        assert!(!h.store.lead("host-b", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(
            h.store.lead("host-b", ttl).await.unwrap(),
            "takes over after the TTL"
        );
        assert!(!h.store.lead("host-a", ttl).await.unwrap());
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
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Harness::embedded().await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Harness::redis().await).await;
                }
            )*
        }
    };
}

conformance!(
    enqueue_get_list_and_isolation,
    refused_enqueues_write_nothing,
    a_job_goes_through_every_state_with_timestamps,
    leases_belong_to_one_dispatcher,
    cancel_stops_waiting_and_running_jobs,
    requeue_counts_attempts_and_gives_up,
    recovery_reattaches_requeues_and_gives_up,
    retention_trims_only_old_finished_jobs,
    the_scheduler_snapshot_matches_the_queue,
    changes_are_announced,
    a_restart_keeps_everything,
    eight_claimers_never_claim_the_same_job_twice,
    one_leader_at_a_time,
);

/// Every host hears every job event: a change made through one Redis store
/// reaches the subscribers of another (a second host on the same Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_events_reach_every_host() {
    let h = Harness::redis().await;
    let common::queue::Backing::Redis(server) = &h.backing else {
        unreachable!()
    };
    let other = comfyume::queue::RedisStore::connect(
        &server.url(),
        "test",
        common::queue::limits(),
        Arc::new(h.clock.clone()),
    )
    .await
    .unwrap();
    let mut events = comfyume::queue::JobStore::events(&other);
    events_flowing(&*h.store, &mut events).await;
    h.user("alice", 10, 2).await;
    let job = h.store.enqueue(new_job("alice")).await.unwrap();
    let event = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the other host heard nothing")
            .unwrap();
        if event.user != "warmup" {
            break event;
        }
    };
    assert_eq!(
        (event.id, event.prompt_id, event.state),
        (job.id, job.prompt_id, JobState::Queued)
    );
}
