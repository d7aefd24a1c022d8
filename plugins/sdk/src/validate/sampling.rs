//! Counting sampling steps over every sampler pass of a graph, for the cost
//! estimate.
//!
//! A `SamplerCustomAdvanced` takes its steps from the node feeding its
//! `sigmas`: a `Flux2Scheduler`, `BasicScheduler` or `LTXVScheduler`
//! (`steps`), or a `ManualSigmas` list (its values − 1, counted by the
//! caller, who decides how strictly to read the list). A `KSampler` or
//! `KSamplerAdvanced` has its own `steps`. Steps that are not a known,
//! non-negative number count as 0: this is an estimate, not a rule.

use super::graph::{Graph, Resolved};
use crate::validator::Node;

/// Steps over every sampler pass of `g`. `sigma_steps` turns the text of a
/// `ManualSigmas` list into its step count.
pub fn total_steps(g: &Graph, sigma_steps: impl Fn(&str) -> f64) -> f64 {
    let known = |node: &Node, name: &str| match g.resolve(node, name) {
        Resolved::Num(n) if n.value >= 0.0 => n.value,
        _ => 0.0,
    };
    let mut total = 0.0;
    for sampler in g.of_class("SamplerCustomAdvanced") {
        let Some(source) = g.linked(sampler, "sigmas") else {
            continue;
        };
        total += match source.class_type.as_str() {
            "Flux2Scheduler" | "BasicScheduler" | "LTXVScheduler" => known(source, "steps"),
            "ManualSigmas" => match g.resolve(source, "sigmas") {
                Resolved::Text { value, .. } => sigma_steps(&value),
                _ => 0.0,
            },
            _ => 0.0,
        };
    }
    for class in ["KSampler", "KSamplerAdvanced"] {
        for sampler in g.of_class(class) {
            total += known(sampler, "steps");
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{link, node};
    use crate::validator::InputValue;

    fn count(text: &str) -> f64 {
        text.split(',').count().saturating_sub(1) as f64
    }

    #[test]
    fn sums_scheduler_sigma_and_ksampler_steps() {
        let nodes = vec![
            node("s1", "LTXVScheduler", vec![("steps", InputValue::Int(20))]),
            node(
                "p1",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("s1", 0))],
            ),
            node(
                "m",
                "ManualSigmas",
                vec![("sigmas", InputValue::Str("0.9, 0.7, 0.4, 0.0".into()))],
            ),
            node(
                "p2",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("m", 0))],
            ),
            node("k", "KSampler", vec![("steps", InputValue::Int(4))]),
            node(
                "ka",
                "KSamplerAdvanced",
                vec![("steps", InputValue::Int(2))],
            ),
        ];
        assert_eq!(
            total_steps(&Graph::new(&nodes), count),
            20.0 + 3.0 + 4.0 + 2.0
        );
    }

    #[test]
    fn unknown_or_negative_steps_count_as_zero() {
        let nodes = vec![
            node(
                "neg",
                "BasicScheduler",
                vec![("steps", InputValue::Int(-5))],
            ),
            node(
                "p1",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("neg", 0))],
            ),
            node(
                "p2",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("gone", 0))],
            ),
            node("p3", "SamplerCustomAdvanced", vec![]),
            node(
                "other",
                "SomethingElse",
                vec![("steps", InputValue::Int(9))],
            ),
            node(
                "p4",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("other", 0))],
            ),
            node("m", "ManualSigmas", vec![("sigmas", InputValue::Int(3))]),
            node(
                "p5",
                "SamplerCustomAdvanced",
                vec![("sigmas", link("m", 0))],
            ),
            node(
                "k",
                "KSampler",
                vec![("steps", InputValue::Str("x".into()))],
            ),
        ];
        assert_eq!(total_steps(&Graph::new(&nodes), count), 0.0);
        assert_eq!(total_steps(&Graph::new(&[]), count), 0.0);
    }
}
