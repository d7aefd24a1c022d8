//! Built-in scheduler `fair-share`: the user who has used the least GPU time goes next.
//!
//! A user's share is the GPU-seconds their finished jobs used this session
//! plus the estimated GPU-seconds of their jobs running now, so a user whose
//! long LTX-2 render is still on a GPU does not get a second GPU ahead of
//! everyone else. Instructor-class jobs go first (the live-demo lane). Ties
//! go to the oldest job. A user at their running cap is skipped.

/// The SDK this plugin is built on, re-exported so a native caller (the
/// host's benchmark) can build the [`Snapshot`] that [`pick_next`] takes.
pub use comfyume_plugin_sdk as sdk;

use comfyume_plugin_sdk::schedule::has_room;
use comfyume_plugin_sdk::scheduler::{Guest, PluginInfo, Snapshot, scheduling};
use comfyume_plugin_sdk::types::{PluginKind, PriorityClass};

/// The component's exports.
pub struct FairShare;

/// The policy itself, callable natively (benchmarks) and from the export.
pub fn pick_next(snapshot: &Snapshot) -> Option<u32> {
    let mut share: Vec<f64> = snapshot
        .users
        .iter()
        .map(|u| sanitize(u.gpu_seconds_used))
        .collect();
    for job in &snapshot.running {
        if let Some(s) = share.get_mut(job.user as usize) {
            *s += sanitize(job.est_gpu_seconds);
        }
    }
    let lane = |p: PriorityClass| u8::from(p != PriorityClass::Instructor);
    let mut best: Option<usize> = None;
    for (index, job) in snapshot.pending.iter().enumerate() {
        if !has_room(snapshot, job.user) {
            continue;
        }
        let user = job.user as usize;
        let better = match best {
            None => true,
            Some(b) => {
                let other = &snapshot.pending[b];
                lane(job.priority)
                    .cmp(&lane(other.priority))
                    .then(share[user].total_cmp(&share[other.user as usize]))
                    .then(job.submitted_at_ms.cmp(&other.submitted_at_ms))
                    .then(job.id.cmp(&other.id))
                    .is_lt()
            }
        };
        if better {
            best = Some(index);
        }
    }
    best.map(|index| index as u32)
}

/// Negative or NaN usage from a confused host counts as zero.
fn sanitize(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        0.0
    }
}

impl scheduling::Guest for FairShare {
    fn pick_next(snapshot: Snapshot) -> Option<u32> {
        pick_next(&snapshot)
    }
}

impl Guest for FairShare {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "fair-share".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Scheduler,
            summary: "Least GPU-seconds used this session first; instructor lane first.".into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_scheduler!(FairShare);
