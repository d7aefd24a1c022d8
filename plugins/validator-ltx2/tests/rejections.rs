//! Edited templates that must be refused, each problem at the node and
//! input holding the offending literal.

use comfyume_plugin_sdk::testing::{find, link, problems, remove, set, template, unset};
use comfyume_plugin_sdk::validator::{InputValue, ProblemType, Verdict};
use validator_ltx2::validate;

#[test]
fn frames_120_are_reported_at_the_primitive() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:62", "value", InputValue::Int(120));
    let p = problems(validate(&g));
    let problem = find(&p, "92:62", Some("value"), ProblemType::ValueNotValid);
    assert!(problem.message.contains("8n+1"), "{}", problem.message);
    assert!(
        problem.message.contains("113 or 121"),
        "{}",
        problem.message
    );
    // The primitive feeds both the video and the audio latent: one problem.
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn too_many_frames_are_refused() {
    let mut g = template("video_ltx2_t2v_distilled");
    set(&mut g, "177:113", "value", InputValue::Int(265));
    let p = problems(validate(&g));
    find(
        &p,
        "177:113",
        Some("value"),
        ProblemType::ValueBiggerThanMax,
    );
}

#[test]
fn ltx23_computed_length_over_the_cap_is_reported_at_the_seconds() {
    // 60 s × 25 fps + 1 = 1501 frames, computed by ComfyMathExpression 267:277.
    let mut g = template("video_ltx2_3_t2v");
    set(&mut g, "267:225", "value", InputValue::Int(60));
    let p = problems(validate(&g));
    let problem = find(
        &p,
        "267:225",
        Some("value"),
        ProblemType::ValueBiggerThanMax,
    );
    assert!(problem.message.contains("1501"), "{}", problem.message);
}

#[test]
fn ltx23_shorter_clip_is_estimated_from_the_expression() {
    // 3 s × 25 fps + 1 = 76, which runs as 73 frames.
    let mut g = template("video_ltx2_3_i2v");
    set(&mut g, "320:301", "value", InputValue::Int(3));
    let Verdict::Accepted(a) = validate(&g) else {
        panic!("not accepted: {:#?}", validate(&g));
    };
    assert_eq!(a.cost.frames, 73);
}

#[test]
fn a_frame_rate_mismatch_is_reported_at_the_float_primitive() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:102", "value", InputValue::Float(25.0));
    let p = problems(validate(&g));
    let problem = find(
        &p,
        "92:102",
        Some("value"),
        ProblemType::CustomValidationFailed,
    );
    assert!(problem.message.contains("24"), "{}", problem.message);
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn a_frame_rate_mismatch_is_reported_at_the_create_video_literal() {
    let mut g = template("video_ltx2_i2v");
    set(&mut g, "92:97", "fps", InputValue::Float(24.0));
    let p = problems(validate(&g));
    find(
        &p,
        "92:97",
        Some("fps"),
        ProblemType::CustomValidationFailed,
    );
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn an_unknown_checkpoint_is_not_in_list() {
    let mut g = template("video_ltx2_t2v");
    set(
        &mut g,
        "92:1",
        "ckpt_name",
        InputValue::Str("ltxv-13b-0.9.8-dev.safetensors".into()),
    );
    let p = problems(validate(&g));
    let problem = find(&p, "92:1", Some("ckpt_name"), ProblemType::ValueNotInList);
    assert!(
        problem.message.contains("ltx-2-19b-dev-fp8.safetensors"),
        "{}",
        problem.message
    );
}

#[test]
fn an_unknown_upscaler_is_not_in_list() {
    let mut g = template("video_ltx2_3_t2v");
    set(
        &mut g,
        "267:233",
        "model_name",
        InputValue::Str("4x-UltraSharp.pth".into()),
    );
    let p = problems(validate(&g));
    find(
        &p,
        "267:233",
        Some("model_name"),
        ProblemType::ValueNotInList,
    );
}

#[test]
fn a_lora_of_the_other_family_is_refused() {
    let mut g = template("video_ltx2_t2v");
    set(
        &mut g,
        "92:68",
        "lora_name",
        InputValue::Str(
            "ltx_2.3_22b_distilled_1.1_lora_dynamic_fro09_avg_rank_111_bf16.safetensors".into(),
        ),
    );
    let p = problems(validate(&g));
    find(
        &p,
        "92:68",
        Some("lora_name"),
        ProblemType::CustomValidationFailed,
    );
}

#[test]
fn a_missing_text_encoder_loader_is_reported() {
    let mut g = template("video_ltx2_t2v");
    remove(&mut g, "92:60");
    let p = problems(validate(&g));
    let problem = find(&p, "92:43", None, ProblemType::RequiredInputMissing);
    assert!(
        problem.message.contains("LTXAVTextEncoderLoader"),
        "{}",
        problem.message
    );
    // The prompts' `clip` links now point nowhere.
    find(&p, "92:3", Some("clip"), ProblemType::RequiredInputMissing);
}

#[test]
fn a_missing_checkpoint_loader_is_reported() {
    let mut g = template("video_ltx2_t2v_distilled");
    remove(&mut g, "177:100");
    let p = problems(validate(&g));
    let problem = find(&p, "177:116", None, ProblemType::RequiredInputMissing);
    assert!(
        problem.message.contains("checkpoint"),
        "{}",
        problem.message
    );
}

#[test]
fn a_missing_save_video_is_reported() {
    let mut g = template("video_ltx2_t2v");
    remove(&mut g, "75");
    let p = problems(validate(&g));
    find(&p, "92:43", None, ProblemType::CustomValidationFailed);
}

#[test]
fn an_output_width_not_a_multiple_of_8_is_reported_at_empty_image() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:89", "width", InputValue::Int(1001));
    let p = problems(validate(&g));
    let problem = find(&p, "92:89", Some("width"), ProblemType::ValueNotValid);
    assert!(
        problem.message.contains("1000 or 1008"),
        "{}",
        problem.message
    );
}

#[test]
fn an_i2v_size_is_reported_at_the_resize_node() {
    // EmptyLTXVLatentVideo ← GetImageSize ← ImageScaleBy ← EmptyImage ←
    // GetImageSize ← ResizeImageMaskNode 102 "scale dimensions".
    let mut g = template("video_ltx2_i2v");
    set(&mut g, "102", "resize_type.height", InputValue::Int(2000));
    let p = problems(validate(&g));
    find(
        &p,
        "102",
        Some("resize_type.height"),
        ProblemType::ValueBiggerThanMax,
    );
}

#[test]
fn a_literal_latent_width_must_be_a_multiple_of_32() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:43", "width", InputValue::Int(600));
    let p = problems(validate(&g));
    let problem = find(&p, "92:43", Some("width"), ProblemType::ValueNotValid);
    assert!(
        problem.message.contains("576 or 608"),
        "{}",
        problem.message
    );
}

#[test]
fn a_literal_latent_width_is_doubled_by_the_second_pass() {
    // 1280 on the half-size latent makes a 2560-wide video.
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:43", "width", InputValue::Int(1280));
    let p = problems(validate(&g));
    let problem = find(&p, "92:43", Some("width"), ProblemType::ValueBiggerThanMax);
    assert!(problem.message.contains("2560"), "{}", problem.message);
}

#[test]
fn a_video_wider_than_1080p_is_refused() {
    let mut g = template("video_ltx2_3_t2v");
    set(&mut g, "267:257", "value", InputValue::Int(2560));
    let p = problems(validate(&g));
    find(
        &p,
        "267:257",
        Some("value"),
        ProblemType::ValueBiggerThanMax,
    );
}

#[test]
fn portrait_1080p_is_allowed() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:89", "width", InputValue::Int(1088));
    set(&mut g, "92:89", "height", InputValue::Int(1920));
    set(&mut g, "92:62", "value", InputValue::Int(97));
    let Verdict::Accepted(a) = validate(&g) else {
        panic!("not accepted: {:#?}", validate(&g));
    };
    assert_eq!(
        (a.cost.width, a.cost.height, a.cost.frames),
        (1088, 1920, 97)
    );
}

#[test]
fn the_pixel_frame_budget_is_reported_at_the_frame_count() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:89", "width", InputValue::Int(1920));
    set(&mut g, "92:89", "height", InputValue::Int(1088));
    set(&mut g, "92:62", "value", InputValue::Int(257));
    let p = problems(validate(&g));
    find(
        &p,
        "92:62",
        Some("value"),
        ProblemType::CustomValidationFailed,
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    // The same size for 121 frames fits.
    set(&mut g, "92:62", "value", InputValue::Int(121));
    assert!(matches!(validate(&g), Verdict::Accepted(_)));
}

#[test]
fn scheduler_steps_are_bounded() {
    let mut g = template("video_ltx2_i2v");
    set(&mut g, "92:9", "steps", InputValue::Int(80));
    let p = problems(validate(&g));
    find(&p, "92:9", Some("steps"), ProblemType::ValueBiggerThanMax);
}

#[test]
fn unparseable_sigmas_are_reported() {
    let mut g = template("video_ltx2_t2v");
    set(
        &mut g,
        "92:73",
        "sigmas",
        InputValue::Str("0.9, lots, 0".into()),
    );
    let p = problems(validate(&g));
    find(&p, "92:73", Some("sigmas"), ProblemType::ValueNotValid);
}

#[test]
fn the_sound_must_have_as_many_frames_as_the_video() {
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:51", "frames_number", InputValue::Int(97));
    let p = problems(validate(&g));
    find(
        &p,
        "92:51",
        Some("frames_number"),
        ProblemType::CustomValidationFailed,
    );
}

#[test]
fn hostile_graphs_are_refused_without_panicking() {
    // A missing input.
    let mut g = template("video_ltx2_t2v");
    unset(&mut g, "92:43", "length");
    let p = problems(validate(&g));
    find(
        &p,
        "92:43",
        Some("length"),
        ProblemType::RequiredInputMissing,
    );

    // Text where a number belongs.
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:62", "value", InputValue::Str("long".into()));
    let p = problems(validate(&g));
    find(&p, "92:62", Some("value"), ProblemType::InvalidInputType);

    // A cycle of links.
    let mut g = template("video_ltx2_t2v");
    g.push(comfyume_plugin_sdk::testing::node(
        "c1",
        "PrimitiveInt",
        vec![("value", link("c2", 0))],
    ));
    g.push(comfyume_plugin_sdk::testing::node(
        "c2",
        "PrimitiveInt",
        vec![("value", link("c1", 0))],
    ));
    set(&mut g, "92:43", "length", link("c1", 0));
    let p = problems(validate(&g));
    assert!(
        p.iter()
            .any(|p| p.type_ == ProblemType::CustomValidationFailed && p.message.contains("loop")),
        "{p:#?}"
    );

    // A link to a node that does not exist, with an absurd slot.
    let mut g = template("video_ltx2_t2v");
    set(&mut g, "92:43", "width", link("nowhere", u32::MAX));
    let p = problems(validate(&g));
    find(
        &p,
        "92:43",
        Some("width"),
        ProblemType::RequiredInputMissing,
    );

    // Other JSON, NaN and huge numbers.
    let mut g = template("video_ltx2_t2v");
    set(
        &mut g,
        "92:89",
        "width",
        InputValue::Other("[1, 2, 3]".into()),
    );
    set(&mut g, "92:102", "value", InputValue::Float(f64::NAN));
    set(&mut g, "92:62", "value", InputValue::Int(i64::MAX));
    let p = problems(validate(&g));
    find(&p, "92:89", Some("width"), ProblemType::InvalidInputType);
    find(&p, "92:102", Some("value"), ProblemType::InvalidInputType);
    find(&p, "92:62", Some("value"), ProblemType::ValueBiggerThanMax);
}
