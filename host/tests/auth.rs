//! Attendee logins end to end: a real users file in a tempdir, the auth
//! layer on a real loopback HTTP server, and the `comfyume user` command as
//! a separate process editing the file while the server runs.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::Message;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use comfyume::auth::http::CHALLENGE;
use comfyume::auth::{
    AuthError, AuthSettings, Authenticator, Identity, Role, UsersFile, hash_password, require_role,
    require_user,
};

/// Cheap argon2 for hashes the tests write themselves; the server side still
/// verifies whatever parameters a hash carries (the CLI writes defaults).
fn cheap() -> argon2::Params {
    argon2::Params::new(8, 1, 1, None).expect("params")
}

fn settings() -> AuthSettings {
    AuthSettings {
        params: cheap(),
        ..AuthSettings::default()
    }
}

fn add_user(data: &Path, name: &str, role: Role, password: &str) {
    let hash = hash_password(password, &cheap()).expect("hash");
    UsersFile::update(data, |f| f.add(name, role, hash)).expect("add user");
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Serves `/me` and `/ws` behind `require_user`, `/admin` behind
/// `require_role(Admin)`, on a loopback port with `ConnectInfo`.
async fn serve(auth: Arc<Authenticator>) -> SocketAddr {
    let attendee = Router::new()
        .route(
            "/me",
            get(|id: Identity| async move {
                Json(serde_json::json!({"name": id.name, "role": id.role}))
            }),
        )
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade, id: Identity| async move {
                ws.on_upgrade(move |mut socket| async move {
                    let _ = socket.send(Message::Text(id.name.into())).await;
                })
            }),
        )
        .layer(require_user(auth.clone()));
    let admin = Router::new()
        .route("/admin", get(|| async { "admin" }))
        .layer(require_role(auth.clone(), Role::Admin));
    let app = attendee.merge(admin).with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

/// A client whose connections come from `source` (any 127/8 address works
/// on loopback), so tests can play several clients.
fn client_from(source: [u8; 4]) -> reqwest::Client {
    comfyume::tls::install_provider();
    reqwest::Client::builder()
        .local_address(IpAddr::from(source))
        .build()
        .unwrap()
}

async fn get_as(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(format!("http://{address}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .arg("user")
        .args(args)
        .arg("--data")
        .arg(data)
        // No config/comfyume.toml here: the data folder comes from --data.
        .current_dir(data)
        .env("COMFYUME_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Longer than the authenticator's once-a-second file check.
const RELOAD: Duration = Duration::from_millis(1_200);

const LOCAL: [u8; 4] = [127, 0, 0, 1];

#[tokio::test]
async fn wrong_password_is_401_with_a_challenge_and_the_right_one_is_cached() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "right-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let client = client_from(LOCAL);

    let wrong = get_as(&client, address, "/me", Some(&basic("ada", "wrong"))).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], CHALLENGE);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "wrong user name or password");

    let none = get_as(&client, address, "/me", None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], CHALLENGE);

    let right = basic("ada", "right-password");
    let first = get_as(&client, address, "/me", Some(&right)).await;
    assert_eq!(first.status(), 200);
    let me: serde_json::Value = first.json().await.unwrap();
    assert_eq!(me, serde_json::json!({"name": "ada", "role": "attendee"}));
    let verified = auth.argon2_verifications();
    for _ in 0..5 {
        let again = get_as(&client, address, "/me", Some(&right)).await;
        assert_eq!(again.status(), 200);
    }
    assert_eq!(
        auth.argon2_verifications(),
        verified,
        "repeat logins must be served from the cache"
    );
}

#[tokio::test]
async fn a_password_change_by_the_cli_takes_effect_while_serving() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "old-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let client = client_from(LOCAL);
    let old = basic("ada", "old-password");
    assert_eq!(
        get_as(&client, address, "/me", Some(&old)).await.status(),
        200
    );

    let out = cli(
        data.path(),
        &["passwd", "ada", "--password-stdin"],
        Some("new-password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "a chosen password is not echoed");
    tokio::time::sleep(RELOAD).await;

    let refused = get_as(&client, address, "/me", Some(&old)).await;
    assert_eq!(refused.status(), 401, "the cached old password must die");
    let new = basic("ada", "new-password");
    assert_eq!(
        get_as(&client, address, "/me", Some(&new)).await.status(),
        200
    );
}

#[tokio::test]
async fn a_disabled_account_gets_403_and_enable_lets_it_back() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "ada-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let client = client_from(LOCAL);
    let ada = basic("ada", "ada-password");
    assert_eq!(
        get_as(&client, address, "/me", Some(&ada)).await.status(),
        200
    );

    let out = cli(data.path(), &["disable", "ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    tokio::time::sleep(RELOAD).await;
    let refused = get_as(&client, address, "/me", Some(&ada)).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("www-authenticate").is_none());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("disabled"),
        "{body}"
    );

    let out = cli(data.path(), &["enable", "ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    tokio::time::sleep(RELOAD).await;
    assert_eq!(
        get_as(&client, address, "/me", Some(&ada)).await.status(),
        200
    );
}

#[tokio::test]
async fn wrong_password_bursts_are_rate_limited_for_known_and_unknown_names() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "ada-password");
    add_user(data.path(), "bob", Role::Attendee, "bob-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let limit = settings().max_failures_per_pair;

    for (name, source) in [("ada", LOCAL), ("ghost", [127, 0, 0, 2])] {
        let client = client_from(source);
        let before = auth.argon2_verifications();
        for attempt in 0..limit {
            let wrong = get_as(&client, address, "/me", Some(&basic(name, "guess"))).await;
            assert_eq!(wrong.status(), 401, "{name}: attempt {attempt}");
        }
        // Unknown names pay argon2 too (a dummy hash), like known ones.
        assert_eq!(
            auth.argon2_verifications() - before,
            u64::from(limit),
            "{name}"
        );
        let limited = get_as(&client, address, "/me", Some(&basic(name, "guess"))).await;
        assert_eq!(limited.status(), 429, "{name}");
        let retry: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{name}: retry-after {retry}");
        let body: serde_json::Value = limited.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("too many"),
            "{body}"
        );
        // No more hashing while limited.
        assert_eq!(auth.argon2_verifications() - before, u64::from(limit));
    }

    // The limit is on ada's name from that address: ada herself, from
    // hers, gets in…
    let ada = basic("ada", "ada-password");
    let from_elsewhere = client_from([127, 0, 0, 3]);
    assert_eq!(
        get_as(&from_elsewhere, address, "/me", Some(&ada))
            .await
            .status(),
        200
    );
    // …while another user, from another address or from the same one,
    // still gets in, and that success resets nobody's counter.
    let bob = basic("bob", "bob-password");
    assert_eq!(
        get_as(&from_elsewhere, address, "/me", Some(&bob))
            .await
            .status(),
        200
    );
    let local = client_from(LOCAL);
    assert_eq!(
        get_as(&local, address, "/me", Some(&bob)).await.status(),
        200
    );
    // …and now that her password is verified (cached), even the locked
    // address lets her in: the cache is asked before the limiter.
    assert_eq!(
        get_as(&local, address, "/me", Some(&ada)).await.status(),
        200
    );
    assert_eq!(
        get_as(&local, address, "/me", Some(&basic("ada", "guess")))
            .await
            .status(),
        429,
        "the locked pair still refuses guesses"
    );
}

#[tokio::test]
async fn a_stranger_failing_as_bob_never_locks_bob_out() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "bob", Role::Attendee, "bob-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let bob = basic("bob", "bob-password");
    // Bob logs in from the venue address; a stranger behind the same
    // address, and another from elsewhere, fail as bob until locked.
    let venue = client_from([127, 0, 0, 4]);
    assert_eq!(
        get_as(&venue, address, "/me", Some(&bob)).await.status(),
        200
    );
    let stranger = client_from([127, 0, 0, 5]);
    for source in [&venue, &stranger] {
        for _ in 0..40 {
            get_as(source, address, "/me", Some(&basic("bob", "guess"))).await;
        }
        assert_eq!(
            get_as(source, address, "/me", Some(&basic("bob", "guess")))
                .await
                .status(),
            429
        );
    }
    // Bob's cached login goes on from the venue, and a first login from a
    // third address is not refused either.
    assert_eq!(
        get_as(&venue, address, "/me", Some(&bob)).await.status(),
        200
    );
    auth.clear_cache();
    let home = client_from([127, 0, 0, 6]);
    assert_eq!(
        get_as(&home, address, "/me", Some(&bob)).await.status(),
        200
    );
}

#[tokio::test]
async fn malformed_headers_are_401_never_500() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "ada-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    let cases: Vec<Vec<u8>> = vec![
        b"Bearer abc".to_vec(),
        b"Basic".to_vec(),
        b"Basic !!!not-base64".to_vec(),
        format!("Basic {}", b64(b"no-colon")).into_bytes(),
        format!("Basic {}", b64(&[0xff, 0xfe, b':', b'x'])).into_bytes(),
        // Raw non-ASCII bytes in the header itself.
        b"Basic \xff\xfe\xfd".to_vec(),
    ];
    let client = client_from(LOCAL);
    for case in cases {
        let value = reqwest::header::HeaderValue::from_bytes(&case).unwrap();
        let response = client
            .get(format!("http://{address}/me"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            401,
            "{:?}",
            String::from_utf8_lossy(&case)
        );
        assert_eq!(response.headers()["www-authenticate"], CHALLENGE);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].is_string());
    }
    assert_eq!(
        auth.argon2_verifications(),
        0,
        "nothing malformed reaches argon2"
    );
}

#[tokio::test]
async fn admin_routes_refuse_attendees() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "ada-password");
    add_user(data.path(), "root", Role::Admin, "root-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;
    let client = client_from(LOCAL);
    let ada = basic("ada", "ada-password");
    let refused = get_as(&client, address, "/admin", Some(&ada)).await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "this needs the admin role");
    let root = basic("root", "root-password");
    assert_eq!(
        get_as(&client, address, "/admin", Some(&root))
            .await
            .status(),
        200
    );
    assert_eq!(
        get_as(&client, address, "/me", Some(&root)).await.status(),
        200
    );
}

#[tokio::test]
async fn the_websocket_upgrade_uses_the_same_basic_credentials() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Attendee, "ada-password");
    let auth = Arc::new(Authenticator::with_settings(data.path(), settings()).unwrap());
    let address = serve(auth.clone()).await;

    let mut request = format!("ws://{address}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        basic("ada", "ada-password").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = socket.next().await.unwrap().unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), "ada");

    let anonymous = format!("ws://{address}/ws").into_client_request().unwrap();
    match tokio_tungstenite::connect_async(anonymous).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("an anonymous upgrade must be refused: {other:?}"),
    }
}

#[tokio::test]
async fn verify_without_connect_info_and_off_the_executor() {
    // The async path on a current-thread runtime: argon2 runs on the
    // blocking pool, so this completes without stalling the executor.
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Instructor, "ada-password");
    let auth = Authenticator::with_settings(data.path(), settings()).unwrap();
    let nowhere = IpAddr::from([0, 0, 0, 0]);
    let id = auth
        .verify(Some(&basic("ada", "ada-password")), nowhere)
        .await
        .unwrap();
    assert_eq!(
        id,
        Identity {
            name: "ada".into(),
            role: Role::Instructor
        }
    );
    assert_eq!(
        auth.verify(None, nowhere).await.unwrap_err(),
        AuthError::Missing
    );
}

#[test]
fn bootstrap_creates_admin_and_attendee01_once() {
    let data = tempfile::tempdir().unwrap();
    let created = comfyume::auth::bootstrap(data.path()).unwrap().unwrap();
    let names: Vec<(&str, Role)> = created.iter().map(|(n, r, _)| (n.as_str(), *r)).collect();
    assert_eq!(
        names,
        [("admin", Role::Admin), ("attendee01", Role::Attendee)]
    );
    let auth = Authenticator::with_settings(data.path(), settings()).unwrap();
    for (name, role, password) in &created {
        let id = auth
            .verify_blocking(Some(&basic(name, password)), IpAddr::from(LOCAL))
            .unwrap();
        assert_eq!(id.role, *role);
    }
    assert!(
        comfyume::auth::bootstrap(data.path()).unwrap().is_none(),
        "a second start creates nobody"
    );
}

#[test]
fn cli_bulk_add_prints_name_password_lines_that_verify() {
    let data = tempfile::tempdir().unwrap();
    let out = cli(
        data.path(),
        &["add", "--bulk", "3", "--prefix", "attendee"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once(' ').expect("name password"))
        .collect();
    let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["attendee01", "attendee02", "attendee03"]);
    let auth = Authenticator::with_settings(data.path(), settings()).unwrap();
    for (name, password) in &lines {
        let id = auth
            .verify_blocking(Some(&basic(name, password)), IpAddr::from(LOCAL))
            .unwrap();
        assert_eq!(id.role, Role::Attendee);
    }

    // Again with 4: the first three exist and are skipped, said on stderr.
    let out = cli(data.path(), &["add", "--bulk", "4"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stdout(&out).starts_with("attendee04 "));
    assert!(
        stderr(&out).contains("skipped attendee01"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_add_with_password_stdin_and_roles() {
    let data = tempfile::tempdir().unwrap();
    let out = cli(
        data.path(),
        &["add", "ops", "--role", "admin", "--password-stdin"],
        Some("correct horse battery\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let auth = Authenticator::with_settings(data.path(), settings()).unwrap();
    let id = auth
        .verify_blocking(
            Some(&basic("ops", "correct horse battery")),
            IpAddr::from(LOCAL),
        )
        .unwrap();
    assert_eq!(id.role, Role::Admin);

    // Generated: printed once as "name password".
    let out = cli(data.path(), &["add", "eve"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let (name, password) = line.trim().split_once(' ').unwrap();
    assert_eq!(name, "eve");
    assert_eq!(password.len(), 16);

    for (args, stdin) in [
        (&["add", "ops"][..], None),
        (&["add", "short", "--password-stdin"][..], Some("abc\n")),
        (&["add", "x", "--role", "root"][..], None),
        (&["passwd", "nobody"][..], None),
        (&["disable", "nobody"][..], None),
    ] {
        let out = cli(data.path(), args, stdin);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(!stderr(&out).trim().is_empty(), "{args:?}");
    }
}

#[test]
fn cli_refuses_invalid_names_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    for name in ["../x", ".hidden", "", "a/b", &"x".repeat(65)] {
        let out = cli(data.path(), &["add", name], None);
        assert!(!out.status.success(), "{name:?} accepted");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{name:?}: {err}");
        assert!(err.contains("invalid user name"), "{name:?}: {err}");
    }
    assert!(!UsersFile::path(data.path()).exists());
}

#[test]
fn cli_list_shows_roles_and_state_but_never_a_hash() {
    let data = tempfile::tempdir().unwrap();
    add_user(data.path(), "ada", Role::Instructor, "ada-password");
    add_user(data.path(), "bob", Role::Attendee, "bob-password");
    assert!(cli(data.path(), &["disable", "bob"], None).status.success());
    let out = cli(data.path(), &["list"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["ada", "instructor", "enabled"],
            vec!["bob", "attendee", "disabled"]
        ]
    );
    assert!(!text.contains("argon2") && !stderr(&out).contains("argon2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_verifies_a_few_at_a_time_and_the_rest_hit_the_cache() {
    // Workshop start: every attendee's browser opens several requests at
    // once, before any login is cached. Each argon2 run holds its memory
    // cost (19 MiB with the CLI's parameters): they must not all run at
    // once, and requests that waited must use the login verified meanwhile.
    let data = tempfile::tempdir().unwrap();
    let hash = hash_password("right-password", &argon2::Params::default()).expect("hash");
    UsersFile::update(data.path(), |f| f.add("ada", Role::Attendee, hash)).expect("add user");
    let auth =
        Arc::new(Authenticator::with_settings(data.path(), AuthSettings::default()).unwrap());
    let header = basic("ada", "right-password");
    let storm: Vec<_> = (0..40)
        .map(|_| {
            let (auth, header) = (auth.clone(), header.clone());
            tokio::spawn(async move { auth.verify(Some(&header), IpAddr::from(LOCAL)).await })
        })
        .collect();
    for login in storm {
        assert_eq!(login.await.unwrap().expect("logged in").name, "ada");
    }
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8)) as u64;
    assert!(
        auth.argon2_verifications() <= slots,
        "{} argon2 runs for one login (at most {slots} may run before the first is cached)",
        auth.argon2_verifications()
    );
}
