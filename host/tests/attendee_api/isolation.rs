//! Two attendees on one GPU (a ComfyUI pool of capacity 2): each job's
//! inputs go to a folder of its own on the GPU and its loaders read only
//! from there; a loader naming a file the attendee does not own is refused
//! at submit in ComfyUI's shape and never reaches the GPU.

use std::sync::Arc;
use std::time::Duration;

use comfyume::config::{PoolConfig, PoolKind};
use comfyume::dispatch::rehearsal::{Rehearsal, RehearsalConfig};
use serde_json::{Value, json};

use super::attendee::{Running, start_with};
use super::{small_png, upload};

async fn host_on(gpu: &Arc<Rehearsal>) -> Running {
    let addr = gpu.serve().await.expect("gpu");
    start_with(move |config| {
        let mut pool = PoolConfig::rehearsal();
        pool.kind = PoolKind::Comfyui;
        pool.url = Some(format!("http://{addr}"));
        pool.capacity = 2;
        config.pools.clear();
        config.pools.insert("gpu".into(), pool);
    })
    .await
}

fn load_and_save(image: &str) -> Value {
    json!({"prompt": {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "Edit"}}
    }})
}

/// The refusal names the loader node and its input, as ComfyUI does for a
/// file missing from its input folder.
fn assert_not_in_list(status: u16, body: &Value, value: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation");
    let error = &body["node_errors"]["1"]["errors"][0];
    assert_eq!(error["type"], "value_not_in_list", "{body}");
    assert_eq!(error["extra_info"]["input_name"], "image");
    assert_eq!(error["extra_info"]["received_value"], value);
    assert_eq!(body["node_errors"]["1"]["class_type"], "LoadImage");
    assert_eq!(body["node_errors"]["1"]["dependent_outputs"], json!(["2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attendees_on_one_gpu_never_read_or_replace_each_others_files() {
    let gpu = Rehearsal::new(RehearsalConfig {
        step_time: Duration::from_millis(5),
        ..RehearsalConfig::default()
    });
    let host = host_on(&gpu).await;
    let ann_png = small_png();
    let mut bob_png = small_png();
    bob_png.extend_from_slice(b"bob's");
    assert_eq!(
        upload(&host, "ann", "portrait.png", ann_png.clone())
            .await
            .0,
        200
    );

    // Bob names Ann's upload: he has no such file; refused, never sent.
    let (status, body) = host.submit("bob", load_and_save("portrait.png")).await;
    assert_not_in_list(status, &body, "portrait.png");

    // Both run a job reading their own `portrait.png`, at the same time.
    assert_eq!(
        upload(&host, "bob", "portrait.png", bob_png.clone())
            .await
            .0,
        200
    );
    let (status, ann) = host.submit("ann", load_and_save("portrait.png")).await;
    assert_eq!(status, 200, "{ann}");
    let (status, bob) = host
        .submit("bob", load_and_save("portrait.png [input]"))
        .await;
    assert_eq!(status, 200, "{bob}");
    let ann_id = ann["prompt_id"].as_str().expect("id").to_string();
    let bob_id = bob["prompt_id"].as_str().expect("id").to_string();
    let ann_job = host.finished("ann", &ann_id).await;
    let bob_job = host.finished("bob", &bob_id).await;
    assert_eq!(ann_job["status"], "completed", "{ann_job}");
    assert_eq!(bob_job["status"], "completed", "{bob_job}");
    for (id, bytes) in [(&ann_id, &ann_png), (&bob_id, &bob_png)] {
        let path = format!("comfyume/{id}/input/portrait.png");
        assert_eq!(gpu.uploaded(&path).as_ref(), Some(bytes), "{path}");
        let ran = gpu.prompt_of(id).expect("ran");
        assert_eq!(
            ran["1"]["inputs"]["image"], path,
            "the loader reads the job's copy"
        );
    }
    assert_eq!(
        gpu.uploaded("portrait.png"),
        None,
        "nothing in the shared root"
    );

    // Ann's render, by the name the gallery shows: Bob cannot load it, as
    // an output or a temp file; Ann can, and it is sent with her job.
    let render = ann_job["preview_output"]["filename"]
        .as_str()
        .expect("an output")
        .to_string();
    for annotation in ["output", "temp"] {
        let value = format!("{render} [{annotation}]");
        let (status, body) = host.submit("bob", load_and_save(&value)).await;
        assert_not_in_list(status, &body, &value);
    }
    let (status, again) = host
        .submit("ann", load_and_save(&format!("{render} [output]")))
        .await;
    assert_eq!(status, 200, "{again}");
    let again_id = again["prompt_id"].as_str().expect("id").to_string();
    assert_eq!(host.finished("ann", &again_id).await["status"], "completed");
    let sent = format!("comfyume/{again_id}/output/{render}");
    assert!(gpu.uploaded(&sent).is_some(), "{sent}");

    // Another job's folder and the workshop's shipped example.
    let other_job = format!("comfyume/{ann_id}/input/portrait.png");
    let (status, body) = host.submit("bob", load_and_save(&other_job)).await;
    assert_not_in_list(status, &body, &other_job);
    let (status, body) = host.submit("bob", load_and_save("example.png")).await;
    assert_eq!(status, 200, "the workshop ships example.png: {body}");
}
