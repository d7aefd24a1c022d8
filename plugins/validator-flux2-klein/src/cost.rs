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

use comfyume_plugin_sdk::types::CostEstimate;
use comfyume_plugin_sdk::validate::cost_estimate;

use crate::rules::Shape;

/// Fixed cost per job, seconds.
pub const OVERHEAD_S: f64 = 2.0;
/// Seconds per (megapixel × step).
pub const SECONDS_PER_MEGAPIXEL_STEP: f64 = 0.4;

/// The estimate for a job of this shape.
pub fn estimate(shape: &Shape) -> CostEstimate {
    let work = shape.width * shape.height * shape.images / 1e6 * shape.steps;
    cost_estimate(
        shape.images,
        shape.width,
        shape.height,
        shape.steps,
        OVERHEAD_S + SECONDS_PER_MEGAPIXEL_STEP * work,
    )
}
