//! ComfyUI API-format prompt JSON → the typed graph validators receive.
//!
//! ComfyUI's `prompt` is an object of node id → `{class_type, inputs}`; an
//! input is a literal or a link `[node_id, slot]`. Validators get typed
//! values so a plugin author in any language needs no JSON parser. Sizes are
//! capped here, before any plugin sees the graph.

use serde_json::Value;

use super::api::{InputValue, Link, Node, NodeInput};

/// Most nodes a prompt may have (the largest workshop template has ~50).
pub const MAX_NODES: usize = 2_000;
/// Most inputs one node may have.
pub const MAX_INPUTS: usize = 256;

/// Why a prompt is not a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// `prompt` is not a JSON object.
    #[error("the prompt must be a JSON object of node id → node")]
    NotAnObject,
    /// The prompt has no nodes.
    #[error("the prompt has no nodes")]
    Empty,
    /// Too many nodes.
    #[error("the prompt has {0} nodes; at most {MAX_NODES} are allowed")]
    TooManyNodes(usize),
    /// A node is not an object with a `class_type` string.
    #[error("node {0} has no class_type")]
    MissingClassType(String),
    /// A node's `inputs` is not an object, or has too many entries.
    #[error("node {0} has malformed inputs")]
    BadInputs(String),
}

/// Converts a prompt object into nodes, in the object's key order.
pub fn graph_from_prompt(prompt: &Value) -> Result<Vec<Node>, GraphError> {
    let object = prompt.as_object().ok_or(GraphError::NotAnObject)?;
    if object.is_empty() {
        return Err(GraphError::Empty);
    }
    if object.len() > MAX_NODES {
        return Err(GraphError::TooManyNodes(object.len()));
    }
    object
        .iter()
        .map(|(id, node)| {
            let class_type = node
                .get("class_type")
                .and_then(Value::as_str)
                .ok_or_else(|| GraphError::MissingClassType(id.clone()))?;
            let inputs = match node.get("inputs") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Object(map)) if map.len() <= MAX_INPUTS => map
                    .iter()
                    .map(|(name, value)| NodeInput {
                        name: name.clone(),
                        value: input_value(value),
                    })
                    .collect(),
                Some(_) => return Err(GraphError::BadInputs(id.clone())),
            };
            Ok(Node {
                id: id.clone(),
                class_type: class_type.to_string(),
                inputs,
            })
        })
        .collect()
}

/// One input value, typed. `[ "id", slot ]` is a link; other arrays are JSON.
pub fn input_value(value: &Value) -> InputValue {
    match value {
        Value::Bool(b) => InputValue::Boolean(*b),
        Value::String(s) => InputValue::Str(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => InputValue::Int(i),
            None => InputValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Array(items) => match items.as_slice() {
            [Value::String(node), Value::Number(slot)] => match slot.as_u64() {
                Some(slot) if slot <= u64::from(u32::MAX) => InputValue::Link(Link {
                    node: node.clone(),
                    slot: slot as u32,
                }),
                _ => InputValue::Other(value.to_string()),
            },
            _ => InputValue::Other(value.to_string()),
        },
        Value::Null | Value::Object(_) => InputValue::Other(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_and_links_are_typed() {
        let nodes = graph_from_prompt(&json!({
            "75:68": {"class_type": "PrimitiveInt", "inputs": {"value": 1024}},
            "9": {"class_type": "SaveImage", "inputs": {
                "images": ["75:65", 0], "filename_prefix": "x", "f": 1.5, "b": true,
                "list": [1, 2], "obj": {"a": 1}}},
        }))
        .unwrap();
        assert_eq!(nodes.len(), 2);
        let save = nodes.iter().find(|n| n.id == "9").unwrap();
        let get = |name: &str| &save.inputs.iter().find(|i| i.name == name).unwrap().value;
        assert!(
            matches!(get("images"), InputValue::Link(Link { node, slot: 0 }) if node == "75:65")
        );
        assert!(matches!(get("filename_prefix"), InputValue::Str(s) if s == "x"));
        assert!(matches!(get("f"), InputValue::Float(f) if *f == 1.5));
        assert!(matches!(get("b"), InputValue::Boolean(true)));
        assert!(matches!(get("list"), InputValue::Other(s) if s == "[1,2]"));
        assert!(matches!(get("obj"), InputValue::Other(s) if s == r#"{"a":1}"#));
    }

    #[test]
    fn malformed_prompts_are_refused() {
        let error = |prompt: Value| graph_from_prompt(&prompt).map(|_| ()).unwrap_err();
        assert_eq!(error(json!([])), GraphError::NotAnObject);
        assert_eq!(error(json!({})), GraphError::Empty);
        assert_eq!(
            error(json!({"1": {"inputs": {}}})),
            GraphError::MissingClassType("1".into())
        );
        assert_eq!(
            error(json!({"1": {"class_type": "X", "inputs": [1]}})),
            GraphError::BadInputs("1".into())
        );
    }
}
