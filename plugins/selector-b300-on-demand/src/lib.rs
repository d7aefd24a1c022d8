//! Built-in backend selector `b300-on-demand`: heavy LTX-2 jobs run only on
//! B300 (on-demand first, so a long render is not lost to a reclaim), every
//! other job on the cheapest healthy pool with room.
//!
//! The policy and the reasons behind it are documented in [`policy`]; this
//! file is only the WIT glue.

pub mod policy;

pub use policy::{HEAVY_PIXEL_FRAMES, UNRELIABLE_FAILURES, is_heavy, select};

use comfyume_plugin_sdk::selector::{Backend, Guest, JobInfo, PluginInfo, selection};
use comfyume_plugin_sdk::types::PluginKind;

/// The component's exports.
pub struct B300OnDemand;

impl selection::Guest for B300OnDemand {
    fn select(job: JobInfo, backends: Vec<Backend>) -> Result<u32, String> {
        select(&job, &backends)
    }
}

impl Guest for B300OnDemand {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "b300-on-demand".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Selector,
            summary: "Heavy LTX-2 jobs on B300 on-demand (B300 spot if never reclaimed), \
                      never on a smaller GPU; other jobs on the cheapest healthy pool."
                .into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_selector!(B300OnDemand);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_selector() {
        let info = <B300OnDemand as Guest>::describe();
        assert_eq!(info.name, "b300-on-demand");
        assert!(matches!(info.kind, PluginKind::Selector));
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
