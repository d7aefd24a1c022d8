//! Speaking ComfyUI: the wire types of its HTTP API and websocket.

pub mod client;
pub mod events;
pub mod protocol;
