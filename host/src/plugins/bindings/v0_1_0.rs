//! Bindings for `comfyume:plugin@0.1.0` (the `wit/` folder).
//!
//! Each world gets its own `bindgen!`; the shared `types` and `log`
//! interfaces are generated once (in [`scheduler`]) and reused by the other
//! two through `with`, so a `PluginInfo` is one Rust type for all three kinds
//! and the host implements `log` once.

#![allow(missing_docs)] // generated code

/// The `scheduler` world; also home of the shared `types` and `log` interfaces.
pub mod scheduler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scheduler",
    });
}

/// The `validator` world.
pub mod validator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "validator",
        with: {
            "comfyume:plugin/types": super::scheduler::comfyume::plugin::types,
            "comfyume:plugin/log": super::scheduler::comfyume::plugin::log,
        },
    });
}

/// The `selector` world.
pub mod selector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "selector",
        with: {
            "comfyume:plugin/types": super::scheduler::comfyume::plugin::types,
            "comfyume:plugin/log": super::scheduler::comfyume::plugin::log,
        },
    });
}

pub use scheduler::comfyume::plugin::{log, types};

/// Export interface names that identify each world in a component's type.
pub const SCHEDULER_EXPORT: &str = "comfyume:plugin/scheduling@0.1.0";
/// See [`SCHEDULER_EXPORT`].
pub const VALIDATOR_EXPORT: &str = "comfyume:plugin/validation@0.1.0";
/// See [`SCHEDULER_EXPORT`].
pub const SELECTOR_EXPORT: &str = "comfyume:plugin/selection@0.1.0";
