//! The editor's static files: install from a fake PyPI on 127.0.0.1 (never
//! the real one), refuse bad wheels, serve with precompression and caching,
//! and the `comfyume frontend install` / `comfyume serve` wiring.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use comfyume::front::assets::{self, FrontendError, InstallOptions};
use futures_util::StreamExt as _;
use serde_json::json;
use sha2::Digest as _;
use tower::ServiceExt as _;

const VERSION: &str = "9.9.9";
const WHEEL: &str = "comfyui_frontend_package-9.9.9-py3-none-any.whl";
const APP_JS: &str = "export * from '../assets/index-abc123XY.js'";
const INDEX_HTML: &str = "<!doctype html><html><head><script type=\"module\" src=\"./assets/index-abc123XY.js\"></script></head><body>editor</body></html>";

/// A script big and repetitive enough that both variants are kept.
fn script() -> Vec<u8> {
    (0..400)
        .map(|i| format!("export const value{i} = \"the same words again and again\";\n"))
        .collect::<String>()
        .into_bytes()
}

/// A wheel like the real one, plus hostile and irrelevant entries.
fn wheel() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let s = "comfyui_frontend_package/static";
    let entries: Vec<(String, Vec<u8>)> = vec![
        (format!("{s}/index.html"), INDEX_HTML.into()),
        (format!("{s}/assets/index-abc123XY.js"), script()),
        (
            format!("{s}/assets/index-abc123XY.js.map"),
            b"{\"mappings\":\"\"}".to_vec(),
        ),
        (format!("{s}/assets/favicon.ico"), vec![0u8; 64]),
        (format!("{s}/scripts/app.js"), APP_JS.into()),
        // Escapes the archive: enclosed_name refuses it.
        (format!("{s}/../../../evil.txt"), b"evil".to_vec()),
        // Stays in the archive but leaves static/: not ours.
        (format!("{s}/../outside.txt"), b"outside".to_vec()),
        (
            "comfyui_frontend_package/__init__.py".into(),
            b"# python".to_vec(),
        ),
        (
            "comfyui_frontend_package-9.9.9.dist-info/METADATA".into(),
            b"Name: comfyui-frontend-package".to_vec(),
        ),
    ];
    for (name, bytes) in entries {
        zip.start_file(name, options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How the fake index misbehaves.
#[derive(Clone, Default)]
struct Fake {
    /// What `/files/<wheel>` serves.
    body: Vec<u8>,
    /// The sha256 the JSON announces.
    sha256: String,
    /// The size the JSON announces.
    size: u64,
    /// An absolute URL for the wheel instead of `/files/…`.
    url: Option<String>,
    /// Send the wheel in 8 pieces this far apart (a slow link).
    piece_delay: Option<Duration>,
}

impl Fake {
    fn honest() -> Fake {
        let body = wheel();
        Fake {
            sha256: sha256(&body),
            size: body.len() as u64,
            body,
            url: None,
            piece_delay: None,
        }
    }
}

async fn release(State(fake): State<Fake>, UrlPath(version): UrlPath<String>) -> impl IntoResponse {
    if version != VERSION {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        );
    }
    // Relative, like the mirror this machine sees; the host joins it.
    let url = fake
        .url
        .clone()
        .unwrap_or_else(|| format!("../../../files/{WHEEL}"));
    let body = json!({
        "info": {"name": "comfyui-frontend-package", "version": VERSION},
        "urls": [
            {"filename": "comfyui_frontend_package-9.9.9.tar.gz", "url": "../../../files/sdist",
             "size": 1, "packagetype": "sdist", "digests": {"sha256": "00"}},
            {"filename": WHEEL, "url": url, "size": fake.size, "packagetype": "bdist_wheel",
             "digests": {"sha256": fake.sha256}},
        ]
    });
    (StatusCode::OK, axum::Json(body))
}

async fn file(
    State(fake): State<Fake>,
    UrlPath(name): UrlPath<String>,
) -> axum::response::Response {
    if name != WHEEL {
        return (StatusCode::NOT_FOUND, Vec::new()).into_response();
    }
    let Some(delay) = fake.piece_delay else {
        return (StatusCode::OK, fake.body.clone()).into_response();
    };
    let pieces: Vec<Vec<u8>> = fake
        .body
        .chunks(fake.body.len().div_ceil(8))
        .map(<[u8]>::to_vec)
        .collect();
    let stream = futures_util::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(piece)
    });
    (StatusCode::OK, Body::from_stream(stream)).into_response()
}

/// Serves the fake index on 127.0.0.1; returns its base URL.
async fn fake_index(fake: Fake) -> String {
    let app = Router::new()
        .route(
            "/pypi/comfyui-frontend-package/{version}/json",
            get(release),
        )
        .route("/files/{name}", get(file))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server that announces the whole wheel, sends half, and hangs up.
async fn cut_off_server(wheel: Vec<u8>) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                wheel.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&wheel[..wheel.len() / 2]).await;
            let _ = socket.shutdown().await;
        }
    });
    addr
}

fn options(index: &str, data: &Path) -> InstallOptions {
    InstallOptions {
        version: VERSION.into(),
        sha256: None,
        index_url: index.into(),
        data_dir: data.to_path_buf(),
        wheel: None,
        force: false,
        progress: false,
        status: None,
    }
}

/// Every file under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The error and its causes, as the CLI prints them.
fn chain(error: &FrontendError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Installs the honest wheel into a fresh data folder.
async fn installed() -> (tempfile::TempDir, PathBuf) {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let report = assets::install(options(&index, data.path())).await.unwrap();
    (data, report.dir)
}

#[tokio::test]
async fn install_extracts_static_without_maps_or_strays_and_precompresses() {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let report = assets::install(options(&index, data.path())).await.unwrap();
    let dir = data.path().join("frontend").join(VERSION);
    assert_eq!(report.dir, dir);
    assert!(!report.already);
    assert_eq!(report.downloaded, Fake::honest().size);

    // Exactly static/ minus the map, plus the variants and the manifest;
    // nothing anywhere else in the data folder (no .part, no .tmp).
    assert_eq!(
        tree(data.path()),
        [
            "frontend/9.9.9/assets/favicon.ico",
            "frontend/9.9.9/assets/index-abc123XY.js",
            "frontend/9.9.9/assets/index-abc123XY.js.br",
            "frontend/9.9.9/assets/index-abc123XY.js.gz",
            "frontend/9.9.9/index.html",
            "frontend/9.9.9/installed.json",
            "frontend/9.9.9/scripts/app.js",
        ]
    );
    assert!(!data.path().parent().unwrap().join("evil.txt").exists());

    let original = script();
    let gz = std::fs::read(dir.join("assets/index-abc123XY.js.gz")).unwrap();
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, original);
    let br = std::fs::read(dir.join("assets/index-abc123XY.js.br")).unwrap();
    let mut unbrotli = Vec::new();
    brotli::Decompressor::new(&br[..], 4096)
        .read_to_end(&mut unbrotli)
        .unwrap();
    assert_eq!(unbrotli, original);
    assert!(br.len() < gz.len() && gz.len() < original.len());

    let manifest = assets::read_installed(&dir).unwrap();
    assert_eq!(manifest, report.installed);
    assert_eq!(manifest.version, VERSION);
    assert_eq!(manifest.wheel, WHEEL);
    assert_eq!(manifest.sha256, Fake::honest().sha256);
    // Not the pin and no configured hash: the index's, and it says so.
    assert_eq!(manifest.sha256_from, "index");
    assert_eq!(manifest.files, 4);
    assert_eq!(manifest.skipped_maps, 1);
    assert_eq!(manifest.precompressed, 1);
    let expected_bytes = (INDEX_HTML.len() + original.len() + 64 + APP_JS.len()) as u64;
    assert_eq!(manifest.bytes, expected_bytes);

    // Again: nothing to do. With force: done again, same result.
    let again = assets::install(options(&index, data.path())).await.unwrap();
    assert!(again.already);
    let forced = assets::install(InstallOptions {
        force: true,
        ..options(&index, data.path())
    })
    .await
    .unwrap();
    assert!(!forced.already);
    assert_eq!(tree(data.path()).len(), 7);
}

#[tokio::test]
async fn a_wrong_sha256_is_refused_naming_both_hashes_and_nothing_is_installed() {
    // The index announces a hash the wheel does not have.
    let honest = Fake::honest();
    let lie = "ab".repeat(32);
    let index = fake_index(Fake {
        sha256: lie.clone(),
        ..honest.clone()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let error = assets::install(options(&index, data.path()))
        .await
        .unwrap_err();
    assert!(matches!(error, FrontendError::Checksum { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&lie) && text.contains(&honest.sha256),
        "{text}"
    );
    assert!(text.contains("refusing"), "{text}");
    assert_eq!(
        tree(data.path()),
        Vec::<String>::new(),
        "nothing left behind"
    );

    // An honest index but a configured hash that differs: refused too.
    let index = fake_index(honest.clone()).await;
    let error = assets::install(InstallOptions {
        sha256: Some(lie.clone()),
        ..options(&index, data.path())
    })
    .await
    .unwrap_err();
    assert!(matches!(error, FrontendError::Checksum { .. }), "{error:?}");
    assert!(!data.path().join("frontend").join(VERSION).exists());
}

#[tokio::test]
async fn a_truncated_download_is_refused() {
    let honest = Fake::honest();
    // Served short (a proxy that cut the file but fixed the length).
    let short = honest.body[..honest.body.len() - 100].to_vec();
    let index = fake_index(Fake {
        body: short,
        ..honest.clone()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let error = assets::install(options(&index, data.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, FrontendError::Truncated { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("incomplete"), "{error}");
    assert_eq!(tree(data.path()), Vec::<String>::new());

    // The connection drops mid-body.
    let cut = cut_off_server(honest.body.clone()).await;
    let index = fake_index(Fake {
        url: Some(format!("http://{cut}/{WHEEL}")),
        ..honest
    })
    .await;
    let error = assets::install(options(&index, data.path()))
        .await
        .unwrap_err();
    assert!(matches!(error, FrontendError::Download { .. }), "{error:?}");
    assert!(chain(&error).contains("broke off"), "{}", chain(&error));
    assert_eq!(tree(data.path()), Vec::<String>::new());
}

#[tokio::test]
async fn an_unknown_version_names_the_index() {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let error = assets::install(InstallOptions {
        version: "0.0.1".into(),
        ..options(&index, data.path())
    })
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("404") && text.contains(&index), "{text}");
}

#[tokio::test]
async fn a_local_wheel_installs_offline_with_a_given_hash() {
    let dir = tempfile::tempdir().unwrap();
    let wheel_path = dir.path().join(WHEEL);
    let bytes = wheel();
    std::fs::write(&wheel_path, &bytes).unwrap();
    let data = dir.path().join("data");
    // Not the pin, no hash: refused (nothing to trust).
    let offline = InstallOptions {
        wheel: Some(wheel_path.clone()),
        ..options("http://127.0.0.1:9", &data)
    };
    let error = assets::install(offline.clone()).await.unwrap_err();
    assert!(matches!(error, FrontendError::NoHash { .. }), "{error:?}");
    let report = assets::install(InstallOptions {
        sha256: Some(sha256(&bytes)),
        ..offline
    })
    .await
    .unwrap();
    assert_eq!(report.installed.sha256_from, "config");
    assert!(wheel_path.exists(), "the operator's wheel is left alone");
    assert!(report.dir.join("index.html").exists());
}

async fn fetch(
    app: &Router,
    uri: &str,
    encoding: Option<&str>,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri(uri);
    if let Some(encoding) = encoding {
        request = request.header(header::ACCEPT_ENCODING, encoding);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

#[tokio::test]
async fn serving_prefers_brotli_then_gzip_then_identity() {
    let (_data, dir) = installed().await;
    let app = assets::router(dir.clone());
    let js = "/assets/index-abc123XY.js";
    let original = script();

    let (status, headers, body) = fetch(&app, js, Some("gzip, deflate, br")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        body,
        std::fs::read(dir.join("assets/index-abc123XY.js.br")).unwrap()
    );
    assert_eq!(headers[header::VARY], "accept-encoding");

    let (_, headers, body) = fetch(&app, js, Some("gzip")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, original);

    let (_, headers, body) = fetch(&app, js, None).await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body, original);
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_the_rest_revalidates() {
    let (_data, dir) = installed().await;
    let app = assets::router(dir);
    let (_, headers, _) = fetch(&app, "/assets/index-abc123XY.js", None).await;
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    for path in ["/", "/index.html", "/assets/favicon.ico", "/scripts/app.js"] {
        let (status, headers, _) = fetch(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
    }
}

#[tokio::test]
async fn the_root_serves_index_html() {
    let (_data, dir) = installed().await;
    let app = assets::router(dir);
    let (status, headers, body) = fetch(&app, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(body, INDEX_HTML.as_bytes());
    let (status, _, _) = fetch(&app, "/missing.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let (data, dir) = installed().await;
    // A file next to the version folder that must not be reachable.
    std::fs::write(data.path().join("frontend/secret.txt"), "secret").unwrap();
    let app = assets::router(dir);
    for uri in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/../../Cargo.toml",
        "/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let (status, _, body) = fetch(&app, uri, None).await;
        assert!(status.is_client_error(), "{uri}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{uri}");
    }
}

#[tokio::test]
async fn the_unavailable_router_says_how_to_install() {
    let app = assets::unavailable_router();
    let (status, headers, body) = fetch(&app, "/", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(String::from_utf8_lossy(&body).contains("comfyume frontend install"));
}

/// Runs the binary with `args`, the fake index in the environment.
async fn run_cli(args: Vec<String>, index: &str, cwd: &Path) -> std::process::Output {
    let index = index.to_string();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_comfyume"))
            .args(args)
            .current_dir(cwd)
            .env("COMFYUME_FRONTEND__INDEX_URL", index)
            .env("COMFYUME_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_installs_from_the_index_and_reports() {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["frontend", "install", "--version", VERSION, "--data"]
        .iter()
        .map(|s| s.to_string())
        .chain([data.path().display().to_string()])
        .collect();
    let out = run_cli(args.clone(), &index, data.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("installed comfyui-frontend-package {VERSION}")),
        "{stdout}"
    );
    assert!(stdout.contains("4 files"), "{stdout}");
    assert!(data.path().join("frontend/9.9.9/index.html").exists());

    let out = run_cli(args, &index, data.path()).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("already installed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_refuses_a_bad_hash_with_one_line_and_a_failure_code() {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["frontend", "install", "--version", VERSION, "--sha256"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "cd".repeat(32),
            "--data".into(),
            data.path().display().to_string(),
        ])
        .collect();
    let out = run_cli(args, &index, data.path()).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("sha256 mismatch") && lines[0].contains(&"cd".repeat(32)),
        "{stderr}"
    );
    assert!(!data.path().join("frontend/9.9.9").exists());

    // A malformed hash is a config error (exit 2), caught before any request.
    let args: Vec<String> = ["frontend", "install", "--sha256", "nothex", "--data"]
        .iter()
        .map(|s| s.to_string())
        .chain([data.path().display().to_string()])
        .collect();
    let out = run_cli(args, &index, data.path()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_installs_on_first_start_and_serves_the_editor_beside_health() {
    let index = fake_index(Fake::honest()).await;
    let data = tempfile::tempdir().unwrap();
    let cheap = argon2::Params::new(8, 1, 1, None).unwrap();
    let hash = comfyume::auth::hash_password("pw", &cheap).unwrap();
    comfyume::auth::UsersFile::update(data.path(), |f| {
        f.add("ann", comfyume::auth::Role::Attendee, hash)
    })
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_comfyume"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data.path())
            .current_dir(data.path())
            .env("COMFYUME_FRONTEND__INDEX_URL", &index)
            .env("COMFYUME_FRONTEND__VERSION", VERSION)
            .env("COMFYUME_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let root = loop {
        // 503 ("being installed") until the install in the background ends.
        if let Ok(response) = http
            .get(format!("{base}/"))
            .basic_auth("ann", Some("pw"))
            .send()
            .await
            && response.status() != StatusCode::SERVICE_UNAVAILABLE
        {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never answered"
        );
        assert!(child.0.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), INDEX_HTML);
    // The editor is behind the login like the API.
    let anonymous = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(data.path().join("frontend/9.9.9/installed.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_at_once_while_it_installs_the_editor_and_says_how_far() {
    // A slow link: the wheel takes ~8 s. `serve` must answer meanwhile:
    // /health says installing (503) with the progress, the editor's paths
    // a 503 page saying so, the API as usual; the log says how far it is
    // every few seconds. Issue 19: it printed nothing and did not listen
    // until the install ended.
    let mut fake = Fake::honest();
    fake.piece_delay = Some(Duration::from_millis(1000));
    let index = fake_index(fake).await;
    let data = tempfile::tempdir().unwrap();
    let cheap = argon2::Params::new(8, 1, 1, None).unwrap();
    let hash = comfyume::auth::hash_password("pw", &cheap).unwrap();
    comfyume::auth::UsersFile::update(data.path(), |f| {
        f.add("ann", comfyume::auth::Role::Attendee, hash)
    })
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = data.path().join("serve.log");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_comfyume"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data.path())
            .current_dir(data.path())
            .env("COMFYUME_FRONTEND__INDEX_URL", &index)
            .env("COMFYUME_FRONTEND__VERSION", VERSION)
            .env("COMFYUME_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    comfyume::tls::install_provider();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let health = loop {
        if let Ok(response) = http.get(format!("{base}/health")).send().await {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never answered"
        );
        assert!(child.0.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(health.status(), 503, "{}", log_text());
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "installing", "{body}");
    assert_eq!(body["frontend"]["state"], "installing", "{body}");
    assert!(body["frontend"]["says"].is_string(), "{body}");
    let page = http
        .get(format!("{base}/"))
        .basic_auth("ann", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let text = page.text().await.unwrap();
    assert!(text.contains("being installed"), "{text}");
    // The API answers meanwhile.
    let users = http
        .get(format!("{base}/api/users"))
        .basic_auth("ann", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);
    // Then the editor, and a healthy host.
    loop {
        let root = http
            .get(format!("{base}/"))
            .basic_auth("ann", Some("pw"))
            .send()
            .await
            .unwrap();
        if root.status() == 200 {
            assert_eq!(root.text().await.unwrap(), INDEX_HTML);
            break;
        }
        assert_eq!(root.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never installed: {}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let progress: Vec<String> = log_text()
        .lines()
        .filter(|l| l.contains("installing the editor: downloading"))
        .map(str::to_string)
        .collect();
    assert!(
        progress.len() >= 2,
        "a line every few seconds while downloading: {progress:?}\n{}",
        log_text()
    );
    assert!(
        progress
            .iter()
            .any(|l| l.contains(" of ") && l.contains("kB")),
        "{progress:?}"
    );
}

/// Stops the child `serve` even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
