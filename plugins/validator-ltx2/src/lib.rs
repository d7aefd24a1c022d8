//! Built-in validator `ltx2`: LTX-2 and LTX-2.3 text/image-to-video (with
//! sound) workflows.
//!
//! A graph is this validator's business when it has an
//! `EmptyLTXVLatentVideo`, `LTXVConditioning`, `LTXAVTextEncoderLoader` or
//! any `LTXV*` node; otherwise the verdict is `not-applicable`. The rules
//! (frame count 8n+1 and ≤ 257, sizes, a pixel-frames budget, one frame
//! rate everywhere, known model files, a `SaveVideo` output) are in
//! [`rules`], each reported at the node and input holding the offending
//! literal (links are followed by [`graph`]). An accepted graph gets the
//! workflow kind `ltx2` and a [`cost`] estimate.

wit_bindgen::generate!({
    path: "../../wit",
    world: "validator",
});

pub mod cost;
pub mod expr;
pub mod graph;
pub mod models;
pub mod report;
pub mod rules;

use comfyume::plugin::types::PluginKind;
use exports::comfyume::plugin::validation::{self, Accepted, Node, Verdict};

/// The workflow kind accepted graphs are tagged with.
pub const WORKFLOW_KIND: &str = "ltx2";

/// The component's exports.
pub struct Ltx2;

/// The validator itself, callable natively (tests, benchmarks) and from the export.
pub fn validate(graph: &[Node]) -> Verdict {
    let g = graph::Graph::new(graph);
    let Some(anchor) = rules::anchor(&g) else {
        return Verdict::NotApplicable;
    };
    let (problems, shape) = rules::check(&g, anchor);
    if problems.is_empty() {
        Verdict::Accepted(Accepted {
            workflow_kind: WORKFLOW_KIND.into(),
            cost: cost::estimate(&shape),
        })
    } else {
        Verdict::Rejected(problems.into_vec())
    }
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
export!(Ltx2);
