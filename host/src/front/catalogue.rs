//! The node catalogue (`/api/object_info`): which node classes exist, their
//! inputs, and which are outputs.
//!
//! Policy:
//! - The catalogue comes from the GPU side, because that is what will run
//!   the prompt. At start the host serves, in order of preference: the copy
//!   cached on disk (`<data>/cache/object_info.json`) from the last time a
//!   ComfyUI pool answered, else the catalogue of ComfyUI 0.33.0 built into
//!   the binary (the version the worker image runs; Verda pools cannot be
//!   asked without paying for a GPU). It then asks each `comfyui` pool in
//!   the background and, on the first answer, swaps the catalogue in and
//!   rewrites the cache.
//! - The 1.6 MB body is kept serialised and gzipped once, so a hundred
//!   editors booting at 9:00 cost a memcpy each, not a serialisation.
//! - `POST /api/prompt` refuses a class the catalogue does not list, in
//!   ComfyUI's own `missing_node_type` shape, before a validator or a GPU
//!   sees it.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The catalogue of the ComfyUI version the worker image runs.
const EMBEDDED_GZ: &[u8] = include_bytes!("../../assets/object_info.comfyui-0.33.0.json.gz");

/// One loaded catalogue.
struct Loaded {
    /// Node class → definition.
    nodes: serde_json::Map<String, Value>,
    /// Classes with `output_node: true`.
    outputs: HashSet<String>,
    /// The body as served.
    json: Bytes,
    /// The body gzipped.
    gzip: Bytes,
    /// Where it came from, for the log and `/health`.
    source: String,
}

impl Loaded {
    fn parse(json: Vec<u8>, source: String) -> anyhow::Result<Loaded> {
        let value: Value = serde_json::from_slice(&json)?;
        let Value::Object(nodes) = value else {
            anyhow::bail!("the node catalogue is not a JSON object");
        };
        let outputs = nodes
            .iter()
            .filter(|(_, def)| def.get("output_node").and_then(Value::as_bool) == Some(true))
            .map(|(name, _)| name.clone())
            .collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&json)?;
        let gzip = encoder.finish()?;
        Ok(Loaded {
            nodes,
            outputs,
            json: Bytes::from(json),
            gzip: Bytes::from(gzip),
            source,
        })
    }
}

/// The catalogue in force; swapped when a pool answers.
pub struct Catalogue {
    current: ArcSwap<Loaded>,
    cache_file: Option<PathBuf>,
}

impl Catalogue {
    /// The built-in catalogue only (tests, and the fallback).
    pub fn embedded() -> Arc<Catalogue> {
        Arc::new(Catalogue {
            current: ArcSwap::from_pointee(embedded()),
            cache_file: None,
        })
    }

    /// The cached copy under `data_dir` if readable, else the built-in one.
    pub fn load(data_dir: &Path) -> Arc<Catalogue> {
        let cache_file = data_dir.join("cache").join("object_info.json");
        let loaded = std::fs::read(&cache_file)
            .ok()
            .and_then(|bytes| {
                Loaded::parse(bytes, format!("cache {}", cache_file.display()))
                    .map_err(|e| tracing::warn!(error = %e, "ignoring the cached node catalogue"))
                    .ok()
            })
            .unwrap_or_else(embedded);
        tracing::info!(nodes = loaded.nodes.len(), source = %loaded.source, "node catalogue");
        Arc::new(Catalogue {
            current: ArcSwap::from_pointee(loaded),
            cache_file: Some(cache_file),
        })
    }

    /// Replaces the catalogue with `json` (from a pool) and caches it.
    pub fn replace(&self, json: Vec<u8>, source: String) -> anyhow::Result<()> {
        let loaded = Loaded::parse(json, source)?;
        if let Some(file) = &self.cache_file {
            crate::paths::write_atomic(file, &loaded.json)?;
        }
        tracing::info!(nodes = loaded.nodes.len(), source = %loaded.source, "node catalogue updated");
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// Asks each ComfyUI pool for its catalogue until one answers.
    pub async fn refresh_from(
        self: Arc<Self>,
        clients: Vec<crate::dispatch::comfyui::client::ComfyClient>,
    ) {
        for client in clients {
            match client.object_info().await {
                Ok(value) => {
                    let source = format!("pool {}", client.base());
                    let result = serde_json::to_vec(&value)
                        .map_err(anyhow::Error::from)
                        .and_then(|json| self.replace(json, source));
                    match result {
                        Ok(()) => return,
                        Err(error) => tracing::warn!(error = %error, "unusable node catalogue"),
                    }
                }
                Err(error) => {
                    tracing::warn!(pool = %client.base(), error = %error, "no node catalogue from pool")
                }
            }
        }
    }

    /// True if ComfyUI on the GPU side knows `class`.
    pub fn knows(&self, class: &str) -> bool {
        self.current.load().nodes.contains_key(class)
    }

    /// True if `class` is an output node (`SaveImage`, `SaveVideo`, …).
    pub fn is_output(&self, class: &str) -> bool {
        self.current.load().outputs.contains(class)
    }

    /// True if `class`'s `input` lists `value` among its choices: a file
    /// the GPU has (a model, an input the workshop ships).
    pub fn offers(&self, class: &str, input: &str, value: &str) -> bool {
        let loaded = self.current.load();
        let Some(definition) = loaded.nodes.get(class) else {
            return false;
        };
        ["required", "optional"].iter().any(|group| {
            let Some(spec) = definition.pointer(&format!("/input/{group}/{input}")) else {
                return false;
            };
            // `[[choice, …], {…}]`, or `["COMBO", {"options": [choice, …]}]`.
            let choices = match spec.get(0) {
                Some(Value::Array(choices)) => Some(choices),
                Some(Value::String(kind)) if kind == "COMBO" => {
                    spec.pointer("/1/options").and_then(Value::as_array)
                }
                _ => None,
            };
            choices.is_some_and(|c| c.iter().any(|choice| choice == value))
        })
    }

    /// One class's definition, as `/api/object_info/{class}` serves it.
    pub fn node(&self, class: &str) -> Option<Value> {
        self.current.load().nodes.get(class).cloned()
    }

    /// How many classes, and from where (for logs and health).
    pub fn describe(&self) -> (usize, String) {
        let loaded = self.current.load();
        (loaded.nodes.len(), loaded.source.clone())
    }

    /// The whole catalogue, gzipped when the client accepts it.
    pub fn response(&self, request: &HeaderMap) -> Response {
        let loaded = self.current.load_full();
        let gzip_ok = request
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let json = HeaderValue::from_static("application/json; charset=utf-8");
        if gzip_ok {
            (
                [
                    (header::CONTENT_TYPE, json),
                    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                    (header::VARY, HeaderValue::from_static("accept-encoding")),
                ],
                loaded.gzip.clone(),
            )
                .into_response()
        } else {
            ([(header::CONTENT_TYPE, json)], loaded.json.clone()).into_response()
        }
    }
}

/// The built-in catalogue, as a JSON value (the rehearsal backend serves it).
pub fn embedded_value() -> Value {
    serde_json::from_slice(&with_template_models(embedded_json()))
        .unwrap_or(Value::Object(Default::default()))
}

fn embedded_json() -> Vec<u8> {
    let mut json = Vec::new();
    // The bytes are ours, checked by a unit test: a failure here is a
    // broken build, and an empty catalogue is the safe answer.
    if flate2::read::GzDecoder::new(EMBEDDED_GZ)
        .read_to_end(&mut json)
        .is_err()
    {
        json = b"{}".to_vec();
    }
    json
}

/// The built-in catalogue was captured without model files, so its model
/// lists are empty and the editor would mark every loader in red. The
/// worker image carries the models the workshop templates name, and the
/// example inputs their loaders name: list those.
fn with_template_models(json: Vec<u8>) -> Vec<u8> {
    let Ok(Value::Object(mut nodes)) = serde_json::from_slice::<Value>(&json) else {
        return json;
    };
    for (_, template) in crate::plugins::builtin::templates() {
        let Ok(Value::Object(prompt)) = serde_json::from_str::<Value>(template) else {
            continue;
        };
        for node in prompt.values() {
            let Some(class) = node.get("class_type").and_then(Value::as_str) else {
                continue;
            };
            let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
                continue;
            };
            for (name, value) in inputs {
                let Some(value) = value.as_str() else {
                    continue;
                };
                // Old-style combos: `[[option, …], {…}]`; only model lists
                // (files) are extended, never a fixed choice like a sampler.
                let Some(Value::Array(options)) = nodes
                    .get_mut(class)
                    .and_then(|def| def.pointer_mut(&format!("/input/required/{name}/0")))
                else {
                    continue;
                };
                let is_model = [
                    ".safetensors",
                    ".ckpt",
                    ".pt",
                    ".pth",
                    ".bin",
                    ".gguf",
                    ".sft",
                ]
                .iter()
                .any(|ext| value.ends_with(ext));
                // The templates' example inputs ship on the GPU image too.
                let is_example_input = class.starts_with("Load")
                    && crate::dispatch::inputs::FILE_INPUTS.contains(&name.as_str());
                let is_file = is_model || is_example_input;
                if is_file && !options.iter().any(|o| o == value) {
                    options.push(Value::from(value));
                }
            }
        }
    }
    serde_json::to_vec(&Value::Object(std::mem::take(&mut nodes))).unwrap_or(json)
}

fn embedded() -> Loaded {
    Loaded::parse(
        with_template_models(embedded_json()),
        "built in (ComfyUI 0.33.0)".into(),
    )
    .unwrap_or_else(|_| Loaded {
        nodes: Default::default(),
        outputs: Default::default(),
        json: Bytes::from_static(b"{}"),
        gzip: Bytes::new(),
        source: "empty".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalogue_knows_the_workshop_nodes() {
        let catalogue = Catalogue::embedded();
        let (count, _) = catalogue.describe();
        assert!(count > 800, "{count}");
        for class in [
            "KSampler",
            "SaveImage",
            "LoadImage",
            "SaveVideo",
            "EmptyImage",
        ] {
            assert!(catalogue.knows(class), "{class}");
        }
        assert!(catalogue.is_output("SaveImage"));
        assert!(!catalogue.is_output("KSampler"));
        assert!(!catalogue.knows("NoSuchNode"));
        // The templates' model files are listed, so the editor accepts them.
        let unet = catalogue.node("UNETLoader").unwrap();
        let options = &unet["input"]["required"]["unet_name"][0];
        assert!(
            options
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o.as_str().is_some_and(|o| o.contains("flux-2-klein"))),
            "{options}"
        );
    }

    #[test]
    fn a_pool_catalogue_replaces_the_built_in_one_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::load(dir.path());
        catalogue
            .replace(
                br#"{"OnlyNode": {"output_node": true}}"#.to_vec(),
                "test".into(),
            )
            .unwrap();
        assert!(catalogue.knows("OnlyNode"));
        assert!(!catalogue.knows("KSampler"));
        let again = Catalogue::load(dir.path());
        assert!(again.knows("OnlyNode"), "read back from the cache");
    }
}
