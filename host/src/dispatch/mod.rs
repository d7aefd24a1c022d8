//! Dispatch to the GPUs.
//!
//! So far: the ComfyUI wire protocol ([`comfyui::protocol`]) and a client
//! for one ComfyUI server ([`comfyui::client`]), and the rehearsal backend
//! ([`rehearsal`]), a ComfyUI without a GPU used by rehearsals and tests.
//! The backends (direct ComfyUI, Verda), the `worker` sidecar and the
//! dispatcher loop are the next parts of this module.

pub mod backend;
pub mod comfyui;
pub mod comfyui_backend;
pub mod dispatcher;
pub mod pools;
pub mod rehearsal;
