//! Collecting problems for the verdict.
//!
//! One problem per (node, input, type), in the order found: the same
//! `PrimitiveInt` often feeds several consumers (the frame count feeds both
//! the video and the audio latent) and must be reported once. The helpers
//! [`Problems::number`] and [`Problems::text`] turn an unusable
//! [`Resolved`] into ComfyUI's matching error (`required_input_missing`,
//! `invalid_input_type`, …) so each rule only handles the good case. At
//! most [`MAX_PROBLEMS`] are kept: enough to fix a graph, bounded for a
//! hostile one.

use std::collections::BTreeSet;

use super::graph::{Graph, Num, Resolved, Site};
use crate::validator::{Problem, ProblemType};

/// Most problems reported for one graph.
pub const MAX_PROBLEMS: usize = 100;

/// A number after link-following, as far as rules are concerned.
pub enum Value {
    /// A number, located at its literal.
    Known(Num),
    /// Depends on data we cannot see; with an estimate when one exists.
    Unknown(Option<f64>),
    /// Unusable, and already reported.
    Bad,
}

/// The problems found so far: deduplicated, in the order found, bounded.
#[derive(Default)]
pub struct Problems {
    list: Vec<Problem>,
    seen: BTreeSet<(String, Option<String>, u8)>,
}

impl Problems {
    /// True when nothing is wrong (so far).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems, for a `rejected` verdict.
    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }

    /// Reports every link to a node that is not in the graph, at the input
    /// holding the link.
    pub fn dangling_links(&mut self, g: &Graph) {
        for (site, target) in g.dangling_links() {
            self.at(
                &site,
                ProblemType::RequiredInputMissing,
                format!(
                    "{} is connected to node {target}, which is not in the workflow",
                    site.input
                ),
            );
        }
    }

    /// A problem with the input at `site`.
    pub fn at(&mut self, site: &Site, kind: ProblemType, message: String) {
        self.push(Problem {
            node_id: site.node.clone(),
            input_name: Some(site.input.clone()),
            type_: kind,
            message,
        });
    }

    /// A problem with a whole node (no particular input).
    pub fn on_node(&mut self, node: &str, kind: ProblemType, message: String) {
        self.push(Problem {
            node_id: node.to_string(),
            input_name: None,
            type_: kind,
            message,
        });
    }

    fn push(&mut self, problem: Problem) {
        if self.list.len() >= MAX_PROBLEMS {
            return;
        }
        let key = (
            problem.node_id.clone(),
            problem.input_name.clone(),
            problem.type_ as u8,
        );
        if self.seen.insert(key) {
            self.list.push(problem);
        }
    }

    /// Reports why a resolved input is unusable, whatever was wanted.
    fn unusable(&mut self, resolved: &Resolved, what: &str, wanted: &str) {
        match resolved {
            Resolved::Missing {
                site,
                dangling: Some(target),
            } => self.at(
                site,
                ProblemType::RequiredInputMissing,
                format!("{what} is connected to node {target}, which is not in the workflow"),
            ),
            Resolved::Missing {
                site,
                dangling: None,
            } => self.at(
                site,
                ProblemType::RequiredInputMissing,
                format!("{what} is missing"),
            ),
            Resolved::TooDeep { site } => self.at(
                site,
                ProblemType::CustomValidationFailed,
                format!(
                    "{what} goes through too many connected nodes (or they loop back); \
                     connect it more directly"
                ),
            ),
            Resolved::Text { site, value } => self.at(
                site,
                ProblemType::InvalidInputType,
                format!("{what} must be {wanted}, not the text \"{}\"", short(value)),
            ),
            Resolved::Bool { site, value } => self.at(
                site,
                ProblemType::InvalidInputType,
                format!("{what} must be {wanted}, not {value}"),
            ),
            Resolved::Other { site, json } => self.at(
                site,
                ProblemType::InvalidInputType,
                format!("{what} must be {wanted}, not {}", short(json)),
            ),
            Resolved::Num(n) => self.at(
                &n.site,
                ProblemType::InvalidInputType,
                format!("{what} must be {wanted}, not the number {}", fmt(n.value)),
            ),
            Resolved::Unknown { .. } => {}
        }
    }

    /// The number in `resolved`, reporting anything unusable about it.
    pub fn number(&mut self, resolved: Resolved, what: &str) -> Value {
        match resolved {
            Resolved::Num(n) => Value::Known(n),
            Resolved::Unknown { estimate } => Value::Unknown(estimate),
            other => {
                self.unusable(&other, what, "a number");
                Value::Bad
            }
        }
    }

    /// The text in `resolved` and where it lives, reporting anything
    /// unusable about it (an unknown source is not reported).
    pub fn text(&mut self, resolved: Resolved, what: &str) -> Option<(String, Site)> {
        match resolved {
            Resolved::Text { value, site } => Some((value, site)),
            Resolved::Unknown { .. } => None,
            other => {
                self.unusable(&other, what, "a name");
                None
            }
        }
    }
}

/// A number for a message: `1000`, `24`, `0.5`.
pub fn fmt(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Up to 60 characters of `text`, for messages.
pub fn short(text: &str) -> String {
    let mut out: String = text.chars().take(60).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The nearest multiples of `step` around `value`, within `min..=max`, as
/// " (try 992 or 1008)".
pub fn suggest(value: f64, step: i64, min: i64, max: i64) -> String {
    let value = value as i64;
    let below = value.div_euclid(step.max(1)).saturating_mul(step);
    let above = below.checked_add(step);
    let options: Vec<String> = [Some(below), above]
        .into_iter()
        .flatten()
        .filter(|v| (min..=max).contains(v))
        .map(|v| v.to_string())
        .collect();
    match options.as_slice() {
        [] => String::new(),
        [one] => format!(" (try {one})"),
        [a, b, ..] => format!(" (try {a} or {b})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{link, node};
    use crate::validator::InputValue;

    fn site(node: &str, input: &str) -> Site {
        Site::new(node, input)
    }

    #[test]
    fn one_problem_per_node_input_and_type_in_the_order_found() {
        let mut p = Problems::default();
        assert!(p.is_empty());
        p.at(&site("1", "value"), ProblemType::ValueNotValid, "a".into());
        p.at(
            &site("1", "value"),
            ProblemType::ValueNotValid,
            "again".into(),
        );
        p.at(
            &site("1", "value"),
            ProblemType::ValueBiggerThanMax,
            "b".into(),
        );
        p.on_node("2", ProblemType::RequiredInputMissing, "c".into());
        p.on_node("2", ProblemType::RequiredInputMissing, "again".into());
        let list = p.into_vec();
        let seen: Vec<_> = list
            .iter()
            .map(|p| {
                (
                    p.node_id.as_str(),
                    p.input_name.as_deref(),
                    p.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("1", Some("value"), "a"),
                ("1", Some("value"), "b"),
                ("2", None, "c")
            ]
        );
    }

    #[test]
    fn at_most_max_problems_are_kept() {
        let mut p = Problems::default();
        for i in 0..(MAX_PROBLEMS + 50) {
            p.on_node(&i.to_string(), ProblemType::ValueNotValid, "x".into());
        }
        assert_eq!(p.into_vec().len(), MAX_PROBLEMS);
    }

    #[test]
    fn dangling_links_are_reported_at_the_linking_input() {
        let nodes = vec![node("a", "EmptyImage", vec![("width", link("gone", 0))])];
        let mut p = Problems::default();
        p.dangling_links(&Graph::new(&nodes));
        let list = p.into_vec();
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(
            (list[0].node_id.as_str(), list[0].input_name.as_deref()),
            ("a", Some("width"))
        );
        assert_eq!(list[0].type_, ProblemType::RequiredInputMissing);
        assert_eq!(
            list[0].message,
            "width is connected to node gone, which is not in the workflow"
        );
    }

    #[test]
    fn unusable_numbers_and_texts_get_comfyui_problem_types() {
        let nodes = vec![
            node(
                "n",
                "X",
                vec![
                    ("text", InputValue::Str("wide".into())),
                    ("flag", InputValue::Boolean(true)),
                    ("list", InputValue::Other("[1,2]".into())),
                    ("num", InputValue::Int(7)),
                    ("dangling", link("gone", 0)),
                ],
            ),
            node("loop", "PrimitiveInt", vec![("value", link("loop", 0))]),
        ];
        let g = Graph::new(&nodes);
        let mut p = Problems::default();
        for name in ["text", "flag", "list", "missing", "dangling"] {
            assert!(matches!(
                p.number(g.resolve(&nodes[0], name), name),
                Value::Bad
            ));
        }
        assert!(matches!(
            p.number(g.resolve(&nodes[1], "value"), "looped"),
            Value::Bad
        ));
        assert!(matches!(
            p.number(g.resolve(&nodes[0], "num"), "num"),
            Value::Known(n) if n.value == 7.0
        ));
        assert_eq!(p.text(g.resolve(&nodes[0], "num"), "name"), None);
        let list = p.into_vec();
        let kinds: Vec<_> = list
            .iter()
            .map(|p| (p.input_name.as_deref().unwrap_or(""), p.type_))
            .collect();
        assert_eq!(
            kinds,
            [
                ("text", ProblemType::InvalidInputType),
                ("flag", ProblemType::InvalidInputType),
                ("list", ProblemType::InvalidInputType),
                ("missing", ProblemType::RequiredInputMissing),
                ("dangling", ProblemType::RequiredInputMissing),
                ("value", ProblemType::CustomValidationFailed),
                ("num", ProblemType::InvalidInputType),
            ]
        );
        assert_eq!(
            list[0].message,
            "text must be a number, not the text \"wide\""
        );
        assert_eq!(list[6].message, "name must be a name, not the number 7");
    }

    #[test]
    fn numbers_texts_and_suggestions_for_messages() {
        assert_eq!(fmt(1000.0), "1000");
        assert_eq!(fmt(-24.0), "-24");
        assert_eq!(fmt(0.5), "0.5");
        assert_eq!(fmt(1e20), "100000000000000000000");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(&"x".repeat(61)), format!("{}…", "x".repeat(60)));
        assert_eq!(suggest(1000.0, 16, 256, 2048), " (try 992 or 1008)");
        assert_eq!(suggest(2050.0, 16, 256, 2048), " (try 2048)");
        assert_eq!(suggest(5.0, 16, 256, 2048), "");
    }
}
