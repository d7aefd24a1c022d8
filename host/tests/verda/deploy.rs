//! `comfyume verda apply` / `verda status` against the fake management API:
//! a dry run that writes nothing, creates, an unchanged second apply that
//! writes nothing, an update that keeps a pre-warmed minimum, status, and
//! Verda's refusals (quota, an image the registry lacks, `:latest`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use comfyume::config::Secret;
use comfyume::dispatch::rehearsal::verda_management::FakeManagement;
use comfyume::dispatch::verda_scaling::VerdaScaling;
use serde_json::{Value, json};

fn config(dir: &Path, base: &str, image: &str) -> PathBuf {
    let path = dir.join("comfyume.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[verda]
management_url = "{base}"
client_id = "id"
client_secret = "secret"
api_key = "inference-key"

[verda.deploy]
image = "{image}"
models_volume_id = "vol-123"
shm_mib = 16384
secrets = {{ HF_TOKEN = "hf-read-token" }}

[pools.h200-spot]
kind = "verda"
deployment = "comfyume-h200-spot"
gpu = "H200"
tier = "spot"
capacity = 4

[pools.b300-on-demand]
kind = "verda"
deployment = "comfyume-b300"
gpu = "B300"
tier = "on-demand"
capacity = 2

[pools.local]
kind = "rehearsal"
"#
        ),
    )
    .unwrap();
    path
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn comfyume(args: &[&str], config: &Path) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_comfyume"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("COMFYUME_VERDA__CLIENT_SECRET");
    // Off the runtime's threads: the fake answers on them.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

async fn start_fake() -> (std::sync::Arc<FakeManagement>, String) {
    let fake = FakeManagement::new("id", "secret", &[]);
    let addr = fake.serve().await.unwrap();
    (fake, format!("http://{addr}/v1"))
}

#[tokio::test]
async fn apply_creates_then_leaves_alone_then_updates_keeping_the_prewarmed_minimum() {
    let (fake, base) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &base, "ghcr.io/acme/comfyume-gpu:0.1.0");

    let dry = comfyume(&["verda", "apply", "--dry-run"], &cfg).await;
    assert!(dry.ok, "{}", dry.stderr);
    let plans: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(plans.as_array().unwrap().len(), 2);
    let h200 = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["deployment"] == "comfyume-h200-spot")
        .unwrap();
    assert_eq!(h200["action"], "create");
    let body = &h200["requests"][0]["body"];
    assert_eq!(h200["requests"][0]["method"], "POST");
    assert_eq!(h200["requests"][0]["path"], "/container-deployments");
    assert_eq!(body["is_spot"], true);
    assert_eq!(body["compute"], json!({"name": "H200", "size": 1}));
    assert_eq!(
        body["containers"][0]["healthcheck"],
        json!({"enabled": true, "port": 8000, "path": "/health"})
    );
    assert!(body["containers"][0]["env"].as_array().unwrap().contains(&json!(
        {"type": "secret", "name": "HF_TOKEN", "value_or_reference_to_secret": "hf-read-token"}
    )));
    assert!(
        body["containers"][0]["volume_mounts"]
            .as_array()
            .unwrap()
            .contains(&json!(
                {"type": "shared", "mount_path": "/models", "volume_id": "vol-123"}
            ))
    );
    assert_eq!(body["scaling"]["concurrent_requests_per_replica"], 1);
    assert!(
        body["scaling"]["queue_message_ttl_seconds"]
            .as_u64()
            .unwrap()
            >= 600
    );
    assert!(fake.deployment_writes().is_empty(), "a dry run wrote");

    let applied = comfyume(&["verda", "apply"], &cfg).await;
    assert!(applied.ok, "{}", applied.stderr);
    assert_eq!(fake.deployment_writes().len(), 2);
    assert_eq!(
        fake.deployment("comfyume-b300").unwrap()["containers"][0]["image"],
        "ghcr.io/acme/comfyume-gpu:0.1.0"
    );
    assert_eq!(fake.min_replicas("comfyume-b300"), Some(0));

    let again = comfyume(&["verda", "apply"], &cfg).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    assert_eq!(
        fake.deployment_writes().len(),
        2,
        "an unchanged apply wrote"
    );

    // A session pre-warms the H200 pool, then a new image is applied.
    let scaling = VerdaScaling::new(
        &base,
        "id",
        Secret::from("secret".to_string()),
        Duration::from_secs(5),
    )
    .unwrap();
    scaling
        .set_replicas("comfyume-h200-spot", 2, None)
        .await
        .unwrap();
    let cfg = config(dir.path(), &base, "ghcr.io/acme/comfyume-gpu:0.1.1");
    let updated = comfyume(&["verda", "apply"], &cfg).await;
    assert!(updated.ok, "{}", updated.stderr);
    let h200 = fake.deployment("comfyume-h200-spot").unwrap();
    assert_eq!(
        h200["containers"][0]["image"],
        "ghcr.io/acme/comfyume-gpu:0.1.1"
    );
    assert_eq!(
        fake.min_replicas("comfyume-h200-spot"),
        Some(2),
        "apply undid the pre-warm"
    );
    let writes = fake.deployment_writes();
    assert_eq!(writes.len(), 4);
    assert!(
        writes[2..]
            .iter()
            .all(|(m, _, b)| m == "PATCH" && b.get("scaling").is_none())
    );

    let status = comfyume(&["verda", "status", "--json"], &cfg).await;
    assert!(status.ok, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let h200 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["deployment"] == "comfyume-h200-spot")
        .unwrap();
    assert_eq!(h200["status"], "healthy");
    assert_eq!(h200["replicas"]["running"], 2);
    assert_eq!(h200["min_replicas"], 2);
    assert_eq!(h200["max_replicas"], 4);
    let table = comfyume(&["verda", "status"], &cfg).await;
    assert!(
        table.stdout.contains("comfyume-b300") && table.stdout.contains("0/2"),
        "{}",
        table.stdout
    );
}

#[tokio::test]
async fn verda_s_refusals_reach_the_operator_in_verda_s_words() {
    // Quota: 4 + 2 GPUs asked for, 5 allowed; the first deployment (by
    // pool name, b300) is created, the second refused.
    let (fake, base) = start_fake().await;
    fake.set_gpu_quota(5);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &base, "ghcr.io/acme/comfyume-gpu:0.1.0");
    let run = comfyume(&["verda", "apply"], &cfg).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("comfyume-h200-spot") && run.stderr.contains("quota_exceeded"),
        "{}",
        run.stderr
    );
    assert!(fake.deployment("comfyume-b300").is_some());
    assert!(fake.deployment("comfyume-h200-spot").is_none());

    // An image the registry does not have.
    let (fake, base) = start_fake().await;
    fake.set_images(&["ghcr.io/acme/comfyume-gpu:0.1.0"]);
    let cfg = config(dir.path(), &base, "ghcr.io/acme/comfyume-gpu:0.9.9");
    let run = comfyume(&["verda", "apply"], &cfg).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("image_not_found"), "{}", run.stderr);

    // `:latest` is refused before any request, even in a dry run...
    let cfg = config(dir.path(), &base, "ghcr.io/acme/comfyume-gpu:latest");
    for args in [
        &["verda", "apply"][..],
        &["verda", "apply", "--dry-run"][..],
    ] {
        let run = comfyume(args, &cfg).await;
        assert!(!run.ok);
        assert!(run.stderr.contains(":latest"), "{}", run.stderr);
    }
    assert!(fake.deployment_writes().is_empty());
    // ...and by Verda itself, as the fake models it.
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/oauth2/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": "id", "client_secret": "secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer = http
        .post(format!("{base}/container-deployments"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(
            &json!({"name": "x", "containers": [{"image": "a/b:latest", "exposed_port": 8000}],
                      "compute": {"name": "H200", "size": 1}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.contains("latest"), "{text}");
}
