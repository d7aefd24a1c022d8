//! The LTX-2 / LTX-2.3 rules, derived from the six workshop templates
//! (`workflows/api/video_ltx2_*.api.json`).
//!
//! How the templates are built: a first pass samples a half-resolution
//! `EmptyLTXVLatentVideo` (with an `LTXVEmptyLatentAudio` alongside), then
//! `LTXVLatentUpsampler` doubles it and a short second pass refines it;
//! `CreateVideo(fps)` → `SaveVideo` writes the mp4. The user-facing numbers
//! live upstream: `PrimitiveInt` frame count and frame rates (LTX-2), an
//! `EmptyImage` (or a `ResizeImageMaskNode` for image-to-video) halved by
//! `ImageScaleBy` and read back with `GetImageSize`, or (LTX-2.3)
//! `PrimitiveInt` width/height/seconds/fps combined by `ComfyMathExpression`
//! (`a/2`, `a * b + 1`). Every problem is reported at the literal's node and
//! input, found by [`Graph::resolve`] (from the SDK, like [`Problems`]).
//!
//! Rules, and why:
//! - **Frame count** (`EmptyLTXVLatentVideo.length`,
//!   `LTXVEmptyLatentAudio.frames_number`): at least 1 and at most
//!   [`MAX_FRAMES`]; a count typed directly must be `8n + 1` (the video VAE
//!   compresses time 8×; ComfyUI silently floors `(length - 1) / 8`, so 120
//!   frames quietly becomes 113). A count *computed* by an expression is not
//!   held to 8n+1: the official LTX-2.3 templates compute 5 s × 25 fps + 1 =
//!   126, which runs as 121 frames. Video and audio frame counts must agree.
//! - **Size**: a width/height typed directly on `EmptyLTXVLatentVideo` must
//!   be a multiple of 32 (the latent cell; ComfyUI floors `width / 32`) and at
//!   least 64 (ComfyUI's own minimum). A size set upstream (`EmptyImage`, the
//!   LTX-2.3 primitives) must be a multiple of 8 (mp4/yuv420 needs even
//!   sizes, 8 keeps the halving clean), and what reaches the latent node must
//!   still be at least 64. The final video (latent size floored to 32, ×2
//!   when an `LTXVLatentUpsampler` is present) must fit in
//!   [`MAX_LONG_SIDE`]×[`MAX_SHORT_SIDE`] either way round.
//! - **Budget**: width × height × frames of the final video at most
//!   [`MAX_PIXEL_FRAMES`].
//! - **Frame rate**: the int rate of the sound (`LTXVEmptyLatentAudio
//!   .frame_rate`) and the float rates of the conditioning
//!   (`LTXVConditioning.frame_rate`) and the file (`CreateVideo.fps`) must be
//!   equal (otherwise lips and sound drift apart), each within
//!   [`MIN_FPS`]..=[`MAX_FPS`]. A mismatch is reported at each literal that
//!   differs from the sound's rate.
//! - **Steps**: `LTXVScheduler.steps` and the steps of a `ManualSigmas`
//!   list (values − 1) within 1..=[`MAX_STEPS`]; the list must parse.
//! - **Models**: every loader file name must be one the GPU image ships
//!   (see `models`), of the checkpoint's family; a checkpoint loader and an
//!   `LTXAVTextEncoderLoader` must exist, and a latent upscale model loader
//!   when the graph upsamples.
//! - **Output**: a `SaveVideo` node, or nothing is kept.
//! - **Links**: a link to a node that is not in the graph.

use comfyume_plugin_sdk::validate::graph::{Graph, Num};
use comfyume_plugin_sdk::validate::report::{Problems, Value, fmt, short, suggest};
use comfyume_plugin_sdk::validate::sampling;
use comfyume_plugin_sdk::validator::{Node, ProblemType};

use crate::models::{self, Family, Kind};

/// Longest clip: 257 = 8·32 + 1 frames, about 10 s at 25 fps, the longest
/// single-pass clip LTX-2's reference pipelines generate; longer clips would
/// hold a shared workshop H200 for many minutes (see `cost`).
pub const MAX_FRAMES: f64 = 257.0;
/// ComfyUI's own minimum for `length` / `frames_number`.
pub const MIN_FRAMES: f64 = 1.0;
/// The video VAE's spatial compression: one latent cell is 32×32 pixels.
pub const LATENT_STEP: i64 = 32;
/// ComfyUI's minimum width/height for `EmptyLTXVLatentVideo`.
pub const MIN_LATENT_SIDE: f64 = 64.0;
/// Sizes set upstream of the latent node must be multiples of this.
pub const OUTPUT_STEP: i64 = 8;
/// Largest final video: 1080p (1088 = 1080 rounded up to a latent cell),
/// landscape or portrait. LTX-2 is trained up to 1080p; beyond it quality
/// drops and memory grows.
pub const MAX_LONG_SIDE: f64 = 1920.0;
pub const MAX_SHORT_SIDE: f64 = 1088.0;
/// Pixel-frames budget for one job: 1920×1088×121 (5 s of 1080p). Lets 720p
/// run the full 257 frames but not 1080p, keeping one job under ~8 minutes
/// of H200 time by the cost formula.
pub const MAX_PIXEL_FRAMES: f64 = 1920.0 * 1088.0 * 121.0;
/// Frame-rate range: LTX-2 is trained at 24–50 fps; 60 leaves room.
pub const MIN_FPS: f64 = 1.0;
pub const MAX_FPS: f64 = 60.0;
/// Most sampling steps per pass. The dev templates use 20, the distilled
/// ones 8 + 3; beyond 50 nothing visibly improves and the GPU is held.
pub const MAX_STEPS: f64 = 50.0;
/// Longest `ManualSigmas` text we parse.
const MAX_SIGMAS_LEN: usize = 4096;

/// Sizes assumed when they depend on an uploaded image: the templates' 720p.
pub const DEFAULT_WIDTH: f64 = 1280.0;
pub const DEFAULT_HEIGHT: f64 = 720.0;
/// Frames assumed when the count cannot be computed: the templates' 121.
pub const DEFAULT_FRAMES: f64 = 121.0;

/// The node that makes a graph an LTX-2 workflow, if any: the video latent,
/// else the conditioning, else the text encoder loader, else any `LTXV*`.
pub fn anchor<'a>(g: &Graph<'a>) -> Option<&'a Node> {
    [
        "EmptyLTXVLatentVideo",
        "LTXVConditioning",
        "LTXAVTextEncoderLoader",
    ]
    .into_iter()
    .find_map(|class| g.of_class(class).next())
    .or_else(|| g.nodes().find(|n| n.class_type.starts_with("LTXV")))
}

/// What the rules learned about the job, for the cost estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub frames: f64,
    pub width: f64,
    pub height: f64,
    pub steps: f64,
}

/// Runs every rule; problems are empty when the graph may run.
pub fn check(g: &Graph, anchor: &Node) -> (Problems, Shape) {
    let mut p = Problems::default();
    p.dangling_links(g);
    let frames = check_frames(g, &mut p);
    let (width, height) = check_sizes(g, &mut p);
    check_frame_rates(g, &mut p);
    let steps = check_steps(g, &mut p);
    check_models(g, &mut p, anchor);
    if !g.has_class("SaveVideo") {
        p.on_node(
            &anchor.id,
            ProblemType::CustomValidationFailed,
            "nothing saves the video: add a Save Video node at the end".into(),
        );
    }

    let frames_out = frames
        .as_ref()
        .map_or(DEFAULT_FRAMES, |n| effective_frames(n.value));
    if let (Some(frames), Some(w), Some(h)) = (&frames, &width, &height) {
        let within_caps = w.out.max(h.out) <= MAX_LONG_SIDE && w.out.min(h.out) <= MAX_SHORT_SIDE;
        if within_caps && w.out * h.out * frames_out > MAX_PIXEL_FRAMES {
            p.at(
                &frames.site,
                ProblemType::CustomValidationFailed,
                format!(
                    "{}x{} for {} frames is more than one job may render \
                     (about 1920x1088 for 121 frames, or 1280x720 for 257): \
                     make the clip shorter or the picture smaller",
                    fmt(w.out),
                    fmt(h.out),
                    fmt(frames_out)
                ),
            );
        }
    }
    let shape = Shape {
        frames: frames_out,
        width: width.map_or(DEFAULT_WIDTH, |s| s.out),
        height: height.map_or(DEFAULT_HEIGHT, |s| s.out),
        steps,
    };
    (p, shape)
}

/// Frames a video latent of `length` really produces: ComfyUI floors
/// `(length - 1) / 8` latent frames, each 8 video frames, plus the first.
pub fn effective_frames(length: f64) -> f64 {
    if length < 1.0 {
        return 0.0;
    }
    ((length - 1.0) / 8.0).floor() * 8.0 + 1.0
}

/// Checks the frame counts; returns the video's (else the sound's).
fn check_frames(g: &Graph, p: &mut Problems) -> Option<Num> {
    let mut video: Option<Num> = None;
    for node in g.of_class("EmptyLTXVLatentVideo") {
        if let Value::Known(n) = p.number(g.resolve(node, "length"), "frame count")
            && frame_rules(&n, p)
            && video.is_none()
        {
            video = Some(n);
        }
    }
    let mut audio: Option<Num> = None;
    for node in g.of_class("LTXVEmptyLatentAudio") {
        if let Value::Known(n) = p.number(g.resolve(node, "frames_number"), "frame count")
            && frame_rules(&n, p)
        {
            if let Some(v) = &video
                && n.site != v.site
                && n.value != v.value
            {
                p.at(
                    &n.site,
                    ProblemType::CustomValidationFailed,
                    format!(
                        "the sound is set to {} frames but the video to {} \
                         (node {}): connect both to the same frame count",
                        fmt(n.value),
                        fmt(v.value),
                        v.site.node
                    ),
                );
            }
            audio.get_or_insert(n);
        }
    }
    video.or(audio)
}

/// Reports what is wrong with one frame count; true if usable.
fn frame_rules(n: &Num, p: &mut Problems) -> bool {
    let v = n.value;
    let computed = if n.direct {
        String::new()
    } else {
        format!(", computed from the {} set here,", fmt(n.literal))
    };
    if v.fract() != 0.0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!("frame count {}{computed} must be a whole number", fmt(v)),
        );
        false
    } else if v < MIN_FRAMES {
        p.at(
            &n.site,
            ProblemType::ValueSmallerThanMin,
            format!("frame count {}{computed} is below the minimum of 1", fmt(v)),
        );
        false
    } else if v > MAX_FRAMES {
        p.at(
            &n.site,
            ProblemType::ValueBiggerThanMax,
            format!(
                "frame count {}{computed} is more than the limit of 257 frames \
                 (about 10 s at 25 fps)",
                fmt(v)
            ),
        );
        false
    } else if n.direct && (v as i64 - 1) % 8 != 0 {
        let below = effective_frames(v);
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!(
                "frame count {} is not 8n+1 (try {} or {})",
                fmt(v),
                fmt(below),
                fmt(below + 8.0)
            ),
        );
        false
    } else {
        true
    }
}

/// One side of the video: where it is set and the final output size.
struct Side {
    num: Num,
    /// Pixels of the final video along this side.
    out: f64,
}

/// Checks the first-pass latent sizes; returns the first latent's final
/// output width and height.
fn check_sizes(g: &Graph, p: &mut Problems) -> (Option<Side>, Option<Side>) {
    let factor = if g.has_class("LTXVLatentUpsampler") {
        2.0
    } else {
        1.0
    };
    let mut first = None;
    for node in g.of_class("EmptyLTXVLatentVideo") {
        let w = side_rules(g, p, node, "width", factor);
        let h = side_rules(g, p, node, "height", factor);
        let landscape = match (&w, &h) {
            (Some(w), Some(h)) => w.out >= h.out,
            _ => true,
        };
        let caps = match (&w, &h) {
            (Some(_), Some(_)) if landscape => (MAX_LONG_SIDE, MAX_SHORT_SIDE),
            (Some(_), Some(_)) => (MAX_SHORT_SIDE, MAX_LONG_SIDE),
            _ => (MAX_LONG_SIDE, MAX_LONG_SIDE),
        };
        for (side, axis, cap) in [(&w, "width", caps.0), (&h, "height", caps.1)] {
            if let Some(s) = side
                && s.out > cap
            {
                let made = if s.out == s.num.literal {
                    String::new()
                } else {
                    format!(" makes the video {} px {}, which", fmt(s.out), extent(axis))
                };
                p.at(
                    &s.num.site,
                    ProblemType::ValueBiggerThanMax,
                    format!(
                        "{axis} {}{made} is more than the limit of {} \
                         (videos may be up to 1920x1088, or 1088x1920)",
                        fmt(s.num.literal),
                        fmt(cap)
                    ),
                );
            }
        }
        if first.is_none() {
            first = Some((w, h));
        }
    }
    first.unwrap_or((None, None))
}

fn extent(axis: &str) -> &'static str {
    if axis == "width" { "wide" } else { "high" }
}

/// Reports what is wrong with one side of a video latent; the side if usable.
fn side_rules(g: &Graph, p: &mut Problems, node: &Node, axis: &str, factor: f64) -> Option<Side> {
    let Value::Known(n) = p.number(g.resolve(node, axis), axis) else {
        return None;
    };
    let (v, lit) = (n.value, n.literal);
    if v.fract() != 0.0 || lit.fract() != 0.0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!("{axis} {} must be a whole number", fmt(lit)),
        );
        return None;
    }
    if v < MIN_LATENT_SIDE {
        let message = if n.direct {
            format!("{axis} {} is below the minimum of 64", fmt(v))
        } else {
            format!(
                "{axis} {} makes the first pass {} px {}, below the minimum of 64",
                fmt(lit),
                fmt(v),
                extent(axis)
            )
        };
        p.at(&n.site, ProblemType::ValueSmallerThanMin, message);
        return None;
    }
    let out = (v / LATENT_STEP as f64).floor() * LATENT_STEP as f64 * factor;
    if out > MAX_LONG_SIDE {
        // Too big either way round: the cap rule in `check_sizes` says so.
        return Some(Side { num: n, out });
    }
    let largest = (MAX_LONG_SIDE / factor) as i64;
    if n.direct && (v as i64) % LATENT_STEP != 0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!(
                "{axis} {} is not a multiple of 32{}",
                fmt(v),
                suggest(v, LATENT_STEP, 64, largest)
            ),
        );
        return None;
    }
    if !n.direct && (lit as i64) % OUTPUT_STEP != 0 {
        p.at(
            &n.site,
            ProblemType::ValueNotValid,
            format!(
                "{axis} {} is not a multiple of 8{}",
                fmt(lit),
                suggest(lit, OUTPUT_STEP, 128, MAX_LONG_SIDE as i64)
            ),
        );
        return None;
    }
    Some(Side { num: n, out })
}

/// Checks that every frame rate is sane and equal to the sound's.
fn check_frame_rates(g: &Graph, p: &mut Problems) {
    let sources = [
        ("LTXVEmptyLatentAudio", "frame_rate"),
        ("LTXVConditioning", "frame_rate"),
        ("CreateVideo", "fps"),
    ];
    let mut reference: Option<Num> = None;
    for (class, name) in sources {
        for node in g.of_class(class) {
            let Value::Known(n) = p.number(g.resolve(node, name), "frame rate") else {
                continue;
            };
            if n.value < MIN_FPS {
                p.at(
                    &n.site,
                    ProblemType::ValueSmallerThanMin,
                    format!("frame rate {} is below the minimum of 1", fmt(n.value)),
                );
                continue;
            }
            if n.value > MAX_FPS {
                p.at(
                    &n.site,
                    ProblemType::ValueBiggerThanMax,
                    format!("frame rate {} is more than the limit of 60", fmt(n.value)),
                );
                continue;
            }
            match &reference {
                None => reference = Some(n),
                Some(r) if r.site != n.site && (r.value - n.value).abs() > 1e-6 => p.at(
                    &n.site,
                    ProblemType::CustomValidationFailed,
                    format!(
                        "frame rate {} does not match the frame rate {} set at node {} \
                         ({}): use the same frame rate everywhere",
                        fmt(n.value),
                        fmt(r.value),
                        r.site.node,
                        r.site.input
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Checks the schedulers; returns the total steps of all sampler passes.
fn check_steps(g: &Graph, p: &mut Problems) -> f64 {
    for node in g.of_class("LTXVScheduler") {
        if let Value::Known(n) = p.number(g.resolve(node, "steps"), "steps") {
            steps_rule(&n, n.value, "steps", p);
        }
    }
    for node in g.of_class("ManualSigmas") {
        if let Some((text, site)) = p.text(g.resolve(node, "sigmas"), "sigmas") {
            match parse_sigmas(&text) {
                Some(list) if list.len() >= 2 => {
                    let n = Num {
                        value: (list.len() - 1) as f64,
                        site,
                        literal: 0.0,
                        direct: true,
                    };
                    steps_rule(&n, n.value, "the sigma list's step count", p);
                }
                _ => p.at(
                    &site,
                    ProblemType::ValueNotValid,
                    "sigmas must be at least two numbers separated by commas, \
                     e.g. 0.909375, 0.725, 0.421875, 0.0"
                        .into(),
                ),
            }
        }
    }
    // Every sampler pass (see the SDK's `sampling`); a `ManualSigmas` list
    // counts its parsed values − 1, an unparsable one 0.
    sampling::total_steps(g, |sigmas| {
        parse_sigmas(sigmas).map_or(0.0, |list| list.len().saturating_sub(1) as f64)
    })
}

fn steps_rule(n: &Num, steps: f64, what: &str, p: &mut Problems) {
    if steps.fract() != 0.0 || steps < 1.0 {
        p.at(
            &n.site,
            ProblemType::ValueSmallerThanMin,
            format!("{what} {} must be a whole number of at least 1", fmt(steps)),
        );
    } else if steps > MAX_STEPS {
        p.at(
            &n.site,
            ProblemType::ValueBiggerThanMax,
            format!("{what} {} is more than the limit of 50", fmt(steps)),
        );
    }
}

/// The numbers of a `ManualSigmas` list, e.g. "1., 0.99375, 0.0".
pub fn parse_sigmas(text: &str) -> Option<Vec<f64>> {
    if text.len() > MAX_SIGMAS_LEN {
        return None;
    }
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect()
}

/// Checks the loaders: present, known files, one family.
fn check_models(g: &Graph, p: &mut Problems, anchor: &Node) {
    let mut family: Option<(Family, String, String)> = None;
    for (class, name, kind) in models::SLOTS {
        for node in g.of_class(class) {
            let what = kind.label();
            let Some((file, site)) = p.text(g.resolve(node, name), what) else {
                continue;
            };
            match models::lookup(*kind, &file) {
                None => p.at(
                    &site,
                    ProblemType::ValueNotInList,
                    format!(
                        "\"{}\" is not an LTX-2 {what} on this server; use one of: {}",
                        short(&file),
                        models::list(*kind)
                    ),
                ),
                Some(None) => {}
                Some(Some(f)) => match &family {
                    None => family = Some((f, file, node.id.clone())),
                    Some((expected, ckpt, at)) if *expected != f => p.at(
                        &site,
                        ProblemType::CustomValidationFailed,
                        format!(
                            "{file} is an {} file but the checkpoint {ckpt} (node {at}) \
                             is {}: use files of one model",
                            f.label(),
                            expected.label()
                        ),
                    ),
                    Some(_) => {}
                },
            }
        }
    }
    let mut require = |class: &str, message: String| {
        if !g.has_class(class) {
            p.on_node(&anchor.id, ProblemType::RequiredInputMissing, message);
        }
    };
    require(
        "CheckpointLoaderSimple",
        format!(
            "no LTX-2 checkpoint is loaded: add a Load Checkpoint (CheckpointLoaderSimple) \
             node with one of: {}",
            models::list(Kind::Checkpoint)
        ),
    );
    require(
        "LTXAVTextEncoderLoader",
        format!(
            "no LTX-2 text encoder is loaded: add an LTXAVTextEncoderLoader node with {}",
            models::list(Kind::TextEncoder)
        ),
    );
    if g.has_class("LTXVLatentUpsampler") {
        require(
            "LatentUpscaleModelLoader",
            format!(
                "the second pass needs an upscale model: add a LatentUpscaleModelLoader \
                 node with one of: {}",
                models::list(Kind::Upscaler)
            ),
        );
    }
}
