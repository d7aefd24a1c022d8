//! Every workshop template: LTX-2 ones accepted with a sensible estimate,
//! FLUX.2 Klein ones (and plain graphs) left to other validators.

use comfyume_plugin_sdk::testing::{plain_image_graph, template, templates_starting_with};
use comfyume_plugin_sdk::types::PluginKind;
use comfyume_plugin_sdk::validator::{Guest, Verdict};
use validator_ltx2::{Ltx2, validate};

#[test]
fn every_ltx2_template_is_accepted_with_its_estimate() {
    // (template, total steps over both passes): dev 20 + 3, distilled 8 + 3.
    let expected = [
        ("video_ltx2_3_i2v", 11),
        ("video_ltx2_3_t2v", 11),
        ("video_ltx2_i2v", 23),
        ("video_ltx2_i2v_distilled", 11),
        ("video_ltx2_t2v", 23),
        ("video_ltx2_t2v_distilled", 11),
    ];
    let video: Vec<_> = templates_starting_with("video_");
    assert_eq!(video.len(), expected.len());
    for ((name, graph), (want_name, want_steps)) in video.iter().zip(expected) {
        assert_eq!(name, want_name);
        let Verdict::Accepted(accepted) = validate(graph) else {
            panic!("{name} not accepted: {:#?}", validate(graph));
        };
        assert_eq!(accepted.workflow_kind, "ltx2", "{name}");
        let cost = accepted.cost;
        // 121 frames (LTX-2.3's 126 runs as 121); 720 floors to 704 in the
        // half-size first pass (360 / 32 = 11 cells) and doubles to 704.
        assert_eq!(
            (cost.frames, cost.width, cost.height),
            (121, 1280, 704),
            "{name}"
        );
        assert_eq!(cost.steps, want_steps, "{name}");
        assert!(
            (60.0..=300.0).contains(&cost.gpu_seconds),
            "{name}: {} s",
            cost.gpu_seconds
        );
    }
}

#[test]
fn every_comfyume_ltx2_template_is_accepted_with_its_estimate() {
    // Our own text-to-video templates: dev 20 + 3 steps, distilled 8 + 3, at
    // 1280x720 (1280x704 after the half-size pass) for 121 frames.
    let expected = [
        ("comfyume_ltx2_t2v_dev", 23),
        ("comfyume_ltx2_t2v_distilled", 11),
    ];
    let ours: Vec<_> = templates_starting_with("comfyume_ltx2");
    assert_eq!(ours.len(), expected.len());
    for ((name, graph), (want_name, want_steps)) in ours.iter().zip(expected) {
        assert_eq!(name, want_name);
        let Verdict::Accepted(accepted) = validate(graph) else {
            panic!("{name} not accepted: {:#?}", validate(graph));
        };
        assert_eq!(accepted.workflow_kind, "ltx2", "{name}");
        let cost = accepted.cost;
        assert_eq!(
            (cost.frames, cost.width, cost.height, cost.steps),
            (121, 1280, 704, want_steps),
            "{name}"
        );
        assert!(
            (60.0..=300.0).contains(&cost.gpu_seconds),
            "{name}: {} s",
            cost.gpu_seconds
        );
    }
}

#[test]
fn the_dev_t2v_template_costs_a_few_minutes() {
    let graph = template("video_ltx2_t2v");
    let Verdict::Accepted(accepted) = validate(&graph) else {
        panic!("not accepted");
    };
    let s = accepted.cost.gpu_seconds;
    assert!((150.0..=240.0).contains(&s), "{s} s");
}

#[test]
fn flux2_klein_templates_are_not_applicable() {
    let image: Vec<_> = templates_starting_with("image_");
    let ours: Vec<_> = templates_starting_with("comfyume_flux2_klein");
    assert_eq!((image.len(), ours.len()), (6, 4));
    for (name, graph) in image.into_iter().chain(ours) {
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
fn describe_names_the_validator() {
    let info = <Ltx2 as Guest>::describe();
    assert_eq!(info.name, "ltx2");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.kind, PluginKind::Validator);
    assert!(!info.summary.is_empty() && !info.summary.contains('\n'));
}
