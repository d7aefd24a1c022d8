//! ComfyUMe scheduler `{{name}}`: first in, first out.
//!
//! The oldest pending job (submit time, then id) whose user is below their
//! running cap runs next; `None` when every waiting user is at their cap.
//! The host passes the whole queue on every call: keep no state.

wit_bindgen::generate!({ path: "wit", world: "scheduler" });

use comfyume::plugin::types::PluginKind;
use exports::comfyume::plugin::scheduling::{Guest as Scheduling, Snapshot};

struct Plugin;

/// True when user `user` is known and below their running cap.
fn has_room(snapshot: &Snapshot, user: u32) -> bool {
    snapshot
        .users
        .get(user as usize)
        .is_some_and(|u| u.max_running.is_none_or(|cap| u.running < cap))
}

impl Scheduling for Plugin {
    fn pick_next(snapshot: Snapshot) -> Option<u32> {
        snapshot
            .pending
            .iter()
            .enumerate()
            .filter(|(_, job)| has_room(&snapshot, job.user))
            .min_by_key(|(_, job)| (job.submitted_at_ms, job.id))
            .and_then(|(index, _)| u32::try_from(index).ok())
    }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Scheduler,
            summary: "Oldest pending job first, skipping users at their running cap.".into(),
        }
    }
}

export!(Plugin);
