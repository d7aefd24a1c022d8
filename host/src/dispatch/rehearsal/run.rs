//! Walking a prompt's nodes as ComfyUI would, with the same messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Rehearsal, lock};

/// The placeholder for an image output: 256×256, a diagonal gradient in a
/// colour taken from the prompt id, with stripes, so a screenshot shows
/// which job produced it and that it is not a real render.
pub fn placeholder_png(prompt_id: &str) -> Vec<u8> {
    let seed = prompt_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let base = [
        (seed & 0xff) as u8,
        ((seed >> 8) & 0xff) as u8,
        ((seed >> 16) & 0xff) as u8,
    ];
    let image = image::RgbImage::from_fn(256, 256, |x, y| {
        let t = ((x + y) / 2) as u8;
        let stripe = if (x + 255 - y) % 32 < 4 { 60 } else { 0 };
        image::Rgb(base.map(|c| c / 2 + t / 2 - stripe.min(t / 2)))
    });
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding a fixed-size RGB image into memory cannot fail; an empty
    // file would still be a visible failure downstream.
    let _ = image.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

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
    // A restart after this point kills the run: no more messages, no entry.
    let epoch = r.restarts.load(Ordering::SeqCst);
    let died = || r.restarts.load(Ordering::SeqCst) != epoch;
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
            if died() {
                return;
            }
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
            placeholder_png(&prompt_id)
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
    // As ComfyUI does: `execution_success` goes out when the last node is
    // done, the history entry is written a moment later, and `executing`
    // with `node: null` says it is written.
    let success = json!({"prompt_id": prompt_id, "timestamp": now_ms()});
    if status == "success" {
        messages.push(json!(["execution_success", success.clone()]));
        r.send(to, "execution_success", success);
    }
    let entry = json!({
        "prompt": [0, prompt_id, prompt, {"client_id": client_id}, []],
        "outputs": outputs,
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {}
    });
    tokio::time::sleep(r.config.history_lag).await;
    if died() {
        return;
    }
    lock(&r.history).insert(prompt_id.clone(), entry);
    lock(&r.running).remove(&prompt_id);
    r.send(
        None,
        "status",
        json!({"status": {"exec_info": {"queue_remaining": 0}}}),
    );
    say(
        "executing",
        json!({"node": null, "prompt_id": prompt_id}),
        &mut Vec::new(),
    );
}
