//! Built-in validator `ltx2`: LTX-2 and LTX-2.3 text/image-to-video (with
//! sound) workflows.
//!
//! A graph is this validator's business when it has an
//! `EmptyLTXVLatentVideo`, `LTXVConditioning`, `LTXAVTextEncoderLoader` or
//! any `LTXV*` node; otherwise the verdict is `not-applicable`. The rules
//! (frame count 8n+1 and ≤ 257, sizes, a pixel-frames budget, one frame
//! rate everywhere, known model files, a `SaveVideo` output) are in
//! [`rules`], each reported at the node and input holding the offending
//! literal (links are followed by the SDK's
//! [`Graph::resolve`](comfyume_plugin_sdk::validate::graph::Graph::resolve)).
//! An accepted graph gets the workflow kind `ltx2` and a [`cost`] estimate.

pub mod cost;
pub mod models;
pub mod rules;

use comfyume_plugin_sdk::types::PluginKind;
use comfyume_plugin_sdk::validate::verdict;
use comfyume_plugin_sdk::validator::{Guest, Node, PluginInfo, Verdict, validation};

/// The workflow kind accepted graphs are tagged with.
pub const WORKFLOW_KIND: &str = "ltx2";

/// The component's exports.
pub struct Ltx2;

/// The validator itself, callable natively (tests, benchmarks) and from the export.
pub fn validate(graph: &[Node]) -> Verdict {
    verdict(
        graph,
        WORKFLOW_KIND,
        rules::anchor,
        rules::check,
        cost::estimate,
    )
}

impl validation::Guest for Ltx2 {
    fn validate(graph: Vec<Node>) -> Verdict {
        validate(&graph)
    }
}

impl Guest for Ltx2 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "ltx2".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Validator,
            summary: "LTX-2/2.3 video: 8n+1 frames up to 257, sizes up to 1080p, \
                      one frame rate, known models; estimates GPU time."
                .into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_validator!(Ltx2);
