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
//!
//! Note: this file is identical in `validator-flux2-klein` and
//! `validator-ltx2` (each plugin crate is self-contained); keep them in sync.

use std::collections::BTreeSet;

use crate::exports::comfyume::plugin::validation::{Problem, ProblemType};
use crate::graph::{Num, Resolved, Site};

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

#[derive(Default)]
pub struct Problems {
    list: Vec<Problem>,
    seen: BTreeSet<(String, Option<String>, u8)>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
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
