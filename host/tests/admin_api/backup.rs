//! Backups to an S3-compatible bucket: a real moto S3 server on a free
//! loopback port, read back with an S3 client of our own.

use super::*;

/// A moto S3 server (`pip install 'moto[server]'`, as `tests/run` does) on a
/// free loopback port, killed when dropped.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    comfyume::tls::install_provider();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        if reqwest::get(format!("{}/", moto.url)).await.is_ok() {
            return moto;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto's S3 server did not start: pip install 'moto[server]==5.1.22' (`tests/run` does)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_history_are_backed_up_to_an_s3_bucket_incrementally() {
    use futures_util::StreamExt as _;
    use object_store::ObjectStore as _;
    let s3 = moto().await;
    // The bucket, created as an operator would beforehand.
    let created = reqwest::Client::new()
        .put(format!("{}/workshop", s3.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let endpoint = s3.url.clone();
    let host = start_with(5, move |config| {
        config.backup.bucket = Some("workshop".into());
        config.backup.endpoint = Some(endpoint);
        config.backup.region = "us-east-1".into();
        config.backup.access_key_id = Some("testing".into());
        config.backup.secret_access_key = Some("testing".to_string().into());
        config.backup.prefix = "day1".into();
    })
    .await;
    for user in ["ann", "bob"] {
        let (_, answer) = host.submit(user, json!({"prompt": flux_prompt()})).await;
        host.finished(user, answer["prompt_id"].as_str().expect("id"))
            .await;
    }
    let (status, report) = send(host.post("boss", "/admin/api/backups")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["uploaded"].clone(), report["skipped"].clone()),
        (json!(2), json!(0)),
        "{report}"
    );
    assert_eq!(report["history_jobs"], 2);
    assert!(report["bytes"].as_u64().expect("bytes") > 0);

    // What is in the bucket, read back with an S3 client of our own.
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("workshop")
        .with_region("us-east-1")
        .with_endpoint(&s3.url)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("client");
    let keys: Vec<String> = bucket
        .list(None)
        .map(|m| m.expect("listing").location.to_string())
        .collect()
        .await;
    for user in ["ann", "bob"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("day1/outputs/{user}/")) && k.ends_with(".png")),
            "{user}'s output in {keys:?}"
        );
    }
    assert!(
        keys.contains(&"day1/history/latest.jsonl".to_string()),
        "{keys:?}"
    );
    let history = object_store::ObjectStoreExt::get(&bucket, &"day1/history/latest.jsonl".into())
        .await
        .expect("history")
        .bytes()
        .await
        .expect("bytes");
    let jobs: Vec<Value> = history
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "succeeded" && j["history"].is_array())
    );
    assert!(
        !String::from_utf8_lossy(&history).contains("argon2"),
        "no password hashes"
    );

    // Nothing new: nothing sent again.
    let (status, again) = send(host.post("boss", "/admin/api/backups")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["uploaded"].clone(), again["skipped"].clone()),
        (json!(0), json!(2)),
        "{again}"
    );
    let status_view = host.json("boss", "/admin/api/backups").await;
    assert_eq!(status_view["last"]["skipped"], 2, "{status_view}");
    assert_eq!(status_view["configured"], true);

    // A bucket that refuses: 502 with the reason, kept as the last result.
    drop(s3);
    let (status, failed) = send(host.post("boss", "/admin/api/backups")).await;
    assert_eq!(status, 502, "{failed}");
    assert!(failed["error"].is_string(), "{failed}");
}
