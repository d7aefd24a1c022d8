//! Pools switched in and out of use, and pre-warmed (Verda's management
//! API against its fake; a warm-up job elsewhere), over the operator's API.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_taken_out_of_use_and_back_without_a_restart() {
    let host = start_with(5, |config| {
        let mut second = comfyume::config::PoolConfig::rehearsal();
        second.cold_start_ms = 0;
        second.step_ms = 5;
        config.pools.insert("second".into(), second);
    })
    .await;
    let put = |name: &str, in_use: bool| {
        host.http
            .put(host.url(&format!("/admin/api/pools/{name}")))
            .basic_auth("boss", Some(PASSWORD))
            .json(&json!({ "in_use": in_use }))
    };
    let run = |user: &'static str| {
        let host = &host;
        async move {
            let (status, answer) = host.submit(user, json!({"prompt": flux_prompt()})).await;
            assert_eq!(status, 200, "{answer}");
            let id = answer["number"].as_u64().expect("number");
            wait_state(host, id, "succeeded").await["pool"].clone()
        }
    };
    for (out, other) in [("rehearsal", "second"), ("second", "rehearsal")] {
        let (status, body) = send(put(out, false)).await;
        assert_eq!(status, 200, "{body}");
        let pools = body["pools"].as_array().expect("pools");
        let view = pools.iter().find(|p| p["name"] == out).expect("pool");
        assert_eq!(view["in_use"], false, "{body}");
        for user in ["ann", "bob", "ann"] {
            assert_eq!(run(user).await, other, "every new job goes to {other}");
        }
        let (status, body) = send(put(other, false)).await;
        assert_eq!(status, 409, "the last pool in use stays: {body}");
        let saved = std::fs::read_to_string(host.data.join("admin_settings.json")).expect("saved");
        assert!(saved.contains(out), "kept across restarts: {saved}");
        let (status, _) = send(put(out, true)).await;
        assert_eq!(status, 200);
    }
    let (status, _) = send(put("nowhere", false)).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        host.http
            .put(host.url("/admin/api/pools/second"))
            .basic_auth("ann", Some(PASSWORD))
            .json(&json!({"in_use": false})),
    )
    .await;
    assert_eq!(status, 403);
    let saved = std::fs::read_to_string(host.data.join("admin_settings.json")).expect("saved");
    assert!(
        !saved.contains("pools_out_of_use"),
        "both back in use: {saved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verda_pool_is_prewarmed_through_the_management_api_and_released_at_close() {
    use comfyume::config::{PoolConfig, PoolKind};
    use comfyume::dispatch::rehearsal::verda_management::FakeManagement;
    let fake = FakeManagement::new("workshop", "s3cret", &["comfyume-h200"]);
    let addr = fake.serve().await.expect("fake management API");
    let host = start_with(5, |config| {
        config.verda.management_url = format!("http://{addr}/v1");
        config.verda.client_id = Some("workshop".into());
        config.verda.client_secret = Some("s3cret".to_string().into());
        config.verda.base_url = "http://127.0.0.1:9".into();
        config.verda.api_key = Some("inference-key".to_string().into());
        for (name, deployment) in [("h200", "comfyume-h200"), ("b300", "not-deployed")] {
            config.pools.insert(
                name.into(),
                PoolConfig {
                    kind: PoolKind::Verda,
                    deployment: Some(deployment.into()),
                    prewarm_replicas: 2,
                    ..PoolConfig::rehearsal()
                },
            );
        }
    })
    .await;
    let post = |path: &str, body: Option<Value>| {
        let request = host.post("boss", path);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    };
    let (status, body) = send(post("/admin/api/pools/h200/prewarm", None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["min_replicas"].clone(), body["restore_to"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(fake.min_replicas("comfyume-h200"), Some(2));
    let patch = &fake.patches()[0].1;
    assert_eq!(
        patch["queue_message_ttl_seconds"], 900,
        "the other settings are kept: {patch}"
    );

    // An expired token is fetched again; a second pre-warm keeps what to
    // restore. Above the deployment's maximum (4), it raises that too.
    fake.expire_tokens();
    let (status, body) = send(post(
        "/admin/api/pools/h200/prewarm",
        Some(json!({"replicas": 6})),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            fake.min_replicas("comfyume-h200"),
            fake.max_replicas("comfyume-h200"),
            body["restore_to"].clone()
        ),
        (Some(6), Some(6), json!(0))
    );
    let saved = std::fs::read_to_string(host.data.join("admin_settings.json")).expect("saved");
    assert!(saved.contains("prewarmed"), "{saved}");
    let pools = host.json("boss", "/admin/api/pools").await;
    let h200 = pools["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["name"] == "h200")
        .expect("h200")
        .clone();
    assert_eq!(
        (h200["kind"].clone(), h200["prewarmed"].clone()),
        (json!("verda"), json!(true)),
        "{h200}"
    );

    // A pool without replicas to hold up is warmed by a one-step job.
    let (status, body) = send(post("/admin/api/pools/rehearsal/prewarm", None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["warm_up"], "comfyume_flux2_klein_4b_t2i_distilled",
        "{body}"
    );
    assert!(body["took_seconds"].as_f64().is_some(), "{body}");
    let (status, body) = send(post(
        "/admin/api/pools/rehearsal/prewarm",
        Some(json!({"template": "../../etc/passwd"})),
    ))
    .await;
    assert_eq!(status, 404, "only workshop templates: {body}");
    let (status, _) = send(
        host.http
            .delete(host.url("/admin/api/pools/rehearsal/prewarm"))
            .basic_auth("boss", Some(PASSWORD)),
    )
    .await;
    assert_eq!(status, 409, "nothing to release on a rehearsal pool");
    let (status, body) = send(post("/admin/api/pools/b300/prewarm", None)).await;
    assert_eq!(status, 502, "Verda's refusal is named: {body}");
    assert!(
        body["error"].as_str().expect("error").contains("404"),
        "{body}"
    );
    let (status, _) = send(post(
        "/admin/api/pools/h200/prewarm",
        Some(json!({"replicas": 0})),
    ))
    .await;
    assert_eq!(status, 400);

    // Closing the session lets the replicas go.
    let (status, body) = send(
        host.http
            .put(host.url("/admin/api/session"))
            .basic_auth("boss", Some(PASSWORD))
            .json(&json!({"state": "closed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["prewarm_released"].to_string().contains("h200"),
        "{body}"
    );
    assert_eq!(
        (
            fake.min_replicas("comfyume-h200"),
            fake.max_replicas("comfyume-h200")
        ),
        (Some(0), Some(4)),
        "both bounds are back"
    );
    let (status, _) = send(
        host.http
            .delete(host.url("/admin/api/pools/h200/prewarm"))
            .basic_auth("boss", Some(PASSWORD)),
    )
    .await;
    assert_eq!(status, 409, "nothing left to release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rehearsal_pool_warms_up_under_the_name_the_pool_list_gives() {
    // No pool configured: the host runs its default rehearsal pool, which
    // the pool list names; warming it by that name must find it (issue 19:
    // it answered 404 "no pool named rehearsal").
    let host = start_with(5, |config| config.pools.clear()).await;
    let listed = host.json("boss", "/admin/api/pools").await;
    let pools = listed["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 1, "{listed}");
    let name = pools[0]["name"].as_str().expect("a name").to_string();
    assert_eq!(pools[0]["kind"], "rehearsal", "{listed}");
    let (status, body) = send(host.post("boss", &format!("/admin/api/pools/{name}/prewarm"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pool"], name.as_str(), "{body}");
    assert!(body["took_seconds"].as_f64().is_some(), "{body}");
}
