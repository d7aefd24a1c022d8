//! The LTX-2 / LTX-2.3 model files the GPU image ships.
//!
//! Taken from the workshop templates (`workflows/api/video_ltx2_*.api.json`,
//! PyPI `comfyui-workflow-templates-json` 0.1.123). A name outside these
//! lists would fail on the GPU worker with ComfyUI's own `value_not_in_list`
//! after the job waited in the queue, so we refuse it up front. Keep these
//! lists in sync with the GPU image and `workflows/`.
//!
//! Files are tagged with the model [`Family`] they belong to: a 19B LoRA on
//! the 22B LTX-2.3 checkpoint (or the text encoder / audio VAE read from a
//! different checkpoint) fails at load time with a shape mismatch. The
//! spatial upscalers work on latents, not weights; we do not claim they are
//! family-bound, so they carry no family.

/// Model generation: weights of one family do not fit the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// LTX-2, 19B parameters.
    Ltx2,
    /// LTX-2.3, 22B parameters.
    Ltx23,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Ltx2 => "LTX-2 (19B)",
            Family::Ltx23 => "LTX-2.3 (22B)",
        }
    }
}

/// What a loader input names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Checkpoint,
    TextEncoder,
    Upscaler,
    Lora,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Checkpoint => "checkpoint",
            Kind::TextEncoder => "text encoder",
            Kind::Upscaler => "latent upscale model",
            Kind::Lora => "LoRA",
        }
    }

    /// The known files of this kind, with their family when bound to one.
    pub fn files(self) -> &'static [(&'static str, Option<Family>)] {
        match self {
            Kind::Checkpoint => CHECKPOINTS,
            Kind::TextEncoder => TEXT_ENCODERS,
            Kind::Upscaler => UPSCALERS,
            Kind::Lora => LORAS,
        }
    }
}

/// `checkpoints/`: the diffusion model, video VAE and text projection in one.
pub const CHECKPOINTS: &[(&str, Option<Family>)] = &[
    ("ltx-2-19b-dev-fp8.safetensors", Some(Family::Ltx2)),
    ("ltx-2-19b-distilled.safetensors", Some(Family::Ltx2)),
    ("ltx-2.3-22b-dev-fp8.safetensors", Some(Family::Ltx23)),
];

/// `text_encoders/`: Gemma 3 12B, shared by both families.
pub const TEXT_ENCODERS: &[(&str, Option<Family>)] =
    &[("gemma_3_12B_it_fp4_mixed.safetensors", None)];

/// `latent_upscale_models/`: the ×2 spatial upscalers of the second pass.
pub const UPSCALERS: &[(&str, Option<Family>)] = &[
    ("ltx-2-spatial-upscaler-x2-1.0.safetensors", None),
    ("ltx-2.3-spatial-upscaler-x2-1.1.safetensors", None),
];

/// `loras/`: the distilled LoRAs (family-bound) and the Gemma LoRA.
pub const LORAS: &[(&str, Option<Family>)] = &[
    (
        "ltx-2-19b-distilled-lora-384.safetensors",
        Some(Family::Ltx2),
    ),
    (
        "ltx_2.3_22b_distilled_1.1_lora_dynamic_fro09_avg_rank_111_bf16.safetensors",
        Some(Family::Ltx23),
    ),
    (
        "gemma-3-12b-it-abliterated_lora_rank64_bf16.safetensors",
        None,
    ),
];

/// Every loader input that names a model file, and what it names.
pub const SLOTS: &[(&str, &str, Kind)] = &[
    ("CheckpointLoaderSimple", "ckpt_name", Kind::Checkpoint),
    ("LTXAVTextEncoderLoader", "text_encoder", Kind::TextEncoder),
    ("LTXAVTextEncoderLoader", "ckpt_name", Kind::Checkpoint),
    ("LTXVAudioVAELoader", "ckpt_name", Kind::Checkpoint),
    ("LatentUpscaleModelLoader", "model_name", Kind::Upscaler),
    ("LoraLoaderModelOnly", "lora_name", Kind::Lora),
    ("LoraLoader", "lora_name", Kind::Lora),
];

/// The known file `name` of `kind`: `Some(family)` if known.
pub fn lookup(kind: Kind, name: &str) -> Option<Option<Family>> {
    kind.files()
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, family)| *family)
}

/// "a, b, c" for messages.
pub fn list(kind: Kind) -> String {
    kind.files()
        .iter()
        .map(|(file, _)| *file)
        .collect::<Vec<_>>()
        .join(", ")
}
