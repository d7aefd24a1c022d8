//! The built-in validators and selectors, driven through the Wasm runtime:
//! the real workshop templates are accepted, out-of-range prompts are
//! refused against the right node and input, and jobs go to the right pool.

mod common;

use comfyume::plugins::api::{Problem, ProblemType, Tier, Verdict};
use comfyume::plugins::check::{sample_backends, sample_job};
use comfyume::plugins::graph::graph_from_prompt;
use comfyume::plugins::{CallLimits, Registry, Unclaimed, Validation, builtin};
use common::*;
use serde_json::Value;

fn template(name: &str) -> Value {
    let (_, json) = builtin::templates()
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("template {name} not shipped"));
    serde_json::from_str(json).unwrap()
}

fn set(prompt: &mut Value, node: &str, input: &str, value: Value) {
    prompt[node]["inputs"][input] = value;
}

fn validators() -> Registry {
    let registry = Registry::new(engine(), Default::default(), Unclaimed::Refuse);
    for name in ["flux2-klein", "ltx2"] {
        let plugin = registry
            .load(builtin_bytes(name), CallLimits::default())
            .unwrap();
        registry.activate(plugin.hash()).unwrap();
    }
    registry
}

fn problems(registry: &Registry, prompt: &Value) -> Vec<Problem> {
    match registry.validate(&graph_from_prompt(prompt).unwrap()) {
        Validation::Rejected { problems, .. } => problems,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn every_shipped_template_is_accepted_with_its_kind() {
    let registry = validators();
    assert!(
        builtin::templates().len() >= 12,
        "the workshop templates are shipped"
    );
    for (name, json) in builtin::templates() {
        let graph = graph_from_prompt(&serde_json::from_str(json).unwrap()).unwrap();
        match registry.validate(&graph) {
            Validation::Accepted {
                workflow_kind,
                cost,
                by,
            } => {
                let expected = if name.contains("flux2_klein") {
                    "flux2-klein"
                } else {
                    "ltx2"
                };
                assert_eq!(workflow_kind, expected, "{name}");
                assert!(by.starts_with(expected), "{name} decided by {by}");
                assert!(cost.gpu_seconds > 0.0 && cost.steps > 0, "{name}: {cost:?}");
                if expected == "ltx2" {
                    assert!(cost.frames > 100, "{name}: {cost:?}");
                }
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn ltx2_with_120_frames_is_refused_naming_the_frame_count_node() {
    let registry = validators();
    let mut prompt = template("video_ltx2_t2v.api.json");
    set(&mut prompt, "92:62", "value", 120.into());
    let problems = problems(&registry, &prompt);
    let frames = problems
        .iter()
        .find(|p| p.node_id == "92:62")
        .unwrap_or_else(|| panic!("no problem on the frame-count node: {problems:?}"));
    assert_eq!(frames.input_name.as_deref(), Some("value"));
    assert_eq!(frames.type_, ProblemType::ValueNotValid);
    assert!(frames.message.contains("120"), "{}", frames.message);
}

#[test]
fn flux2_klein_at_1000_by_1000_is_refused_naming_width_and_height() {
    let registry = validators();
    let mut prompt = template("image_flux2_klein_text_to_image.api.json");
    set(&mut prompt, "75:68", "value", 1000.into());
    set(&mut prompt, "75:69", "value", 1000.into());
    let problems = problems(&registry, &prompt);
    for node in ["75:68", "75:69"] {
        let p = problems
            .iter()
            .find(|p| p.node_id == node)
            .unwrap_or_else(|| panic!("no problem on {node}: {problems:?}"));
        assert_eq!(p.input_name.as_deref(), Some("value"));
        assert_eq!(p.type_, ProblemType::ValueNotValid);
        assert!(
            p.message.contains("1000") && p.message.contains("16"),
            "{}",
            p.message
        );
    }
}

#[test]
fn a_graph_no_validator_claims_follows_the_unclaimed_switch() {
    let prompt: Value = serde_json::json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    });
    let graph = graph_from_prompt(&prompt).unwrap();
    assert!(matches!(
        validators().validate(&graph),
        Validation::Refused { .. }
    ));
    let open = Registry::new(engine(), Default::default(), Unclaimed::Accept);
    let plugin = open
        .load(builtin_bytes("ltx2"), CallLimits::default())
        .unwrap();
    open.activate(plugin.hash()).unwrap();
    assert!(
        matches!(open.validate(&graph), Validation::Accepted { ref workflow_kind, .. } if workflow_kind == "other")
    );
    assert!(matches!(
        plugin.validate(&graph).unwrap(),
        Verdict::NotApplicable
    ));
}

#[test]
fn h200_spot_prefers_warm_spot_and_falls_back_to_on_demand() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("h200-spot"));
    let pools = sample_backends();
    let job = sample_job("flux2-klein", 1024, 1024, 1);
    let name = |r: Result<u32, String>| pools[r.expect("a pool") as usize].name.clone();
    assert_eq!(name(plugin.select(&job, &pools).unwrap()), "h200-spot");

    let mut reclaimed = job.clone();
    reclaimed.lost_to_reclaim = true;
    assert_eq!(
        name(plugin.select(&reclaimed, &pools).unwrap()),
        "h200-on-demand"
    );

    let mut sick = pools.clone();
    sick[0].healthy = false;
    let chosen = plugin.select(&job, &sick).unwrap().unwrap();
    assert_eq!(sick[chosen as usize].name, "h200-on-demand");
    assert_eq!(sick[chosen as usize].tier, Tier::OnDemand);
}

#[test]
fn b300_on_demand_takes_heavy_ltx2_jobs() {
    let engine = engine();
    let plugin = load(&engine, builtin_bytes("b300-on-demand"));
    let pools = sample_backends();
    let heavy = sample_job("ltx2", 1280, 720, 121);
    let chosen = plugin.select(&heavy, &pools).unwrap().unwrap();
    assert_eq!(pools[chosen as usize].name, "b300-on-demand");

    let mut full = pools.clone();
    for pool in full.iter_mut().filter(|p| p.gpu == "B300") {
        pool.in_flight = pool.capacity;
    }
    let reason = plugin.select(&heavy, &full).unwrap().unwrap_err();
    assert!(reason.to_lowercase().contains("b300"), "{reason}");
}
