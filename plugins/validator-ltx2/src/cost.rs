//! The cost estimate the scheduler and GPU selector see.
//!
//! A rough, documented formula (nothing here has been measured on a GPU):
//!
//! ```text
//! gpu_seconds = OVERHEAD_S + SECONDS_PER_MEGAPIXEL_FRAME_STEP
//!                            × (width × height × frames / 1e6) × steps
//! ```
//!
//! `width × height` is the final video size and `steps` the sum over both
//! passes. This overstates the first pass (it runs at half size, a quarter
//! of the pixels) and ignores attention's super-linear growth with length;
//! the constant absorbs both for template-sized jobs. It is chosen so the
//! 1280x720 (really 1280x704, see `rules`), 121-frame `video_ltx2_t2v`
//! template with 20 + 3 steps costs about 3.3 minutes on an H200, and the
//! distilled 8 + 3 step variants about 1.8 minutes. `OVERHEAD_S` covers
//! loading the 19–22B checkpoint and Gemma, text encoding, the tiled VAE
//! decode and the mp4 encode.

use comfyume_plugin_sdk::types::CostEstimate;
use comfyume_plugin_sdk::validate::cost_estimate;

use crate::rules::Shape;

/// Fixed cost per job, seconds.
pub const OVERHEAD_S: f64 = 20.0;
/// Seconds per (megapixel × frame × step).
pub const SECONDS_PER_MEGAPIXEL_FRAME_STEP: f64 = 0.07;

/// The estimate for a job of this shape.
pub fn estimate(shape: &Shape) -> CostEstimate {
    let work = shape.width * shape.height * shape.frames / 1e6 * shape.steps;
    cost_estimate(
        shape.frames,
        shape.width,
        shape.height,
        shape.steps,
        OVERHEAD_S + SECONDS_PER_MEGAPIXEL_FRAME_STEP * work,
    )
}
