//! Walking a prompt's nodes as ComfyUI would, with the same messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Rehearsal, lock};

/// A 1×1 transparent PNG: the placeholder for every image output.
pub const PLACEHOLDER_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `prompt` and records its history entry, sending the websocket
/// messages a real ComfyUI sends, in its order.
pub async fn execute(
    r: Arc<Rehearsal>,
    prompt_id: String,
    client_id: Option<String>,
    prompt: Value,
) {
    let to = client_id.as_deref();
    if !r.warm.swap(true, Ordering::SeqCst) {
        tokio::time::sleep(r.config.cold_start).await;
    }
    let mut messages: Vec<Value> = Vec::new();
    let say = |kind: &str, data: Value, messages: &mut Vec<Value>| {
        if matches!(
            kind,
            "execution_start"
                | "execution_cached"
                | "execution_success"
                | "execution_error"
                | "execution_interrupted"
        ) {
            messages.push(json!([kind, data.clone()]));
        }
        r.send(to, kind, data);
    };
    say(
        "status",
        json!({"status": {"exec_info": {"queue_remaining": 1}}}),
        &mut messages,
    );
    say(
        "execution_start",
        json!({"prompt_id": prompt_id, "timestamp": now_ms()}),
        &mut messages,
    );
    say(
        "execution_cached",
        json!({"nodes": [], "prompt_id": prompt_id, "timestamp": now_ms()}),
        &mut messages,
    );

    let mut nodes: Vec<(&String, &Value)> = prompt
        .as_object()
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    let mut outputs = serde_json::Map::new();
    let mut status = "success";
    'nodes: for (n, (id, node)) in nodes.iter().enumerate() {
        let class = node.get("class_type").and_then(Value::as_str).unwrap_or("");
        say(
            "executing",
            json!({"node": id, "display_node": id, "prompt_id": prompt_id}),
            &mut messages,
        );
        let steps = node
            .pointer("/inputs/steps")
            .and_then(Value::as_u64)
            .map(|s| (s as u32).clamp(1, r.config.max_steps))
            .unwrap_or(0);
        for step in 1..=steps {
            tokio::time::sleep(r.config.step_time).await;
            if lock(&r.interrupted).contains(&prompt_id) {
                say(
                    "execution_interrupted",
                    json!({"prompt_id": prompt_id, "node_id": id, "node_type": class, "executed": [], "timestamp": now_ms()}),
                    &mut messages,
                );
                status = "error";
                break 'nodes;
            }
            say(
                "progress",
                json!({"value": step, "max": steps, "prompt_id": prompt_id, "node": id}),
                &mut messages,
            );
        }
        if lock(&r.interrupted).contains(&prompt_id) {
            say(
                "execution_interrupted",
                json!({"prompt_id": prompt_id, "node_id": id, "node_type": class, "executed": [], "timestamp": now_ms()}),
                &mut messages,
            );
            status = "error";
            break;
        }
        if r.config.fail_class.as_deref() == Some(class) {
            say(
                "execution_error",
                json!({
                    "prompt_id": prompt_id, "node_id": id, "node_type": class, "executed": [],
                    "exception_message": "rehearsal: this node is set to fail\n", "exception_type": "RuntimeError",
                    "traceback": [], "current_inputs": {}, "current_outputs": {}, "timestamp": now_ms()
                }),
                &mut messages,
            );
            status = "error";
            break;
        }
        let (video, kind) = match class {
            "SaveImage" => (false, "output"),
            "SaveVideo" => (true, "output"),
            "PreviewImage" => (false, "temp"),
            _ => continue,
        };
        let prefix = node
            .pointer("/inputs/filename_prefix")
            .and_then(Value::as_str)
            .unwrap_or("ComfyUI");
        let (subfolder, stem) = match prefix.rsplit_once('/') {
            Some((dir, stem)) => (dir.to_string(), stem.to_string()),
            None => (String::new(), prefix.to_string()),
        };
        let filename = format!(
            "rehearsal_{stem}_{:05}_.{}",
            n + 1,
            if video { "mp4" } else { "png" }
        );
        let bytes = if video {
            b"rehearsal placeholder video".to_vec()
        } else {
            PLACEHOLDER_PNG.to_vec()
        };
        lock(&r.files).insert(
            (subfolder.clone(), filename.clone(), kind.to_string()),
            bytes,
        );
        let mut output =
            json!({"images": [{"filename": filename, "subfolder": subfolder, "type": kind}]});
        if video {
            output["animated"] = json!([true]);
        }
        say(
            "executed",
            json!({"node": id, "display_node": id, "output": output, "prompt_id": prompt_id}),
            &mut messages,
        );
        outputs.insert(id.to_string(), output);
    }
    // The history entry is written before the end is announced, so a client
    // that reads it on `execution_success` finds it.
    let success = json!({"prompt_id": prompt_id, "timestamp": now_ms()});
    if status == "success" {
        messages.push(json!(["execution_success", success.clone()]));
    }
    let entry = json!({
        "prompt": [0, prompt_id, prompt, {"client_id": client_id}, []],
        "outputs": outputs,
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {}
    });
    lock(&r.history).insert(prompt_id.clone(), entry);
    lock(&r.running).remove(&prompt_id);
    if status == "success" {
        r.send(to, "execution_success", success);
    }
    say(
        "status",
        json!({"status": {"exec_info": {"queue_remaining": 0}}}),
        &mut Vec::new(),
    );
    say(
        "executing",
        json!({"node": null, "prompt_id": prompt_id}),
        &mut Vec::new(),
    );
}
