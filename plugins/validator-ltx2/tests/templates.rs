//! Every workshop template: LTX-2 ones accepted with a sensible estimate,
//! FLUX.2 Klein ones (and plain graphs) left to other validators.

mod common;

use common::{link, node, templates};
use validator_ltx2::exports::comfyume::plugin::validation::{InputValue, Verdict};
use validator_ltx2::{Guest, Ltx2, validate};

#[test]
fn the_template_folder_has_six_of_each_family() {
    let all = templates();
    let video = all
        .iter()
        .filter(|(n, _)| n.starts_with("video_ltx2"))
        .count();
    let image = all
        .iter()
        .filter(|(n, _)| n.starts_with("image_flux2_klein"))
        .count();
    assert_eq!(
        (video, image, all.len()),
        (6, 6, 12),
        "{:?}",
        all.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
}

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
    let video: Vec<_> = templates()
        .into_iter()
        .filter(|(n, _)| n.starts_with("video_"))
        .collect();
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
fn the_dev_t2v_template_costs_a_few_minutes() {
    let graph = common::template("video_ltx2_t2v");
    let Verdict::Accepted(accepted) = validate(&graph) else {
        panic!("not accepted");
    };
    let s = accepted.cost.gpu_seconds;
    assert!((150.0..=240.0).contains(&s), "{s} s");
}

#[test]
fn flux2_klein_templates_are_not_applicable() {
    let image: Vec<_> = templates()
        .into_iter()
        .filter(|(n, _)| n.starts_with("image_"))
        .collect();
    assert_eq!(image.len(), 6);
    for (name, graph) in image {
        assert!(matches!(validate(&graph), Verdict::NotApplicable), "{name}");
    }
}

#[test]
fn a_plain_graph_is_not_applicable() {
    let graph = vec![
        node(
            "1",
            "EmptyImage",
            vec![
                ("width", InputValue::Int(512)),
                ("height", InputValue::Int(512)),
                ("batch_size", InputValue::Int(1)),
                ("color", InputValue::Int(0)),
            ],
        ),
        node(
            "2",
            "SaveImage",
            vec![
                ("images", link("1", 0)),
                ("filename_prefix", InputValue::Str("x".into())),
            ],
        ),
    ];
    assert!(matches!(validate(&graph), Verdict::NotApplicable));
    assert!(matches!(validate(&[]), Verdict::NotApplicable));
}

#[test]
fn describe_names_the_validator() {
    let info = <Ltx2 as Guest>::describe();
    assert_eq!(info.name, "ltx2");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info.kind,
        validator_ltx2::comfyume::plugin::types::PluginKind::Validator
    );
    assert!(!info.summary.is_empty() && !info.summary.contains('\n'));
}
