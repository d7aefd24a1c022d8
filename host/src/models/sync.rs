//! `comfyume models sync`: every file of the manifest into place, checked.
//!
//! Policy, per file:
//! - in place and already verified (see the module above): nothing to do;
//!   in place with a sha256 never checked: hashed now; a file of the wrong
//!   size or hash is removed and downloaded again (the folder belongs to
//!   the sync);
//! - missing: downloaded to `<file>.part`, resumed with an HTTP `Range`
//!   request when a `.part` is there (from a cut connection or an earlier
//!   run), retried with backoff after a transport error, then checked
//!   against the size and sha256 and only then renamed into place;
//! - a sha256 or size mismatch removes the `.part` (resuming a wrong file
//!   can never make it right) and fails that file; a write error (a full
//!   disk) fails it and keeps the `.part` for a resume once there is room;
//!   a 4xx answer fails it at once (a wrong URL or a missing token does not
//!   get better by retrying).
//!
//! The sync reports *ready* only when every file is in place and checked.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::state::{self, Verified};
use super::{Manifest, ModelFile};

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Transport failures (a cut connection, a 5xx) retried per file.
    pub retries: u32,
    /// The first pause between two tries; doubles up to 30 s.
    pub retry_delay: Duration,
    /// A download that receives nothing for this long is cut and resumed.
    pub read_timeout: Duration,
    /// Hash every file with a sha256 again, even when remembered as good.
    pub verify: bool,
    /// Draw progress bars (a terminal) or print progress lines.
    pub bars: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            retries: 5,
            retry_delay: Duration::from_secs(1),
            read_timeout: Duration::from_secs(60),
            verify: false,
            bars: std::io::stderr().is_terminal(),
        }
    }
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already in place (and verified earlier, or no sha256 to check).
    Present,
    /// In place; hashed now and right.
    Verified,
    /// Downloaded and checked. `pin`: its size and sha256 when the
    /// manifest lacks either, for the operator to copy in.
    Downloaded {
        /// `(size, sha256)` measured, when the manifest does not pin them.
        pin: Option<(u64, String)>,
    },
    /// Not ready, and why.
    Failed(String),
}

/// The sync's result, file by file (`<folder>/<file>`).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In manifest order.
    pub files: Vec<(String, Outcome)>,
}

impl Report {
    /// Every file is in place and checked.
    pub fn ready(&self) -> bool {
        self.files
            .iter()
            .all(|(_, o)| !matches!(o, Outcome::Failed(_)))
    }
}

/// Why one file failed.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("{0}")]
    Fatal(String),
    #[error("{0}")]
    Retry(String),
}

/// Syncs every file of `manifest` into `dest`.
pub async fn sync(manifest: &Manifest, dest: &Path, options: &SyncOptions) -> Report {
    crate::tls::install_provider();
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(options.read_timeout)
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            let reason = format!("no HTTP client: {e}");
            return Report {
                files: manifest
                    .models
                    .iter()
                    .map(|m| (m.relative_path(), Outcome::Failed(reason.clone())))
                    .collect(),
            };
        }
    };
    let token = manifest.token();
    let mut verified = state::load(dest);
    let mut report = Report::default();
    for model in &manifest.models {
        let name = model.relative_path();
        let span = tracing::info_span!("model", file = %name);
        let _enter = span.enter();
        let outcome = match one(&http, token.as_deref(), model, dest, options, &mut verified).await
        {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        if let Err(e) = state::save(dest, &verified) {
            tracing::warn!(error = %e, "could not remember verified files");
        }
        match &outcome {
            Outcome::Failed(reason) => tracing::error!(%reason, "not ready"),
            other => tracing::info!(outcome = ?other, "ready"),
        }
        report.files.push((name, outcome));
    }
    report
}

async fn one(
    http: &reqwest::Client,
    token: Option<&str>,
    model: &ModelFile,
    dest: &Path,
    options: &SyncOptions,
    verified: &mut state::State,
) -> Result<Outcome, FileError> {
    let key = model.relative_path();
    let path = dest.join(&key);
    let folder = dest.join(&model.folder);
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|e| FileError::Fatal(format!("creating {}: {e}", folder.display())))?;
    if let Ok(meta) = tokio::fs::metadata(&path).await {
        match existing(model, &path, &meta, options, verified).await? {
            Some(outcome) => return Ok(outcome),
            None => {
                tracing::warn!("the file in place is wrong; downloading it again");
                remove(&path).await?;
            }
        }
    }
    verified.remove(&key);
    let part = part_path(&path);
    let (size, sha) = download(http, token, model, &part, options).await?;
    if let Some(expected) = model.size
        && size != expected
    {
        remove(&part).await?;
        return Err(FileError::Fatal(format!(
            "downloaded {size} bytes, the manifest says {expected}; removed"
        )));
    }
    if let Some(expected) = &model.sha256
        && &sha != expected
    {
        remove(&part).await?;
        return Err(FileError::Fatal(format!(
            "sha256 mismatch: got {sha}, the manifest says {expected}; removed"
        )));
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| FileError::Fatal(format!("renaming into place: {e}")))?;
    if let Some(expected) = &model.sha256
        && let Ok(meta) = tokio::fs::metadata(&path).await
    {
        verified.insert(key, Verified::of(&meta, expected));
    }
    let pin = (model.sha256.is_none() || model.size.is_none()).then_some((size, sha));
    Ok(Outcome::Downloaded { pin })
}

/// A file already in place: `Some` when it is good, `None` when it must go.
async fn existing(
    model: &ModelFile,
    path: &Path,
    meta: &std::fs::Metadata,
    options: &SyncOptions,
    verified: &mut state::State,
) -> Result<Option<Outcome>, FileError> {
    if !meta.is_file() {
        return Err(FileError::Fatal(format!(
            "{} is not a file",
            path.display()
        )));
    }
    if model.size.is_some_and(|size| size != meta.len()) {
        return Ok(None);
    }
    let Some(expected) = &model.sha256 else {
        return Ok(Some(Outcome::Present));
    };
    let key = model.relative_path();
    if !options.verify && verified.get(&key) == Some(&Verified::of(meta, expected)) {
        return Ok(Some(Outcome::Present));
    }
    let (_, sha) = hash_prefix(path, u64::MAX)
        .await
        .map_err(|e| FileError::Fatal(format!("reading {}: {e}", path.display())))?;
    if &sha != expected {
        return Ok(None);
    }
    verified.insert(key, Verified::of(meta, expected));
    Ok(Some(Outcome::Verified))
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

async fn remove(path: &Path) -> Result<(), FileError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::Fatal(format!(
            "removing {}: {e}",
            path.display()
        ))),
    }
}

/// The sha256 state of a file's first `limit` bytes, and how many there were.
async fn hash_prefix(path: &Path, limit: u64) -> std::io::Result<(u64, String)> {
    let (read, hasher) = hasher_of(path, limit).await?;
    Ok((read, hex::encode(hasher.finalize())))
}

async fn hasher_of(path: &Path, limit: u64) -> std::io::Result<(u64, Sha256)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    while read < limit {
        let want = buf
            .len()
            .min((limit - read).min(usize::MAX as u64) as usize);
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    Ok((read, hasher))
}

/// Downloads into `part`, resuming and retrying; returns its size and sha256.
async fn download(
    http: &reqwest::Client,
    token: Option<&str>,
    model: &ModelFile,
    part: &Path,
    options: &SyncOptions,
) -> Result<(u64, String), FileError> {
    let mut progress = Progress::new(&model.relative_path(), model.size, options.bars);
    let mut delay = options.retry_delay;
    let mut tries = 0;
    loop {
        match attempt(http, token, model, part, &mut progress).await {
            Ok(done) => {
                progress.finish();
                return Ok(done);
            }
            Err(FileError::Retry(reason)) if tries < options.retries => {
                tries += 1;
                tracing::warn!(%reason, try_ = tries, "download interrupted; resuming");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                progress.abandon();
                return Err(e);
            }
        }
    }
}

async fn attempt(
    http: &reqwest::Client,
    token: Option<&str>,
    model: &ModelFile,
    part: &Path,
    progress: &mut Progress,
) -> Result<(u64, String), FileError> {
    let io =
        |what: &str, e: std::io::Error| FileError::Fatal(format!("{what} {}: {e}", part.display()));
    let have = match tokio::fs::metadata(part).await {
        Ok(meta) => meta.len(),
        Err(_) => 0,
    };
    let mut request = http.get(&model.url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let answer = request
        .send()
        .await
        .map_err(|e| FileError::Retry(format!("GET {}: {e}", model.url)))?;
    let status = answer.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT
        && content_range_start(&answer) == Some(have);
    if status == reqwest::StatusCode::PARTIAL_CONTENT && !resumed {
        // A range we did not ask for: start over rather than splice.
        remove(part).await?;
        return Err(FileError::Retry("the server answered another range".into()));
    }
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // The part is as long as the file or longer: it cannot be resumed.
        remove(part).await?;
        return Err(FileError::Retry(
            "the partial file could not be resumed".into(),
        ));
    }
    if !status.is_success() {
        let reason = format!("GET {} answered {status}", model.url);
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            FileError::Retry(reason)
        } else {
            FileError::Fatal(reason)
        });
    }
    let (start, mut hasher) = if resumed {
        let (read, hasher) = hasher_of(part, have).await.map_err(|e| io("reading", e))?;
        (read, hasher)
    } else {
        (0, Sha256::new())
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .await
        .map_err(|e| io("opening", e))?;
    let mut written = start;
    progress.set(written);
    let mut body = answer.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = file.flush().await;
                return Err(FileError::Retry(format!(
                    "connection cut after {written} bytes: {e}"
                )));
            }
        };
        file.write_all(&chunk).await.map_err(|e| io("writing", e))?;
        hasher.update(&chunk);
        written += chunk.len() as u64;
        progress.set(written);
    }
    file.flush().await.map_err(|e| io("writing", e))?;
    file.sync_all().await.map_err(|e| io("writing", e))?;
    Ok((written, hex::encode(hasher.finalize())))
}

/// `Content-Range: bytes <start>-<end>/<total>` → start.
fn content_range_start(answer: &reqwest::Response) -> Option<u64> {
    let value = answer
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A progress bar on a terminal, a line every few seconds elsewhere (logs).
struct Progress {
    name: String,
    total: Option<u64>,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    done: u64,
}

impl Progress {
    fn new(name: &str, total: Option<u64>, bars: bool) -> Progress {
        let bar = bars.then(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::no_length(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(name.to_string());
            bar
        });
        Progress {
            name: name.into(),
            total,
            bar,
            last_line: Instant::now(),
            done: 0,
        }
    }

    fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    fn line(&self) -> String {
        let mib = self.done as f64 / (1u64 << 20) as f64;
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {mib:.1} MiB of {:.1} MiB ({}%)",
                self.name,
                total as f64 / (1u64 << 20) as f64,
                self.done * 100 / total
            ),
            _ => format!("{}: {mib:.1} MiB", self.name),
        }
    }

    fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!("{}: done", self.line()),
        }
    }

    fn abandon(&mut self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}
