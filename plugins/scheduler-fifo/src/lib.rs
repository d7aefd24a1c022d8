//! Built-in scheduler `fifo`: the oldest pending job runs first.
//!
//! Jobs of users already at their running cap are skipped, so one attendee
//! with a full lane never blocks everyone behind them.

use comfyume_plugin_sdk::schedule::at_cap;
use comfyume_plugin_sdk::scheduler::{Guest, PluginInfo, Snapshot, scheduling};
use comfyume_plugin_sdk::types::PluginKind;

/// The component's exports.
pub struct Fifo;

/// The policy itself, callable natively (benchmarks) and from the export.
pub fn pick_next(snapshot: &Snapshot) -> Option<u32> {
    let mut best: Option<(u64, u64, u32)> = None;
    for (index, job) in snapshot.pending.iter().enumerate() {
        if at_cap(snapshot, job.user) {
            continue;
        }
        let key = (job.submitted_at_ms, job.id, index as u32);
        if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
            best = Some(key);
        }
    }
    best.map(|b| b.2)
}

impl scheduling::Guest for Fifo {
    fn pick_next(snapshot: Snapshot) -> Option<u32> {
        pick_next(&snapshot)
    }
}

impl Guest for Fifo {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "fifo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Scheduler,
            summary: "First in, first out; users at their running cap are skipped.".into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_scheduler!(Fifo);
