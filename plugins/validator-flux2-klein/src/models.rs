//! The FLUX.2 [Klein] model files the GPU image ships.
//!
//! Taken from the workshop templates (`workflows/api/image_flux2_klein_*.api.json`,
//! PyPI `comfyui-workflow-templates-json` 0.1.123), plus
//! `flux-2-klein-4b.safetensors` from the bypassed "4B Distilled" subgraph of
//! `image_flux2_klein_text_to_image`. A name outside these lists would fail on
//! the GPU worker with ComfyUI's own `value_not_in_list` after the job waited
//! in the queue, so we refuse it up front. Keep these lists in sync with the
//! GPU image and `workflows/`.
//!
//! Each diffusion model and text encoder is tagged with its [`Size`]: the
//! 4B models are conditioned on Qwen3-4B embeddings and the 9B models on
//! Qwen3-8B ones (as every template pairs them); a mismatched pair fails at
//! the first sampling step with a shape error.

/// Model size class: which text encoder a diffusion model needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    B4,
    B9,
}

impl Size {
    pub fn label(self) -> &'static str {
        match self {
            Size::B4 => "4B",
            Size::B9 => "9B",
        }
    }
}

/// `diffusion_models/` (`UNETLoader.unet_name`).
pub const DIFFUSION_MODELS: &[(&str, Size)] = &[
    ("flux-2-klein-base-4b.safetensors", Size::B4),
    ("flux-2-klein-4b.safetensors", Size::B4),
    ("flux-2-klein-base-4b-fp8.safetensors", Size::B4),
    ("flux-2-klein-4b-fp8.safetensors", Size::B4),
    ("flux-2-klein-base-9b-fp8.safetensors", Size::B9),
    ("flux-2-klein-9b-fp8.safetensors", Size::B9),
    ("flux-2-klein-9b-kv-fp8.safetensors", Size::B9),
];

/// `text_encoders/` (`CLIPLoader.clip_name` with `type: flux2`).
pub const TEXT_ENCODERS: &[(&str, Size)] = &[
    ("qwen_3_4b.safetensors", Size::B4),
    ("qwen_3_8b_fp8mixed.safetensors", Size::B9),
];

/// `vae/` (`VAELoader.vae_name`).
pub const VAES: &[&str] = &[
    "flux2-vae.safetensors",
    "full_encoder_small_decoder.safetensors",
];

/// The size of a known file in `list`.
pub fn size_of(list: &[(&str, Size)], name: &str) -> Option<Size> {
    list.iter().find(|(file, _)| *file == name).map(|(_, s)| *s)
}

/// "a, b, c" for messages.
pub fn names(list: &[(&str, Size)]) -> String {
    list.iter()
        .map(|(file, _)| *file)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text encoder for models of `size`.
pub fn encoder_for(size: Size) -> &'static str {
    TEXT_ENCODERS
        .iter()
        .find(|(_, s)| *s == size)
        .map_or("", |(file, _)| *file)
}
