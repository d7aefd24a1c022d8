//! ComfyUI's wire format, as a real 0.33.0 server speaks it (tested against
//! captured traffic in `tests/fixtures/comfyui/`).
//!
//! Parsing is lenient where ComfyUI adds fields between versions (unknown
//! fields are ignored, unknown websocket message types are kept as
//! [`WsMessage::Other`]) and strict where a mistake would lose or misplace a
//! result: output file references are checked by [`FileRef::safe_path`]
//! before anything is written under a user's folder.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /prompt` body.
#[derive(Debug, Clone, Serialize)]
pub struct PromptRequest<'a> {
    /// The API-format graph.
    pub prompt: &'a Value,
    /// Whose websocket gets the events.
    pub client_id: &'a str,
    /// Our own id (a lowercase UUID), which ComfyUI accepts and keeps.
    pub prompt_id: &'a str,
    /// Passed through (e.g. `extra_pnginfo` with the UI workflow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<&'a Value>,
}

/// `POST /prompt` 200 answer.
#[derive(Debug, Clone, Deserialize)]
pub struct PromptAccepted {
    /// The prompt id ComfyUI will use (ours, when we sent one).
    pub prompt_id: String,
    /// Its place in ComfyUI's own queue.
    #[serde(default)]
    pub number: i64,
}

/// `POST /prompt` 400 answer: what the editor shows on the nodes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PromptRejected {
    /// The overall error.
    pub error: ErrorInfo,
    /// Per-node errors, keyed by node id.
    #[serde(default)]
    pub node_errors: BTreeMap<String, NodeErrors>,
}

/// One error in ComfyUI's vocabulary.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorInfo {
    /// e.g. `value_bigger_than_max`, `prompt_outputs_failed_validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human message.
    pub message: String,
    /// Details (ComfyUI puts the input name here for input errors).
    #[serde(default)]
    pub details: String,
    /// Free-form extra info (`input_name`, `received_value`, …).
    #[serde(default)]
    pub extra_info: Value,
}

/// The errors of one node.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NodeErrors {
    /// The errors.
    pub errors: Vec<ErrorInfo>,
    /// Output nodes that depend on this one.
    #[serde(default)]
    pub dependent_outputs: Vec<String>,
    /// The node's class.
    #[serde(default)]
    pub class_type: String,
}

/// `POST /upload/image` answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Uploaded {
    /// The stored name (ComfyUI may rename on collision).
    pub name: String,
    /// Sub folder.
    #[serde(default)]
    pub subfolder: String,
    /// `input`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A file a node produced, as `/history` and `executed` report it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct FileRef {
    /// File name.
    pub filename: String,
    /// Sub folder under the type's folder (`video` for SaveVideo).
    #[serde(default)]
    pub subfolder: String,
    /// `output` or `temp`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl FileRef {
    /// The relative path `subfolder/filename`, if it cannot escape the
    /// folder it is stored under: no `..`, no absolute path, no backslash
    /// or NUL, a plain file name, and `kind` is `output` or `temp`.
    pub fn safe_path(&self) -> Option<String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && !s.contains(['/', '\\', '\0'])
                && s.len() <= 255
        };
        if !plain(&self.filename) || !matches!(self.kind.as_str(), "output" | "temp") {
            return None;
        }
        let mut path = String::new();
        for part in self.subfolder.split('/').filter(|p| !p.is_empty()) {
            if !plain(part) {
                return None;
            }
            path.push_str(part);
            path.push('/');
        }
        path.push_str(&self.filename);
        Some(path)
    }
}

/// What one output node produced.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeOutput {
    /// Images, and videos (ComfyUI lists SaveVideo files here too).
    #[serde(default)]
    pub images: Vec<FileRef>,
    /// `[true]` when `images` are animated (video).
    #[serde(default)]
    pub animated: Vec<bool>,
    /// Audio files.
    #[serde(default)]
    pub audio: Vec<FileRef>,
    /// Anything else a node reports (text, gifs…), kept as is.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl NodeOutput {
    /// Every file, with whether it is animated.
    pub fn files(&self) -> impl Iterator<Item = (&FileRef, bool)> {
        let animated = self.animated.first().copied().unwrap_or(false);
        self.images
            .iter()
            .map(move |f| (f, animated))
            .chain(self.audio.iter().map(|f| (f, false)))
    }
}

/// The `status` of a `/history` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HistoryStatus {
    /// `success` or `error`.
    pub status_str: String,
    /// Whether execution finished (also true for an error).
    pub completed: bool,
    /// The websocket messages of the run, as `[type, data]` pairs.
    #[serde(default)]
    pub messages: Vec<(String, Value)>,
}

/// One `/history/{prompt_id}` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HistoryEntry {
    /// Outputs by node id.
    #[serde(default)]
    pub outputs: BTreeMap<String, NodeOutput>,
    /// How it ended (absent while still running on some versions).
    pub status: Option<HistoryStatus>,
}

/// How a prompt ended, read from its history entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished; the outputs by node.
    Success(BTreeMap<String, NodeOutput>),
    /// Failed or was interrupted; the reason for the attendee.
    Failed(String),
    /// Not finished yet.
    Pending,
}

impl HistoryEntry {
    /// How the prompt ended.
    pub fn outcome(&self) -> Outcome {
        let Some(status) = &self.status else {
            return Outcome::Pending;
        };
        if !status.completed && status.status_str != "error" {
            return Outcome::Pending;
        }
        if status.status_str == "success" {
            return Outcome::Success(self.outputs.clone());
        }
        let reason = status
            .messages
            .iter()
            .rev()
            .find_map(|(kind, data)| match kind.as_str() {
                "execution_error" => Some(error_reason(data)),
                "execution_interrupted" => Some("interrupted".to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("ComfyUI reported status {:?}", status.status_str));
        Outcome::Failed(reason)
    }
}

/// `node_type: exception_message` from an `execution_error`'s data.
fn error_reason(data: &Value) -> String {
    let node = data
        .get("node_type")
        .and_then(Value::as_str)
        .unwrap_or("a node");
    let message = data
        .get("exception_message")
        .and_then(Value::as_str)
        .unwrap_or("failed")
        .trim();
    format!("{node} failed: {message}")
}

/// Progress of one node, as in `progress_state`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct NodeProgress {
    /// Done so far.
    pub value: f64,
    /// Total.
    pub max: f64,
    /// `running` or `finished`.
    #[serde(default)]
    pub state: String,
}

/// A websocket text message from ComfyUI. Binary frames (previews) are
/// handled separately.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum WsMessage {
    /// Queue status.
    Status {
        /// `{exec_info: {queue_remaining}}`.
        status: Value,
        /// Present on the first message of a socket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<String>,
    },
    /// A prompt started.
    ExecutionStart {
        /// The prompt.
        prompt_id: String,
    },
    /// Nodes whose results were cached.
    ExecutionCached {
        /// Cached node ids.
        nodes: Vec<String>,
        /// The prompt.
        prompt_id: String,
    },
    /// A node started (`node: null` when the prompt finished, on old versions).
    Executing {
        /// The node, or none.
        node: Option<String>,
        /// The prompt.
        prompt_id: Option<String>,
    },
    /// Step progress of a node.
    Progress {
        /// Steps done.
        value: u32,
        /// Steps total.
        max: u32,
        /// The prompt.
        prompt_id: Option<String>,
        /// The node.
        node: Option<String>,
    },
    /// Progress of every running node.
    ProgressState {
        /// The prompt.
        prompt_id: String,
        /// By node id.
        nodes: BTreeMap<String, NodeProgress>,
    },
    /// A node finished with UI output.
    Executed {
        /// The node.
        node: String,
        /// Its output (files).
        output: Option<NodeOutput>,
        /// The prompt.
        prompt_id: String,
    },
    /// The prompt finished.
    ExecutionSuccess {
        /// The prompt.
        prompt_id: String,
    },
    /// A node raised.
    ExecutionError {
        /// The prompt.
        prompt_id: String,
        /// The failing node.
        node_id: String,
        /// Its class.
        node_type: String,
        /// The exception text.
        exception_message: String,
    },
    /// The prompt was interrupted.
    ExecutionInterrupted {
        /// The prompt.
        prompt_id: String,
        /// The node that was running.
        #[serde(default)]
        node_id: Option<String>,
    },
    /// Anything else (feature flags, crystools, newer messages).
    #[serde(other)]
    Other,
}

impl WsMessage {
    /// The prompt this message is about, if any.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            WsMessage::ExecutionStart { prompt_id }
            | WsMessage::ExecutionCached { prompt_id, .. }
            | WsMessage::ProgressState { prompt_id, .. }
            | WsMessage::Executed { prompt_id, .. }
            | WsMessage::ExecutionSuccess { prompt_id }
            | WsMessage::ExecutionError { prompt_id, .. }
            | WsMessage::ExecutionInterrupted { prompt_id, .. } => Some(prompt_id),
            WsMessage::Executing { prompt_id, .. } | WsMessage::Progress { prompt_id, .. } => {
                prompt_id.as_deref()
            }
            WsMessage::Status { .. } | WsMessage::Other => None,
        }
    }
}
