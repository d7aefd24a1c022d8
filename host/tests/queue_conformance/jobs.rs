//! One job's life in the queue: submit and isolation, refusals that write
//! nothing, every state with its timestamp, leases, cancel, requeue.

use super::*;

pub(super) async fn enqueue_get_list_and_isolation(h: Harness) {
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

pub(super) async fn refused_enqueues_write_nothing(h: Harness) {
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

pub(super) async fn a_job_goes_through_every_state_with_timestamps(h: Harness) {
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
    // Recording the same backend id again (a retry after a lost answer) is
    // a no-op; another id is refused.
    let again = h
        .store
        .dispatched(id, "host-a", backend("b-1"))
        .await
        .expect("the same record again");
    assert_eq!(
        (again.state, again.backend),
        (JobState::Running, Some(backend("b-1")))
    );
    assert!(matches!(
        h.store.dispatched(id, "host-a", backend("b-2")).await,
        Err(StoreError::InvalidTransition { .. })
    ));
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

pub(super) async fn leases_belong_to_one_dispatcher(h: Harness) {
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

pub(super) async fn cancel_stops_waiting_and_running_jobs(h: Harness) {
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

pub(super) async fn requeue_counts_attempts_and_gives_up(h: Harness) {
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
