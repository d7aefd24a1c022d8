//! The FLUX.2 [Klein] rules, derived from the six workshop templates
//! (`workflows/api/image_flux2_klein_*.api.json`).
//!
//! How the templates are built: `UNETLoader` (diffusion model),
//! `CLIPLoader(type=flux2)` (Qwen3 text encoder) and `VAELoader`; sampling is
//! `RandomNoise`, `KSamplerSelect`, `Flux2Scheduler(steps, width, height)`,
//! `CFGGuider(cfg)` and `SamplerCustomAdvanced` on an `EmptyFlux2LatentImage`,
//! decoded to a `SaveImage`. Text-to-image sets the size in two `PrimitiveInt`
//! nodes (`75:68`, `75:69`) feeding both the latent and the scheduler. The
//! edit templates take it from the input image instead: `LoadImage` →
//! `ImageScaleToTotalPixels(1 MP)` → `GetImageSize`, which we cannot see, so
//! those sizes are never refused and are estimated as a 1 MP square. Every
//! problem is reported at the literal's node and input, found by
//! [`Graph::resolve`] (from the SDK, like [`Problems`]).
//!
//! Rules, and why:
//! - **Size** (`EmptyFlux2LatentImage` and `Flux2Scheduler` width/height):
//!   a multiple of 16 (the VAE downsamples 8× and the transformer packs 2×2
//!   latent patches; ComfyUI's own widget step is 16 and other sizes are
//!   silently cropped), within [`MIN_SIDE`]..=[`MAX_SIDE`]. The scheduler
//!   must see the same size as the latent: it shifts the noise schedule by
//!   image size.
//! - **Steps** (`Flux2Scheduler.steps`): 1..=[`MAX_STEPS`].
//! - **CFG** (`CFGGuider.cfg`): [`MIN_CFG`]..=[`MAX_CFG`].
//! - **Batch** (`EmptyFlux2LatentImage.batch_size`): 1..=[`MAX_BATCH`].
//! - **Models**: a `UNETLoader` with a known FLUX.2 Klein diffusion model, a
//!   `CLIPLoader` of type `flux2` with a known Qwen3 text encoder of the same
//!   size class (4B ↔ qwen_3_4b, 9B ↔ qwen_3_8b), a `VAELoader` with a known
//!   VAE (see `models`).
//! - **Output**: a `SaveImage` or `PreviewImage` node.
//! - **Links**: a link to a node that is not in the graph.

use comfyume_plugin_sdk::validate::graph::{Graph, Num, Resolved};
use comfyume_plugin_sdk::validate::report::{Problems, Value, fmt, short, suggest};
use comfyume_plugin_sdk::validate::sampling;
use comfyume_plugin_sdk::validator::{Node, ProblemType};

use crate::models::{self, Size};

/// Size granularity: 8× VAE × 2×2 patches.
pub const SIDE_STEP: i64 = 16;
/// Smallest side: below 256 px FLUX.2 makes mush, and such a value is
/// almost always a typo.
pub const MIN_SIDE: f64 = 256.0;
/// Largest side: 2048 px, i.e. 4 MP for a square, FLUX.2's stated maximum
/// output size; beyond it quality falls apart and memory and time grow
/// quadratically.
pub const MAX_SIDE: f64 = 2048.0;
/// Most steps: the base templates use 20, the distilled ones 4; beyond 50
/// nothing visibly improves and a shared GPU is held.
pub const MAX_STEPS: f64 = 50.0;
/// CFG range: the base templates use 5, the distilled 1; past 10 FLUX images
/// burn out. 0 is ComfyUI's own minimum.
pub const MIN_CFG: f64 = 0.0;
pub const MAX_CFG: f64 = 10.0;
/// Most images per job: each costs as much as its own job, so larger batches
/// should queue as separate jobs and share the GPU fairly.
pub const MAX_BATCH: f64 = 4.0;
/// Side assumed when the size comes from an image we cannot see (1 MP).
pub const DEFAULT_SIDE: f64 = 1024.0;

/// The node that makes a graph a FLUX.2 Klein workflow, if any: the latent,
/// else the scheduler, else a `CLIPLoader` of type `flux2`.
pub fn anchor<'a>(g: &Graph<'a>) -> Option<&'a Node> {
    g.of_class("EmptyFlux2LatentImage")
        .next()
        .or_else(|| g.of_class("Flux2Scheduler").next())
        .or_else(|| {
            g.of_class("CLIPLoader").find(|n| {
                matches!(g.resolve(n, "type"), Resolved::Text { value, .. } if value == "flux2")
            })
        })
}

/// What the rules learned about the job, for the cost estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub images: f64,
    pub width: f64,
    pub height: f64,
    pub steps: f64,
}

/// Runs every rule; problems are empty when the graph may run.
pub fn check(g: &Graph, anchor: &Node) -> (Problems, Shape) {
    let mut p = Problems::default();
    p.dangling_links(g);
    let (width, height) = check_sizes(g, &mut p);
    let images = check_batch(g, &mut p);
    check_steps_and_cfg(g, &mut p);
    check_models(g, &mut p, anchor);
    if !g.has_class("SaveImage") && !g.has_class("PreviewImage") {
        p.on_node(
            &anchor.id,
            ProblemType::CustomValidationFailed,
            "nothing saves the image: add a Save Image node at the end".into(),
        );
    }
    let shape = Shape {
        images,
        width,
        height,
        steps: total_steps(g),
    };
    (p, shape)
}

/// Checks every width/height; returns the image size (estimated if unknown).
fn check_sizes(g: &Graph, p: &mut Problems) -> (f64, f64) {
    let mut size = [None, None];
    let mut latent: [Option<(Num, String)>; 2] = [None, None];
    for class in ["EmptyFlux2LatentImage", "Flux2Scheduler"] {
        for node in g.of_class(class) {
            for (i, axis) in ["width", "height"].into_iter().enumerate() {
                let value = match p.number(g.resolve(node, axis), axis) {
                    Value::Known(n) => n,
                    Value::Unknown(estimate) => {
                        size[i].get_or_insert(estimate.unwrap_or(DEFAULT_SIDE));
                        continue;
                    }
                    Value::Bad => continue,
                };
                let ok = side_rules(&value, axis, p);
                if class == "EmptyFlux2LatentImage" {
                    if ok {
                        size[i].get_or_insert(value.value);
                    }
                    latent[i].get_or_insert((value, node.id.clone()));
                } else if let Some((image, at)) = &latent[i]
                    && image.site != value.site
                    && image.value != value.value
                {
                    p.at(
                        &value.site,
                        ProblemType::CustomValidationFailed,
                        format!(
                            "the scheduler's {axis} {} does not match the image {axis} {} \
                             (node {at}): connect both to the same value",
                            fmt(value.value),
                            fmt(image.value)
                        ),
                    );
                } else if ok {
                    size[i].get_or_insert(value.value);
                }
            }
        }
    }
    (
        size[0].unwrap_or(DEFAULT_SIDE),
        size[1].unwrap_or(DEFAULT_SIDE),
    )
}

/// Reports what is wrong with one side; true if usable.
fn side_rules(n: &Num, axis: &str, p: &mut Problems) -> bool {
    let v = n.value;
    let named = if n.direct {
        format!("{axis} {}", fmt(v))
    } else {
        format!(
            "{axis} {}, computed from the {} set here,",
            fmt(v),
            fmt(n.literal)
        )
    };
    if v.fract() != 0.0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!("{named} must be a whole number"),
        );
        false
    } else if v < MIN_SIDE {
        p.at(
            &n.site,
            ProblemType::ValueSmallerThanMin,
            format!("{named} is below the minimum of 256"),
        );
        false
    } else if v > MAX_SIDE {
        p.at(
            &n.site,
            ProblemType::ValueBiggerThanMax,
            format!("{named} is more than the limit of 2048"),
        );
        false
    } else if (v as i64) % SIDE_STEP != 0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!(
                "{named} is not a multiple of 16{}",
                suggest(v, SIDE_STEP, MIN_SIDE as i64, MAX_SIDE as i64)
            ),
        );
        false
    } else {
        true
    }
}

/// Checks the batch sizes; returns the first latent's (images produced).
fn check_batch(g: &Graph, p: &mut Problems) -> f64 {
    let mut images = None;
    for node in g.of_class("EmptyFlux2LatentImage") {
        let n = match p.number(g.resolve(node, "batch_size"), "batch size") {
            Value::Known(n) => n,
            _ => continue,
        };
        if n.value.fract() != 0.0 || n.value < 1.0 {
            p.at(
                &n.site,
                ProblemType::ValueSmallerThanMin,
                format!(
                    "batch size {} must be a whole number of at least 1",
                    fmt(n.value)
                ),
            );
        } else if n.value > MAX_BATCH {
            p.at(
                &n.site,
                ProblemType::ValueBiggerThanMax,
                format!(
                    "batch size {} is more than the limit of 4 images per job: \
                     queue several jobs instead",
                    fmt(n.value)
                ),
            );
        } else {
            images.get_or_insert(n.value);
        }
    }
    images.unwrap_or(1.0)
}

/// Checks `Flux2Scheduler.steps` and `CFGGuider.cfg`.
fn check_steps_and_cfg(g: &Graph, p: &mut Problems) {
    for node in g.of_class("Flux2Scheduler") {
        if let Value::Known(n) = p.number(g.resolve(node, "steps"), "steps") {
            if n.value.fract() != 0.0 || n.value < 1.0 {
                p.at(
                    &n.site,
                    ProblemType::ValueSmallerThanMin,
                    format!(
                        "steps {} must be a whole number of at least 1",
                        fmt(n.value)
                    ),
                );
            } else if n.value > MAX_STEPS {
                p.at(
                    &n.site,
                    ProblemType::ValueBiggerThanMax,
                    format!("steps {} is more than the limit of 50", fmt(n.value)),
                );
            }
        }
    }
    for node in g.of_class("CFGGuider") {
        if let Value::Known(n) = p.number(g.resolve(node, "cfg"), "cfg") {
            if n.value < MIN_CFG {
                p.at(
                    &n.site,
                    ProblemType::ValueSmallerThanMin,
                    format!("cfg {} is below the minimum of 0", fmt(n.value)),
                );
            } else if n.value > MAX_CFG {
                p.at(
                    &n.site,
                    ProblemType::ValueBiggerThanMax,
                    format!(
                        "cfg {} is more than the limit of 10 (the templates use 5, \
                         or 1 for distilled models)",
                        fmt(n.value)
                    ),
                );
            }
        }
    }
}

/// Steps over every sampler pass (see the SDK's [`sampling`]); a
/// `ManualSigmas` list counts its non-empty entries − 1, unparsed (this
/// validator has no sigma rule), up to 4096 characters.
fn total_steps(g: &Graph) -> f64 {
    sampling::total_steps(g, |sigmas| {
        if sigmas.len() <= 4096 {
            sigmas
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .count()
                .saturating_sub(1) as f64
        } else {
            0.0
        }
    })
}

/// Checks the three loaders: present, known files, matching sizes.
fn check_models(g: &Graph, p: &mut Problems, anchor: &Node) {
    let mut model: Option<(Size, String, String)> = None;
    for node in g.of_class("UNETLoader") {
        let Some((file, site)) = p.text(g.resolve(node, "unet_name"), "diffusion model") else {
            continue;
        };
        match models::size_of(models::DIFFUSION_MODELS, &file) {
            Some(size) => {
                model.get_or_insert((size, file, node.id.clone()));
            }
            None => p.at(
                &site,
                ProblemType::ValueNotInList,
                format!(
                    "\"{}\" is not a FLUX.2 Klein diffusion model on this server; \
                     use one of: {}",
                    short(&file),
                    models::names(models::DIFFUSION_MODELS)
                ),
            ),
        }
    }
    for node in g.of_class("CLIPLoader") {
        if let Some((kind, site)) = p.text(g.resolve(node, "type"), "text encoder type")
            && kind != "flux2"
        {
            p.at(
                &site,
                ProblemType::ValueNotInList,
                format!(
                    "text encoder type \"{}\" does not fit FLUX.2 Klein: set it to flux2",
                    short(&kind)
                ),
            );
        }
        let Some((file, site)) = p.text(g.resolve(node, "clip_name"), "text encoder") else {
            continue;
        };
        match (models::size_of(models::TEXT_ENCODERS, &file), &model) {
            (None, _) => p.at(
                &site,
                ProblemType::ValueNotInList,
                format!(
                    "\"{}\" is not a FLUX.2 Klein text encoder on this server; use one of: {}",
                    short(&file),
                    models::names(models::TEXT_ENCODERS)
                ),
            ),
            (Some(size), Some((wanted, unet, at))) if size != *wanted => p.at(
                &site,
                ProblemType::CustomValidationFailed,
                format!(
                    "{file} is the text encoder for {} models, but {unet} (node {at}) \
                     is a {} model: use {}",
                    size.label(),
                    wanted.label(),
                    models::encoder_for(*wanted)
                ),
            ),
            _ => {}
        }
    }
    for node in g.of_class("VAELoader") {
        if let Some((file, site)) = p.text(g.resolve(node, "vae_name"), "VAE")
            && !models::VAES.contains(&file.as_str())
        {
            p.at(
                &site,
                ProblemType::ValueNotInList,
                format!(
                    "\"{}\" is not a FLUX.2 VAE on this server; use one of: {}",
                    short(&file),
                    models::VAES.join(", ")
                ),
            );
        }
    }
    let mut require = |class: &str, message: String| {
        if !g.has_class(class) {
            p.on_node(&anchor.id, ProblemType::RequiredInputMissing, message);
        }
    };
    require(
        "UNETLoader",
        format!(
            "no diffusion model is loaded: add a Load Diffusion Model (UNETLoader) node \
             with one of: {}",
            models::names(models::DIFFUSION_MODELS)
        ),
    );
    require(
        "CLIPLoader",
        format!(
            "no text encoder is loaded: add a Load CLIP (CLIPLoader) node of type flux2 \
             with one of: {}",
            models::names(models::TEXT_ENCODERS)
        ),
    );
    require(
        "VAELoader",
        format!(
            "no VAE is loaded: add a Load VAE (VAELoader) node with one of: {}",
            models::VAES.join(", ")
        ),
    );
}
