//! Graphs that must never make the validator panic (a panic is a trap in
//! the Wasm component): the host's conformance fixtures, run natively. The
//! graphs and what every validator must answer are in the SDK's
//! `testing::hostile`.

use comfyume_plugin_sdk::testing::hostile;
use validator_flux2_klein::validate;

#[test]
fn an_empty_graph_is_not_applicable() {
    hostile::an_empty_graph_is_not_applicable(validate);
}

#[test]
fn links_to_missing_nodes_and_link_cycles_are_refused() {
    hostile::links_to_missing_nodes_and_link_cycles_are_refused(validate);
}

#[test]
fn extreme_values_are_refused() {
    hostile::extreme_values_are_refused(validate);
}

#[test]
fn a_huge_graph_gets_a_bounded_report() {
    hostile::a_huge_graph_gets_a_bounded_report(validate);
}
