//! The machinery validators share: reading a ComfyUI prompt graph and
//! following links to literals ([`graph`]), the `ComfyMathExpression`
//! evaluator ([`expr`]), collecting problems in ComfyUI's vocabulary
//! ([`report`]), counting sampling steps ([`sampling`]), and the pipeline
//! every built-in validator runs ([`verdict`]).
//!
//! A validator built on it keeps only its own rules, model lists and cost
//! formula:
//!
//! ```
//! use comfyume_plugin_sdk::types::CostEstimate;
//! use comfyume_plugin_sdk::validate::graph::Graph;
//! use comfyume_plugin_sdk::validate::report::Problems;
//! use comfyume_plugin_sdk::validate::{cost_estimate, verdict};
//! use comfyume_plugin_sdk::validator::{Node, ProblemType, Verdict};
//!
//! /// Graphs with an `EmptyImage` are ours.
//! fn anchor<'a>(g: &Graph<'a>) -> Option<&'a Node> {
//!     g.of_class("EmptyImage").next()
//! }
//!
//! /// One rule: something must save the image. The shape is the step count.
//! fn check(g: &Graph, anchor: &Node) -> (Problems, f64) {
//!     let mut p = Problems::default();
//!     p.dangling_links(g);
//!     if !g.has_class("SaveImage") {
//!         let message = "nothing saves the image".to_string();
//!         p.on_node(&anchor.id, ProblemType::CustomValidationFailed, message);
//!     }
//!     (p, 1.0)
//! }
//!
//! fn estimate(steps: &f64) -> CostEstimate {
//!     cost_estimate(1.0, 512.0, 512.0, *steps, 1.0)
//! }
//!
//! pub fn validate(graph: &[Node]) -> Verdict {
//!     verdict(graph, "plain-image", anchor, check, estimate)
//! }
//!
//! assert!(matches!(validate(&[]), Verdict::NotApplicable));
//! ```

pub mod expr;
pub mod graph;
pub mod report;
pub mod sampling;

use crate::types::CostEstimate;
use crate::validator::{Accepted, Node, Verdict};
use graph::Graph;
use report::Problems;

/// Runs a validator's rules over a prompt graph.
///
/// - `anchor` finds the node that makes the graph this validator's family;
///   none means the verdict is `not-applicable`.
/// - `check` runs every rule and returns the problems found and what it
///   learned about the job (its shape).
/// - `estimate` turns the shape into the cost estimate of an accepted graph,
///   tagged with `workflow_kind`.
pub fn verdict<S>(
    nodes: &[Node],
    workflow_kind: &str,
    anchor: impl for<'a> FnOnce(&Graph<'a>) -> Option<&'a Node>,
    check: impl FnOnce(&Graph, &Node) -> (Problems, S),
    estimate: impl FnOnce(&S) -> CostEstimate,
) -> Verdict {
    let g = Graph::new(nodes);
    let Some(anchor) = anchor(&g) else {
        return Verdict::NotApplicable;
    };
    let (problems, shape) = check(&g, anchor);
    if problems.is_empty() {
        Verdict::Accepted(Accepted {
            workflow_kind: workflow_kind.into(),
            cost: estimate(&shape),
        })
    } else {
        Verdict::Rejected(problems.into_vec())
    }
}

/// A cost estimate from a job's shape. The counters saturate at `u32::MAX`;
/// a negative or NaN counter is 0 ("unknown").
pub fn cost_estimate(
    frames: f64,
    width: f64,
    height: f64,
    steps: f64,
    gpu_seconds: f64,
) -> CostEstimate {
    CostEstimate {
        frames: to_u32(frames),
        width: to_u32(width),
        height: to_u32(height),
        steps: to_u32(steps),
        gpu_seconds,
    }
}

/// Saturating, NaN-safe conversion for the estimate's counters.
fn to_u32(value: f64) -> u32 {
    if value.is_finite() && value > 0.0 {
        value.min(u32::MAX as f64) as u32
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::node;
    use crate::validator::{InputValue, ProblemType};

    fn anchor<'a>(g: &Graph<'a>) -> Option<&'a Node> {
        g.of_class("Anchor").next()
    }

    fn check(g: &Graph, anchor: &Node) -> (Problems, f64) {
        let mut p = Problems::default();
        p.dangling_links(g);
        if !g.has_class("Save") {
            p.on_node(
                &anchor.id,
                ProblemType::CustomValidationFailed,
                "no save".into(),
            );
        }
        (p, 2.0)
    }

    fn estimate(steps: &f64) -> CostEstimate {
        cost_estimate(1.0, 64.0, 32.0, *steps, 1.5)
    }

    fn run(nodes: &[Node]) -> Verdict {
        verdict(nodes, "test-kind", anchor, check, estimate)
    }

    #[test]
    fn no_anchor_is_not_applicable() {
        assert!(matches!(run(&[]), Verdict::NotApplicable));
        assert!(matches!(
            run(&[node("1", "Save", vec![])]),
            Verdict::NotApplicable
        ));
    }

    #[test]
    fn problems_reject_and_none_accept_with_the_estimate() {
        let Verdict::Rejected(problems) = run(&[node("a", "Anchor", vec![])]) else {
            panic!("expected a rejection");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].node_id, "a");

        let nodes = [
            node("a", "Anchor", vec![("x", InputValue::Int(1))]),
            node("s", "Save", vec![]),
        ];
        let Verdict::Accepted(accepted) = run(&nodes) else {
            panic!("expected an acceptance");
        };
        assert_eq!(accepted.workflow_kind, "test-kind");
        let c = accepted.cost;
        assert_eq!((c.frames, c.width, c.height, c.steps), (1, 64, 32, 2));
        assert_eq!(c.gpu_seconds, 1.5);
    }

    #[test]
    fn estimate_counters_saturate_and_ignore_nonsense() {
        let c = cost_estimate(f64::NAN, -3.0, 1e300, f64::INFINITY, 7.0);
        assert_eq!((c.frames, c.width, c.height, c.steps), (0, 0, u32::MAX, 0));
        assert_eq!(cost_estimate(2.9, 0.0, 1.0, 0.5, 0.0).frames, 2);
    }
}
