//! `comfyume serve` as a real process: it starts on the embedded default
//! with no config, creates the first users, answers `/health`, and stops
//! cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// `comfyume serve` on a free loopback port with `data` as its data
/// folder and working folder (so no config file), plus `env`.
fn spawn_serve(
    data: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> (u16, std::process::Child) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_comfyume"));
    command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(data)
        // No config file: run from a folder without config/comfyume.toml.
        .current_dir(data)
        .env("COMFYUME_LOG", "warn")
        // Tests never reach the internet: no frontend install on first start.
        .env("COMFYUME_FRONTEND__AUTO_INSTALL", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    (port, command.spawn().unwrap())
}

#[test]
fn serve_starts_on_the_embedded_default_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let (port, mut child) = spawn_serve(data.path(), &[]);
    let started = Instant::now();
    let (status, body) = loop {
        if let Some(answer) = get(port, "/health") {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never answered"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queue"]["status"], "ok");
    let active: Vec<&str> = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["active"].as_str())
        .collect();
    assert!(active.contains(&"fair-share@0.1.0"), "{active:?}");
    assert!(active.contains(&"h200-spot@0.1.0"), "{active:?}");
    // No pools configured: one rehearsal pool, labelled as such.
    assert_eq!(health["pools"][0]["name"], "rehearsal");
    assert_eq!(health["pools"][0]["rehearsal"], true);
    assert!(
        data.path().join("queue.sqlite").exists(),
        "the embedded journal lives in --data"
    );
    assert!(
        data.path().join("plugin-cache").is_dir(),
        "compiled plugins are cached in --data"
    );
    // The editor, like every attendee path, needs a login.
    let (status, body) = get(port, "/").unwrap();
    assert_eq!(status, 401, "{body}");

    // SIGTERM: a clean exit.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            exited.elapsed() < Duration::from_secs(20),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // First start on an empty data folder: two users, passwords shown once.
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.contains("first start: created users"), "{stdout}");
    assert!(
        stdout.contains("admin") && stdout.contains("attendee01"),
        "{stdout}"
    );
    let users = std::fs::read_to_string(data.path().join("users.json")).unwrap();
    assert!(users.contains("\"attendee01\"") && users.contains("$argon2id$"));
}

#[test]
fn a_bad_setting_stops_serve_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(["serve", "--data"])
        .arg(data.path())
        .current_dir(data.path())
        .env("COMFYUME_QUEUE__LEASE_SECS", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("config error: queue.lease_secs: "),
        "{stderr}"
    );
    assert!(lines[0].contains("COMFYUME_QUEUE__LEASE_SECS"), "{stderr}");
}

#[test]
fn serve_speaks_https_with_a_configured_certificate() {
    let data = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = data.path().join("cert.pem");
    let key = data.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (port, mut child) = spawn_serve(
        data.path(),
        &[
            ("COMFYUME_SERVER__TLS_CERT", cert.as_path()),
            ("COMFYUME_SERVER__TLS_KEY", key.as_path()),
        ],
    );
    comfyume::tls::install_provider();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        let answer = runtime.block_on(async {
            let response = client
                .get(format!("https://localhost:{port}/health"))
                .send()
                .await
                .ok()?;
            Some((response.status().as_u16(), response.text().await.ok()?))
        });
        if let Some(answer) = answer {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never answered over HTTPS"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.0, 200, "{}", health.1);
    // Plain HTTP on the TLS port gets no page.
    assert!(get(port, "/health").is_none_or(|(status, _)| status != 200));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn away_from_the_checkout_serve_offers_the_templates_built_into_it_without_a_warning() {
    // `attendees.templates_dir` defaults to the relative `workflows/ui`,
    // which is not there when serve runs from another folder (issue 19: a
    // warning and no templates). The templates built into the binary are
    // offered instead, as an ordinary start.
    use base64::Engine as _;
    let data = tempfile::tempdir().unwrap();
    let cheap = argon2::Params::new(8, 1, 1, None).unwrap();
    let hash = comfyume::auth::hash_password("pw", &cheap).unwrap();
    comfyume::auth::UsersFile::update(data.path(), |f| {
        f.add("ann", comfyume::auth::Role::Attendee, hash)
    })
    .unwrap();
    let info = std::path::Path::new("info");
    let (port, mut child) = spawn_serve(data.path(), &[("COMFYUME_LOG", info)]);
    let started = Instant::now();
    while get(port, "/health").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never answered"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let login = base64::engine::general_purpose::STANDARD.encode("ann:pw");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/userdata?dir=workflows/workshop HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Basic {login}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}\n{log}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let listed: Vec<String> = serde_json::from_str(body).unwrap();
    let mut shipped: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/ui"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
    shipped.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, shipped, "{log}");
    assert!(log.contains("built into this binary"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("template")),
        "{log}"
    );
}
