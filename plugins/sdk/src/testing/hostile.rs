//! Graphs that must never make a validator panic (a panic is a trap in the
//! Wasm component): the host's conformance fixtures, for native tests.
//!
//! Each function takes the validator's `validate` and asserts what every
//! validator must do with the graph, whatever its family; a validator's
//! test suite calls each one from a test of the same name.

use std::time::Instant;

use super::{link, node};
use crate::validator::{InputValue, Node, Verdict};

/// An empty graph is nobody's business: `not-applicable`.
pub fn an_empty_graph_is_not_applicable(validate: impl Fn(&[Node]) -> Verdict) {
    assert!(matches!(validate(&[]), Verdict::NotApplicable));
}

/// Latents of both built-in families whose inputs link to missing nodes
/// and into cycles.
pub fn dangling_and_cyclic_graph() -> Vec<Node> {
    vec![
        node(
            "1",
            "EmptyFlux2LatentImage",
            vec![("width", link("2", 0)), ("height", link("404", 0))],
        ),
        node("2", "PrimitiveInt", vec![("value", link("3", 0))]),
        node("3", "PrimitiveInt", vec![("value", link("2", 0))]),
        node(
            "4",
            "EmptyLTXVLatentVideo",
            vec![("length", link("4", 0)), ("width", link("2", 0))],
        ),
    ]
}

/// [`dangling_and_cyclic_graph`] is refused, saying that links loop.
pub fn links_to_missing_nodes_and_link_cycles_are_refused(validate: impl Fn(&[Node]) -> Verdict) {
    let graph = dangling_and_cyclic_graph();
    let Verdict::Rejected(problems) = validate(&graph) else {
        panic!("expected a rejection");
    };
    assert!(
        problems.iter().any(|p| p.message.contains("loop")),
        "{problems:#?}"
    );
}

/// Latents of both built-in families with extreme, non-finite, mistyped
/// and negative values.
pub fn extreme_values_graph() -> Vec<Node> {
    vec![
        node(
            "1",
            "EmptyFlux2LatentImage",
            vec![
                ("width", InputValue::Int(i64::MIN)),
                ("height", InputValue::Float(f64::NAN)),
                ("batch_size", InputValue::Int(i64::MAX)),
            ],
        ),
        node(
            "2",
            "EmptyLTXVLatentVideo",
            vec![
                ("width", InputValue::Float(f64::INFINITY)),
                ("height", InputValue::Str("wide".into())),
                ("length", InputValue::Int(-1)),
            ],
        ),
        node(
            "3",
            "Flux2Scheduler",
            vec![("steps", InputValue::Other("null".into()))],
        ),
        node(
            "4",
            "EmptyLTXVLatentVideo",
            vec![
                ("width", InputValue::Int(i64::MAX)),
                ("height", InputValue::Int(i64::MAX - 1)),
                ("length", InputValue::Int(i64::MAX)),
            ],
        ),
        node(
            "5",
            "EmptyFlux2LatentImage",
            vec![
                ("width", InputValue::Int(i64::MAX)),
                ("height", InputValue::Float(-1e300)),
                ("batch_size", InputValue::Float(0.5)),
            ],
        ),
    ]
}

/// [`extreme_values_graph`] is refused.
pub fn extreme_values_are_refused(validate: impl Fn(&[Node]) -> Verdict) {
    assert!(matches!(
        validate(&extreme_values_graph()),
        Verdict::Rejected(_)
    ));
}

/// Empty latents of both families and `primitives` primitives that each
/// link to a missing node.
pub fn huge_graph(primitives: usize) -> Vec<Node> {
    let mut graph = vec![
        node("flux", "EmptyFlux2LatentImage", vec![]),
        node("ltx", "EmptyLTXVLatentVideo", vec![]),
    ];
    for i in 0..primitives {
        graph.push(node(
            &format!("n{i}"),
            "PrimitiveInt",
            vec![("value", link("gone", 0))],
        ));
    }
    graph
}

/// A [`huge_graph`] of 20,000 primitives is refused within 5 s with exactly
/// [`MAX_PROBLEMS`](crate::validate::report::MAX_PROBLEMS) problems.
pub fn a_huge_graph_gets_a_bounded_report(validate: impl Fn(&[Node]) -> Verdict) {
    let graph = huge_graph(20_000);
    let started = Instant::now();
    let Verdict::Rejected(problems) = validate(&graph) else {
        panic!("expected a rejection");
    };
    assert_eq!(problems.len(), 100);
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::graph::{Graph, Resolved};
    use crate::validate::report::{MAX_PROBLEMS, Problems};

    /// Resolves every input of every node as a number and as a text.
    fn resolve_everything(nodes: &[Node]) -> Problems {
        let g = Graph::new(nodes);
        let mut p = Problems::default();
        p.dangling_links(&g);
        for node in nodes {
            for input in &node.inputs {
                let _ = p.number(g.resolve(node, &input.name), &input.name);
                let _ = p.text(g.resolve(node, &input.name), &input.name);
            }
        }
        p
    }

    #[test]
    fn the_graph_machinery_is_total_on_every_hostile_graph() {
        assert!(resolve_everything(&[]).is_empty());
        let cyclic = resolve_everything(&dangling_and_cyclic_graph()).into_vec();
        assert!(
            cyclic.iter().any(|p| p.message.contains("loop")),
            "{cyclic:#?}"
        );
        assert!(!resolve_everything(&extreme_values_graph()).is_empty());
        // `2` → `3` → `2` … loops; `4` links to its own latent, which
        // holds no literal.
        let g = dangling_and_cyclic_graph();
        assert!(matches!(
            Graph::new(&g).resolve(&g[1], "value"),
            Resolved::TooDeep { .. }
        ));
        assert_eq!(
            Graph::new(&g).resolve(&g[3], "length"),
            Resolved::Unknown { estimate: None }
        );
    }

    #[test]
    fn a_huge_graph_is_reported_within_bounds() {
        let started = Instant::now();
        let problems = resolve_everything(&huge_graph(20_000)).into_vec();
        assert_eq!(problems.len(), MAX_PROBLEMS);
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    }
}
