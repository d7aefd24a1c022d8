//! `comfyume models sync` against a local HTTP server serving small files:
//! a cut connection resumed with a Range request, a run cut short resumed
//! by the next run, a wrong sha256 refused with nothing left in place, a
//! full disk refused, and ComfyUI's extra_model_paths.yaml written only
//! when every file is ready.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use comfyume::models::sync::{Outcome, SyncOptions, sync};
use comfyume::models::{Manifest, NotReady, check};
use sha2::{Digest, Sha256};

/// Files by name; `cut[name]`: that many next answers stop after half.
#[derive(Default)]
struct Files {
    bytes: HashMap<String, Vec<u8>>,
    cut: Mutex<HashMap<String, u32>>,
    ranges: Mutex<Vec<(String, Option<String>)>>,
}

async fn file(
    State(files): State<Arc<Files>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    files
        .ranges
        .lock()
        .unwrap()
        .push((name.clone(), range.clone()));
    let Some(bytes) = files.bytes.get(&name) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let body = bytes[start..].to_vec();
    let mut answer = Response::builder()
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::ACCEPT_RANGES, "bytes");
    answer = if start > 0 {
        answer.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
        )
    } else {
        answer.status(StatusCode::OK)
    };
    let cut = {
        let mut cut = files.cut.lock().unwrap();
        match cut.get_mut(&name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    if cut {
        // Half the body, then the connection drops mid-transfer.
        let half = body[..body.len() / 2].to_vec();
        // The pause lets the half reach the client before the cut.
        let stream = futures_util::stream::unfold(Some(half), |half| async move {
            match half {
                Some(half) => Some((Ok(bytes::Bytes::from(half)), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("cut")), None))
                }
            }
        });
        return answer.body(Body::from_stream(stream)).unwrap();
    }
    answer.body(Body::from(body)).unwrap()
}

async fn serve(files: Files) -> (Arc<Files>, SocketAddr) {
    let files = Arc::new(files);
    let router = axum::Router::new()
        .route("/files/{name}", get(file))
        .with_state(files.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (files, addr)
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entry(addr: SocketAddr, file: &str, folder: &str, extra: &str) -> String {
    format!(
        "[[model]]\nfile = \"{file}\"\nfolder = \"{folder}\"\nurl = \"http://{addr}/files/{file}\"\n{extra}\n"
    )
}

fn quick() -> SyncOptions {
    SyncOptions {
        retries: 3,
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(5),
        verify: false,
        bars: false,
    }
}

fn ranges_of(files: &Files, name: &str) -> Vec<Option<String>> {
    files
        .ranges
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, r)| r.clone())
        .collect()
}

#[tokio::test]
async fn a_cut_connection_is_resumed_with_a_range_request_and_checked() {
    let a = content(1, 300_000);
    let b = content(2, 1_000);
    let mut files = Files::default();
    files.bytes.insert("a.safetensors".into(), a.clone());
    files.bytes.insert("b.safetensors".into(), b.clone());
    files.cut.lock().unwrap().insert("a.safetensors".into(), 1);
    let (files, addr) = serve(files).await;
    let text = entry(
        addr,
        "a.safetensors",
        "diffusion_models",
        &format!("size = {}\nsha256 = \"{}\"", a.len(), sha(&a)),
    ) + &entry(addr, "b.safetensors", "vae", "");
    let manifest = Manifest::parse(&text, "test").unwrap();
    let dest = tempfile::tempdir().unwrap();

    let report = sync(&manifest, dest.path(), &quick()).await;
    assert!(report.ready(), "{report:?}");
    assert_eq!(
        std::fs::read(dest.path().join("diffusion_models/a.safetensors")).unwrap(),
        a
    );
    // The second request for `a` asked for the rest only.
    let ranges = ranges_of(&files, "a.safetensors");
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_at: usize = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap();
    assert!(resumed_at > 0 && resumed_at < a.len(), "{ranges:?}");
    // `b` has no sha256 in the manifest: its measured one is offered to pin.
    assert_eq!(
        report.files[1].1,
        Outcome::Downloaded {
            pin: Some((b.len() as u64, sha(&b)))
        }
    );
    assert!(check(&manifest, dest.path()).is_empty());
    assert!(
        !dest
            .path()
            .join("diffusion_models/a.safetensors.part")
            .exists()
    );

    // A second run reads nothing from the network and re-hashes nothing.
    let before = files.ranges.lock().unwrap().len();
    let again = sync(&manifest, dest.path(), &quick()).await;
    assert!(
        again.files.iter().all(|(_, o)| *o == Outcome::Present),
        "{again:?}"
    );
    assert_eq!(files.ranges.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_run_cut_short_keeps_its_part_and_the_next_run_resumes_it() {
    let a = content(3, 200_000);
    let mut files = Files::default();
    files.bytes.insert("a.safetensors".into(), a.clone());
    files.cut.lock().unwrap().insert("a.safetensors".into(), 1);
    let (files, addr) = serve(files).await;
    let text = entry(
        addr,
        "a.safetensors",
        "loras",
        &format!("sha256 = \"{}\"", sha(&a)),
    );
    let manifest = Manifest::parse(&text, "test").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let no_retries = SyncOptions {
        retries: 0,
        ..quick()
    };

    let first = sync(&manifest, dest.path(), &no_retries).await;
    assert!(!first.ready());
    assert!(
        matches!(&first.files[0].1, Outcome::Failed(r) if r.contains("connection cut")),
        "{first:?}"
    );
    assert!(!dest.path().join("loras/a.safetensors").exists());
    let part = std::fs::metadata(dest.path().join("loras/a.safetensors.part")).unwrap();
    assert!(part.len() > 0 && part.len() < a.len() as u64);
    assert_eq!(
        check(&manifest, dest.path()),
        vec![("loras/a.safetensors".to_string(), NotReady::Missing)]
    );

    let second = sync(&manifest, dest.path(), &no_retries).await;
    assert!(second.ready(), "{second:?}");
    assert_eq!(
        ranges_of(&files, "a.safetensors")[1].as_deref(),
        Some(format!("bytes={}-", part.len()).as_str())
    );
    assert_eq!(
        std::fs::read(dest.path().join("loras/a.safetensors")).unwrap(),
        a
    );
}

#[tokio::test]
async fn a_wrong_hash_is_refused_and_nothing_is_left_in_place() {
    let a = content(4, 50_000);
    let mut files = Files::default();
    files.bytes.insert("a.safetensors".into(), a.clone());
    let (_files, addr) = serve(files).await;
    let wrong = sha(b"something else");
    let text = entry(
        addr,
        "a.safetensors",
        "vae",
        &format!("sha256 = \"{wrong}\""),
    );
    let manifest = Manifest::parse(&text, "test").unwrap();
    let dest = tempfile::tempdir().unwrap();

    let report = sync(&manifest, dest.path(), &quick()).await;
    assert!(!report.ready());
    assert!(
        matches!(&report.files[0].1, Outcome::Failed(r) if r.contains("sha256 mismatch")),
        "{report:?}"
    );
    assert!(!dest.path().join("vae/a.safetensors").exists());
    assert!(!dest.path().join("vae/a.safetensors.part").exists());

    // A wrong file already in place is not taken for the right one: it is
    // hashed, found wrong, and replaced by the download.
    std::fs::write(dest.path().join("vae/a.safetensors"), b"stale").unwrap();
    let right = entry(
        addr,
        "a.safetensors",
        "vae",
        &format!("sha256 = \"{}\"", sha(&a)),
    );
    let manifest = Manifest::parse(&right, "test").unwrap();
    assert_eq!(
        check(&manifest, dest.path()),
        vec![("vae/a.safetensors".to_string(), NotReady::Unverified)]
    );
    let report = sync(&manifest, dest.path(), &quick()).await;
    assert!(report.ready(), "{report:?}");
    assert_eq!(
        std::fs::read(dest.path().join("vae/a.safetensors")).unwrap(),
        a
    );
}

/// Runs a command off the runtime's threads (the test's server runs there).
async fn output(mut cmd: std::process::Command) -> std::io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the command's thread panicked")
}

fn write_manifest(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("models.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn the_cli_reports_ready_and_writes_extra_model_paths() {
    let a = content(5, 10_000);
    let mut files = Files::default();
    files.bytes.insert("a.safetensors".into(), a.clone());
    let (_files, addr) = serve(files).await;
    let work = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        work.path(),
        &entry(addr, "a.safetensors", "latent_upscale_models", ""),
    );
    let dest = work.path().join("models");
    let mut sync = std::process::Command::new(env!("CARGO_BIN_EXE_comfyume"));
    sync.args(["models", "sync", "--manifest"])
        .arg(&manifest)
        .arg("--dest")
        .arg(&dest);
    let out = output(sync).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("sha256 = \"{}\"", sha(&a))),
        "{stdout}"
    );
    let yaml = std::fs::read_to_string(dest.join("extra_model_paths.yaml")).unwrap();
    let base = dest.canonicalize().unwrap();
    assert!(
        yaml.contains(&format!("base_path: \"{}\"", base.display())),
        "{yaml}"
    );
    assert!(
        yaml.contains("  latent_upscale_models: latent_upscale_models/\n"),
        "{yaml}"
    );
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(["models", "check", "--manifest"])
        .arg(&manifest)
        .arg("--dest")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(checked.success());
}

/// A disk that fills during the download: a 64 KiB tmpfs in a private
/// mount namespace (`unshare`, root or an unprivileged user namespace);
/// where neither is allowed, a file-size limit (`ulimit -f`, with SIGXFSZ
/// ignored so the write fails with EFBIG as a full disk fails with ENOSPC).
#[tokio::test]
async fn a_full_disk_fails_the_sync_and_leaves_no_file_in_place() {
    let big = content(6, 256 * 1024);
    let mut files = Files::default();
    files.bytes.insert("big.safetensors".into(), big.clone());
    let (_files, addr) = serve(files).await;
    let work = tempfile::tempdir().unwrap();
    let manifest = write_manifest(work.path(), &entry(addr, "big.safetensors", "vae", ""));
    let dest = work.path().join("models");
    std::fs::create_dir_all(&dest).unwrap();
    let run = "\"$BIN\" models sync --retries 0 --manifest \"$MANIFEST\" --dest \"$DEST\"; rc=$?; \
         echo LISTING; ls -a \"$DEST/vae\"; ls -a \"$DEST\"; exit $rc";
    let tmpfs = format!("mount -t tmpfs -o size=64k tmpfs \"$DEST\" || exit 99; {run}");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("BIN", env!("CARGO_BIN_EXE_comfyume"))
            .env("MANIFEST", &manifest)
            .env("DEST", &dest);
    };
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["-Urm", "sh", "-c", &tmpfs]);
    env(&mut unshare);
    let mut out = output(unshare).await;
    let mut how = "a 64 KiB tmpfs";
    let mounted = out
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("LISTING"));
    if !mounted {
        how = "a 64-block file-size limit";
        let mut limited = std::process::Command::new("sh");
        limited.args(["-c", &format!("trap '' XFSZ; ulimit -f 64; {run}")]);
        env(&mut limited);
        out = output(limited).await;
    }
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("full disk simulated with {how}");
    assert!(!out.status.success(), "{how}: {stdout}\n{stderr}");
    assert!(stderr.contains("FAILED vae/big.safetensors"), "{stderr}");
    assert!(
        stderr.contains("No space left") || stderr.contains("File too large"),
        "{stderr}"
    );
    assert!(stderr.contains("not ready"), "{stderr}");
    let listing = stdout.split("LISTING").nth(1).unwrap_or_default();
    let names: Vec<&str> = listing.split_whitespace().collect();
    assert!(!names.contains(&"big.safetensors"), "{listing}");
    assert!(!names.contains(&"extra_model_paths.yaml"), "{listing}");
}
