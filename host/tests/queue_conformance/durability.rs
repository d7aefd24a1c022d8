//! What survives: recovery of expired leases, retention, a restart.

use super::*;

pub(super) async fn recovery_reattaches_requeues_and_gives_up(h: Harness) {
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

pub(super) async fn retention_trims_only_old_finished_jobs(h: Harness) {
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

pub(super) async fn a_restart_keeps_everything(mut h: Harness) {
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
