//! The ComfyUI client against the rehearsal backend (a ComfyUI without a
//! GPU that replays the captured protocol): results, progress, video,
//! errors, cancel, the polling fallback, uploads, deadlines and hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyume::dispatch::comfyui::client::{ClientError, ClientLimits, ComfyClient};
use comfyume::dispatch::comfyui::protocol::Outcome;
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use serde_json::{Value, json};

#[path = "comfyui_client/shared_socket.rs"]
mod shared_socket;

fn limits() -> ClientLimits {
    ClientLimits {
        request: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        max_output_bytes: 1 << 20,
        ws_idle: Duration::from_millis(250),
        submit: Duration::from_secs(2),
        download: Duration::from_secs(2),
        outage_patience: Duration::from_secs(2),
    }
}

async fn backend(config: RehearsalConfig) -> (Arc<Rehearsal>, ComfyClient) {
    let rehearsal = Rehearsal::new(config);
    let addr: SocketAddr = rehearsal.serve().await.unwrap();
    let client = ComfyClient::new(&format!("http://{addr}"), limits()).unwrap();
    (rehearsal, client)
}

fn template(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/api")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Submits the Flux2 Klein text-to-image template; returns its prompt id.
async fn submit_flux(client: &ComfyClient) -> String {
    let prompt_id = id();
    let prompt = template("image_flux2_klein_text_to_image.api.json");
    client
        .submit(&prompt, &prompt_id, "c1", None)
        .await
        .unwrap();
    prompt_id
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_flux_template_runs_with_progress_and_its_image_downloads() {
    let (_r, client) = backend(RehearsalConfig::default()).await;
    let prompt_id = id();
    let accepted = client
        .submit(
            &template("image_flux2_klein_text_to_image.api.json"),
            &prompt_id,
            "c1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(accepted.prompt_id, prompt_id);
    let mut steps = Vec::new();
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |v, m| steps.push((v, m)))
        .await
        .unwrap();
    assert_eq!(
        steps,
        [(1, 4), (2, 4), (3, 4), (4, 4)],
        "Flux2Scheduler's 20 steps, capped at 4 in rehearsal"
    );
    let Outcome::Success(outputs) = outcome else {
        panic!("{outcome:?}")
    };
    let (file, animated) = outputs["9"].files().next().unwrap();
    assert!(!animated);
    assert!(
        file.filename.starts_with("rehearsal_Flux2-Klein_"),
        "{file:?}"
    );
    let png = client.download(file).await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn an_ltx2_video_arrives_under_images_animated() {
    let (_r, client) = backend(RehearsalConfig::default()).await;
    let prompt_id = id();
    client
        .submit(&template("video_ltx2_t2v.api.json"), &prompt_id, "c1", None)
        .await
        .unwrap();
    let Outcome::Success(outputs) = client
        .follow(&prompt_id, "c1", WAIT, |_, _| {})
        .await
        .unwrap()
    else {
        panic!("video failed")
    };
    let (file, animated) = outputs["75"].files().next().unwrap();
    assert!(
        animated && file.subfolder == "video" && file.filename.ends_with(".mp4"),
        "{file:?}"
    );
    assert_eq!(
        client.download(file).await.unwrap(),
        b"rehearsal placeholder video"
    );
}

#[tokio::test]
async fn a_failing_node_is_a_failed_outcome_with_its_reason() {
    let config = RehearsalConfig {
        fail_class: Some("VAEDecode".into()),
        ..Default::default()
    };
    let (_r, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed("VAEDecode failed: rehearsal: this node is set to fail".into())
    );
}

#[tokio::test]
async fn cancel_interrupts_a_running_prompt() {
    let config = RehearsalConfig {
        step_time: Duration::from_millis(300),
        max_steps: 50,
        ..Default::default()
    };
    let (_r, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    let canceller = client.clone();
    let target = prompt_id.clone();
    let mut cancelled = false;
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |_, _| {
            if !cancelled {
                cancelled = true;
                let (c, t) = (canceller.clone(), target.clone());
                tokio::spawn(async move { c.cancel(&t).await.unwrap() });
            }
        })
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Failed("interrupted".into()));
}

#[tokio::test]
async fn without_a_websocket_the_client_polls_history() {
    let config = RehearsalConfig {
        refuse_websocket: true,
        ..Default::default()
    };
    let (_r, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |_, _| {
            panic!("no progress without a socket")
        })
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Success(ref o) if o.contains_key("9")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_history_hiccup_while_polling_does_not_end_the_wait() {
    // ComfyUI answering 500 to a few /history looks says nothing about the
    // prompt, which goes on running: the wait goes on.
    let config = RehearsalConfig {
        refuse_websocket: true,
        ..Default::default()
    };
    let (rehearsal, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    rehearsal.fail_history(5);
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |_, _| {})
        .await
        .expect("a few failed looks are not the job's end");
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert!(
        matches!(
            client.history(&prompt_id).await,
            Ok(Some(ref entry)) if entry.outcome() != Outcome::Pending
        ),
        "the failures were used up"
    );
}

#[tokio::test]
async fn a_history_hiccup_while_the_socket_is_quiet_does_not_end_the_wait() {
    // Steps slower than the socket's idle time: the client looks at
    // /history between them, and at the end; those looks fail for a while.
    let config = RehearsalConfig {
        step_time: Duration::from_millis(300),
        ..Default::default()
    };
    let (rehearsal, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    rehearsal.fail_history(4);
    let mut steps = 0;
    let outcome = client
        .follow(&prompt_id, "c1", WAIT, |_, _| steps += 1)
        .await
        .expect("a few failed looks are not the job's end");
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert!(steps > 0, "progress still came through the socket");
}

#[tokio::test]
async fn a_comfyui_that_keeps_failing_history_is_given_up_after_the_patience() {
    let config = RehearsalConfig {
        refuse_websocket: true,
        step_time: Duration::from_secs(60),
        ..Default::default()
    };
    let (rehearsal, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    rehearsal.fail_history(u32::MAX);
    // The job may run an hour; the server stops answering: the error comes
    // after the patience (2 s in these limits), not at the deadline.
    let error = tokio::time::timeout(
        WAIT,
        client.follow(&prompt_id, "c1", Duration::from_secs(3600), |_, _| {}),
    )
    .await
    .expect("gave up after the patience, not at the deadline")
    .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Status {
                what: "history",
                status: 500
            }
        ),
        "{error}"
    );
}

/// A ComfyUI that restarts forgets its queue and history: a followed
/// prompt is given up at the next look, not waited for until the deadline,
/// both by the socket's idle check and by the polling fallback.
#[tokio::test]
async fn a_prompt_forgotten_by_a_restarted_comfyui_is_given_up_at_once() {
    for refuse_websocket in [false, true] {
        let config = RehearsalConfig {
            refuse_websocket,
            step_time: Duration::from_millis(200),
            ..Default::default()
        };
        let (rehearsal, client) = backend(config).await;
        let prompt_id = submit_flux(&client).await;
        let restart = {
            let rehearsal = rehearsal.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                rehearsal.restart();
            })
        };
        let error = tokio::time::timeout(
            WAIT,
            client.follow(&prompt_id, "c1", Duration::from_secs(3600), |_, _| {}),
        )
        .await
        .expect("given up at a look, not at the hour-long deadline")
        .unwrap_err();
        restart.await.unwrap();
        assert!(
            matches!(&error, ClientError::Forgotten(id) if *id == prompt_id),
            "socket refused: {refuse_websocket}: {error}"
        );
        assert!(error.to_string().contains("restarted"), "{error}");
    }
}

/// A prompt that runs is found in the queue between history looks (and
/// one that ends between the two looks is found by the second): every
/// prompt here is polled while it runs and ends, none is taken as forgotten.
#[tokio::test]
async fn prompts_that_end_while_followed_are_never_taken_as_forgotten() {
    let config = RehearsalConfig {
        refuse_websocket: true,
        step_time: Duration::from_millis(30),
        ..Default::default()
    };
    let (_rehearsal, client) = backend(config).await;
    for _ in 0..10 {
        let prompt_id = submit_flux(&client).await;
        let outcome = client
            .follow(&prompt_id, "c1", WAIT, |_, _| {})
            .await
            .expect("an ended prompt is found");
        assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_refused_prompt_comes_back_in_comfyuis_error_shape() {
    let (_r, client) = backend(RehearsalConfig::default()).await;
    let bad = json!({"1": {"inputs": {}}});
    match client.submit(&bad, &id(), "c1", None).await {
        Err(ClientError::Rejected(rejected)) => assert_eq!(rejected.error.kind, "invalid_prompt"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_upload_reaches_the_gpu_side() {
    let (rehearsal, client) = backend(RehearsalConfig::default()).await;
    let uploaded = client
        .upload("reference.png", "", b"\x89PNG fake".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (uploaded.name.as_str(), uploaded.kind.as_str()),
        ("reference.png", "input")
    );
    assert_eq!(
        rehearsal.uploaded("reference.png").as_deref(),
        Some(&b"\x89PNG fake"[..])
    );
}

#[tokio::test]
async fn a_job_that_outlives_the_wait_is_a_deadline_error() {
    let config = RehearsalConfig {
        step_time: Duration::from_secs(5),
        max_steps: 10,
        ..Default::default()
    };
    let (_r, client) = backend(config).await;
    let prompt_id = submit_flux(&client).await;
    let started = Instant::now();
    let error = client
        .follow(&prompt_id, "c1", Duration::from_millis(600), |_, _| {})
        .await
        .unwrap_err();
    eprintln!("gave up after {:?}", started.elapsed());
    assert!(
        matches!(error, ClientError::Deadline(d) if d == Duration::from_millis(600)),
        "{error}"
    );
}

#[tokio::test]
async fn a_backend_that_hangs_is_a_transport_error() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = ComfyClient::new(&format!("http://{addr}"), limits()).unwrap();
    let error = client
        .submit(&json!({}), &id(), "c1", None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::Transport { what: "submit", .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_500_is_reported_as_such() {
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = ComfyClient::new(&format!("http://{addr}"), limits()).unwrap();
    let error = client
        .submit(&json!({}), &id(), "c1", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Status {
                what: "submit",
                status: 500
            }
        ),
        "{error}"
    );
    assert!(matches!(
        client.history("x").await,
        Err(ClientError::Status { status: 500, .. })
    ));
}

#[tokio::test]
async fn a_prompt_that_ended_before_the_socket_opened_is_not_waited_for() {
    // A fully cached re-run on a real ComfyUI ends at once, before the
    // client's socket is open: its end is announced to nobody. The client
    // must find it in /history, not sit out the websocket's idle time.
    let rehearsal = Rehearsal::new(RehearsalConfig::default());
    let addr: SocketAddr = rehearsal.serve().await.unwrap();
    let patient = ClientLimits {
        ws_idle: Duration::from_secs(3600),
        ..limits()
    };
    let client = ComfyClient::new(&format!("http://{addr}"), patient).unwrap();
    let prompt_id = submit_flux(&client).await;
    let started = Instant::now();
    while !client
        .history(&prompt_id)
        .await
        .unwrap()
        .is_some_and(|entry| entry.outcome() != Outcome::Pending)
    {
        assert!(started.elapsed() < WAIT, "the prompt never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ended; follow it. Both the idle time and the job wait are an hour:
    // a client that waits for the socket never returns (the bound below
    // catches the hang; it is not a speed measurement).
    let followed = tokio::time::timeout(
        WAIT,
        client.follow(&prompt_id, "c1", Duration::from_secs(3600), |_, _| {}),
    )
    .await
    .expect("the client waited on a socket for an end already announced");
    let outcome = followed.expect("found in /history");
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
}
