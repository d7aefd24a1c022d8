//! Two hosts on one Redis, one data folder: an attendee whose browser is on
//! one host gets the events of a job the other host accepted and whichever
//! host dispatched it, and nobody else's.

#[path = "common/attendee.rs"]
mod attendee;
#[path = "common/redis.rs"]
mod redis;

use std::time::Duration;

use attendee::{connect, flux_prompt, frames, start_in};
use comfyume::config::QueueStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_attendee_on_either_host() {
    let server = redis::RedisServer::start();
    let url = server.url();
    let shared = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let redis_queue = |config: &mut comfyume::config::Config| {
        config.queue.store = QueueStore::Redis;
        config.queue.redis_url = Some(url.clone());
    };
    let one = start_in(shared.clone(), redis_queue).await;
    let two = start_in(shared.clone(), redis_queue).await;

    let mut ann_on_two = connect(&two, "ann").await;
    let mut bob_on_two = connect(&two, "bob").await;
    frames(&mut ann_on_two, Duration::from_secs(5), |_| true).await;
    frames(&mut bob_on_two, Duration::from_secs(5), |_| true).await;

    // Submitted through host one, told on host two.
    let (status, answer) = one
        .submit("ann", serde_json::json!({"prompt": flux_prompt()}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["prompt_id"].as_str().expect("id").to_string();
    let seen = frames(&mut ann_on_two, Duration::from_secs(60), |m| {
        m["type"] == "executing" && m["data"]["node"].is_null()
    })
    .await;
    let types: Vec<&str> = seen.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(types.contains(&"execution_start"), "{types:?}");
    assert!(types.contains(&"execution_success"), "{types:?}");
    assert!(
        seen.iter()
            .any(|m| m["type"] == "executed" && m["data"]["prompt_id"] == id.as_str()),
        "{seen:?}"
    );
    // Both hosts list it for ann; neither for bob.
    for host in [&one, &two] {
        let job = host.finished("ann", &id).await;
        assert_eq!(job["status"], "completed");
        let theirs = host
            .get("bob", &format!("/api/jobs/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(theirs.status(), 404);
    }
    let leaked = frames(&mut bob_on_two, Duration::from_millis(500), |_| false).await;
    assert!(
        !leaked.iter().any(|m| m.to_string().contains(&id)),
        "bob saw ann's job: {leaked:?}"
    );
}
