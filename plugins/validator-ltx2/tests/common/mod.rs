//! Loading the workshop templates (`workflows/api/*.api.json`) as the guest's
//! `Node` lists, and small helpers to edit graphs and inspect verdicts.
//!
//! The JSON → `Node` conversion mirrors what the host sends: ints → `Int`,
//! floats → `Float`, strings → `Str`, bools → `Boolean`, `[string, int]` →
//! `Link`, anything else → `Other(compact JSON)`.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use validator_ltx2 as plugin;

use plugin::exports::comfyume::plugin::validation::{
    InputValue, Link, Node, NodeInput, Problem, ProblemType, Verdict,
};

/// `workflows/api/` at the workspace root.
pub fn api_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workflows/api")
}

/// Every `*.api.json` template: (file stem without `.api.json`, graph), by name.
pub fn templates() -> Vec<(String, Vec<Node>)> {
    let dir = api_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".api.json") {
            out.push((stem.to_string(), load(&path)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One template by stem, e.g. `video_ltx2_t2v`.
pub fn template(stem: &str) -> Vec<Node> {
    load(&api_dir().join(format!("{stem}.api.json")))
}

fn load(path: &std::path::Path) -> Vec<Node> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    to_nodes(&json)
}

/// A prompt object `{ id: { class_type, inputs } }` as a node list.
pub fn to_nodes(json: &Value) -> Vec<Node> {
    let object = json.as_object().expect("a prompt is a JSON object");
    object
        .iter()
        .map(|(id, node)| Node {
            id: id.clone(),
            class_type: node["class_type"].as_str().expect("class_type").to_string(),
            inputs: node["inputs"]
                .as_object()
                .expect("inputs")
                .iter()
                .map(|(name, value)| NodeInput {
                    name: name.clone(),
                    value: to_value(value),
                })
                .collect(),
        })
        .collect()
}

/// One input value, typed as the host would send it.
pub fn to_value(value: &Value) -> InputValue {
    match value {
        Value::Bool(b) => InputValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => InputValue::Int(i),
            None => InputValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => InputValue::Str(s.clone()),
        Value::Array(items) => match items.as_slice() {
            [Value::String(node), Value::Number(slot)] if slot.as_u64().is_some() => {
                InputValue::Link(Link {
                    node: node.clone(),
                    slot: slot
                        .as_u64()
                        .and_then(|s| u32::try_from(s).ok())
                        .unwrap_or(u32::MAX),
                })
            }
            _ => InputValue::Other(value.to_string()),
        },
        Value::Null | Value::Object(_) => InputValue::Other(value.to_string()),
    }
}

/// Sets (or adds) input `name` of node `id`; panics if the node is absent.
pub fn set(nodes: &mut [Node], id: &str, name: &str, value: InputValue) {
    let node = nodes
        .iter_mut()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"));
    match node.inputs.iter_mut().find(|i| i.name == name) {
        Some(input) => input.value = value,
        None => node.inputs.push(NodeInput {
            name: name.into(),
            value,
        }),
    }
}

/// Removes input `name` of node `id`; panics if it was not there.
pub fn unset(nodes: &mut [Node], id: &str, name: &str) {
    let node = nodes
        .iter_mut()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id}"));
    let before = node.inputs.len();
    node.inputs.retain(|i| i.name != name);
    assert_eq!(node.inputs.len(), before - 1, "{id} had no input {name}");
}

/// Removes node `id`; panics if it was not there.
pub fn remove(nodes: &mut Vec<Node>, id: &str) {
    let before = nodes.len();
    nodes.retain(|n| n.id != id);
    assert_eq!(nodes.len(), before - 1, "no node {id}");
}

pub fn link(node: &str, slot: u32) -> InputValue {
    InputValue::Link(Link {
        node: node.into(),
        slot,
    })
}

/// A node from (id, class, inputs).
pub fn node(id: &str, class: &str, inputs: Vec<(&str, InputValue)>) -> Node {
    Node {
        id: id.into(),
        class_type: class.into(),
        inputs: inputs
            .into_iter()
            .map(|(name, value)| NodeInput {
                name: name.into(),
                value,
            })
            .collect(),
    }
}

/// The problems of a rejected verdict; panics on any other verdict.
pub fn problems(verdict: Verdict) -> Vec<Problem> {
    match verdict {
        Verdict::Rejected(problems) => {
            assert!(!problems.is_empty(), "a rejection must carry problems");
            problems
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The problem at (node, input) of `kind`; panics listing all problems if absent.
pub fn find<'a>(
    problems: &'a [Problem],
    node: &str,
    input: Option<&str>,
    kind: ProblemType,
) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.node_id == node && p.input_name.as_deref() == input && p.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind:?} at {node} {input:?} in {problems:#?}"))
}
