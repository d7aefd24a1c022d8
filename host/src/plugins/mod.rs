//! Sandboxed WebAssembly plugins: the scheduler, the validators, the selector.
//!
//! Plugins are WIT components (`wit/`, package `comfyume:plugin`). The policy
//! this module enforces:
//!
//! - **Isolation.** A plugin gets WASI with nothing granted (no files,
//!   network, environment, arguments) and a `log` import. It sees only what
//!   the host passes to it.
//! - **Fresh instance per call.** Plugins are pure functions of their input,
//!   so each call instantiates from a pre-linked [`InstancePre`] into a new
//!   store from the pooling allocator (~microseconds). An instance that
//!   trapped is dropped with its store and never re-entered.
//! - **Limits.** Each call has a deadline of its own time (CPU plus waits,
//!   checked at every epoch tick and bounding every `poll`; default 250 ms,
//!   with a wall-clock backstop that does not count against the plugin, see
//!   [`budget`]) and a memory cap (default 64 MiB), both per plugin
//!   ([`CallLimits`], chosen by plugin name or slot from a [`LimitsTable`]
//!   so interpreted guests get more than Rust ones). Engine-wide pool sizes
//!   are in [`RuntimeConfig`].
//! - **Failure handling.** A trap, a deadline, the memory cap or an answer
//!   that breaks the contract is counted against the plugin; the slot's
//!   built-in default decides that call ([`fallback`]). A busy host or a
//!   full instance share ([`lanes`]) is not counted. After
//!   `max_failures` within the window the plugin is disabled and the reason
//!   recorded ([`slot`]). Validators fail closed.
//! - **Hot swap.** Activation and rollback are atomic pointer swaps; calls in
//!   flight finish on the version they started with ([`Registry`]).
//! - **Shadow runs.** A candidate scheduler can see every live decision
//!   beside the active one and have its choice compared, deciding nothing
//!   ([`shadow`]).
//! - **Compile cache.** Compiled components are cached on disk by content
//!   hash and engine compatibility ([`cache`]).
//!
//! [`InstancePre`]: wasmtime::component::InstancePre

pub mod api;
pub mod bindings;
pub mod budget;
pub mod builtin;
pub mod cache;
pub mod check;
mod component;
mod engine;
mod error;
pub mod fallback;
pub mod graph;
pub mod lanes;
mod registry;
mod sandbox;
mod setup;
pub mod shadow;
pub mod slot;

pub use component::{CallLimits, LimitsTable, LoadedPlugin};
pub use engine::{PluginEngine, RuntimeConfig, TICK};
pub use error::PluginError;
pub use registry::{
    DecidedBy, Decision, DisabledValidator, Registry, RegistryError, StoredVersion, Unclaimed,
    Validation, ValidatorPolicy,
};
pub use sandbox::PluginState;
pub use setup::registry_from_config;
