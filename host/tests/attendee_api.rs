//! The attendee API, over HTTP, against a whole host on the rehearsal
//! backend: the editor's boot calls, a prompt from Run to its output, and
//! isolation between two attendees logged in at once — B never sees, reads
//! or cancels anything of A's — plus bad input of every kind answered with
//! a 4xx and a sentence, never a 500.

#[path = "attendee_api/accounts.rs"]
mod accounts;
#[path = "common/attendee.rs"]
mod attendee;
#[path = "attendee_api/connections.rs"]
mod connections;
#[path = "attendee_api/fair_share.rs"]
mod fair_share;
#[path = "attendee_api/isolation.rs"]
mod isolation;
#[path = "attendee_api/storage.rs"]
mod storage;

use std::time::Duration;

use attendee::{PASSWORD, Running, connect, flux_prompt, frames, start};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_boot_calls_answer_in_comfyui_shape_behind_the_login() {
    let host = start().await;
    assert_eq!(
        host.json("ann", "/api/users").await,
        json!({"storage": "server", "migrated": true})
    );
    assert!(host.json("ann", "/api/settings").await.is_object());
    assert_eq!(
        host.json("ann", "/api/extensions").await,
        json!(["/extensions/comfyume/queue.js"])
    );
    let catalogue = host.json("ann", "/api/object_info").await;
    assert!(catalogue["KSampler"]["input"].is_object());
    assert!(catalogue.as_object().expect("object").len() > 800);
    assert_eq!(
        host.json("ann", "/api/object_info/NoSuchNode").await,
        json!({})
    );
    for path in [
        "/api/features",
        "/api/system_stats",
        "/api/i18n",
        "/api/global_subgraphs",
        "/api/node_replacements",
        "/internal/folder_paths",
        "/api/experiment/models",
        "/api/embeddings",
        "/api/prompt",
        "/api/queue",
        "/api/history",
    ] {
        host.json("ann", path).await;
    }
    let jobs = host
        .json(
            "ann",
            "/api/jobs?status=in_progress,pending&limit=200&offset=0",
        )
        .await;
    assert_eq!(jobs["jobs"], json!([]));
    let extension = host
        .get("ann", "/extensions/comfyume/queue.js")
        .send()
        .await
        .expect("extension");
    assert_eq!(extension.status(), 200);
    assert!(
        extension
            .text()
            .await
            .expect("text")
            .contains("comfyume.queue"),
        "the queue extension is served"
    );
    // Nothing without a login, the editor's own files included.
    for path in ["/api/users", "/api/object_info", "/", "/ws"] {
        let response = host.http.get(host.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let wrong = host
        .http
        .get(host.url("/api/users"))
        .basic_auth("ann", Some("wrong"))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_runs_to_its_output_and_only_its_owner_can_see_or_touch_it() {
    let host = start().await;
    let (status, answer) = host
        .submit(
            "ann",
            json!({"prompt": flux_prompt(), "client_id": "annclient"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["node_errors"], json!({}));
    let id = answer["prompt_id"].as_str().expect("prompt id").to_string();
    assert!(answer["number"].is_u64());

    // B, at the same time: nothing of A's, by any route.
    for path in [format!("/api/jobs/{id}")] {
        let response = host.get("bob", &path).send().await.expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let cancel = host
        .post("bob", &format!("/api/jobs/{id}/cancel"))
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), 404, "B cannot cancel A's job");
    let interrupt = host
        .post("bob", "/api/interrupt")
        .json(&json!({"prompt_id": id}))
        .send()
        .await
        .expect("interrupt");
    assert_eq!(interrupt.status(), 404);
    host.post("bob", "/api/queue")
        .json(&json!({"delete": [id]}))
        .send()
        .await
        .expect("queue delete");
    host.post("bob", "/api/jobs/cancel")
        .json(&json!({"job_ids": [id]}))
        .send()
        .await
        .expect("batch cancel");

    let job = host.finished("ann", &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let output = &job["preview_output"];
    let filename = output["filename"].as_str().expect("an output file");
    let view = format!(
        "/api/view?filename={filename}&subfolder={}&type={}",
        output["subfolder"].as_str().unwrap_or(""),
        output["type"].as_str().unwrap_or("output")
    );
    let mine = host.get("ann", &view).send().await.expect("view");
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.headers()["content-type"], "image/png");
    assert!(!mine.bytes().await.expect("bytes").is_empty());
    assert!(host.json("ann", "/api/history").await[&id].is_object());
    assert_eq!(
        host.json("ann", &format!("/api/history/{id}")).await[&id]["status"]["status_str"],
        "success"
    );

    let theirs = host.get("bob", &view).send().await.expect("view");
    assert_eq!(theirs.status(), 404, "B cannot read A's output");
    assert_eq!(
        host.json("bob", "/api/jobs").await["jobs"],
        json!([]),
        "B's job list is empty"
    );
    assert_eq!(host.json("bob", "/api/history").await, json!({}));
    assert_eq!(
        host.json("bob", &format!("/api/history/{id}")).await,
        json!({})
    );
    assert_eq!(
        host.json("bob", "/api/queue").await,
        json!({"queue_running": [], "queue_pending": []})
    );

    // A hides it from their own history; the job record stays.
    host.post("ann", "/api/history")
        .json(&json!({"delete": [id]}))
        .send()
        .await
        .expect("history delete");
    assert_eq!(host.json("ann", "/api/history").await, json!({}));
    assert!(host.data.join("users/ann/output").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_socket_gets_its_own_users_events_in_comfyui_order() {
    let host = start().await;
    let mut ann = connect(&host, "ann").await;
    let mut bob = connect(&host, "bob").await;
    let hello = frames(&mut ann, Duration::from_secs(5), |_| true).await;
    assert_eq!(hello[0]["type"], "status");
    assert_eq!(hello[0]["data"]["sid"], "anntab");
    frames(&mut bob, Duration::from_secs(5), |_| true).await;

    let (status, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["prompt_id"].as_str().expect("id").to_string();
    let seen = frames(&mut ann, Duration::from_secs(60), |m| {
        m["type"] == "executing" && m["data"]["node"].is_null()
    })
    .await;
    let types: Vec<&str> = seen.iter().filter_map(|m| m["type"].as_str()).collect();
    let position = |t: &str| types.iter().position(|x| *x == t);
    for t in [
        "execution_start",
        "executed",
        "execution_success",
        "executing",
    ] {
        assert!(position(t).is_some(), "{t} missing from {types:?}");
    }
    assert!(position("execution_start") < position("executed"));
    assert!(position("executed") < position("execution_success"));
    let executed = seen
        .iter()
        .find(|m| m["type"] == "executed")
        .expect("executed");
    assert_eq!(executed["data"]["prompt_id"], id);
    assert!(executed["data"]["output"]["images"][0]["filename"].is_string());

    // B's socket heard nothing of it.
    let theirs = frames(&mut bob, Duration::from_millis(500), |_| false).await;
    let leaked: Vec<&Value> = theirs
        .iter()
        .filter(|m| m.to_string().contains(&id))
        .collect();
    assert!(leaked.is_empty(), "B saw A's job: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prompts_get_comfyui_errors_never_a_500() {
    let host = start().await;
    let raw = host
        .post("ann", "/api/prompt")
        .header("content-type", "application/json")
        .body("{\"prompt\": {")
        .send()
        .await
        .expect("post");
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_prompt");

    let (status, body) = host.submit("ann", json!({"client_id": "x"})).await;
    assert_eq!(
        (status, body["error"]["type"].clone()),
        (400, json!("no_prompt"))
    );

    let mut unknown = flux_prompt();
    unknown["99"] =
        json!({"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "My Node"}});
    let (status, body) = host.submit("ann", json!({"prompt": unknown})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "missing_node_type");
    assert_eq!(body["error"]["extra_info"]["node_id"], "99");

    let (status, body) = host
        .submit(
            "ann",
            json!({"prompt": flux_prompt(), "prompt_id": "not-a-uuid"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].clone()),
        (400, json!("invalid_prompt_id"))
    );

    let no_output = json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}});
    let (status, body) = host.submit("ann", json!({"prompt": no_output})).await;
    assert_eq!(
        (status, body["error"]["type"].clone()),
        (400, json!("prompt_no_outputs"))
    );

    // The Flux2 validator refuses a width that is not a multiple of 16.
    let mut odd = flux_prompt();
    odd["75:68"]["inputs"]["value"] = json!(1000);
    let (status, body) = host.submit("ann", json!({"prompt": odd})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation");
    let errors = body["node_errors"].as_object().expect("node errors");
    assert!(!errors.is_empty(), "{body}");

    let (status, body) = host.submit("ann", json!({"prompt": [1, 2]})).await;
    assert_eq!(status, 400, "{body}");

    let mut oversized = flux_prompt();
    oversized["76"]["inputs"]["value"] = json!("x".repeat(3 << 20));
    let refused = host
        .post("ann", "/api/prompt")
        .json(&json!({"prompt": oversized}))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), 413);
    // The body was not read: the connection must not carry another request.
    assert_eq!(refused.headers()["connection"], "close");
    assert!(
        host.json("ann", "/api/jobs").await["jobs"]
            .as_array()
            .expect("jobs")
            .is_empty(),
        "nothing was queued"
    );
}

fn small_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbaImage::from_pixel(8, 8, image::Rgba([200, 40, 40, 255]))
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    // A PNG signature and IHDR: enough for the sniffing, not a whole image.
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

async fn upload(host: &Running, user: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    let response = host
        .post(user, "/api/upload/image")
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_sniffed_capped_and_private() {
    let host = start().await;
    let png = small_png();
    let (status, body) = upload(&host, "ann", "photo.png", png.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"name": "photo.png", "subfolder": "", "type": "input"})
    );
    // The same bytes again: the same name; other bytes: a new name.
    assert_eq!(
        upload(&host, "ann", "photo.png", png.clone()).await.1["name"],
        "photo.png"
    );
    let mut other = png.clone();
    other.extend_from_slice(b"trailing");
    assert_eq!(
        upload(&host, "ann", "photo.png", other).await.1["name"],
        "photo (1).png"
    );

    let view = "/api/view?filename=photo.png&type=input";
    assert_eq!(
        host.get("ann", view).send().await.expect("view").status(),
        200
    );
    assert_eq!(
        host.get("bob", view).send().await.expect("view").status(),
        404
    );

    let (status, body) = upload(&host, "ann", "notes.png", b"#!/bin/sh\necho hi\n".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("not a PNG")
    );
    let (status, _) = upload(&host, "ann", "huge.png", png_header(20_000, 20_000)).await;
    assert_eq!(status, 400, "more megapixels than the cap");
    let (status, _) = upload(&host, "ann", "../escape.png", png.clone()).await;
    assert_eq!(status, 400);
    let (status, _) = upload(&host, "ann", "big.png", {
        let mut big = png.clone();
        big.resize(101 << 20, 0);
        big
    })
    .await;
    assert_eq!(status, 413);
    assert!(!host.data.join("users/ann/escape.png").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userdata_is_per_user_with_read_only_templates_and_no_way_out() {
    let host = start().await;
    let list = "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true";
    let templates = host.json("ann", list).await;
    let names: Vec<&str> = templates
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(!names.is_empty(), "the workshop templates are listed");
    assert!(
        names.iter().all(|n| n.starts_with("workshop/")),
        "{names:?}"
    );
    let template = format!("/api/userdata/workflows%2F{}", names[0].replace('/', "%2F"));
    let body = host.json("ann", &template).await;
    assert!(body["nodes"].is_array(), "a UI-format workflow");
    let overwrite = host
        .post("ann", &template)
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(overwrite.status(), 403, "templates are read-only");
    let delete = host
        .http
        .delete(host.url(&template))
        .basic_auth("ann", Some(PASSWORD))
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), 403);

    let saved = host
        .post(
            "ann",
            "/api/userdata/workflows%2Fmine.json?overwrite=false&full_info=true",
        )
        .body("{\"nodes\": []}")
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), 200);
    let again = host
        .post("ann", "/api/userdata/workflows%2Fmine.json?overwrite=false")
        .body("{}")
        .send()
        .await
        .expect("save");
    assert_eq!(again.status(), 409);
    let ann_list = host.json("ann", list).await.to_string();
    assert!(ann_list.contains("\"mine.json\""), "{ann_list}");
    let bob_list = host.json("bob", list).await.to_string();
    assert!(
        !bob_list.contains("mine.json"),
        "B sees A's workflow: {bob_list}"
    );
    assert_eq!(
        host.get("bob", "/api/userdata/workflows%2Fmine.json")
            .send()
            .await
            .expect("get")
            .status(),
        404
    );

    // A symlink planted in A's folder (by anyone) leads nowhere.
    std::fs::write(host.data.join("secret.txt"), "operator only").expect("secret");
    std::os::unix::fs::symlink(
        host.data.join("secret.txt"),
        host.data.join("users/ann/userdata/workflows/link.json"),
    )
    .expect("symlink");
    for path in [
        "/api/userdata/..%2F..%2F..%2Fusers.json",
        "/api/userdata/%2e%2e%2F%2e%2e%2Fbob%2Fuserdata%2Fworkflows%2Fmine.json",
        "/api/userdata/%2Fetc%2Fpasswd",
        "/api/userdata/workflows%2Flink.json",
        "/api/userdata/.hidden",
        "/api/view?filename=..%2F..%2F..%2Fusers.json&type=output",
        "/api/view?filename=passwd&subfolder=%2Fetc&type=output",
        "/api/view?filename=x.png&type=../../bob",
    ] {
        let response = host.get("ann", path).send().await.expect("get");
        let status = response.status().as_u16();
        let text = response.text().await.expect("text");
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(
            !text.contains("argon2") && !text.contains("operator only"),
            "{path}: {text}"
        );
    }
    let escape = host
        .post("ann", "/api/userdata/..%2Fescape.json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(escape.status(), 400);
    assert!(!host.data.join("users/ann/escape.json").exists());

    // Settings are per user too.
    host.post("ann", "/api/settings/Comfy.ColorPalette")
        .json(&json!("light"))
        .send()
        .await
        .expect("setting");
    assert_eq!(
        host.json("ann", "/api/settings/Comfy.ColorPalette").await,
        json!("light")
    );
    assert_eq!(
        host.json("bob", "/api/settings/Comfy.ColorPalette").await,
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_burst_is_refused_then_rate_limited() {
    let host = start().await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = host
            .http
            .get(host.url("/api/jobs"))
            .basic_auth("ann", Some("guess"))
            .send()
            .await
            .expect("get");
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_shows_its_place_and_an_eta_on_the_socket() {
    // One GPU, 1 s per step: the second job waits behind the first.
    let host = attendee::start_with(|config| {
        if let Some(pool) = config.pools.get_mut("rehearsal") {
            pool.capacity = 1;
            pool.step_ms = 1000;
        }
    })
    .await;
    let mut ann = connect(&host, "ann").await;
    frames(&mut ann, Duration::from_secs(5), |_| true).await;
    let (first, _) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    let (second, answer) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
    assert_eq!((first, second), (200, 200), "{answer}");
    let number = answer["number"].as_u64().expect("number");
    let seen = frames(&mut ann, Duration::from_secs(20), |m| {
        m["type"] == "comfyume.queue"
            && m["data"]["jobs"]
                .as_array()
                .is_some_and(|jobs| jobs.iter().any(|j| j["number"] == number))
    })
    .await;
    let queue = seen
        .iter()
        .rev()
        .find(|m| m["type"] == "comfyume.queue")
        .unwrap_or_else(|| panic!("no queue message in {seen:?}"));
    let spot = &queue["data"]["jobs"][0];
    assert_eq!(spot["number"], number, "{queue}");
    assert_eq!(spot["position"], 1, "{queue}");
    assert!(spot["eta_seconds"].as_u64().is_some(), "{queue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_act_with_a_browsers_cached_login() {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let host = start().await;
    let own = format!("http://{}", host.addr);
    let submit = |origin: Option<&str>, forwarded: Option<&str>| {
        let mut request = host
            .post("ann", "/api/prompt")
            .json(&json!({"prompt": flux_prompt()}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-host", forwarded);
        }
        request.send()
    };
    let evil = submit(Some("https://evil.example"), None)
        .await
        .expect("post");
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("cross-site"),
        "{body}"
    );
    assert_eq!(
        submit(Some(&own), None).await.expect("post").status(),
        200,
        "the editor's own page"
    );
    assert_eq!(
        submit(None, None).await.expect("post").status(),
        200,
        "scripts send no Origin"
    );
    assert_eq!(
        submit(
            Some("https://workshop.example.org"),
            Some("workshop.example.org")
        )
        .await
        .expect("post")
        .status(),
        200,
        "behind a proxy that passes X-Forwarded-Host"
    );
    // Reading is not acting: a cross-site GET is answered (the browser's
    // same-origin policy keeps the answer from the other page).
    let read = host
        .get("ann", "/api/queue")
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);

    // A websocket opened by another site's page is refused.
    let token = base64::engine::general_purpose::STANDARD.encode(format!("ann:{PASSWORD}"));
    let mut request = format!("ws://{}/ws?clientId=x", host.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Basic {token}").parse().expect("header"),
    );
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        Err(other) => panic!("a cross-site websocket failed otherwise: {other}"),
        Ok(_) => panic!("a cross-site websocket was accepted"),
    }
}

/// One edit of a valid prompt, for the fuzzing below.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    SetInput(usize, usize, Value),
    SetClass(usize, String),
    Add(String, String, Value),
}

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        ("[0-9]{1,3}|x|-1|", 0u64..4).prop_map(|(id, out)| json!([id, out])),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn edits() -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let edit = prop_oneof![
        (0usize..20).prop_map(Edit::Delete),
        (0usize..20, 0usize..6, json_value()).prop_map(|(n, i, v)| Edit::SetInput(n, i, v)),
        (
            0usize..20,
            prop_oneof![
                Just("KSampler".to_string()),
                Just("SaveImage".to_string()),
                ".{0,16}"
            ]
        )
            .prop_map(|(n, c)| Edit::SetClass(n, c)),
        ("[0-9a-z:]{1,6}", ".{0,16}", json_value())
            .prop_map(|(id, class, inputs)| Edit::Add(id, class, inputs)),
    ];
    proptest::collection::vec(edit, 1..6)
}

fn apply(mut prompt: Value, edits: &[Edit]) -> Value {
    let Some(nodes) = prompt.as_object_mut() else {
        return prompt;
    };
    for edit in edits {
        let ids: Vec<String> = nodes.keys().cloned().collect();
        let pick = |n: usize| ids.get(n % ids.len().max(1)).cloned();
        match edit {
            Edit::Delete(n) => {
                if let Some(id) = pick(*n) {
                    nodes.remove(&id);
                }
            }
            Edit::SetInput(n, i, value) => {
                if let Some(node) = pick(*n).and_then(|id| nodes.get_mut(&id))
                    && let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut)
                {
                    let keys: Vec<String> = inputs.keys().cloned().collect();
                    let key = keys
                        .get(i % keys.len().max(1))
                        .cloned()
                        .unwrap_or_else(|| "steps".into());
                    inputs.insert(key, value.clone());
                }
            }
            Edit::SetClass(n, class) => {
                if let Some(node) = pick(*n).and_then(|id| nodes.get_mut(&id)) {
                    node["class_type"] = json!(class);
                }
            }
            Edit::Add(id, class, inputs) => {
                nodes.insert(id.clone(), json!({"class_type": class, "inputs": inputs}));
            }
        }
    }
    prompt
}

/// Issue 8's fuzzing of the prompt path (JSON → graph → validators),
/// bounded: valid prompts edited at random are answered 200 or a 4xx in
/// ComfyUI's shape, never a 5xx; and the validators are still healthy
/// afterwards (no attendee can get them disabled by sending junk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomly_broken_prompts_get_a_clear_answer_and_never_disable_a_validator() {
    use proptest::strategy::{Strategy as _, ValueTree as _};
    let host = start().await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = edits();
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..120 {
        let edits = strategy.new_tree(&mut runner).expect("edits").current();
        let prompt = apply(flux_prompt(), &edits);
        let (status, body) = host.submit("ann", json!({"prompt": prompt})).await;
        *seen.entry(status).or_default() += 1;
        assert!(
            status == 200 || (400..500).contains(&status),
            "case {case}: {status} {body}\nedits: {edits:?}"
        );
        if status == 200 {
            assert!(body["prompt_id"].is_string(), "case {case}: {body}");
        } else if status == 400 {
            assert!(body["error"]["type"].is_string(), "case {case}: {body}");
            assert!(body["node_errors"].is_object(), "case {case}: {body}");
        }
        if status == 429 {
            // ann's waiting cap: let the rehearsal pool catch up.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Both sides were exercised: edits the validators accept and refuse.
    assert!(
        seen.contains_key(&200) && seen.contains_key(&400),
        "{seen:?}"
    );
    // The untouched prompt still goes through: no validator was disabled.
    let (status, body) = host.submit("bob", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "{body}");
}
