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
//! It needs three things prepared once (`tests/run` does all three) and fails,
//! naming the step, when one is missing:
//! - Chromium from Debian: `apt-get install chromium chromium-driver`;
//! - `npm ci` in `tests/browser` (playwright-core, pinned);
//! - the editor's files: `comfyume frontend install --data <target>/e2e-frontend`
//!   (or a data folder named by `COMFYUME_E2E_FRONTEND`). The test never
//!   downloads anything: the host runs with `frontend.auto_install = false`
//!   and the browser resolves no name but the host's.
//!
//! The second test (issue 6) drives the operator's dashboard at `/admin`
//! with `tests/browser/admin.mjs`: live queue, cancel, plugin upload,
//! activate, rollback, a hostile upload refused, the session switch and the
//! job wait, and (issue 19) Cancel pressed during a burst of submits, the
//! attendees panel, Drain/Close confirmations and Warm up on a second host's
//! default pool, each asserted on the page and then on the API. It needs only
//! Chromium and playwright-core, not the editor's files. The two tests take
//! turns (one lock): two Chromiums at once starve a 2-core CI machine.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use comfyume::front::assets::{PINNED, read_installed, version_dir};

/// The whole browser run: two editors booting on 2 cores take ~25 s.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

/// One browser test at a time (see the module docs).
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Takes the browser lock, even after another test failed holding it.
fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner())
}

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

/// Chromium, node and playwright-core, and `tests/browser/<script>`; what
/// is missing is added to `missing`.
fn browser_setup(script: &str, missing: &mut Vec<String>) -> (PathBuf, PathBuf) {
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
    let script = browser_dir.join(script);
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "playwright-core is not installed: run `npm ci` in {}",
            browser_dir.display()
        ));
    }
    (chromium, script)
}

fn assert_set_up(missing: &[String]) {
    assert!(
        missing.is_empty(),
        "the browser end-to-end test is not set up ({} step(s) missing; `tests/run` does them all):\n  - {}",
        missing.len(),
        missing.join("\n  - ")
    );
}

fn setup() -> Setup {
    let mut missing = Vec::new();
    let (chromium, script) = browser_setup("e2e.mjs", &mut missing);
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
    assert_set_up(&missing);
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

/// `comfyume user add NAME --role ROLE --password-stdin --data DIR`.
fn add_user(data: &Path, name: &str, role: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args([
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--data",
        ])
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

/// `comfyume serve` on `data` with the built-in defaults and `env` on top.
fn start_host(data: &Path, port: u16, log: &Path, env: &[(&str, &str)]) -> Host {
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
        .envs(env.iter().copied())
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
    let args: Vec<std::ffi::OsString> = vec![
        "--url".into(),
        format!("http://127.0.0.1:{port}/").into(),
        "--user-a".into(),
        users[0].0.into(),
        "--user-b".into(),
        users[1].0.into(),
        "--screenshots".into(),
        shots.into(),
        "--chromium".into(),
        setup.chromium.clone().into(),
    ];
    run_node(
        &setup.script,
        &args,
        // Passwords through the environment, never the command line.
        &[
            ("E2E_PASSWORD_A", users[0].1),
            ("E2E_PASSWORD_B", users[1].1),
        ],
        shots,
    )
}

/// Runs `node SCRIPT ARGS` in `tests/browser` with `env`, echoing its
/// output, killing it at the deadline.
fn run_node(
    script: &Path,
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    shots: &Path,
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace().join("tests/browser"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting `node {}`: {e}", script.display()));
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

/// `<target>/browser-e2e/`, emptied of the files `ours` claims (the other
/// test's files stay).
fn screenshot_folder(ours: impl Fn(&str) -> bool) -> PathBuf {
    let shots = target_dir().join("browser-e2e");
    std::fs::create_dir_all(&shots).expect("creating the screenshot folder");
    for entry in std::fs::read_dir(&shots)
        .expect("reading the screenshot folder")
        .filter_map(Result::ok)
    {
        if ours(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    println!(
        "screenshots, requests and the host's log: {}",
        shots.display()
    );
    shots
}

/// The script's `{"summary": …}`, asserted passed with every `wanted`
/// stage; the failure message carries its stages, stderr and the host's log.
fn verdict(
    script: &str,
    (status, stdout, stderr): (ExitStatus, &[String], &[String]),
    log: &Path,
    shots: &Path,
    wanted: &[&str],
) -> serde_json::Value {
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
            tail(log, 40),
            shots.display()
        )
    };
    assert!(
        summary.is_object(),
        "{script} printed no summary (exit {status})\n{}",
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
    for stage in wanted {
        assert!(stages.contains(stage), "stage {stage} missing: {stages:?}");
    }
    summary
}

#[test]
fn two_attendees_in_the_real_editor_against_the_rehearsal_pool() {
    let _one = one_browser();
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
    add_user(data.path(), "alice", "attendee", &alice);
    add_user(data.path(), "bob", "attendee", &bob);

    let shots = screenshot_folder(|name| !name.starts_with("admin-"));
    let port = free_port();
    let log = shots.join("serve.log");
    let host = start_host(data.path(), port, &log, &[]);

    let (status, stdout, stderr) =
        run_browser(&setup, port, [("alice", &alice), ("bob", &bob)], &shots);
    drop(host);
    let summary = verdict(
        "e2e.mjs",
        (status, &stdout, &stderr),
        &log,
        &shots,
        &[
            "a_boot",
            "b_boot",
            "a_open_template",
            "a_save_workflow",
            "a_run",
            "a_output",
            "a_queue_panel",
            "b_isolation",
            "no_page_errors",
        ],
    );
    let pngs = std::fs::read_dir(&shots)
        .expect("reading the screenshot folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .filter(|e| !e.file_name().to_string_lossy().starts_with("admin-"))
        .count();
    assert!(pngs >= 8, "only {pngs} screenshots in {}", shots.display());
    println!(
        "browser end-to-end test passed in {:.1} s (browser {:.1} s); prompt {}",
        started.elapsed().as_secs_f32(),
        summary["total_ms"].as_f64().unwrap_or_default() / 1000.0,
        summary["prompt_id"]
    );
}

/// `GET path` as `user` over plain HTTP/1.1: the status and the JSON body.
fn get_json(port: u16, path: &str, (user, password): (&str, &str)) -> (u16, serde_json::Value) {
    use base64::Engine as _;
    let login = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the host");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {login}\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the answer");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn the_operator_runs_the_workshop_from_the_dashboard() {
    let _one = one_browser();
    let mut missing = Vec::new();
    let (chromium, script) = browser_setup("admin.mjs", &mut missing);
    assert_set_up(&missing);
    let started = Instant::now();
    // No editor's files: /admin needs none (attendees would get the 503 page).
    let data = tempfile::tempdir().expect("a temporary data folder");
    let boss = comfyume::auth::generate_password();
    let ann = comfyume::auth::generate_password();
    add_user(data.path(), "boss", "admin", &boss);
    add_user(data.path(), "ann", "attendee", &ann);
    let fifo = data.path().join("fifo.wasm");
    std::fs::write(
        &fifo,
        comfyume::plugins::builtin::component("fifo").expect("the built-in fifo scheduler"),
    )
    .expect("writing fifo.wasm");
    let hostile = comfyume::plugins::builtin::fixture("hostile-loop").expect("the hostile fixture");
    // A second host with no pool configured (its default rehearsal pool),
    // the same admin login: the dashboard warms that pool up.
    let plain = tempfile::tempdir().expect("a second data folder");
    add_user(plain.path(), "boss", "admin", &boss);

    let shots = screenshot_folder(|name| name.starts_with("admin-"));
    let port = free_port();
    let log = shots.join("admin-serve.log");
    // One slow rehearsal slot: 4 steps of 5 s keep the job cancellable.
    let host = start_host(
        data.path(),
        port,
        &log,
        &[
            ("COMFYUME_POOLS__REHEARSAL__KIND", "rehearsal"),
            ("COMFYUME_POOLS__REHEARSAL__STEP_MS", "5000"),
            ("COMFYUME_POOLS__REHEARSAL__CAPACITY", "1"),
        ],
    );
    let plain_port = free_port();
    let plain_host = start_host(
        plain.path(),
        plain_port,
        &shots.join("admin-serve-default.log"),
        &[],
    );
    let args: Vec<std::ffi::OsString> = vec![
        "--url".into(),
        format!("http://127.0.0.1:{port}/").into(),
        "--default-url".into(),
        format!("http://127.0.0.1:{plain_port}/").into(),
        "--admin".into(),
        "boss".into(),
        "--attendee".into(),
        "ann".into(),
        "--workflow".into(),
        workspace()
            .join("workflows/api/image_flux2_klein_text_to_image.api.json")
            .into(),
        "--plugin".into(),
        fifo.into(),
        "--hostile".into(),
        hostile.into(),
        "--screenshots".into(),
        shots.clone().into(),
        "--chromium".into(),
        chromium.into(),
    ];
    let (status, stdout, stderr) = run_node(
        &script,
        &args,
        &[
            ("E2E_ADMIN_PASSWORD", &boss),
            ("E2E_ATTENDEE_PASSWORD", &ann),
        ],
        &shots,
    );
    let summary = verdict(
        "admin.mjs",
        (status, &stdout, &stderr),
        &log,
        &shots,
        &[
            "login",
            "attendee_sees_a_page",
            "buttons_fit",
            "jobs_appear_live",
            "priority_answer",
            "cancel",
            "wait_and_run_apart",
            "retry_answer",
            "cancel_during_a_burst",
            "attendees_panel",
            "upload_report",
            "activate",
            "rollback",
            "shadow_and_budget",
            "outputs_and_backups",
            "hostile_refused",
            "session_and_job_wait",
            "warm_up_default_pool",
            "polling_fallback",
            "no_page_errors",
        ],
    );

    // What the operator did is what the host now holds.
    let admin = ("boss", boss.as_str());
    let jobs = summary["jobs"]
        .as_array()
        .expect("the summary lists the jobs");
    assert_eq!(jobs.len(), 2, "{summary}");
    for job in jobs {
        let job = job.as_str().expect("a job number");
        let (code, detail) = get_json(port, &format!("/admin/api/jobs/{job}"), admin);
        assert_eq!(code, 200, "{detail}");
        let states: Vec<&str> = detail["history"]
            .as_array()
            .expect("the job's history")
            .iter()
            .filter_map(|t| t["state"].as_str())
            .collect();
        assert!(states.contains(&"cancelled"), "job {job}: {states:?}");
    }
    let (_, plugins) = get_json(port, "/admin/api/plugins", admin);
    let scheduler = plugins["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find(|s| s["slot"] == "scheduler"))
        .expect("a scheduler slot");
    assert!(
        scheduler["active"]
            .as_str()
            .is_some_and(|a| a.starts_with("fair-share@")),
        "{scheduler}"
    );
    assert!(
        scheduler["history"]
            .as_array()
            .is_some_and(|h| h.is_empty()),
        "rolled back to the start: {scheduler}"
    );
    assert_eq!(
        get_json(port, "/admin/api/session", admin).1["state"],
        "open"
    );
    assert_eq!(
        get_json(port, "/admin/api/settings", admin).1["job_wait_secs"],
        900
    );
    assert_eq!(get_json(port, "/admin", ("ann", &ann)).0, 403);
    drop(host);
    drop(plain_host);

    let pngs = std::fs::read_dir(&shots)
        .expect("reading the screenshot folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("admin-"))
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count();
    assert!(
        pngs >= 12,
        "only {pngs} admin screenshots in {}",
        shots.display()
    );
    println!(
        "dashboard browser test passed in {:.1} s (browser {:.1} s); jobs {}",
        started.elapsed().as_secs_f32(),
        summary["total_ms"].as_f64().unwrap_or_default() / 1000.0,
        summary["jobs"],
    );
}
