//! Precompression at install time: a `.gz` and a `.br` next to each text
//! asset, so serving never compresses on the fly.
//!
//! Policy: only formats that are not compressed already (scripts, styles,
//! markup, fonts without their own compression); a variant is kept only when
//! it saves at least 5 %; gzip at level 9, brotli at quality 11, which costs
//! seconds once per install and saves bytes on every attendee's first load.
//! A debug build uses brotli quality 5: the encoder is generic, so it is
//! compiled unoptimised inside this crate, and quality 11 then takes ~7
//! minutes of CPU for the editor (tests and CI install with a debug build);
//! quality 5 is a few per cent larger and ~20× faster.
//! Work is spread over the machine's cores, largest files first.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::FrontendError;

/// Extensions worth compressing (images, woff2 and video already are).
const TEXT: &[&str] = &[
    "js",
    "mjs",
    "css",
    "html",
    "json",
    "svg",
    "txt",
    "ico",
    "ttf",
    "eot",
    "wasm",
    "xml",
    "webmanifest",
];
/// Below this, the headers cost more than the bytes saved.
const MIN_BYTES: u64 = 256;
/// Brotli's best quality (quality 5 in debug builds, see the module docs)
/// and a 4 MiB window (browsers accept up to 16 MiB).
const BROTLI_QUALITY: u32 = if cfg!(debug_assertions) { 5 } else { 11 };
const BROTLI_LGWIN: u32 = 22;

/// What was written.
#[derive(Debug, Default)]
pub(super) struct Packed {
    /// Files that got at least one variant.
    pub files: u64,
    /// Bytes of all `.gz` and `.br` files.
    pub bytes: u64,
}

/// Whether `path` is worth compressing.
pub(super) fn is_text(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| TEXT.iter().any(|t| t.eq_ignore_ascii_case(e)))
}

/// Writes the variants for every text file in `files`.
pub(super) fn all(
    files: &[PathBuf],
    reporter: &super::progress::Reporter,
) -> Result<Packed, FrontendError> {
    let mut work: Vec<(u64, &PathBuf)> = files
        .iter()
        .filter(|p| is_text(p))
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.len(), p)))
        .filter(|(len, _)| *len >= MIN_BYTES)
        .collect();
    // Largest first, so one big bundle does not run alone at the end.
    work.sort_by_key(|w| std::cmp::Reverse(w.0));
    let bar = reporter.meter("compressing", "files", Some(work.len() as u64));
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Packed::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let result = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<(), FrontendError> {
                    while let Some((_, path)) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let written = one(path)?;
                        if written > 0
                            && let Ok(mut total) = total.lock()
                        {
                            total.files += 1;
                            total.bytes += written;
                        }
                        bar.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(FrontendError::Io {
                    action: "compressing (a worker panicked)",
                    path: PathBuf::new(),
                    source: std::io::Error::other("panic"),
                })
            })
        })
    });
    bar.finish();
    result?;
    Ok(total.into_inner().unwrap_or_default())
}

/// Writes `path.gz` and `path.br` when they are worth it; returns their bytes.
fn one(path: &Path) -> Result<u64, FrontendError> {
    let data = std::fs::read(path).map_err(FrontendError::io("reading", path))?;
    let worth = |packed: &[u8]| (packed.len() as u64) * 100 < (data.len() as u64) * 95;
    let mut written = 0;
    let gz = gzip(&data).map_err(FrontendError::io("compressing", path))?;
    if worth(&gz) {
        written += write_next_to(path, "gz", &gz)?;
    }
    let br = brotli(&data).map_err(FrontendError::io("compressing", path))?;
    if worth(&br) {
        written += write_next_to(path, "br", &br)?;
    }
    Ok(written)
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

fn brotli(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 4);
    let mut writer = brotli::CompressorWriter::new(out, 64 << 10, BROTLI_QUALITY, BROTLI_LGWIN);
    writer.write_all(data)?;
    // `into_inner` finishes the stream (a flush alone would not).
    Ok(writer.into_inner())
}

fn write_next_to(path: &Path, suffix: &str, bytes: &[u8]) -> Result<u64, FrontendError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    let target = path.with_file_name(name);
    std::fs::write(&target, bytes).map_err(FrontendError::io("writing", &target))?;
    Ok(bytes.len() as u64)
}
