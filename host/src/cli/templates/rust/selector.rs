//! ComfyUMe backend selector `{{name}}`: the first healthy pool with room.
//!
//! Answer the index of a pool that is healthy and has
//! `in_flight < capacity`, or the reason why the job must wait.

wit_bindgen::generate!({ path: "wit", world: "selector" });

use comfyume::plugin::types::PluginKind;
use exports::comfyume::plugin::selection::{Backend, Guest as Selection, JobInfo};

struct Plugin;

impl Selection for Plugin {
    fn select(job: JobInfo, backends: Vec<Backend>) -> Result<u32, String> {
        backends
            .iter()
            .position(|pool| pool.healthy && pool.in_flight < pool.capacity)
            .and_then(|index| u32::try_from(index).ok())
            .ok_or_else(|| format!("no healthy pool has room for job {}; it waits", job.id))
    }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Selector,
            summary: "The first healthy pool with room.".into(),
        }
    }
}

export!(Plugin);
