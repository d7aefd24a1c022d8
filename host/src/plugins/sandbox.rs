//! What a plugin instance may touch: its per-call store state.
//!
//! Every call gets a fresh [`PluginState`]: a WASI context that grants no
//! filesystem, network, environment or arguments; a memory limiter that
//! records when it refused growth (so a memory bomb is reported as one, not as
//! a mystery trap); the `log` import, capped per call; and stdout/stderr
//! captures that never fail the guest (a chatty plugin loses output, not its
//! decision) and end up in `tracing` under the plugin's name. Log lines are
//! capped per call and per plugin per minute ([`LogQuota`]), so a plugin
//! called thousands of times cannot flood the log either.
//!
//! Nothing a plugin can call blocks past its deadline: `wasi:io/poll`'s
//! `poll` and `pollable.block` (what `std::thread::sleep` and a clock
//! subscription end in) are replaced by versions that wait at most until the
//! call's [`CallBudget`] runs out, then stop the call ([`BoundedIo`]).
//! Stdin is closed and stdout/stderr are always ready, so no stream call
//! blocks; sockets, files and name lookups are not granted.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1_0::log::{self, Level};
use super::budget::{CallBudget, Overrun};

/// Most `log` lines one call may emit; the rest are counted and dropped.
const MAX_LOG_LINES: usize = 64;
/// Longest `log` line kept, in bytes.
const MAX_LOG_LINE: usize = 2048;
/// Bytes of stdout and of stderr kept per call.
const MAX_OUTPUT: usize = 16 * 1024;
/// Most lines (`log`, stdout, stderr) one plugin may log per minute, over
/// all its calls.
pub const MAX_LOG_LINES_PER_MINUTE: u32 = 600;

/// The store data of one plugin call.
pub struct PluginState {
    label: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: Limits,
    pub(super) budget: CallBudget,
    quota: Arc<LogQuota>,
    log_lines: usize,
    log_dropped: usize,
    stdout: GuestOutput,
    stderr: GuestOutput,
}

impl PluginState {
    /// A state for one call of the plugin named `label` (`name@version`),
    /// starting its clock with `deadline` of own time.
    pub fn new(
        label: Arc<str>,
        memory_cap: usize,
        deadline: Duration,
        quota: Arc<LogQuota>,
    ) -> Self {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        PluginState {
            label,
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: Limits {
                memory_cap,
                refused_memory: None,
            },
            budget: CallBudget::start(deadline),
            quota,
            log_lines: 0,
            log_dropped: 0,
            stdout,
            stderr,
        }
    }

    /// Sends what the guest printed to `tracing` and returns the last
    /// non-empty stderr line (a Rust guest's panic message ends up there).
    pub fn finish(&self) -> Option<String> {
        let label = &*self.label;
        for line in self.stdout.lines() {
            if self.quota.take(label) {
                tracing::info!(plugin = label, stream = "stdout", "{line}");
            }
        }
        let stderr = self.stderr.lines();
        for line in &stderr {
            if self.quota.take(label) {
                tracing::warn!(plugin = label, stream = "stderr", "{line}");
            }
        }
        if self.log_dropped > 0 {
            tracing::warn!(
                plugin = label,
                dropped = self.log_dropped,
                "plugin log lines dropped"
            );
        }
        last_words(&stderr)
    }
}

/// The guest's last message on stderr: a Rust panic prints
/// `thread … panicked at FILE:LINE:` then the message then a `note:` about
/// backtraces; keep the location and the message.
fn last_words(stderr: &[String]) -> Option<String> {
    let lines: Vec<&str> = stderr
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let last = lines.last()?;
    match lines.len().checked_sub(2).map(|i| lines[i]) {
        Some(before) if before.contains("panicked at") => Some(format!("{before} {last}")),
        _ => Some(last.to_string()),
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: Level, mut message: String) {
        if self.log_lines >= MAX_LOG_LINES {
            self.log_dropped += 1;
            return;
        }
        if !self.quota.take(&self.label) {
            return;
        }
        self.log_lines += 1;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &*self.label;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// A plugin's log allowance: [`MAX_LOG_LINES_PER_MINUTE`] lines per minute
/// over all its calls; the rest are dropped and counted, and the count is
/// logged once when the next minute starts.
#[derive(Debug)]
pub struct LogQuota {
    state: Mutex<QuotaWindow>,
}

#[derive(Debug)]
struct QuotaWindow {
    started: Instant,
    used: u32,
    dropped: u64,
}

impl Default for LogQuota {
    fn default() -> Self {
        LogQuota {
            state: Mutex::new(QuotaWindow {
                started: Instant::now(),
                used: 0,
                dropped: 0,
            }),
        }
    }
}

impl LogQuota {
    /// Takes one line's allowance; false when this minute's is spent.
    pub fn take(&self, label: &str) -> bool {
        let mut window = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if window.started.elapsed() >= Duration::from_secs(60) {
            if window.dropped > 0 {
                tracing::warn!(
                    plugin = label,
                    dropped = window.dropped,
                    limit = MAX_LOG_LINES_PER_MINUTE,
                    "plugin log lines dropped over the per-minute limit"
                );
            }
            *window = QuotaWindow {
                started: Instant::now(),
                used: 0,
                dropped: 0,
            };
        }
        if window.used >= MAX_LOG_LINES_PER_MINUTE {
            window.dropped += 1;
            return false;
        }
        window.used += 1;
        true
    }

    /// Lines dropped in the current minute.
    pub fn dropped(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }
}

/// `wasi:io/poll` as a plugin sees it: the real pollables, but no wait
/// outlives the call's budget. When the budget runs out first the call is
/// stopped with the [`Overrun`](super::budget::Overrun) that ended it.
pub struct BoundedIo<'a> {
    table: &'a mut ResourceTable,
    budget: &'a mut CallBudget,
}

/// The [`HasData`] marker that hands the linker a [`BoundedIo`].
pub struct HasBoundedIo;

impl HasData for HasBoundedIo {
    type Data<'a> = BoundedIo<'a>;
}

impl PluginState {
    /// The view the bounded `wasi:io/poll` works on.
    pub(super) fn bounded_io(&mut self) -> BoundedIo<'_> {
        BoundedIo {
            table: &mut self.table,
            budget: &mut self.budget,
        }
    }
}

impl BoundedIo<'_> {
    /// Runs a wait on the pollables for at most what is left of the budget.
    fn bounded<R>(
        &mut self,
        wait: impl AsyncFnOnce(&mut ResourceTable) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let (left, limit) = self.budget.remaining()?;
        let started = Instant::now();
        let table = &mut *self.table;
        let outcome = in_tokio(async move { tokio::time::timeout(left, wait(table)).await });
        self.budget.add_waited(started.elapsed());
        match (outcome, limit) {
            (Ok(result), _) => result,
            (Err(_), Overrun::OwnTime) => Err(Overrun::OwnTime.into()),
            (Err(_), Overrun::HostBusy) => Err(self.budget.at_backstop().into()),
        }
    }
}

impl sync_poll::Host for BoundedIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.bounded(async move |table| async_poll::Host::poll(table, pollables).await)
    }
}

impl sync_poll::HostPollable for BoundedIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(async { async_poll::HostPollable::ready(&mut *self.table, pollable).await })
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.bounded(async move |table| async_poll::HostPollable::block(table, pollable).await)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

/// The per-call memory cap. Unlike `StoreLimits` it remembers a refusal, so
/// the caller can tell a memory bomb from any other trap.
pub(super) struct Limits {
    memory_cap: usize,
    /// The size the guest asked for when growth was refused.
    pub(super) refused_memory: Option<usize>,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // plugin and keeps a table bomb from eating host memory.
        Ok(desired <= 1_000_000)
    }
}

/// A guest stdout or stderr: keeps the first [`MAX_OUTPUT`] bytes, accepts
/// and discards the rest, and is always ready.
#[derive(Clone, Default)]
struct GuestOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_OUTPUT.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn lines(&self) -> Vec<String> {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buffer)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_quota_holds_across_calls_until_the_minute_is_over() {
        let quota = LogQuota::default();
        let taken = (0..MAX_LOG_LINES_PER_MINUTE + 50)
            .filter(|_| quota.take("chatty@1"))
            .count();
        assert_eq!(taken, MAX_LOG_LINES_PER_MINUTE as usize);
        assert_eq!(quota.dropped(), 50);
        // A new minute starts a new allowance.
        quota.state.lock().unwrap().started -= Duration::from_secs(61);
        assert!(quota.take("chatty@1"));
        assert_eq!(quota.dropped(), 0);
    }
}
