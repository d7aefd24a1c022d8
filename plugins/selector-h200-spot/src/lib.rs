//! Built-in backend selector `h200-spot`: run jobs on cheap H200 spot
//! capacity while it is healthy, and move to H200 on-demand when spot is
//! unhealthy, full, or has already lost this job to a reclaim.
//!
//! The policy and the reasons behind it are documented in [`policy`]; this
//! file is only the WIT glue.

pub mod policy;

pub use policy::{UNRELIABLE_FAILURES, select};

use comfyume_plugin_sdk::selector::{Backend, Guest, JobInfo, PluginInfo, selection};
use comfyume_plugin_sdk::types::PluginKind;

/// The component's exports.
pub struct H200Spot;

impl selection::Guest for H200Spot {
    fn select(job: JobInfo, backends: Vec<Backend>) -> Result<u32, String> {
        select(&job, &backends)
    }
}

impl Guest for H200Spot {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "h200-spot".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Selector,
            summary: "H200 spot first (warm, then cold); H200 on-demand when spot is \
                      unhealthy or full, or after a reclaim; any free pool as a last resort."
                .into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_selector!(H200Spot);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_selector() {
        let info = <H200Spot as Guest>::describe();
        assert_eq!(info.name, "h200-spot");
        assert!(matches!(info.kind, PluginKind::Selector));
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
