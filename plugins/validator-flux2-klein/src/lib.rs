//! Built-in validator `flux2-klein`: FLUX.2 [Klein] text-to-image and image
//! edit workflows.
//!
//! A graph is this validator's business when it has an
//! `EmptyFlux2LatentImage`, a `Flux2Scheduler` or a `CLIPLoader` of type
//! `flux2`; otherwise the verdict is `not-applicable`. The rules (sizes a
//! multiple of 16 in 256..=2048, steps, cfg, batch size, known and matching
//! model files, an image output) are in [`rules`], each reported at the node
//! and input holding the offending literal (links are followed by the SDK's
//! [`Graph::resolve`](comfyume_plugin_sdk::validate::graph::Graph::resolve)).
//! An accepted graph gets the workflow kind `flux2-klein` and a [`cost`]
//! estimate.

pub mod cost;
pub mod models;
pub mod rules;

use comfyume_plugin_sdk::types::PluginKind;
use comfyume_plugin_sdk::validate::verdict;
use comfyume_plugin_sdk::validator::{Guest, Node, PluginInfo, Verdict, validation};

/// The workflow kind accepted graphs are tagged with.
pub const WORKFLOW_KIND: &str = "flux2-klein";

/// The component's exports.
pub struct Flux2Klein;

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

impl validation::Guest for Flux2Klein {
    fn validate(graph: Vec<Node>) -> Verdict {
        validate(&graph)
    }
}

impl Guest for Flux2Klein {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "flux2-klein".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Validator,
            summary: "FLUX.2 Klein images: sizes a multiple of 16 up to 2048, sane steps, \
                      cfg and batch, known models; estimates GPU time."
                .into(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
comfyume_plugin_sdk::export_validator!(Flux2Klein);
