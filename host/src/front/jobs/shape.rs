//! A queued job in ComfyUI's words: the `/api/jobs` entries, the
//! `/api/history` and `/api/queue` items, and the execution messages the
//! websocket sends, all built from the one [`Job`] record.
//!
//! Policy: the job's `number` (ComfyUI's "priority") is the queue's
//! sequence number; an output's `type` and `subfolder` are what `/api/view`
//! takes back; a failure carries the reason as `exception_message` with
//! `exception_type: "comfyume.JobFailed"`, so the editor's error dialog has
//! a sentence to show.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::queue::{Job, JobState};

/// ComfyUI's status word for a job.
pub fn status(state: JobState) -> &'static str {
    match state {
        JobState::Queued | JobState::Leased => "pending",
        JobState::Dispatched | JobState::Running => "in_progress",
        JobState::Succeeded => "completed",
        JobState::Failed | JobState::Dead => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// When the job first reached a GPU (dispatched), if it did.
pub fn started_ms(job: &Job) -> Option<u64> {
    job.history
        .iter()
        .find(|t| t.state == JobState::Dispatched)
        .map(|t| t.at_ms)
}

/// When the job ended, if it did.
pub fn ended_ms(job: &Job) -> Option<u64> {
    job.state.is_terminal().then_some(job.updated_at_ms)
}

/// `outputs` by node, as `/history` and `executed` carry them.
pub fn outputs(job: &Job) -> BTreeMap<String, Value> {
    let mut by_node: BTreeMap<String, Value> = BTreeMap::new();
    for output in &job.outputs {
        let entry = by_node
            .entry(output.node_id.clone())
            .or_insert_with(|| json!({"images": []}));
        if let Some(images) = entry.get_mut("images").and_then(Value::as_array_mut) {
            images.push(json!({
                "filename": output.filename,
                "subfolder": output.subfolder,
                "type": output.kind,
            }));
        }
        if output.animated {
            entry["animated"] = json!([true]);
        }
    }
    by_node
}

/// The `execution_error` message for a failed or dead job.
pub fn execution_error(job: &Job) -> Value {
    json!({
        "prompt_id": job.prompt_id,
        "node_id": "",
        "node_type": "",
        "executed": [],
        "exception_message": job.reason.clone().unwrap_or_else(|| "the job failed".into()),
        "exception_type": "comfyume.JobFailed",
        "traceback": [],
        "current_inputs": {},
        "current_outputs": {},
        "timestamp": job.updated_at_ms,
    })
}

/// The `execution_interrupted` message for a cancelled job.
pub fn execution_interrupted(job: &Job) -> Value {
    json!({
        "prompt_id": job.prompt_id,
        "node_id": "",
        "node_type": "",
        "executed": [],
        "timestamp": job.updated_at_ms,
    })
}

/// ComfyUI's `messages` list for a job's status.
fn messages(job: &Job) -> Vec<Value> {
    let mut messages = Vec::new();
    if let Some(at) = started_ms(job) {
        messages.push(json!(["execution_start", {"prompt_id": job.prompt_id, "timestamp": at}]));
        messages.push(
            json!(["execution_cached", {"nodes": [], "prompt_id": job.prompt_id, "timestamp": at}]),
        );
    }
    match job.state {
        JobState::Succeeded => messages.push(json!(["execution_success", {"prompt_id": job.prompt_id, "timestamp": job.updated_at_ms}])),
        JobState::Failed | JobState::Dead => {
            messages.push(json!(["execution_error", execution_error(job)]))
        }
        JobState::Cancelled => {
            messages.push(json!(["execution_interrupted", execution_interrupted(job)]))
        }
        _ => {}
    }
    messages
}

fn execution_status(job: &Job) -> Value {
    json!({
        "status_str": if job.state == JobState::Succeeded { "success" } else { "error" },
        "completed": job.state == JobState::Succeeded,
        "messages": messages(job),
    })
}

/// One `/api/jobs` entry.
pub fn summary(job: &Job) -> Value {
    let mut entry = json!({
        "id": job.prompt_id,
        "status": status(job.state),
        "priority": job.id,
        "create_time": job.created_at_ms,
        "outputs_count": job.outputs.len(),
        "previewable_outputs_count": job.outputs.len(),
    });
    if let Some(at) = started_ms(job) {
        entry["execution_start_time"] = json!(at);
    }
    if let Some(at) = ended_ms(job) {
        entry["execution_end_time"] = json!(at);
    }
    if let Some(first) = job.outputs.first() {
        entry["preview_output"] = json!({
            "filename": first.filename,
            "subfolder": first.subfolder,
            "type": first.kind,
            "nodeId": first.node_id,
            "mediaType": "images",
        });
    }
    if matches!(job.state, JobState::Failed | JobState::Dead) {
        entry["execution_error"] = execution_error(job);
    }
    if let Some(progress) = job.progress.filter(|_| job.state == JobState::Running) {
        entry["progress"] = json!({"value": progress.value, "max": progress.max});
    }
    entry
}

/// What a list shows of a job's stored payload without reading it: no
/// prompt, and the `extra_data` fields the record keeps.
pub fn summary_payload(job: &Job) -> Value {
    let mut extra = json!({"create_time": job.created_at_ms});
    if let Some(client) = &job.client_id {
        extra["client_id"] = json!(client);
    }
    json!({"prompt": {}, "extra_data": extra})
}

/// `/api/jobs/{id}`: the summary, the outputs, the status and the workflow.
pub fn detail(job: &Job, payload: &Value) -> Value {
    let mut entry = summary(job);
    entry["outputs"] = json!(outputs(job));
    entry["execution_status"] = execution_status(job);
    entry["workflow"] = json!({
        "prompt": payload.get("prompt").cloned().unwrap_or(Value::Null),
        "extra_data": payload.get("extra_data").cloned().unwrap_or_else(|| json!({})),
    });
    entry
}

/// The output node ids of a prompt (`[number, id, prompt, extra, outputs]`
/// ends with them): the nodes named in the job's outputs, or none yet.
fn output_nodes(job: &Job) -> Vec<String> {
    let mut nodes: Vec<String> = job.outputs.iter().map(|o| o.node_id.clone()).collect();
    nodes.dedup();
    nodes
}

/// The `[number, prompt_id, prompt, extra_data, outputs]` item of
/// `/api/queue` and `/api/history`.
pub fn queue_item(job: &Job, payload: &Value) -> Value {
    json!([
        job.id,
        job.prompt_id,
        payload.get("prompt").cloned().unwrap_or_else(|| json!({})),
        payload
            .get("extra_data")
            .cloned()
            .unwrap_or_else(|| json!({})),
        output_nodes(job),
    ])
}

/// One `/api/history` entry.
pub fn history(job: &Job, payload: &Value) -> Value {
    let meta: BTreeMap<&String, Value> = job
        .outputs
        .iter()
        .map(|o| {
            (
                &o.node_id,
                json!({"node_id": o.node_id, "display_node": o.node_id, "parent_node": null, "real_node_id": o.node_id}),
            )
        })
        .collect();
    json!({
        "prompt": queue_item(job, payload),
        "outputs": outputs(job),
        "status": execution_status(job),
        "meta": meta,
    })
}
