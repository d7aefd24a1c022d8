//! Built-in scheduler `priority`: priority class first, then submit time.
//!
//! The instructor class always goes first (the lane that skips the queue for
//! live demos), then high, normal and low. Within a class the oldest job runs
//! first. Users at their running cap are skipped.

use comfyume_plugin_sdk::schedule::has_room;
use comfyume_plugin_sdk::scheduler::{Guest, PluginInfo, Snapshot, scheduling};
use comfyume_plugin_sdk::types::{PluginKind, PriorityClass};

/// The component's exports.
pub struct Priority;

/// Lower ranks run first.
fn rank(class: PriorityClass) -> u8 {
    match class {
        PriorityClass::Instructor => 0,
        PriorityClass::High => 1,
        PriorityClass::Normal => 2,
        PriorityClass::Low => 3,
    }
}

/// The policy itself, callable natively (benchmarks) and from the export.
pub fn pick_next(snapshot: &Snapshot) -> Option<u32> {
    let mut best: Option<((u8, u64, u64), u32)> = None;
    for (index, job) in snapshot.pending.iter().enumerate() {
        if !has_room(snapshot, job.user) {
            continue;
        }
        let key = (rank(job.priority), job.submitted_at_ms, job.id);
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, index as u32));
        }
    }
    best.map(|(_, index)| index)
}

impl scheduling::Guest for Priority {
    fn pick_next(snapshot: Snapshot) -> Option<u32> {
        pick_next(&snapshot)
    }
}

impl Guest for Priority {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "priority".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Scheduler,
            summary: "Priority class (instructor first), then submit time.".into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_scheduler!(Priority);
