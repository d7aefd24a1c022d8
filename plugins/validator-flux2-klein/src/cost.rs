//! The cost estimate the scheduler and GPU selector see.
//!
//! A rough, documented formula (nothing here has been measured on a GPU):
//!
//! ```text
//! gpu_seconds = OVERHEAD_S + SECONDS_PER_MEGAPIXEL_STEP
//!                            × (width × height × images / 1e6) × steps
//! ```
//!
//! `images` is the batch size (reported as `frames`: images produced) and
//! `steps` the sum over sampler passes. The constant is chosen so the
//! 1024x1024, 20-step `image_flux2_klein_text_to_image` template costs about
//! 10 s on an H200 and the 4-step distilled edits about 4 s. `OVERHEAD_S`
//! covers text encoding, VAE encode/decode and saving. It ignores that the
//! edit templates attend to 1–2 reference images as extra tokens, and that
//! the 9B models are roughly twice as slow as the 4B ones.

use crate::comfyume::plugin::types::CostEstimate;
use crate::rules::Shape;

/// Fixed cost per job, seconds.
pub const OVERHEAD_S: f64 = 2.0;
/// Seconds per (megapixel × step).
pub const SECONDS_PER_MEGAPIXEL_STEP: f64 = 0.4;

pub fn estimate(shape: &Shape) -> CostEstimate {
    let work = shape.width * shape.height * shape.images / 1e6 * shape.steps;
    CostEstimate {
        frames: to_u32(shape.images),
        width: to_u32(shape.width),
        height: to_u32(shape.height),
        steps: to_u32(shape.steps),
        gpu_seconds: OVERHEAD_S + SECONDS_PER_MEGAPIXEL_STEP * work,
    }
}

/// Saturating, NaN-safe conversion for the estimate's counters.
fn to_u32(value: f64) -> u32 {
    if value.is_finite() && value > 0.0 {
        value.min(u32::MAX as f64) as u32
    } else {
        0
    }
}
