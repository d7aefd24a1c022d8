//! One attendee cannot take the host from the others: the prompt path's
//! budget, rate and refusals, each answered at once in ComfyUI's shape.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::attendee::{self, PASSWORD, flux_prompt, start};

/// Many outputs, each linked to every earlier node: the shape that made
/// the old rejection analysis take 27 s on a request thread.
fn many_outputs(outputs: usize, links: usize) -> Value {
    let mut prompt = Map::new();
    prompt.insert(
        "1".into(),
        json!({"class_type": "EmptyImage", "inputs": {"width": 7, "height": 64, "batch_size": 1, "color": 0}}),
    );
    for i in 0..outputs {
        let mut inputs = Map::new();
        inputs.insert("images".into(), json!(["1", 0]));
        for k in 0..links {
            inputs.insert(
                format!("extra{k}"),
                json!([(2 + (i + k) % outputs).to_string(), 0]),
            );
        }
        inputs.insert("filename_prefix".into(), json!("x"));
        prompt.insert(
            (2 + i).to_string(),
            json!({"class_type": "SaveImage", "inputs": inputs}),
        );
    }
    Value::Object(prompt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_over_the_graph_budget_is_refused_before_any_work() {
    let host = start().await;
    let (status, body) = host
        .submit("ann", json!({"prompt": many_outputs(500, 60)}))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["type"], "prompt_too_large", "{body}");
    assert!(body["node_errors"].is_object(), "ComfyUI's shape: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("links"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_names_the_outputs_each_bad_node_feeds() {
    let host = start().await;
    let mut odd = flux_prompt();
    odd["75:68"]["inputs"]["value"] = json!(1000);
    let (status, body) = host.submit("ann", json!({"prompt": odd})).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["node_errors"].as_object().expect("node errors");
    for (node, error) in errors {
        assert_eq!(error["dependent_outputs"], json!(["9"]), "{node}: {body}");
    }
}

/// Sends only the head of a request declaring `length` bytes; the answer.
async fn declare(host: &attendee::Running, path: &str, length: u64) -> (u16, String, Value) {
    use base64::Engine as _;
    let mut stream = tokio::net::TcpStream::connect(host.addr)
        .await
        .expect("connect");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("ann:{PASSWORD}"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{\"prompt\": ",
        host.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer comes without the body being sent; the server closes.
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n")
                && String::from_utf8_lossy(&answer).contains('}')
            {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a declared {length}-byte body");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |e| e + 1);
    let json = serde_json::from_str(&body[start..end]).unwrap_or(Value::Null);
    (status, head.to_lowercase(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_prompt_body_over_the_cap_is_refused_at_once_in_comfyui_shape() {
    // Over the prompt cap, under the host's largest body (uploads): the
    // prompt route's own refusal, before the body is read.
    let host = start().await;
    let (status, head, body) = declare(&host, "/api/prompt", 50 << 20).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("application/json"), "{head}");
    assert_eq!(body["error"]["type"], "prompt_too_large", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_over_their_submit_rate_waits_and_the_others_do_not() {
    let host = attendee::start_with(|config| {
        config.attendees.submit_burst = 3;
        config.attendees.submits_per_minute = 1;
    })
    .await;
    for i in 0..3 {
        let (status, body) = host.submit("ann", json!({"prompt": flux_prompt()})).await;
        assert_eq!(status, 200, "submit {i}: {body}");
    }
    let refused = host
        .post("ann", "/api/prompt")
        .json(&json!({"prompt": flux_prompt()}))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["type"], "too_many_requests", "{body}");
    assert!(body["node_errors"].is_object(), "{body}");
    let (status, body) = host.submit("bob", json!({"prompt": flux_prompt()})).await;
    assert_eq!(status, 200, "bob is not held back by ann: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_never_carry_stored_prompts_and_one_job_answers_do() {
    let host = start().await;
    let mut big = flux_prompt();
    big["76"]["inputs"]["value"] = json!("a quiet harbour at dawn ".repeat(40_000));
    let (status, body) = host
        .submit("ann", json!({"prompt": big, "client_id": "tab1"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["prompt_id"].as_str().expect("id").to_string();
    host.finished("ann", &id).await;
    for path in ["/api/history?max_items=500", "/api/queue", "/api/jobs"] {
        let text = host
            .get("ann", path)
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("text");
        assert!(text.len() < 64 * 1024, "{path}: {} bytes", text.len());
    }
    let history = host.json("ann", "/api/history").await;
    assert_eq!(history[&id]["prompt"][1], json!(id));
    assert_eq!(history[&id]["prompt"][2], json!({}));
    assert_eq!(history[&id]["prompt"][3]["client_id"], "tab1");
    let one = host.json("ann", &format!("/api/history/{id}")).await;
    assert_eq!(one[&id]["prompt"][2]["76"], big["76"], "the whole workflow");
}
