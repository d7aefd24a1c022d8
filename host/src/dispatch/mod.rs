//! Dispatch to the GPUs.
//!
//! So far: the ComfyUI wire protocol ([`comfyui::protocol`]), shared by the
//! backend client, the `worker` sidecar and the test doubles. The client,
//! the backends and the dispatcher loop are the next parts of this module.

pub mod comfyui;
