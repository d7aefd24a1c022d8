//! What an install is doing, told as it goes: progress bars on a
//! terminal, else a log line every few seconds, and always a shared
//! [`InstallStatus`] that `serve` shows on `/health` and on the editor's
//! "being installed" page.
//!
//! Why: downloading 29 MB and precompressing 1,700 files takes 90–160 s on
//! a small machine; with nothing printed an operator cannot tell a slow
//! link from a hung host.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// At most one log line per step this often (when there are no bars).
const LINE_EVERY: Duration = Duration::from_secs(3);

/// An install's progress as others see it (shared, cheap to read).
#[derive(Debug, Default)]
pub struct InstallStatus {
    inner: Mutex<StatusView>,
}

/// One reading of [`InstallStatus`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusView {
    /// `starting`, `downloading`, `extracting`, `compressing`, `installed`
    /// or `failed`.
    pub step: &'static str,
    /// Bytes or files done in this step.
    pub done: u64,
    /// Bytes or files in this step, when known.
    pub total: Option<u64>,
    /// `bytes` or `files`.
    pub unit: &'static str,
    /// Why it failed (`failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InstallStatus {
    /// A status at `starting`.
    pub fn new() -> Arc<InstallStatus> {
        Arc::new(InstallStatus {
            inner: Mutex::new(StatusView {
                step: "starting",
                unit: "bytes",
                ..StatusView::default()
            }),
        })
    }

    /// What it is doing now.
    pub fn view(&self) -> StatusView {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Moves to a final step (`installed`, or `failed` with the reason).
    pub fn finish(&self, error: Option<String>) {
        if let Ok(mut view) = self.inner.lock() {
            view.step = if error.is_some() {
                "failed"
            } else {
                "installed"
            };
            view.error = error;
        }
    }

    fn set(&self, step: &'static str, unit: &'static str, done: u64, total: Option<u64>) {
        if let Ok(mut view) = self.inner.lock() {
            *view = StatusView {
                step,
                done,
                total,
                unit,
                error: None,
            };
        }
    }
}

impl StatusView {
    /// "downloading: 12.3 of 29.0 MB" / "compressing: 340 of 1200 files".
    pub fn describe(&self) -> String {
        let scale = self.total.unwrap_or(self.done);
        let (divisor, unit) = match self.unit {
            "bytes" if scale >= 1_000_000 => (1e6, "MB"),
            "bytes" => (1e3, "kB"),
            _ => (1.0, "files"),
        };
        let amount = |n: u64| match self.unit {
            "bytes" => format!("{:.1}", n as f64 / divisor),
            _ => n.to_string(),
        };
        match self.total {
            Some(total) => format!(
                "{}: {} of {} {unit}",
                self.step,
                amount(self.done),
                amount(total)
            ),
            None if self.done > 0 => format!("{}: {} {unit}", self.step, amount(self.done)),
            None => self.step.to_string(),
        }
    }
}

/// How an install reports: bars or lines, and whom it tells.
#[derive(Clone, Default)]
pub(super) struct Reporter {
    /// Draw progress bars on stderr (a terminal) instead of log lines.
    pub bars: bool,
    /// Kept current for `/health` and the editor's waiting page.
    pub status: Option<Arc<InstallStatus>>,
}

impl Reporter {
    /// A meter for one step of `len` units (`bytes` or `files`).
    pub fn meter(&self, step: &'static str, unit: &'static str, len: Option<u64>) -> Meter {
        if let Some(status) = &self.status {
            status.set(step, unit, 0, len);
        }
        let bar = if self.bars {
            bar(len, step, unit)
        } else {
            let view = StatusView {
                step,
                done: 0,
                total: len,
                unit,
                error: None,
            };
            tracing::info!("installing the editor: {}", view.describe());
            ProgressBar::hidden()
        };
        Meter {
            bar,
            lines: !self.bars,
            step,
            unit,
            total: len,
            done: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
            status: self.status.clone(),
        }
    }
}

/// One step's progress (thread-safe: precompression counts from threads).
pub(super) struct Meter {
    bar: ProgressBar,
    lines: bool,
    step: &'static str,
    unit: &'static str,
    total: Option<u64>,
    done: AtomicU64,
    last_line: Mutex<Instant>,
    status: Option<Arc<InstallStatus>>,
}

impl Meter {
    /// `n` more bytes or files done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(status) = &self.status {
            status.set(self.step, self.unit, done, self.total);
        }
        if !self.lines {
            return;
        }
        let Ok(mut last) = self.last_line.try_lock() else {
            return; // another thread is saying it right now
        };
        if last.elapsed() >= LINE_EVERY {
            *last = Instant::now();
            let view = StatusView {
                step: self.step,
                done,
                total: self.total,
                unit: self.unit,
                error: None,
            };
            tracing::info!("installing the editor: {}", view.describe());
        }
    }

    /// The step is over.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A progress bar on stderr.
fn bar(len: Option<u64>, step: &'static str, unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if unit == "bytes" {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} [{bar:30}] {pos}/{len} files"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(step);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_meter_and_reads_in_words() {
        let status = InstallStatus::new();
        let reporter = Reporter {
            bars: false,
            status: Some(status.clone()),
        };
        let meter = reporter.meter("downloading", "bytes", Some(29_000_000));
        meter.inc(12_300_000);
        let view = status.view();
        assert_eq!((view.step, view.done), ("downloading", 12_300_000));
        assert_eq!(view.describe(), "downloading: 12.3 of 29.0 MB");
        let files = reporter.meter("compressing", "files", Some(1200));
        files.inc(340);
        assert_eq!(status.view().describe(), "compressing: 340 of 1200 files");
        let small = reporter.meter("downloading", "bytes", Some(4_500));
        small.inc(1_500);
        assert_eq!(status.view().describe(), "downloading: 1.5 of 4.5 kB");
        status.finish(Some("no network".into()));
        let view = status.view();
        assert_eq!(
            (view.step, view.error.as_deref()),
            ("failed", Some("no network"))
        );
    }
}
