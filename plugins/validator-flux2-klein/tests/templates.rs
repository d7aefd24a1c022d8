//! Every workshop template: FLUX.2 Klein ones accepted with a sensible
//! estimate, LTX-2 ones (and plain graphs) left to other validators.

use comfyume_plugin_sdk::testing::{node, plain_image_graph, template, templates_starting_with};
use comfyume_plugin_sdk::types::PluginKind;
use comfyume_plugin_sdk::validator::{Guest, InputValue, Verdict};
use validator_flux2_klein::{Flux2Klein, validate};

#[test]
fn every_flux2_klein_template_is_accepted_with_its_estimate() {
    // (template, steps): base models 20 steps, distilled ones 4. The edit
    // templates' size comes from the input image scaled to 1 MP: 1024x1024.
    let expected = [
        ("image_flux2_klein_9b_kv_image_edit", 4),
        ("image_flux2_klein_image_edit_4b_base", 20),
        ("image_flux2_klein_image_edit_4b_distilled", 4),
        ("image_flux2_klein_image_edit_9b_base", 20),
        ("image_flux2_klein_image_edit_9b_distilled", 4),
        ("image_flux2_klein_text_to_image", 20),
    ];
    let image: Vec<_> = templates_starting_with("image_");
    assert_eq!(image.len(), expected.len());
    for ((name, graph), (want_name, want_steps)) in image.iter().zip(expected) {
        assert_eq!(name, want_name);
        let Verdict::Accepted(accepted) = validate(graph) else {
            panic!("{name} not accepted: {:#?}", validate(graph));
        };
        assert_eq!(accepted.workflow_kind, "flux2-klein", "{name}");
        let cost = accepted.cost;
        assert_eq!(
            (cost.frames, cost.width, cost.height),
            (1, 1024, 1024),
            "{name}"
        );
        assert_eq!(cost.steps, want_steps, "{name}");
        assert!(
            (2.0..=15.0).contains(&cost.gpu_seconds),
            "{name}: {} s",
            cost.gpu_seconds
        );
    }
}

#[test]
fn every_comfyume_flux2_klein_template_is_accepted_with_its_estimate() {
    // Our own text-to-image templates: 1024x1024, base 20 steps, distilled 4.
    let expected = [
        ("comfyume_flux2_klein_4b_t2i_base", 20),
        ("comfyume_flux2_klein_4b_t2i_distilled", 4),
        ("comfyume_flux2_klein_9b_t2i_base", 20),
        ("comfyume_flux2_klein_9b_t2i_distilled", 4),
    ];
    let ours: Vec<_> = templates_starting_with("comfyume_flux2_klein");
    assert_eq!(ours.len(), expected.len());
    for ((name, graph), (want_name, want_steps)) in ours.iter().zip(expected) {
        assert_eq!(name, want_name);
        let Verdict::Accepted(accepted) = validate(graph) else {
            panic!("{name} not accepted: {:#?}", validate(graph));
        };
        assert_eq!(accepted.workflow_kind, "flux2-klein", "{name}");
        let cost = accepted.cost;
        assert_eq!(
            (cost.frames, cost.width, cost.height, cost.steps),
            (1, 1024, 1024, want_steps),
            "{name}"
        );
        assert!(
            (2.0..=15.0).contains(&cost.gpu_seconds),
            "{name}: {} s",
            cost.gpu_seconds
        );
    }
}

#[test]
fn a_1024_square_20_step_image_costs_about_ten_seconds() {
    let graph = template("image_flux2_klein_text_to_image");
    let Verdict::Accepted(accepted) = validate(&graph) else {
        panic!("not accepted");
    };
    let s = accepted.cost.gpu_seconds;
    assert!((8.0..=12.0).contains(&s), "{s} s");
}

#[test]
fn ltx2_templates_are_not_applicable() {
    let video: Vec<_> = templates_starting_with("video_");
    let ours: Vec<_> = templates_starting_with("comfyume_ltx2");
    assert_eq!((video.len(), ours.len()), (6, 2));
    for (name, graph) in video.into_iter().chain(ours) {
        assert!(matches!(validate(&graph), Verdict::NotApplicable), "{name}");
    }
}

#[test]
fn a_plain_graph_is_not_applicable() {
    assert!(matches!(
        validate(&plain_image_graph()),
        Verdict::NotApplicable
    ));
    assert!(matches!(validate(&[]), Verdict::NotApplicable));
}

#[test]
fn a_flux1_clip_loader_alone_is_not_applicable_but_a_flux2_one_is() {
    let clip = |kind: &str| {
        vec![node(
            "1",
            "CLIPLoader",
            vec![
                ("clip_name", InputValue::Str("qwen_3_4b.safetensors".into())),
                ("type", InputValue::Str(kind.into())),
            ],
        )]
    };
    assert!(matches!(validate(&clip("flux")), Verdict::NotApplicable));
    let Verdict::Rejected(problems) = validate(&clip("flux2")) else {
        panic!("a flux2 CLIPLoader makes the graph FLUX.2 Klein");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.node_id == "1" && p.message.contains("UNETLoader")),
        "{problems:#?}"
    );
}

#[test]
fn describe_names_the_validator() {
    let info = <Flux2Klein as Guest>::describe();
    assert_eq!(info.name, "flux2-klein");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.kind, PluginKind::Validator);
    assert!(!info.summary.is_empty() && !info.summary.contains('\n'));
}
