//! The browser end-to-end test of the attendee front (issue 5): the real,
//! unmodified ComfyUI editor in headless Debian Chromium against a real
//! `comfyume serve` on a fresh data folder with the rehearsal pool.
//!
//! It proves that attendee `alice` logs in with Basic Auth, the editor boots
//! without page errors, opens a workshop template from the workflow list,
//! presses Run, sees progress and the output image on the canvas and in the
//! queue panel; and that `bob`, logged in at the same time, sees none of
//! alice's jobs, history, outputs, saved workflows or websocket events.
//! `tests/browser/e2e.mjs` drives the browser; this test prepares the host,
//! runs it and checks its verdict. Screenshots of every stage, the editor's
//! requests and the host's log land in `<target>/browser-e2e/`.
//!
//! It needs three things prepared once (`.ci/run` does all three) and fails,
//! naming the step, when one is missing:
//! - Chromium from Debian: `apt-get install chromium chromium-driver`;
//! - `npm ci` in `tests/browser` (playwright-core, pinned);
//! - the editor's files: `comfyume frontend install --data <target>/e2e-frontend`
//!   (or a data folder named by `COMFYUME_E2E_FRONTEND`). The test never
//!   downloads anything: the host runs with `frontend.auto_install = false`
//!   and the browser resolves no name but the host's.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use comfyume::front::assets::{PINNED, read_installed, version_dir};

/// The whole browser run: two editors booting on 2 cores take ~25 s.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf()
}

/// `<target>/`: the target folder this test was built in (it honours
/// `CARGO_TARGET_DIR`), whose `tmp/` cargo names at build time.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .to_path_buf()
}

/// What the run needs, found or explained.
struct Setup {
    chromium: PathBuf,
    script: PathBuf,
    frontend: PathBuf,
}

fn setup() -> Setup {
    let mut missing = Vec::new();
    let chromium = std::env::var_os("COMFYUME_E2E_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!(
            "no Chromium at {}: apt-get install chromium chromium-driver \
             (or set COMFYUME_E2E_CHROMIUM)",
            chromium.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        missing.push("no `node` on PATH: install Node.js 20 or newer".to_string());
    }
    let browser_dir = workspace().join("tests/browser");
    let script = browser_dir.join("e2e.mjs");
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "playwright-core is not installed: run `npm ci` in {}",
            browser_dir.display()
        ));
    }
    let frontend = std::env::var_os("COMFYUME_E2E_FRONTEND")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("e2e-frontend"));
    let installed = version_dir(&frontend, PINNED.version);
    if read_installed(&installed).is_none() {
        missing.push(format!(
            "the editor's files (comfyui-frontend-package {}) are not in {}: run \
             `cargo run -p comfyume -- frontend install --data {}` \
             (or set COMFYUME_E2E_FRONTEND to a data folder that has them)",
            PINNED.version,
            installed.display(),
            frontend.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser end-to-end test is not set up ({} step(s) missing; .ci/run does them all):\n  - {}",
        missing.len(),
        missing.join("\n  - ")
    );
    Setup {
        chromium,
        script,
        frontend: installed,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `comfyume user add NAME --password-stdin --data DIR`.
fn add_user(data: &Path, name: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(["user", "add", name, "--password-stdin", "--data"])
        .arg(data)
        .current_dir(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting `comfyume user add`");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{password}\n").as_bytes())
        .expect("writing the password to `comfyume user add`");
    let out = child
        .wait_with_output()
        .expect("waiting for `comfyume user add`");
    assert!(
        out.status.success(),
        "`comfyume user add {name}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn health(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The host process; stopped (SIGTERM, then kill) however the test ends.
struct Host {
    child: Child,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_host(data: &Path, port: u16, log: &Path) -> Host {
    let log_file = std::fs::File::create(log).expect("creating the host's log file");
    let child = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(data)
        // No config file: the built-in defaults, i.e. one rehearsal pool.
        .current_dir(data)
        .env("COMFYUME_LOG", "info")
        .env("NO_COLOR", "1")
        // The workshop templates the attendees open.
        .env(
            "COMFYUME_ATTENDEES__TEMPLATES_DIR",
            workspace().join("workflows/ui"),
        )
        // Tests never reach the internet: the frontend is already in --data.
        .env("COMFYUME_FRONTEND__AUTO_INSTALL", "false")
        .stdout(log_file.try_clone().expect("sharing the log file"))
        .stderr(log_file)
        .spawn()
        .expect("starting `comfyume serve`");
    let mut host = Host { child };
    let started = Instant::now();
    loop {
        if health(port) == Some(200) {
            return host;
        }
        if let Ok(Some(status)) = host.child.try_wait() {
            panic!(
                "`comfyume serve` exited early ({status}); its log:\n{}",
                tail(log, 60)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "`comfyume serve` never answered /health; its log:\n{}",
            tail(log, 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn drain(pipe: impl std::io::Read + Send + 'static, echo: bool) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if echo {
                // Captured by the test harness; shown with --nocapture or on failure.
                println!("e2e: {line}");
            }
            lines.push(line);
        }
        lines
    })
}

/// Runs `node e2e.mjs`, killing it at the deadline.
fn run_browser(
    setup: &Setup,
    port: u16,
    users: [(&str, &str); 2],
    shots: &Path,
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut child = Command::new("node")
        .arg(&setup.script)
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["--user-a", users[0].0, "--user-b", users[1].0])
        .arg("--screenshots")
        .arg(shots)
        .arg("--chromium")
        .arg(&setup.chromium)
        // Passwords through the environment, never the command line.
        .env("E2E_PASSWORD_A", users[0].1)
        .env("E2E_PASSWORD_B", users[1].1)
        .current_dir(workspace().join("tests/browser"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting `node tests/browser/e2e.mjs`");
    let stdout = drain(child.stdout.take().expect("stdout is piped"), true);
    let stderr = drain(child.stderr.take().expect("stderr is piped"), true);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser run took more than {} s and was stopped; screenshots in {}",
                BROWSER_DEADLINE.as_secs(),
                shots.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().expect("reading node's stdout");
    let stderr = stderr.join().expect("reading node's stderr");
    (status, stdout, stderr)
}

#[test]
fn two_attendees_in_the_real_editor_against_the_rehearsal_pool() {
    let setup = setup();
    let started = Instant::now();
    let data = tempfile::tempdir().expect("a temporary data folder");
    // The installed editor, shared read-only: <data>/frontend/<version>.
    let frontend = version_dir(data.path(), PINNED.version);
    std::fs::create_dir_all(frontend.parent().expect("frontend/<version> has a parent"))
        .expect("creating <data>/frontend");
    std::os::unix::fs::symlink(&setup.frontend, &frontend)
        .expect("linking the installed frontend into the data folder");

    let alice = comfyume::auth::generate_password();
    let bob = comfyume::auth::generate_password();
    add_user(data.path(), "alice", &alice);
    add_user(data.path(), "bob", &bob);

    let shots = target_dir().join("browser-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("creating the screenshot folder");
    println!(
        "screenshots, requests and the host's log: {}",
        shots.display()
    );
    let port = free_port();
    let log = shots.join("serve.log");
    let host = start_host(data.path(), port, &log);

    let (status, stdout, stderr) =
        run_browser(&setup, port, [("alice", &alice), ("bob", &bob)], &shots);
    drop(host);

    let summary = stdout
        .iter()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("summary").cloned())
        })
        .unwrap_or(serde_json::Value::Null);
    let explain = || {
        format!(
            "stages:\n{}\nstderr:\n{}\nhost log (last 40 lines):\n{}\nscreenshots: {}",
            stdout.join("\n"),
            stderr.join("\n"),
            tail(&log, 40),
            shots.display()
        )
    };
    assert!(
        summary.is_object(),
        "e2e.mjs printed no summary (exit {status})\n{}",
        explain()
    );
    assert!(
        status.success() && summary["ok"] == true,
        "the browser run failed at stage {}: {}\n{}",
        summary["failed_stage"],
        summary["error"],
        explain()
    );
    // Every stage ran and passed, each with its screenshot.
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .expect("the summary lists its stages")
        .iter()
        .filter(|s| s["ok"] == true)
        .filter_map(|s| s["stage"].as_str())
        .collect();
    for wanted in [
        "a_boot",
        "b_boot",
        "a_open_template",
        "a_save_workflow",
        "a_run",
        "a_output",
        "a_queue_panel",
        "b_isolation",
        "no_page_errors",
    ] {
        assert!(
            stages.contains(&wanted),
            "stage {wanted} missing: {stages:?}"
        );
    }
    let pngs = std::fs::read_dir(&shots)
        .expect("reading the screenshot folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count();
    assert!(pngs >= 8, "only {pngs} screenshots in {}", shots.display());
    println!(
        "browser end-to-end test passed in {:.1} s (browser {:.1} s); prompt {}",
        started.elapsed().as_secs_f32(),
        summary["total_ms"].as_f64().unwrap_or_default() / 1000.0,
        summary["prompt_id"]
    );
}
