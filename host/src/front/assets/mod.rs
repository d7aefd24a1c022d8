//! The ComfyUI editor's static files: installed from a
//! `comfyui-frontend-package` wheel, served with precompressed variants.
//!
//! Policy:
//! - The wheel's sha256 is checked before anything is extracted. The pinned
//!   version's hash lives in the code ([`PINNED`]); another version's comes
//!   from `frontend.sha256` or, said aloud in the log, from the index itself.
//! - Only `comfyui_frontend_package/static/` is extracted, without source
//!   maps, with every entry's path confined and the total size capped.
//! - `<data>/frontend/<version>/` appears atomically (a rename of
//!   `<version>.tmp/`), so a crash never leaves a half install; it holds an
//!   `installed.json` that says what was installed.
//! - Serving is read-only and stateless: [`router`] takes the folder.

mod install;
mod pending;
mod precompress;
mod progress;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::FrontendConfig;

pub use install::{InstallOptions, InstallReport, install};
pub use pending::{Editor, editor_router};
pub use progress::{InstallStatus, StatusView};
pub use serve::{is_hashed_asset, router, unavailable_router};

/// The PyPI project that ships the editor's built files.
pub const PACKAGE: &str = "comfyui-frontend-package";

/// A wheel the host trusts by its hash.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    /// The package version.
    pub version: &'static str,
    /// The wheel's file name on the index.
    pub wheel: &'static str,
    /// The wheel's sha256, hex.
    pub sha256: &'static str,
}

/// The frontend the host is tested with: 1.58.1, the version of the boot
/// captures in `shared/reference/comfyui-protocol-samples/frontend-boot/`.
/// The hash is PyPI's `digests.sha256`, checked against a download.
pub const PINNED: Pin = Pin {
    version: "1.58.1",
    wheel: "comfyui_frontend_package-1.58.1-py3-none-any.whl",
    sha256: "37912597537a731a8f421179618a736c24184c5bdbfa327f38b2fb7c291852d9",
};

/// What went wrong installing the frontend; each names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The index could not be asked or answered nonsense.
    #[error("asking the index {url}: {reason}")]
    Index {
        /// The JSON API URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The release has no wheel we can use.
    #[error("{PACKAGE} {version} has no {wanted} on the index {index}")]
    NoWheel {
        /// The version asked for.
        version: String,
        /// The file looked for.
        wanted: String,
        /// The index.
        index: String,
    },
    /// The download failed part way (connection, status, timeout).
    #[error("downloading {url}")]
    Download {
        /// The wheel's URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Fewer (or more) bytes than the index announced.
    #[error("download of {wheel} is incomplete: {received} bytes, expected {expected}")]
    Truncated {
        /// The wheel's file name.
        wheel: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The wheel is not the one we trust.
    #[error(
        "sha256 mismatch for {wheel}: expected {expected}, got {actual}; refusing to install it"
    )]
    Checksum {
        /// The wheel's file name.
        wheel: String,
        /// The trusted hash.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// A version other than the pin, from a local wheel, with no hash given.
    #[error("no sha256 to check {wheel} against: pass --sha256 or set frontend.sha256")]
    NoHash {
        /// The wheel's file name.
        wheel: String,
    },
    /// The archive or its extraction went over a cap.
    #[error("{what} exceeds the cap of {limit} {unit}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// The cap.
        limit: u64,
        /// Bytes, files…
        unit: &'static str,
    },
    /// The wheel is not a readable zip.
    #[error("reading the wheel: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A file or folder could not be written or read.
    #[error("{action} {path}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl FrontendError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| FrontendError::Io {
            action,
            path,
            source,
        }
    }
}

/// `installed.json`: what a version folder holds and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    /// The package version.
    pub version: String,
    /// The wheel's file name.
    pub wheel: String,
    /// The wheel's sha256, as checked.
    pub sha256: String,
    /// Where that hash came from: `pinned`, `config` or `index`.
    pub sha256_from: String,
    /// Files extracted (not counting `.gz`/`.br`).
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Files given precompressed variants.
    pub precompressed: u64,
    /// Bytes of the `.gz` and `.br` files written.
    pub precompressed_bytes: u64,
    /// Source maps left out.
    pub skipped_maps: u64,
}

/// The name of the manifest inside a version folder.
pub const MANIFEST: &str = "installed.json";

/// `<data>/frontend/<version>/`.
pub fn version_dir(data_dir: &Path, version: &str) -> PathBuf {
    data_dir.join("frontend").join(version)
}

/// The manifest of an installed version, if it is installed.
pub fn read_installed(dir: &Path) -> Option<Installed> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The installed folder for `config.version`, if it is installed (and is
/// the configured wheel when the configuration names a hash).
pub fn installed_dir(config: &FrontendConfig, data_dir: &Path) -> Option<PathBuf> {
    let dir = version_dir(data_dir, &config.version);
    let installed = read_installed(&dir)?;
    // A hash given in the config must also match what is installed;
    // otherwise the config names a different wheel: reinstall.
    let wanted = expected_hash(config);
    if wanted.is_none_or(|w| w.eq_ignore_ascii_case(&installed.sha256)) {
        return Some(dir);
    }
    tracing::warn!(
        installed = %installed.sha256,
        "the installed frontend is not the configured wheel; reinstalling"
    );
    None
}

/// What `comfyume serve` mounts for the editor: the installed files; else,
/// with `auto_install` on, an install in the background while the host
/// already answers (see [`Editor`]); else the page that says how to
/// install them. Call it inside the runtime.
pub fn editor(config: &FrontendConfig, data_dir: &Path) -> std::sync::Arc<Editor> {
    match installed_dir(config, data_dir) {
        Some(dir) => {
            tracing::info!(path = %dir.display(), version = %config.version, "serving the frontend");
            Editor::serving(router(dir))
        }
        None if config.auto_install => {
            Editor::install_in_background(config, data_dir.to_path_buf())
        }
        None => {
            tracing::warn!(
                "frontend {} is not installed in {} and frontend.auto_install is off: \
                 the ComfyUI editor is not available (attendees get a 503 page); \
                 run `comfyume frontend install` and restart",
                config.version,
                version_dir(data_dir, &config.version).display()
            );
            Editor::serving(unavailable_router())
        }
    }
}

/// The installed folder for `config.version`, installing it first (and
/// waiting) when it is missing and `auto_install` is on.
pub async fn ensure_installed(config: &FrontendConfig, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = installed_dir(config, data_dir) {
        return Ok(dir);
    }
    let dir = version_dir(data_dir, &config.version);
    anyhow::ensure!(
        config.auto_install,
        "frontend {} is not installed in {} and frontend.auto_install is off; \
         run `comfyume frontend install`",
        config.version,
        dir.display()
    );
    tracing::info!(version = %config.version, "installing the frontend (first start)");
    let options = InstallOptions::from_config(config, data_dir);
    let report = install(InstallOptions {
        force: true,
        ..options
    })
    .await
    .with_context(|| format!("installing frontend {}", config.version))?;
    tracing::info!(
        path = %report.dir.display(),
        files = report.installed.files,
        bytes = report.installed.bytes,
        seconds = report.elapsed.as_secs_f32(),
        "frontend installed"
    );
    Ok(report.dir)
}

/// The hash the configuration trusts without asking the index, if any.
pub fn expected_hash(config: &FrontendConfig) -> Option<&str> {
    match &config.sha256 {
        Some(sha) => Some(sha.as_str()),
        None if config.version == PINNED.version => Some(PINNED.sha256),
        None => None,
    }
}

/// The client for the index and the download: TLS, timeouts, a user agent.
pub(crate) fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::install_provider();
    reqwest::Client::builder()
        .user_agent(concat!("comfyume/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(15))
        // Per read, not overall: a slow link may take minutes for 29 MB.
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
}
