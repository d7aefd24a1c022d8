//! Installing one frontend version: ask the index, download and check the
//! wheel, extract `static/`, precompress, move the result into place.
//!
//! Policy: nothing is extracted before the wheel's sha256 matches; every
//! size is capped (download, entry count, extracted bytes) so a hostile or
//! broken index cannot fill the disk; the version folder only ever appears
//! complete (built in `<version>.tmp/`, then renamed).

use std::io::IsTerminal as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::progress::{InstallStatus, Reporter};
use super::{FrontendError, Installed, MANIFEST, PACKAGE, PINNED, precompress, version_dir};
use crate::config::FrontendConfig;

/// The largest wheel accepted (1.58.1 is 29 MB).
const MAX_WHEEL_BYTES: u64 = 512 << 20;
/// The most entries a wheel may hold (1.58.1 has 1 704).
const MAX_ENTRIES: usize = 50_000;
/// The most bytes extracted (1.58.1: 44 MB without source maps).
const MAX_EXTRACTED_BYTES: u64 = 1 << 30;
/// Where the editor's files are inside the wheel.
const STATIC_PREFIX: &str = "comfyui_frontend_package/static";

/// What to install and from where.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The package version.
    pub version: String,
    /// The trusted sha256, overriding the pin and the index.
    pub sha256: Option<String>,
    /// The index with PyPI's JSON API, e.g. `https://pypi.org`.
    pub index_url: String,
    /// The data folder; the version goes to `<data>/frontend/<version>/`.
    pub data_dir: PathBuf,
    /// A wheel on disk to install instead of downloading one.
    pub wheel: Option<PathBuf>,
    /// Reinstall even when the version is already installed.
    pub force: bool,
    /// Draw progress bars on stderr; otherwise a log line every few
    /// seconds says how far it is.
    pub progress: bool,
    /// Kept current as the install goes (`serve` shows it on `/health`).
    pub status: Option<std::sync::Arc<InstallStatus>>,
}

impl InstallOptions {
    /// The configured version from the configured index, with progress bars
    /// when stderr is a terminal.
    pub fn from_config(config: &FrontendConfig, data_dir: &Path) -> Self {
        InstallOptions {
            version: config.version.clone(),
            sha256: config.sha256.clone(),
            index_url: config.index_url.clone(),
            data_dir: data_dir.to_path_buf(),
            wheel: None,
            force: false,
            progress: std::io::stderr().is_terminal(),
            status: None,
        }
    }
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The installed version folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub installed: Installed,
    /// True when the version was already installed and nothing was done.
    pub already: bool,
    /// Bytes downloaded (0 for a local wheel or an existing install).
    pub downloaded: u64,
    /// Time spent downloading.
    pub download_time: Duration,
    /// Time for the whole install.
    pub elapsed: Duration,
}

/// The wheel chosen on the index.
struct RemoteWheel {
    url: reqwest::Url,
    name: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// `/pypi/<name>/<version>/json`, the parts we read.
#[derive(Deserialize)]
struct Release {
    urls: Vec<ReleaseFile>,
}

#[derive(Deserialize)]
struct ReleaseFile {
    filename: String,
    url: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    digests: Digests,
}

#[derive(Default, Deserialize)]
struct Digests {
    #[serde(default)]
    sha256: Option<String>,
}

/// Installs `options.version` under the data folder.
pub async fn install(options: InstallOptions) -> Result<InstallReport, FrontendError> {
    let started = Instant::now();
    let reporter = Reporter {
        bars: options.progress,
        status: options.status.clone(),
    };
    let dir = version_dir(&options.data_dir, &options.version);
    if !options.force
        && let Some(installed) = super::read_installed(&dir)
    {
        return Ok(InstallReport {
            dir,
            installed,
            already: true,
            downloaded: 0,
            download_time: Duration::ZERO,
            elapsed: started.elapsed(),
        });
    }
    let root = options.data_dir.join("frontend");
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(FrontendError::io("creating", &root))?;

    // The trusted hash: the config's, else the pin's, else (below) the index's.
    let pinned = options.version == PINNED.version;
    let mut expected = options.sha256.clone().map(|s| (s, "config"));
    if expected.is_none() && pinned {
        expected = Some((PINNED.sha256.to_string(), "pinned"));
    }

    let download_started = Instant::now();
    let (wheel_path, name, actual, downloaded, temporary) = match &options.wheel {
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let actual = hash_file(path.clone()).await?;
            (path.clone(), name, actual, 0, false)
        }
        None => {
            let client = super::http_client().map_err(|e| FrontendError::Index {
                url: options.index_url.clone(),
                reason: e.to_string(),
            })?;
            let want = pinned.then_some(PINNED.wheel);
            let remote = resolve(&client, &options.index_url, &options.version, want).await?;
            if expected.is_none() {
                let Some(sha) = remote.sha256.clone() else {
                    return Err(FrontendError::NoHash { wheel: remote.name });
                };
                // Said aloud: this only proves the transfer, not the origin.
                tracing::warn!(
                    version = %options.version,
                    sha256 = %sha,
                    "not the pinned version and no frontend.sha256: trusting the index's hash"
                );
                expected = Some((sha, "index"));
            }
            let part = root.join(format!("{}.part", remote.name));
            let (actual, received) = download(&client, &remote, &part, &reporter).await?;
            (part, remote.name, actual, received, true)
        }
    };
    let download_time = download_started.elapsed();
    let Some((expected, sha256_from)) = expected else {
        return Err(FrontendError::NoHash { wheel: name });
    };
    if !actual.eq_ignore_ascii_case(&expected) {
        if temporary {
            let _ = std::fs::remove_file(&wheel_path);
        }
        return Err(FrontendError::Checksum {
            wheel: name,
            expected,
            actual,
        });
    }

    let manifest = Installed {
        version: options.version.clone(),
        wheel: name,
        sha256: actual,
        sha256_from: sha256_from.into(),
        files: 0,
        bytes: 0,
        precompressed: 0,
        precompressed_bytes: 0,
        skipped_maps: 0,
    };
    let target = dir.clone();
    let unpack_wheel = wheel_path.clone();
    let unpack_reporter = reporter.clone();
    let result = tokio::task::spawn_blocking(move || {
        unpack_into_place(&unpack_wheel, &target, manifest, &unpack_reporter)
    })
    .await
    .map_err(|e| FrontendError::Io {
        action: "unpacking (task failed)",
        path: dir.clone(),
        source: std::io::Error::other(e.to_string()),
    });
    if temporary {
        let _ = std::fs::remove_file(&wheel_path);
    }
    let installed = result??;
    Ok(InstallReport {
        dir,
        installed,
        already: false,
        downloaded,
        download_time,
        elapsed: started.elapsed(),
    })
}

/// Finds the wheel on the index: `want` by name, else the release's
/// `py3-none-any` wheel.
async fn resolve(
    client: &reqwest::Client,
    index_url: &str,
    version: &str,
    want: Option<&str>,
) -> Result<RemoteWheel, FrontendError> {
    let api = format!(
        "{}/pypi/{PACKAGE}/{version}/json",
        index_url.trim_end_matches('/')
    );
    let index_error = |reason: String| FrontendError::Index {
        url: api.clone(),
        reason,
    };
    let api_url = reqwest::Url::parse(&api).map_err(|e| index_error(e.to_string()))?;
    let response = client
        .get(api_url.clone())
        .send()
        .await
        .map_err(|e| index_error(error_chain(&e)))?;
    let (api_url, release) = if response.status() == reqwest::StatusCode::NOT_FOUND {
        // Some mirrors only have the project document (`/pypi/<name>/json`,
        // every release under `releases`): try it before giving up.
        project_release(client, index_url, version)
            .await
            .ok_or_else(|| index_error("HTTP 404 Not Found".into()))?
    } else if !response.status().is_success() {
        return Err(index_error(format!("HTTP {}", response.status())));
    } else {
        let release: Release = response
            .json()
            .await
            .map_err(|e| index_error(error_chain(&e)))?;
        (api_url, release)
    };
    let wanted = want.map_or_else(|| "py3-none-any wheel".to_string(), str::to_string);
    let file = release
        .urls
        .into_iter()
        .find(|f| match want {
            Some(name) => f.filename == name,
            None => f.filename.ends_with("-py3-none-any.whl"),
        })
        .ok_or_else(|| FrontendError::NoWheel {
            version: version.to_string(),
            wanted,
            index: index_url.to_string(),
        })?;
    // Mirrors may give URLs relative to the JSON document.
    let url = api_url
        .join(&file.url)
        .map_err(|e| index_error(format!("bad wheel url {:?}: {e}", file.url)))?;
    Ok(RemoteWheel {
        url,
        name: file.filename,
        size: file.size,
        sha256: file.digests.sha256,
    })
}

/// `version`'s files from the project document, with that document's URL
/// (wheel URLs may be relative to it).
async fn project_release(
    client: &reqwest::Client,
    index_url: &str,
    version: &str,
) -> Option<(reqwest::Url, Release)> {
    #[derive(Deserialize)]
    struct Project {
        releases: std::collections::HashMap<String, Vec<ReleaseFile>>,
    }
    let url = format!("{}/pypi/{PACKAGE}/json", index_url.trim_end_matches('/'));
    let url = reqwest::Url::parse(&url).ok()?;
    let response = client.get(url.clone()).send().await.ok()?;
    let mut project: Project = response.error_for_status().ok()?.json().await.ok()?;
    let urls = project.releases.remove(version)?;
    Some((url, Release { urls }))
}

/// Streams the wheel to `part`, hashing as it goes. Returns (sha256, bytes).
async fn download(
    client: &reqwest::Client,
    wheel: &RemoteWheel,
    part: &Path,
    reporter: &Reporter,
) -> Result<(String, u64), FrontendError> {
    let failed = |source: reqwest::Error| FrontendError::Download {
        url: wheel.url.to_string(),
        source,
    };
    let response = client
        .get(wheel.url.clone())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed)?;
    let expected = wheel.size.or(response.content_length());
    if expected.is_some_and(|n| n > MAX_WHEEL_BYTES) {
        return Err(too_large_wheel());
    }
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(FrontendError::io("creating", part))?;
    let bar = reporter.meter("downloading", "bytes", expected);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut body = response.bytes_stream();
    let outcome = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| FrontendError::Download {
                url: format!("{} (broke off after {received} bytes)", wheel.url),
                source,
            })?;
            received += chunk.len() as u64;
            if received > MAX_WHEEL_BYTES {
                return Err(too_large_wheel());
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(FrontendError::io("writing", part))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush()
            .await
            .map_err(FrontendError::io("writing", part))?;
        match expected {
            Some(expected) if expected != received => Err(FrontendError::Truncated {
                wheel: wheel.name.clone(),
                expected,
                received,
            }),
            _ => Ok(()),
        }
    }
    .await;
    bar.finish();
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(part).await;
        return Err(error);
    }
    Ok((hex::encode(hasher.finalize()), received))
}

fn too_large_wheel() -> FrontendError {
    FrontendError::TooLarge {
        what: "the wheel",
        limit: MAX_WHEEL_BYTES,
        unit: "bytes",
    }
}

/// reqwest's top-level messages are vague ("error sending request"); the
/// cause (DNS, refused, TLS) is what the operator needs.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn hash_file(path: PathBuf) -> Result<String, FrontendError> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(FrontendError::io("opening", &path))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(FrontendError::io("reading", &path))?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| FrontendError::Io {
        action: "hashing (task failed)",
        path: PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Extracts and precompresses into `<version>.tmp/`, writes the manifest,
/// then renames the folder over `target`.
fn unpack_into_place(
    wheel: &Path,
    target: &Path,
    mut manifest: Installed,
    reporter: &Reporter,
) -> Result<Installed, FrontendError> {
    // Not `with_extension`: "1.58.1" would become "1.58.tmp".
    let sibling = |suffix: &str| {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        target.with_file_name(name)
    };
    let tmp = sibling(".tmp");
    let old = sibling(".old");
    // Leftovers of a crashed install are never in use: clear them.
    for stale in [&tmp, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(FrontendError::io("removing", stale))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(FrontendError::io("creating", &tmp))?;
    let result = (|| {
        let counts = extract(wheel, &tmp, reporter)?;
        manifest.files = counts.files.len() as u64;
        manifest.bytes = counts.bytes;
        manifest.skipped_maps = counts.maps;
        let packed = precompress::all(&counts.files, reporter)?;
        manifest.precompressed = packed.files;
        manifest.precompressed_bytes = packed.bytes;
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other);
        let path = tmp.join(MANIFEST);
        json.and_then(|j| std::fs::write(&path, j))
            .map_err(FrontendError::io("writing", &path))?;
        // Replace an existing install with two renames; the window between
        // them is the only moment the version folder is absent.
        if target.exists() {
            std::fs::rename(target, &old).map_err(FrontendError::io("moving aside", target))?;
        }
        std::fs::rename(&tmp, target).map_err(FrontendError::io("renaming", &tmp))?;
        if old.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// What [`extract`] wrote.
struct Extracted {
    files: Vec<PathBuf>,
    bytes: u64,
    maps: u64,
}

/// Writes the wheel's `static/` files, except source maps, under `dest`.
fn extract(wheel: &Path, dest: &Path, reporter: &Reporter) -> Result<Extracted, FrontendError> {
    let file = std::fs::File::open(wheel).map_err(FrontendError::io("opening", wheel))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))?;
    if archive.len() > MAX_ENTRIES {
        return Err(FrontendError::TooLarge {
            what: "the wheel's entry count",
            limit: MAX_ENTRIES as u64,
            unit: "entries",
        });
    }
    let bar = reporter.meter("extracting", "files", Some(archive.len() as u64));
    let mut out = Extracted {
        files: Vec::new(),
        bytes: 0,
        maps: 0,
    };
    for index in 0..archive.len() {
        bar.inc(1);
        let mut entry = archive.by_index(index)?;
        if entry.is_dir() || entry.is_symlink() {
            continue; // folders are made on demand; links are never followed
        }
        let Some(name) = entry.enclosed_name() else {
            tracing::warn!(entry = ?entry.name().ok(), "skipping a wheel entry that escapes its folder");
            continue;
        };
        let Ok(relative) = name.strip_prefix(STATIC_PREFIX) else {
            continue; // the Python package and dist-info: not the editor's
        };
        // enclosed_name already normalised the path; refuse anything that
        // is not plain names anyway, so `dest.join` can never leave `dest`.
        if relative.as_os_str().is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            tracing::warn!(entry = %name.display(), "skipping a wheel entry with an unusual path");
            continue;
        }
        if relative.extension().is_some_and(|e| e == "map") {
            out.maps += 1;
            continue;
        }
        let path = dest.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(FrontendError::io("creating", parent))?;
        }
        let mut file =
            std::fs::File::create(&path).map_err(FrontendError::io("creating", &path))?;
        // The declared size may lie: cap what is actually inflated.
        let room = MAX_EXTRACTED_BYTES - out.bytes;
        let written = std::io::copy(&mut std::io::Read::take(&mut entry, room + 1), &mut file)
            .map_err(FrontendError::io("extracting", &path))?;
        if written > room {
            return Err(FrontendError::TooLarge {
                what: "the extracted frontend",
                limit: MAX_EXTRACTED_BYTES,
                unit: "bytes",
            });
        }
        out.bytes += written;
        out.files.push(path);
    }
    bar.finish();
    Ok(out)
}
