//! Reading a ComfyUI API-format prompt graph: finding nodes and inputs, and
//! following links back to the node that holds a literal value.
//!
//! In the API format an input is either a literal or a link `["75:68", 0]`
//! (node id, output slot; ids of nodes inside subgraphs are `"outer:inner"`).
//! The editor routes many numbers through helper nodes: a `PrimitiveInt`
//! holding the width, a `GetImageSize` reading the size of an image built by
//! `EmptyImage` → `ImageScaleBy`, or (LTX-2.3) a `ComfyMathExpression`. To
//! tell a filmmaker *which* field to change, [`Graph::resolve`] follows the
//! links to the literal and returns its [`Site`] (node id and input name)
//! together with the value that finally reaches the consumer.
//!
//! Understood on the way:
//! - `Primitive{Int,Float,String,StringMultiline,Boolean}`: their `value`;
//! - `GetImageSize` (slot 0 width, 1 height) of an image made by `EmptyImage`,
//!   `ImageScaleBy` (ComfyUI rounds `size × scale_by`), `ImageScale`,
//!   `ResizeImageMaskNode` in "scale dimensions" mode, or
//!   `ImageScaleToTotalPixels` (size depends on the input image, but a square
//!   estimate of `sqrt(megapixels) × 1024` is returned);
//! - `ComfyMathExpression` (slot 0 FLOAT, slot 1 INT = truncated, see `expr`).
//!
//! Anything else (e.g. `LoadImage`) is [`Resolved::Unknown`]: it depends on
//! data the validator cannot see, and rules must not reject it for that.
//!
//! Everything here is total on hostile input: missing nodes and inputs are
//! values, not panics; link-following is bounded in depth ([`MAX_DEPTH`]) and
//! in total work per graph ([`MAX_WORK`]), so a cycle of links or an
//! exponential fan-out of expressions ends as [`Resolved::TooDeep`].

use std::cell::Cell;
use std::collections::BTreeMap;

use super::expr;
use crate::validator::{InputValue, Node};

/// Longest chain of links followed from one input.
pub const MAX_DEPTH: u32 = 32;
/// Total resolution steps for one graph (guards against fan-out).
pub const MAX_WORK: u32 = 50_000;

/// Where a value lives: a node id and one of its input names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    /// The node id, e.g. `75:68`.
    pub node: String,
    /// The input name, e.g. `value`.
    pub input: String,
}

impl Site {
    /// The input `input` of node `node`.
    pub fn new(node: &str, input: &str) -> Self {
        Site {
            node: node.to_string(),
            input: input.to_string(),
        }
    }
}

/// A number that reached a consumer, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Num {
    /// The value as the consumer receives it.
    pub value: f64,
    /// The literal the value was computed from: the field to edit.
    pub site: Site,
    /// The literal's own value (equal to `value` when `direct`).
    pub literal: f64,
    /// The value passed through unchanged (only primitives on the way).
    pub direct: bool,
}

/// What an input turns out to be after following links.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// A number (an int, a finite float, or computed from them).
    Num(Num),
    /// A string literal.
    Text {
        /// The text.
        value: String,
        /// Where it is set.
        site: Site,
    },
    /// A boolean literal.
    Bool {
        /// The value.
        value: bool,
        /// Where it is set.
        site: Site,
    },
    /// Depends on data the validator cannot see (an uploaded image's size),
    /// or on a node it does not model; with an estimate when one is known.
    Unknown {
        /// A guess at the value, when one is known.
        estimate: Option<f64>,
    },
    /// The input at `site` is absent, or (`dangling`) links to a node that
    /// is not in the graph.
    Missing {
        /// The absent input, or the input holding the dangling link.
        site: Site,
        /// The id of the missing node a link points to.
        dangling: Option<String>,
    },
    /// A literal list, object or null (compact JSON) where a value was wanted.
    Other {
        /// Where it is set.
        site: Site,
        /// The literal as compact JSON (or a non-finite float as text).
        json: String,
    },
    /// The chain of links from `site` is too long or loops back on itself.
    TooDeep {
        /// The input whose chain of links was given up on.
        site: Site,
    },
}

/// The first input of `node` called `name`.
pub fn input<'n>(node: &'n Node, name: &str) -> Option<&'n InputValue> {
    node.inputs
        .iter()
        .find(|i| i.name == name)
        .map(|i| &i.value)
}

/// A prompt graph indexed by node id.
pub struct Graph<'a> {
    nodes: &'a [Node],
    by_id: BTreeMap<&'a str, &'a Node>,
    work: Cell<u32>,
}

impl<'a> Graph<'a> {
    /// Indexes `nodes`; if an id repeats, the first node with it wins.
    pub fn new(nodes: &'a [Node]) -> Self {
        let mut by_id = BTreeMap::new();
        for node in nodes {
            by_id.entry(node.id.as_str()).or_insert(node);
        }
        Graph {
            nodes,
            by_id,
            work: Cell::new(0),
        }
    }

    /// The node with id `id`, if the graph has one.
    pub fn node(&self, id: &str) -> Option<&'a Node> {
        self.by_id.get(id).copied()
    }

    /// All nodes in the order they were given.
    pub fn nodes(&self) -> impl Iterator<Item = &'a Node> + use<'a> {
        self.nodes.iter()
    }

    /// Nodes of one class, in graph order.
    pub fn of_class<'c>(&self, class: &'c str) -> impl Iterator<Item = &'a Node> + use<'a, 'c> {
        self.nodes.iter().filter(move |n| n.class_type == class)
    }

    /// True when some node is of class `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.nodes.iter().any(|n| n.class_type == class)
    }

    /// The node an input links to, if it is a link to an existing node.
    pub fn linked(&self, node: &Node, name: &str) -> Option<&'a Node> {
        match input(node, name) {
            Some(InputValue::Link(link)) => self.node(&link.node),
            _ => None,
        }
    }

    /// Every link whose target node is missing: (consumer site, target id).
    pub fn dangling_links(&self) -> Vec<(Site, String)> {
        let mut out = Vec::new();
        for node in self.nodes {
            for i in &node.inputs {
                if let InputValue::Link(link) = &i.value
                    && self.node(&link.node).is_none()
                {
                    out.push((Site::new(&node.id, &i.name), link.node.clone()));
                }
            }
        }
        out
    }

    /// The value of `node`'s input `name`, following links to its literal.
    pub fn resolve(&self, node: &Node, name: &str) -> Resolved {
        self.resolve_at(node, name, 0)
    }

    /// Counts one step of work; false once the depth or work budget is spent.
    fn step(&self, depth: u32) -> bool {
        let spent = self.work.get().saturating_add(1);
        self.work.set(spent);
        depth <= MAX_DEPTH && spent <= MAX_WORK
    }

    fn resolve_at(&self, node: &Node, name: &str, depth: u32) -> Resolved {
        let site = Site::new(&node.id, name);
        if !self.step(depth) {
            return Resolved::TooDeep { site };
        }
        match input(node, name) {
            None => Resolved::Missing {
                site,
                dangling: None,
            },
            Some(InputValue::Int(v)) => literal(*v as f64, site),
            Some(InputValue::Float(v)) if v.is_finite() => literal(*v, site),
            Some(InputValue::Float(v)) => Resolved::Other {
                site,
                json: v.to_string(),
            },
            Some(InputValue::Str(s)) => Resolved::Text {
                value: s.clone(),
                site,
            },
            Some(InputValue::Boolean(b)) => Resolved::Bool { value: *b, site },
            Some(InputValue::Other(json)) => Resolved::Other {
                site,
                json: json.clone(),
            },
            Some(InputValue::Link(link)) => match self.node(&link.node) {
                None => Resolved::Missing {
                    site,
                    dangling: Some(link.node.clone()),
                },
                Some(source) => self.output(source, link.slot, depth + 1, site),
            },
        }
    }

    /// The value of output `slot` of `source`; `from` is the linking input.
    fn output(&self, source: &Node, slot: u32, depth: u32, from: Site) -> Resolved {
        if !self.step(depth) {
            return Resolved::TooDeep { site: from };
        }
        match (source.class_type.as_str(), slot) {
            (
                "PrimitiveInt"
                | "PrimitiveFloat"
                | "PrimitiveString"
                | "PrimitiveStringMultiline"
                | "PrimitiveBoolean",
                0,
            ) => self.resolve_at(source, "value", depth + 1),
            ("GetImageSize", 0) => self.image_side(source, "image", Axis::Width, depth + 1),
            ("GetImageSize", 1) => self.image_side(source, "image", Axis::Height, depth + 1),
            ("ComfyMathExpression", 0 | 1) => self.math(source, slot == 1, depth + 1),
            _ => Resolved::Unknown { estimate: None },
        }
    }

    /// The width or height of the image linked at `node`'s input `name`.
    fn image_side(&self, node: &Node, name: &str, axis: Axis, depth: u32) -> Resolved {
        let site = Site::new(&node.id, name);
        if !self.step(depth) {
            return Resolved::TooDeep { site };
        }
        let source = match input(node, name) {
            None => {
                return Resolved::Missing {
                    site,
                    dangling: None,
                };
            }
            Some(InputValue::Link(link)) => match self.node(&link.node) {
                Some(source) => source,
                None => {
                    return Resolved::Missing {
                        site,
                        dangling: Some(link.node.clone()),
                    };
                }
            },
            // An image input must be a link; a literal cannot be sized.
            Some(_) => return Resolved::Unknown { estimate: None },
        };
        let depth = depth + 1;
        match source.class_type.as_str() {
            "EmptyImage" => self.resolve_at(source, axis.name(), depth),
            "ImageScale" => match self.resolve_at(source, axis.name(), depth) {
                // 0 keeps the input's aspect ratio: size unknown here.
                Resolved::Num(n) if n.value == 0.0 => Resolved::Unknown { estimate: None },
                other => other,
            },
            "ResizeImageMaskNode" => match self.resolve_at(source, "resize_type", depth) {
                Resolved::Text { value, .. } if value == "scale dimensions" => {
                    let field = match axis {
                        Axis::Width => "resize_type.width",
                        Axis::Height => "resize_type.height",
                    };
                    self.resolve_at(source, field, depth)
                }
                _ => Resolved::Unknown { estimate: None },
            },
            "ImageScaleBy" => {
                let base = self.image_side(source, "image", axis, depth);
                let scale = self.resolve_at(source, "scale_by", depth);
                match (base, scale) {
                    (Resolved::Num(base), Resolved::Num(scale)) => Resolved::Num(Num {
                        // ComfyUI: `round(side * scale_by)`.
                        value: (base.value * scale.value).round(),
                        site: base.site,
                        literal: base.literal,
                        direct: false,
                    }),
                    (Resolved::Unknown { estimate }, Resolved::Num(scale)) => Resolved::Unknown {
                        estimate: estimate.map(|e| (e * scale.value).round()),
                    },
                    (Resolved::Num(_) | Resolved::Unknown { .. }, _) => {
                        Resolved::Unknown { estimate: None }
                    }
                    (problem, _) => problem,
                }
            }
            "ImageScaleToTotalPixels" => match self.resolve_at(source, "megapixels", depth) {
                Resolved::Num(mp) if mp.value > 0.0 => Resolved::Unknown {
                    estimate: Some((mp.value.sqrt() * 1024.0).round()),
                },
                _ => Resolved::Unknown { estimate: None },
            },
            _ => Resolved::Unknown { estimate: None },
        }
    }

    /// A `ComfyMathExpression` output: its FLOAT (or truncated INT) value,
    /// located at the literal of its first variable (`values.a`, …).
    fn math(&self, node: &Node, as_int: bool, depth: u32) -> Resolved {
        let text = match self.resolve_at(node, "expression", depth) {
            Resolved::Text { value, .. } => value,
            Resolved::Num(_) | Resolved::Bool { .. } | Resolved::Other { .. } => {
                return Resolved::Unknown { estimate: None };
            }
            problem => return problem,
        };
        let mut vars: Vec<(String, f64)> = Vec::new();
        let mut first: Option<Num> = None;
        let mut names: Vec<&str> = node
            .inputs
            .iter()
            .filter_map(|i| i.name.strip_prefix("values."))
            .collect();
        names.sort_unstable();
        names.dedup();
        for var in names {
            match self.resolve_at(node, &format!("values.{var}"), depth) {
                Resolved::Num(n) => {
                    vars.push((var.to_string(), n.value));
                    if first.is_none() {
                        first = Some(n);
                    }
                }
                Resolved::Bool { value, .. } => vars.push((var.to_string(), f64::from(value))),
                Resolved::Text { .. } | Resolved::Other { .. } | Resolved::Unknown { .. } => {
                    return Resolved::Unknown { estimate: None };
                }
                problem => return problem,
            }
        }
        let Some(mut value) = expr::eval(&text, &vars) else {
            return Resolved::Unknown { estimate: None };
        };
        if as_int {
            value = value.trunc();
        }
        let (site, literal) = match first {
            Some(n) => (n.site, n.literal),
            None => (Site::new(&node.id, "expression"), value),
        };
        Resolved::Num(Num {
            value,
            site,
            literal,
            direct: false,
        })
    }
}

fn literal(value: f64, site: Site) -> Resolved {
    Resolved::Num(Num {
        value,
        site,
        literal: value,
        direct: true,
    })
}

#[derive(Clone, Copy, Debug)]
enum Axis {
    Width,
    Height,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::Width => "width",
            Axis::Height => "height",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{link, node};

    #[test]
    fn follows_primitives_to_the_literal() {
        let nodes = vec![
            node("1", "PrimitiveInt", vec![("value", InputValue::Int(1000))]),
            node("2", "EmptyFlux2LatentImage", vec![("width", link("1", 0))]),
        ];
        let g = Graph::new(&nodes);
        let Resolved::Num(n) = g.resolve(&nodes[1], "width") else {
            panic!("not a number");
        };
        assert_eq!((n.value, n.direct), (1000.0, true));
        assert_eq!(n.site, Site::new("1", "value"));
    }

    #[test]
    fn follows_image_size_chains() {
        let nodes = vec![
            node(
                "img",
                "EmptyImage",
                vec![
                    ("width", InputValue::Int(1280)),
                    ("height", InputValue::Int(720)),
                ],
            ),
            node(
                "half",
                "ImageScaleBy",
                vec![
                    ("image", link("img", 0)),
                    ("scale_by", InputValue::Float(0.5)),
                ],
            ),
            node("size", "GetImageSize", vec![("image", link("half", 0))]),
            node(
                "latent",
                "EmptyLTXVLatentVideo",
                vec![("width", link("size", 0)), ("height", link("size", 1))],
            ),
        ];
        let g = Graph::new(&nodes);
        let Resolved::Num(h) = g.resolve(&nodes[3], "height") else {
            panic!("not a number");
        };
        assert_eq!((h.value, h.literal, h.direct), (360.0, 720.0, false));
        assert_eq!(h.site, Site::new("img", "height"));
    }

    #[test]
    fn evaluates_math_expressions() {
        let nodes = vec![
            node("s", "PrimitiveInt", vec![("value", InputValue::Int(5))]),
            node("f", "PrimitiveInt", vec![("value", InputValue::Int(25))]),
            node(
                "m",
                "ComfyMathExpression",
                vec![
                    ("expression", InputValue::Str("a * b + 1".into())),
                    ("values.b", link("f", 0)),
                    ("values.a", link("s", 0)),
                ],
            ),
            node("v", "EmptyLTXVLatentVideo", vec![("length", link("m", 1))]),
        ];
        let g = Graph::new(&nodes);
        let Resolved::Num(n) = g.resolve(&nodes[3], "length") else {
            panic!("not a number");
        };
        assert_eq!((n.value, n.literal, n.direct), (126.0, 5.0, false));
        assert_eq!(n.site, Site::new("s", "value"));
    }

    #[test]
    fn unknown_image_sizes_are_not_errors() {
        let nodes = vec![
            node(
                "load",
                "LoadImage",
                vec![("image", InputValue::Str("a.png".into()))],
            ),
            node(
                "mp",
                "ImageScaleToTotalPixels",
                vec![
                    ("image", link("load", 0)),
                    ("megapixels", InputValue::Float(1.0)),
                ],
            ),
            node("size", "GetImageSize", vec![("image", link("mp", 0))]),
            node("direct", "GetImageSize", vec![("image", link("load", 0))]),
            node(
                "latent",
                "EmptyFlux2LatentImage",
                vec![("width", link("size", 0)), ("height", link("direct", 1))],
            ),
        ];
        let g = Graph::new(&nodes);
        assert_eq!(
            g.resolve(&nodes[4], "width"),
            Resolved::Unknown {
                estimate: Some(1024.0)
            }
        );
        assert_eq!(
            g.resolve(&nodes[4], "height"),
            Resolved::Unknown { estimate: None }
        );
    }

    #[test]
    fn missing_inputs_and_dangling_links() {
        let nodes = vec![node("a", "EmptyImage", vec![("width", link("gone", 0))])];
        let g = Graph::new(&nodes);
        assert_eq!(
            g.resolve(&nodes[0], "width"),
            Resolved::Missing {
                site: Site::new("a", "width"),
                dangling: Some("gone".into())
            }
        );
        assert_eq!(
            g.resolve(&nodes[0], "height"),
            Resolved::Missing {
                site: Site::new("a", "height"),
                dangling: None
            }
        );
        assert_eq!(
            g.dangling_links(),
            vec![(Site::new("a", "width"), "gone".to_string())]
        );
    }

    #[test]
    fn cycles_end_as_too_deep() {
        let nodes = vec![
            node("x", "PrimitiveInt", vec![("value", link("y", 0))]),
            node("y", "PrimitiveInt", vec![("value", link("x", 0))]),
            node("c", "EmptyImage", vec![("width", link("x", 0))]),
        ];
        let g = Graph::new(&nodes);
        assert!(matches!(
            g.resolve(&nodes[2], "width"),
            Resolved::TooDeep { .. }
        ));
    }

    #[test]
    fn fan_out_is_bounded() {
        // 8 levels of expressions, each using the previous one 20 times:
        // within the depth bound, but 20^8 paths without the work budget.
        let mut nodes = vec![node(
            "m0",
            "PrimitiveInt",
            vec![("value", InputValue::Int(1))],
        )];
        let names: Vec<String> = (0..20).map(|i| format!("values.v{i:02}")).collect();
        for level in 1..=8 {
            let prev = format!("m{}", level - 1);
            let mut inputs = vec![("expression", InputValue::Str("v00".into()))];
            for name in &names {
                inputs.push((name.as_str(), link(&prev, 0)));
            }
            nodes.push(node(&format!("m{level}"), "ComfyMathExpression", inputs));
        }
        nodes.push(node("use", "EmptyImage", vec![("width", link("m8", 0))]));
        let g = Graph::new(&nodes);
        let last = nodes.last().expect("pushed");
        assert!(matches!(g.resolve(last, "width"), Resolved::TooDeep { .. }));
    }
}
