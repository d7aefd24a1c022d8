//! What attendees store (settings, user data) is bounded at write, always
//! readable back, and refused in JSON, never with the host's paths.

use serde_json::{Value, json};

use super::attendee::start;

fn nested(levels: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!([value]);
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_setting_is_refused_and_the_editor_still_starts() {
    let host = start().await;
    let deep = host
        .post("ann", "/api/settings/Comfy.Deep")
        .json(&nested(127))
        .send()
        .await
        .expect("post");
    assert_eq!(deep.status(), 400);
    let body: Value = deep.json().await.expect("json");
    assert!(body["error"].as_str().is_some(), "{body}");
    let settings = host.json("ann", "/api/settings").await;
    assert!(settings.is_object(), "{settings}");
    // A sensible nesting is kept.
    let fine = host
        .post("ann", "/api/settings/Comfy.Fine")
        .json(&nested(8))
        .send()
        .await
        .expect("post");
    assert_eq!(fine.status(), 200);
    assert_eq!(
        host.json("ann", "/api/settings/Comfy.Fine").await,
        nested(8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_settings_file_answers_as_empty_without_host_paths() {
    let host = start().await;
    let file = host.data.join("users/ann/comfy.settings.json");
    std::fs::create_dir_all(file.parent().expect("folder")).expect("folder");
    std::fs::write(&file, format!("{}1{}", "[".repeat(200), "]".repeat(200))).expect("write");
    let response = host.get("ann", "/api/settings").send().await.expect("get");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(!text.contains(&host.data.display().to_string()), "{text}");
    let settings: Value = serde_json::from_str(&text).expect("json");
    assert!(settings.is_object(), "{settings}");
    // And the next write replaces the corrupt file.
    let saved = host
        .post("ann", "/api/settings/Comfy.Locale")
        .json(&json!("en"))
        .send()
        .await
        .expect("post");
    assert_eq!(saved.status(), 200);
    assert_eq!(host.json("ann", "/api/settings/Comfy.Locale").await, "en");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_userdata_cap_is_reachable_and_past_it_the_refusal_is_json() {
    let host = start().await;
    // 3 MiB: under the 4096 KiB cap, over the framework's 2 MB default.
    let big = "x".repeat(3 << 20);
    let saved = host
        .post("ann", "/api/userdata/workflows%2Fbig.json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(saved.status(), 200, "{:?}", saved.text().await);
    let over = host
        .post("ann", "/api/userdata/workflows%2Fover.json")
        .body("x".repeat(5 << 20))
        .send()
        .await
        .expect("post");
    assert_eq!(over.status(), 413);
    let body: Value = over.json().await.expect("a JSON refusal");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("KiB"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_files_take_their_type_from_their_bytes_and_cannot_run_scripts() {
    let host = start().await;
    let input = host.data.join("users/ann/input");
    std::fs::create_dir_all(&input).expect("folder");
    let png = super::small_png();
    std::fs::write(input.join("photo.png"), &png).expect("png");
    let mut disguised = png.clone();
    disguised.extend_from_slice(b"<script>alert(document.cookie)</script>");
    std::fs::write(input.join("x.html"), &disguised).expect("x.html");
    std::fs::write(input.join("page.png"), b"<html><script>alert(1)</script>").expect("page");
    let view = |name: &str| {
        host.get("ann", &format!("/api/view?filename={name}&type=input"))
            .send()
    };
    for (name, mime, disposition) in [
        ("photo.png", "image/png", "inline"),
        ("x.html", "image/png", "inline"),
        ("page.png", "application/octet-stream", "attachment"),
    ] {
        let response = view(name).await.expect("view");
        assert_eq!(response.status(), 200, "{name}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], mime, "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{name}: {csp}"
        );
        let given = headers["content-disposition"]
            .to_str()
            .expect("disposition");
        assert!(given.starts_with(disposition), "{name}: {given}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_header_on_garbage_is_refused_and_uploads_have_a_quota() {
    let host = super::attendee::start_with(|config| {
        config.attendees.max_upload_files = 2;
    })
    .await;
    let mut zeros = super::png_header(64, 64);
    zeros.resize(50 << 20, 0);
    let (status, body) = super::upload(&host, "ann", "zeros.png", zeros).await;
    assert_eq!(status, 400, "{body}");
    assert!(!host.data.join("users/ann/input/zeros.png").exists());

    let long = format!("{}.png", "n".repeat(300));
    let (status, body) = super::upload(&host, "ann", &long, super::small_png()).await;
    assert_eq!(status, 400, "a long name is the attendee's to fix: {body}");

    let mut second = super::small_png();
    second.extend_from_slice(b"second");
    let mut third = super::small_png();
    third.extend_from_slice(b"third");
    for (name, bytes) in [("a.png", super::small_png()), ("b.png", second)] {
        let (status, body) = super::upload(&host, "ann", name, bytes).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (status, body) = super::upload(&host, "ann", "c.png", third.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("files"),
        "{body}"
    );
    // Bob's quota is his own; nothing half-written is left behind.
    let (status, _) = super::upload(&host, "bob", "c.png", third).await;
    assert_eq!(status, 200);
    let leftovers: Vec<_> = std::fs::read_dir(host.data.join("users/ann"))
        .expect("ann's folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
