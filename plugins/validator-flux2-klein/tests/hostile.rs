//! Graphs that must never make the validator panic (a panic is a trap in
//! the Wasm component): the host's conformance fixtures, run natively.

mod common;

use common::{link, node};
use validator_flux2_klein::exports::comfyume::plugin::validation::{InputValue, Verdict};
use validator_flux2_klein::validate;

#[test]
fn an_empty_graph_is_not_applicable() {
    assert!(matches!(validate(&[]), Verdict::NotApplicable));
}

#[test]
fn links_to_missing_nodes_and_link_cycles_are_refused() {
    let graph = vec![
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
    ];
    let Verdict::Rejected(problems) = validate(&graph) else {
        panic!("expected a rejection");
    };
    assert!(
        problems.iter().any(|p| p.message.contains("loop")),
        "{problems:#?}"
    );
}

#[test]
fn extreme_values_are_refused() {
    let graph = vec![
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
    ];
    assert!(matches!(validate(&graph), Verdict::Rejected(_)));
}

#[test]
fn a_huge_graph_gets_a_bounded_report() {
    let mut graph = vec![
        node("flux", "EmptyFlux2LatentImage", vec![]),
        node("ltx", "EmptyLTXVLatentVideo", vec![]),
    ];
    for i in 0..20_000 {
        graph.push(node(
            &format!("n{i}"),
            "PrimitiveInt",
            vec![("value", link("gone", 0))],
        ));
    }
    let started = std::time::Instant::now();
    let Verdict::Rejected(problems) = validate(&graph) else {
        panic!("expected a rejection");
    };
    assert_eq!(problems.len(), 100);
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}
