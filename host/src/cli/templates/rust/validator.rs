//! ComfyUMe validator `{{name}}`: accepts every non-empty graph.
//!
//! A starting point: replace `claims` with the test for your family of
//! workflows (graphs that are not yours must get `NotApplicable`, so another
//! validator may claim them) and add your rules, reporting each problem at
//! the node and input where the offending value lives.

wit_bindgen::generate!({ path: "wit", world: "validator" });

use comfyume::plugin::types::{CostEstimate, PluginKind};
use exports::comfyume::plugin::validation::{Accepted, Guest as Validation, Node, Problem, Verdict};

struct Plugin;

fn claims(graph: &[Node]) -> bool {
    !graph.is_empty()
}

impl Validation for Plugin {
    fn validate(graph: Vec<Node>) -> Verdict {
        if !claims(&graph) {
            return Verdict::NotApplicable;
        }
        let problems: Vec<Problem> = Vec::new();
        // Example rule:
        // problems.push(Problem { node_id: node.id.clone(), input_name: Some("width".into()),
        //     type_: ProblemType::ValueNotValid, message: "width 1000 is not a multiple of 16".into() });
        if !problems.is_empty() {
            return Verdict::Rejected(problems);
        }
        // Zero cost means "unknown" to the scheduler and the selector.
        Verdict::Accepted(Accepted {
            workflow_kind: "{{name}}".into(),
            cost: CostEstimate {
                frames: 0,
                width: 0,
                height: 0,
                steps: 0,
                gpu_seconds: 0.0,
            },
        })
    }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Validator,
            summary: "Accepts every non-empty workflow (a skeleton to start from).".into(),
        }
    }
}

export!(Plugin);
