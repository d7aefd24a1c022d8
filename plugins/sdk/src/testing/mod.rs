//! Fixtures for native tests of plugins (the `testing` feature; enable it
//! from `[dev-dependencies]`).
//!
//! For validators, this module loads the workshop templates
//! (`workflows/api/*.api.json`) as the guest's [`Node`] lists, edits graphs
//! and inspects verdicts. The JSON → `Node` conversion mirrors what the host
//! sends: ints → `Int`, floats → `Float`, strings → `Str`, bools →
//! `Boolean`, `[string, int]` → `Link`, anything else → `Other(compact
//! JSON)`. [`hostile`] holds the graphs no validator may panic on, and
//! [`pools`] the jobs and GPU pools selector tests are built from.

pub mod hostile;
pub mod pools;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::validator::{InputValue, Link, Node, NodeInput, Problem, ProblemType, Verdict};

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

/// The templates whose stem starts with `prefix` (e.g. `video_`), by name.
pub fn templates_starting_with(prefix: &str) -> Vec<(String, Vec<Node>)> {
    templates()
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .collect()
}

/// One template by stem, e.g. `video_ltx2_t2v`.
pub fn template(stem: &str) -> Vec<Node> {
    load(&api_dir().join(format!("{stem}.api.json")))
}

fn load(path: &Path) -> Vec<Node> {
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

/// A link to output `slot` of node `node`.
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

/// A plain image graph (`EmptyImage` → `SaveImage`) that is no built-in
/// validator's business.
pub fn plain_image_graph() -> Vec<Node> {
    vec![
        node(
            "1",
            "EmptyImage",
            vec![
                ("width", InputValue::Int(512)),
                ("height", InputValue::Int(512)),
                ("batch_size", InputValue::Int(1)),
                ("color", InputValue::Int(0)),
            ],
        ),
        node(
            "2",
            "SaveImage",
            vec![
                ("images", link("1", 0)),
                ("filename_prefix", InputValue::Str("x".into())),
            ],
        ),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_folder_has_the_fixtures_and_our_templates() {
        let all = templates();
        let count = |prefix: &str| all.iter().filter(|(n, _)| n.starts_with(prefix)).count();
        // Captured fixtures: six of each family; ours: four Flux2 Klein, two LTX-2.
        assert_eq!(
            (
                count("video_ltx2"),
                count("image_flux2_klein"),
                count("comfyume_flux2_klein"),
                count("comfyume_ltx2"),
                all.len()
            ),
            (6, 6, 4, 2, 18),
            "{:?}",
            all.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        let names = |list: Vec<(String, Vec<Node>)>| -> Vec<String> {
            list.into_iter().map(|(name, _)| name).collect()
        };
        let video_names = names(templates_starting_with("video_ltx2"));
        assert_eq!(video_names.len(), 6, "{video_names:?}");
        assert!(video_names.is_sorted(), "{video_names:?}");
        assert!(templates_starting_with("no_such_prefix").is_empty());
    }

    #[test]
    fn json_values_are_typed_as_the_host_sends_them() {
        let json: Value = serde_json::json!({
            "9": {
                "class_type": "X",
                "inputs": {
                    "int": 3,
                    "float": 0.5,
                    "text": "a",
                    "flag": false,
                    "link": ["75:68", 1],
                    "pair": ["a", -1],
                    "list": [1, 2],
                    "null": null,
                }
            }
        });
        let nodes = to_nodes(&json);
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            (nodes[0].id.as_str(), nodes[0].class_type.as_str()),
            ("9", "X")
        );
        let value = |name: &str| {
            nodes[0]
                .inputs
                .iter()
                .find(|i| i.name == name)
                .map(|i| i.value.clone())
                .expect(name)
        };
        assert!(matches!(value("int"), InputValue::Int(3)));
        assert!(matches!(value("float"), InputValue::Float(f) if f == 0.5));
        assert!(matches!(value("text"), InputValue::Str(s) if s == "a"));
        assert!(matches!(value("flag"), InputValue::Boolean(false)));
        assert!(matches!(value("link"), InputValue::Link(l) if l.node == "75:68" && l.slot == 1));
        assert!(matches!(value("pair"), InputValue::Other(j) if j == r#"["a",-1]"#));
        assert!(matches!(value("list"), InputValue::Other(j) if j == "[1,2]"));
        assert!(matches!(value("null"), InputValue::Other(j) if j == "null"));
    }

    #[test]
    fn edits_change_add_and_remove() {
        let mut g = plain_image_graph();
        set(&mut g, "1", "width", InputValue::Int(64));
        set(&mut g, "1", "extra", link("2", 0));
        unset(&mut g, "1", "color");
        remove(&mut g, "2");
        assert_eq!(g.len(), 1);
        let names: Vec<&str> = g[0].inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["width", "height", "batch_size", "extra"]);
        assert!(matches!(g[0].inputs[0].value, InputValue::Int(64)));
    }

    #[test]
    fn problems_and_find_inspect_rejections() {
        let problem = Problem {
            node_id: "1".into(),
            input_name: Some("width".into()),
            type_: ProblemType::ValueNotValid,
            message: "m".into(),
        };
        let list = problems(Verdict::Rejected(vec![problem]));
        let found = find(&list, "1", Some("width"), ProblemType::ValueNotValid);
        assert_eq!(found.message, "m");
    }
}
