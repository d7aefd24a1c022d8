//! Job events: every change announced, on every host.

use super::*;

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

pub(super) async fn changes_are_announced(h: Harness) {
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
