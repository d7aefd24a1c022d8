//! The ComfyUI wire types against real captured traffic
//! (`tests/fixtures/comfyui/`, from a ComfyUI 0.33.0 server).

use std::path::PathBuf;

use comfyume::dispatch::comfyui::protocol::{
    FileRef, HistoryEntry, Outcome, PromptAccepted, PromptRejected, Uploaded, WsMessage,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/comfyui")
        .join(name)
}

/// The `body` of a captured HTTP exchange.
fn body(name: &str) -> Value {
    let capture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    capture["body"].clone()
}

/// The only entry of a captured `/history/{id}` answer.
fn history(name: &str) -> HistoryEntry {
    let body = body(name);
    let (_, entry) = body.as_object().unwrap().iter().next().unwrap();
    serde_json::from_value(entry.clone()).unwrap()
}

fn ws(name: &str) -> Vec<WsMessage> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("t_ms");
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}: {line}"))
        })
        .collect()
}

#[test]
fn prompt_answers_parse() {
    let ok: PromptAccepted =
        serde_json::from_value(body("47_POST_prompt_trivial_EmptyImage_SaveImage.json")).unwrap();
    assert_eq!(ok.prompt_id, "b07b3964-f376-4d85-956d-8e8dff594594");
    let bad: PromptRejected =
        serde_json::from_value(body("88_POST_prompt_invalid_value_out_of_range.json")).unwrap();
    assert_eq!(bad.error.kind, "prompt_outputs_failed_validation");
    let kinds: Vec<&str> = bad.node_errors["1"]
        .errors
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["value_bigger_than_max", "value_smaller_than_min"]);
    assert_eq!(bad.node_errors["1"].errors[0].details, "height");
    let models: PromptRejected =
        serde_json::from_value(body("89_POST_prompt_invalid_model_not_in_list.json")).unwrap();
    assert!(
        models
            .node_errors
            .values()
            .any(|n| n.errors.iter().any(|e| e.kind == "value_not_in_list"))
    );
    let none: PromptRejected =
        serde_json::from_value(body("93_POST_prompt_no_prompt_key.json")).unwrap();
    assert_eq!(none.error.kind, "no_prompt");
    let up: Uploaded = serde_json::from_value(body("42_POST_upload_image.json")).unwrap();
    assert_eq!(
        up,
        Uploaded {
            name: "upload_test.png".into(),
            subfolder: String::new(),
            kind: "input".into()
        }
    );
}

#[test]
fn history_tells_success_video_error_and_interrupt_apart() {
    let Outcome::Success(outputs) = history("49_GET_history_prompt_id.json").outcome() else {
        panic!("trivial prompt succeeded")
    };
    let files: Vec<_> = outputs["2"]
        .files()
        .map(|(f, animated)| (f.safe_path().unwrap(), animated))
        .collect();
    assert_eq!(files, [("workshop_test_00001_.png".to_string(), false)]);

    let Outcome::Success(outputs) = history("64_GET_history_video_output.json").outcome() else {
        panic!("video prompt succeeded")
    };
    let files: Vec<_> = outputs["3"]
        .files()
        .map(|(f, animated)| (f.safe_path().unwrap(), animated))
        .collect();
    assert_eq!(
        files,
        [("video/workshop_test_00001_.mp4".to_string(), true)],
        "video arrives under images, animated"
    );

    assert_eq!(
        history("68_GET_history_after_execution_attempt.json").outcome(),
        Outcome::Failed("ComfyMathExpression failed: division by zero".into())
    );
    assert_eq!(
        history("79_GET_history_interrupted.json").outcome(),
        Outcome::Failed("interrupted".into())
    );
}

#[test]
fn every_captured_websocket_message_parses_in_order() {
    let trivial = ws("48_ws_sequence_trivial_EmptyImage_SaveImage.jsonl");
    let id = "b07b3964-f376-4d85-956d-8e8dff594594";
    assert!(
        matches!(trivial.iter().find(|m| m.prompt_id().is_some()), Some(WsMessage::ExecutionStart { prompt_id }) if prompt_id == id)
    );
    // The end, in ComfyUI's order: success, queue status, then `executing` with no node.
    let n = trivial.len();
    assert!(
        matches!(&trivial[n - 3], WsMessage::ExecutionSuccess { prompt_id } if prompt_id == id)
    );
    assert!(matches!(&trivial[n - 2], WsMessage::Status { .. }));
    assert!(
        matches!(&trivial[n - 1], WsMessage::Executing { node: None, prompt_id: Some(p) } if p == id)
    );
    assert!(trivial.iter().any(|m| matches!(m, WsMessage::Executed { node, output: Some(o), .. } if node == "2" && o.images.len() == 1)));

    let progress = ws("60_ws_sequence_progress_ColorTransfer_PreviewImage.jsonl");
    let steps: Vec<(u32, u32)> = progress
        .iter()
        .filter_map(|m| match m {
            WsMessage::Progress { value, max, .. } => Some((*value, *max)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [(1, 6), (3, 6), (6, 6)]);

    let error = ws("67_ws_sequence_execution_error_division_by_zero.jsonl");
    assert!(error.iter().any(
        |m| matches!(m, WsMessage::ExecutionError { node_type, exception_message, .. }
        if node_type == "ComfyMathExpression" && exception_message.contains("division by zero"))
    ));

    let interrupt = ws("78_ws_sequence_queue_delete_cancel_interrupt.jsonl");
    assert!(interrupt.iter().any(
        |m| matches!(m, WsMessage::ExecutionInterrupted { node_id: Some(n), .. } if n == "3")
    ));

    let video = ws("63_ws_sequence_video_CreateVideo_SaveVideo.jsonl");
    assert!(
        video.iter().any(
            |m| matches!(m, WsMessage::Executed { output: Some(o), .. } if o.animated == [true])
        )
    );
}

#[test]
fn output_paths_from_a_backend_cannot_escape_the_users_folder() {
    let file = |filename: &str, subfolder: &str, kind: &str| FileRef {
        filename: filename.into(),
        subfolder: subfolder.into(),
        kind: kind.into(),
    };
    assert_eq!(
        file("a.png", "", "output").safe_path().as_deref(),
        Some("a.png")
    );
    assert_eq!(
        file("a.mp4", "video/day1", "output").safe_path().as_deref(),
        Some("video/day1/a.mp4")
    );
    for bad in [
        file("../a.png", "", "output"),
        file("a.png", "../..", "output"),
        file("a.png", "video/../../x", "output"),
        file("/etc/passwd", "", "output"),
        file("a\\b.png", "", "output"),
        file("a.png", "", "input"),
        file("", "", "output"),
        file("..", "", "temp"),
        file("a\0.png", "", "output"),
    ] {
        assert_eq!(bad.safe_path(), None, "{bad:?}");
    }
}
