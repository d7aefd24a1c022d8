//! What the dispatcher relies on: the scheduler's snapshot, claims under
//! contention, one leader at a time.

use super::*;

pub(super) async fn the_scheduler_snapshot_matches_the_queue(h: Harness) {
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

pub(super) async fn the_operator_reprioritises_a_waiting_job(h: Harness) {
    h.user("alice", 10, 1).await;
    h.user("bob", 10, 1).await;
    let limits = h.store.user_limits("alice").await.unwrap().unwrap();
    assert_eq!((limits.max_pending, limits.max_running), (10, 1));
    assert!(h.store.user_limits("nobody").await.unwrap().is_none());
    let a = h.store.enqueue(new_job("alice")).await.unwrap().id;
    let b = h.store.enqueue(new_job("bob")).await.unwrap().id;
    let (_, ids) = h.store.snapshot().await.unwrap().for_plugin();
    assert_eq!(ids, [a, b], "same class: submit order");

    let moved = h.store.reprioritise(b, Priority::Instructor).await.unwrap();
    assert_eq!(
        (moved.state, moved.priority),
        (JobState::Queued, Priority::Instructor)
    );
    let note = moved.history.last().and_then(|t| t.note.clone()).unwrap();
    assert!(note.contains("normal → instructor"), "{note}");
    let snapshot = h.store.snapshot().await.unwrap();
    // The snapshot stays in submit order; the class is the scheduler's to
    // weigh (every built-in one serves the instructor lane first).
    let (_, ids) = snapshot.for_plugin();
    assert_eq!(ids, [a, b]);
    assert_eq!(snapshot.pending[1].priority, Priority::Instructor);
    let bob = snapshot.users.iter().find(|u| u.name == "bob").unwrap();
    assert_eq!(bob.pending, 1, "still one waiting job, not two");

    // Once claimed it is no longer the operator's to move.
    h.store.claim(b, "host-a", LEASE).await.unwrap();
    assert!(matches!(
        h.store.reprioritise(b, Priority::Low).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        h.store.reprioritise(9_999, Priority::Low).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(super) async fn eight_claimers_never_claim_the_same_job_twice(h: Harness) {
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

pub(super) async fn one_leader_at_a_time(h: Harness) {
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
