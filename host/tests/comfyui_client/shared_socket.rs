//! One websocket per ComfyUI server and client id, against a double that
//! keeps one socket per client id as the real server does: concurrent
//! prompts, a socket dropped mid-job, a job followed by a new process.
//!
//! The bounds below catch a job left waiting for an idle timer (an hour
//! here, so a job that needed one never returns in time); they are not
//! speed measurements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::dispatch::comfyui::client::{ClientLimits, ComfyClient};
use comfyume::dispatch::comfyui::protocol::Outcome;
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use futures_util::StreamExt as _;

use super::{WAIT, id, limits, template};

/// Limits under which only the socket can tell a job's end in time: the
/// idle look and the polling fallback both wait an hour.
fn socket_only() -> ClientLimits {
    ClientLimits {
        ws_idle: Duration::from_secs(3600),
        poll: Duration::from_secs(3600),
        ..limits()
    }
}

async fn serve(config: RehearsalConfig) -> (Arc<Rehearsal>, String) {
    let rehearsal = Rehearsal::new(config);
    let addr = rehearsal.serve().await.unwrap();
    (rehearsal, format!("http://{addr}"))
}

async fn submit(client: &ComfyClient, client_id: &str) -> String {
    let prompt_id = id();
    client
        .submit(
            &template("image_flux2_klein_text_to_image.api.json"),
            &prompt_id,
            client_id,
            None,
        )
        .await
        .unwrap();
    prompt_id
}

/// `POST /prompt` for `client_id` without opening a socket of its own
/// (a [`ComfyClient`] would, replacing the test's).
async fn post_prompt(url: &str, client_id: &str) -> String {
    let prompt_id = id();
    let answer = reqwest::Client::new()
        .post(format!("{url}/prompt"))
        .json(&serde_json::json!({
            "prompt": template("image_flux2_klein_text_to_image.api.json"),
            "client_id": client_id,
            "prompt_id": prompt_id,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    prompt_id
}

/// Follows `prompt_id`; its outcome, bounded by `WAIT`.
async fn follow(client: &ComfyClient, client_id: &str, prompt_id: &str) -> Outcome {
    tokio::time::timeout(
        WAIT,
        client.follow(prompt_id, client_id, Duration::from_secs(3600), |_, _| {}),
    )
    .await
    .expect("the end came through the socket, not after an idle timer")
    .expect("followed to its end")
}

#[tokio::test]
async fn the_double_keeps_one_socket_per_client_id() {
    let (rehearsal, url) = serve(RehearsalConfig::default()).await;
    let ws = format!("{}/ws?clientId=same", url.replace("http", "ws"));
    let (mut first, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let hello = first.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"sid\":\"same\""));
    let (mut second, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    second.next().await.unwrap().unwrap();
    let prompt_id = post_prompt(&url, "same").await;
    let client = ComfyClient::new(&url, limits()).unwrap();
    // The newer socket hears the prompt to its end; the older one nothing.
    loop {
        let text = tokio::time::timeout(WAIT, second.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let text = text.to_text().unwrap();
        if text.contains("\"node\":null") && text.contains(&prompt_id) {
            break;
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), first.next())
            .await
            .is_err(),
        "the replaced socket still received something"
    );
    // The older socket closing unregisters the id: the newer one too
    // hears nothing more (ComfyUI's `finally: sockets.pop(sid)`).
    first.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = submit(&client, "other").await;
    assert!(matches!(
        follow(&client, "other", &later).await,
        Outcome::Success(_)
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err(),
        "an unregistered socket still received the status broadcast"
    );
    assert!(rehearsal.sockets_opened() >= 3);
}

#[tokio::test]
async fn the_double_announces_success_before_writing_history() {
    let config = RehearsalConfig {
        history_lag: Duration::from_millis(300),
        ..Default::default()
    };
    let (_rehearsal, url) = serve(config).await;
    let ws = format!("{}/ws?clientId=c1", url.replace("http", "ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let client = ComfyClient::new(&url, limits()).unwrap();
    let prompt_id = post_prompt(&url, "c1").await;
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if message.to_text().unwrap().contains("execution_success") {
            break;
        }
    }
    assert!(
        client.history(&prompt_id).await.unwrap().is_none(),
        "the entry was there when execution_success arrived"
    );
}

/// Several prompts at once on one client id (a pool of capacity 4): every
/// one ends when ComfyUI finishes it, none waits for an idle timer.
#[tokio::test]
async fn concurrent_prompts_on_one_client_id_all_end_promptly() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(40),
        history_lag: Duration::from_millis(30),
        ..Default::default()
    };
    let (_rehearsal, url) = serve(config).await;
    let client = ComfyClient::new(&url, socket_only()).unwrap();
    let started = Instant::now();
    let jobs: Vec<_> = (0..4)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                // Staggered, as a dispatcher fills free slots.
                tokio::time::sleep(Duration::from_millis(30 * n)).await;
                let prompt_id = submit(&client, "host-pool").await;
                follow(&client, "host-pool", &prompt_id).await
            })
        })
        .collect();
    for job in jobs {
        let outcome = job.await.unwrap();
        assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    }
    eprintln!("4 concurrent jobs ended after {:?}", started.elapsed());
}

/// The socket drops while prompts run: it is opened again, and each job
/// still ends when ComfyUI finishes it, not after an idle timer.
#[tokio::test]
async fn a_socket_dropped_mid_job_is_opened_again_and_jobs_still_end() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(100),
        ..Default::default()
    };
    let (rehearsal, url) = serve(config).await;
    let client = ComfyClient::new(&url, socket_only()).unwrap();
    let first = submit(&client, "c1").await;
    let second = submit(&client, "c1").await;
    let dropper = {
        let rehearsal = rehearsal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            rehearsal.drop_sockets();
        })
    };
    let (a, b) = tokio::join!(
        follow(&client, "c1", &first),
        follow(&client, "c1", &second)
    );
    dropper.await.unwrap();
    assert!(matches!(a, Outcome::Success(_)), "{a:?}");
    assert!(matches!(b, Outcome::Success(_)), "{b:?}");
    assert_eq!(
        rehearsal.sockets_opened(),
        2,
        "one socket, opened again once"
    );
}

/// A prompt whose end was announced while the socket was down (the events
/// are lost) is found by a look as soon as the socket is back.
#[tokio::test]
async fn an_end_missed_while_the_socket_was_down_is_found_at_the_reconnect() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(20),
        ..Default::default()
    };
    let (rehearsal, url) = serve(config).await;
    let client = ComfyClient::new(&url, socket_only()).unwrap();
    let prompt_id = submit(&client, "c1").await;
    // Keep closing the socket until the prompt has ended, so its end
    // events are sent while no socket is registered.
    let follower = {
        let (client, prompt_id) = (client.clone(), prompt_id.clone());
        tokio::spawn(async move { follow(&client, "c1", &prompt_id).await })
    };
    while !client
        .history(&prompt_id)
        .await
        .unwrap()
        .is_some_and(|entry| entry.outcome() != Outcome::Pending)
    {
        rehearsal.drop_sockets();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcome = follower.await.unwrap();
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
}

/// A new process (a restarted host) follows a prompt the old one
/// submitted, under the same client id: the prompt's events reach the new
/// socket, and its end is recorded when ComfyUI finishes it.
#[tokio::test]
async fn a_prompt_followed_again_by_a_new_process_ends_promptly() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(150),
        ..Default::default()
    };
    let (_rehearsal, url) = serve(config).await;
    let old = ComfyClient::new(&url, socket_only()).unwrap();
    let prompt_id = submit(&old, "comfyume-host-a-pool").await;
    // The old process follows for a while, then dies.
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        old.follow(&prompt_id, "comfyume-host-a-pool", WAIT, |_, _| {}),
    )
    .await;
    drop(old);
    // A restart takes a moment: ComfyUI has seen the old socket close (and
    // unregistered its id) before the new process connects.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let new = ComfyClient::new(&url, socket_only()).unwrap();
    let mut steps = 0;
    let outcome = tokio::time::timeout(
        WAIT,
        new.follow(
            &prompt_id,
            "comfyume-host-a-pool",
            Duration::from_secs(3600),
            |_, _| steps += 1,
        ),
    )
    .await
    .expect("the re-attached job heard its end")
    .unwrap();
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert!(steps > 0, "progress reached the new process's socket");
}
