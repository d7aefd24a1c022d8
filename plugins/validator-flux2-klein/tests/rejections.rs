//! Edited templates that must be refused, each problem at the node and
//! input holding the offending literal.

use comfyume_plugin_sdk::testing::{find, link, problems, remove, set, template, unset};
use comfyume_plugin_sdk::validator::{InputValue, ProblemType, Verdict};
use validator_flux2_klein::validate;

const T2I: &str = "image_flux2_klein_text_to_image";

#[test]
fn a_1000_square_is_reported_at_the_size_primitives() {
    let mut g = template(T2I);
    set(&mut g, "75:68", "value", InputValue::Int(1000));
    set(&mut g, "75:69", "value", InputValue::Int(1000));
    let p = problems(validate(&g));
    let width = find(&p, "75:68", Some("value"), ProblemType::ValueNotValid);
    assert_eq!(
        width.message,
        "width 1000 is not a multiple of 16 (try 992 or 1008)"
    );
    let height = find(&p, "75:69", Some("value"), ProblemType::ValueNotValid);
    assert!(
        height.message.starts_with("height 1000"),
        "{}",
        height.message
    );
    // Each primitive feeds the latent and the scheduler: one problem each.
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn sizes_are_bounded() {
    let mut g = template(T2I);
    set(&mut g, "75:68", "value", InputValue::Int(4096));
    set(&mut g, "75:69", "value", InputValue::Int(128));
    let p = problems(validate(&g));
    find(&p, "75:68", Some("value"), ProblemType::ValueBiggerThanMax);
    find(&p, "75:69", Some("value"), ProblemType::ValueSmallerThanMin);
}

#[test]
fn a_portrait_size_is_accepted_and_estimated() {
    let mut g = template(T2I);
    set(&mut g, "75:68", "value", InputValue::Int(768));
    set(&mut g, "75:69", "value", InputValue::Int(1344));
    let Verdict::Accepted(a) = validate(&g) else {
        panic!("not accepted: {:#?}", validate(&g));
    };
    assert_eq!((a.cost.width, a.cost.height), (768, 1344));
}

#[test]
fn the_scheduler_must_see_the_image_size() {
    let mut g = template(T2I);
    set(&mut g, "75:62", "width", InputValue::Int(768));
    let p = problems(validate(&g));
    let problem = find(
        &p,
        "75:62",
        Some("width"),
        ProblemType::CustomValidationFailed,
    );
    assert!(problem.message.contains("1024"), "{}", problem.message);
}

#[test]
fn a_literal_size_on_an_edit_latent_is_checked() {
    let mut g = template("image_flux2_klein_9b_kv_image_edit");
    set(&mut g, "129", "width", InputValue::Int(1000));
    let p = problems(validate(&g));
    find(&p, "129", Some("width"), ProblemType::ValueNotValid);
}

#[test]
fn edit_sizes_follow_the_megapixels() {
    let mut g = template("image_flux2_klein_image_edit_4b_base");
    set(&mut g, "75:80", "megapixels", InputValue::Float(2.0));
    let Verdict::Accepted(a) = validate(&g) else {
        panic!("not accepted: {:#?}", validate(&g));
    };
    assert_eq!((a.cost.width, a.cost.height), (1448, 1448));
}

#[test]
fn steps_cfg_and_batch_are_bounded() {
    let mut g = template(T2I);
    set(&mut g, "75:62", "steps", InputValue::Int(80));
    set(&mut g, "75:63", "cfg", InputValue::Float(15.0));
    set(&mut g, "75:66", "batch_size", InputValue::Int(8));
    let p = problems(validate(&g));
    find(&p, "75:62", Some("steps"), ProblemType::ValueBiggerThanMax);
    find(&p, "75:63", Some("cfg"), ProblemType::ValueBiggerThanMax);
    find(
        &p,
        "75:66",
        Some("batch_size"),
        ProblemType::ValueBiggerThanMax,
    );
    assert_eq!(p.len(), 3, "{p:#?}");

    let mut g = template(T2I);
    set(&mut g, "75:62", "steps", InputValue::Int(0));
    set(&mut g, "75:63", "cfg", InputValue::Float(-1.0));
    let p = problems(validate(&g));
    find(&p, "75:62", Some("steps"), ProblemType::ValueSmallerThanMin);
    find(&p, "75:63", Some("cfg"), ProblemType::ValueSmallerThanMin);
}

#[test]
fn a_batch_of_two_counts_two_images() {
    let mut g = template(T2I);
    set(&mut g, "75:66", "batch_size", InputValue::Int(2));
    let Verdict::Accepted(a) = validate(&g) else {
        panic!("not accepted: {:#?}", validate(&g));
    };
    assert_eq!(a.cost.frames, 2);
}

#[test]
fn an_unknown_diffusion_model_is_not_in_list() {
    let mut g = template(T2I);
    set(
        &mut g,
        "75:70",
        "unet_name",
        InputValue::Str("flux1-dev.safetensors".into()),
    );
    let p = problems(validate(&g));
    let problem = find(&p, "75:70", Some("unet_name"), ProblemType::ValueNotInList);
    assert!(
        problem.message.contains("flux-2-klein-base-4b.safetensors"),
        "{}",
        problem.message
    );
}

#[test]
fn a_wrong_text_encoder_type_or_name_is_not_in_list() {
    let mut g = template(T2I);
    set(&mut g, "75:71", "type", InputValue::Str("flux".into()));
    set(
        &mut g,
        "75:71",
        "clip_name",
        InputValue::Str("t5xxl_fp16.safetensors".into()),
    );
    set(
        &mut g,
        "75:72",
        "vae_name",
        InputValue::Str("ae.safetensors".into()),
    );
    let p = problems(validate(&g));
    find(&p, "75:71", Some("type"), ProblemType::ValueNotInList);
    find(&p, "75:71", Some("clip_name"), ProblemType::ValueNotInList);
    find(&p, "75:72", Some("vae_name"), ProblemType::ValueNotInList);
}

#[test]
fn a_4b_text_encoder_does_not_fit_a_9b_model() {
    let mut g = template("image_flux2_klein_image_edit_9b_base");
    set(
        &mut g,
        "75:71",
        "clip_name",
        InputValue::Str("qwen_3_4b.safetensors".into()),
    );
    let p = problems(validate(&g));
    let problem = find(
        &p,
        "75:71",
        Some("clip_name"),
        ProblemType::CustomValidationFailed,
    );
    assert!(
        problem.message.contains("qwen_3_8b_fp8mixed.safetensors"),
        "{}",
        problem.message
    );
}

#[test]
fn a_missing_diffusion_model_loader_is_reported() {
    let mut g = template(T2I);
    remove(&mut g, "75:70");
    let p = problems(validate(&g));
    let problem = find(&p, "75:66", None, ProblemType::RequiredInputMissing);
    assert!(
        problem.message.contains("UNETLoader"),
        "{}",
        problem.message
    );
    // The guider's `model` link now points nowhere.
    find(
        &p,
        "75:63",
        Some("model"),
        ProblemType::RequiredInputMissing,
    );
}

#[test]
fn a_missing_vae_loader_is_reported() {
    let mut g = template("image_flux2_klein_image_edit_4b_distilled");
    remove(&mut g, "75:72");
    let p = problems(validate(&g));
    let problem = find(&p, "75:66", None, ProblemType::RequiredInputMissing);
    assert!(problem.message.contains("VAELoader"), "{}", problem.message);
}

#[test]
fn a_missing_image_output_is_reported() {
    let mut g = template(T2I);
    remove(&mut g, "9");
    let p = problems(validate(&g));
    find(&p, "75:66", None, ProblemType::CustomValidationFailed);
}

#[test]
fn hostile_graphs_are_refused_without_panicking() {
    // A missing input.
    let mut g = template(T2I);
    unset(&mut g, "75:66", "width");
    let p = problems(validate(&g));
    find(
        &p,
        "75:66",
        Some("width"),
        ProblemType::RequiredInputMissing,
    );

    // Text where a number belongs.
    let mut g = template(T2I);
    set(&mut g, "75:62", "steps", InputValue::Str("many".into()));
    let p = problems(validate(&g));
    find(&p, "75:62", Some("steps"), ProblemType::InvalidInputType);

    // A cycle of links.
    let mut g = template(T2I);
    set(&mut g, "75:68", "value", link("75:69", 0));
    set(&mut g, "75:69", "value", link("75:68", 0));
    let p = problems(validate(&g));
    assert!(
        p.iter()
            .any(|p| p.type_ == ProblemType::CustomValidationFailed && p.message.contains("loop")),
        "{p:#?}"
    );

    // A link to a node that does not exist, with an absurd slot.
    let mut g = template(T2I);
    set(&mut g, "75:70", "unet_name", link("nowhere", u32::MAX));
    let p = problems(validate(&g));
    find(
        &p,
        "75:70",
        Some("unet_name"),
        ProblemType::RequiredInputMissing,
    );

    // Other JSON, NaN and huge numbers.
    let mut g = template(T2I);
    set(&mut g, "75:68", "value", InputValue::Other("null".into()));
    set(&mut g, "75:63", "cfg", InputValue::Float(f64::NAN));
    set(&mut g, "75:69", "value", InputValue::Int(i64::MIN));
    let p = problems(validate(&g));
    find(&p, "75:68", Some("value"), ProblemType::InvalidInputType);
    find(&p, "75:63", Some("cfg"), ProblemType::InvalidInputType);
    find(&p, "75:69", Some("value"), ProblemType::ValueSmallerThanMin);
}
