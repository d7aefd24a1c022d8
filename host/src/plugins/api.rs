//! The plugin-facing data types, as the rest of the host uses them.
//!
//! These are the generated types of the newest contract version, re-exported
//! under stable names so the queue and dispatcher build a snapshot once and
//! hand it to Wasm without converting it again.

pub use super::bindings::v0_1_0::log::Level as LogLevel;
pub use super::bindings::v0_1_0::scheduler::exports::comfyume::plugin::scheduling::{
    PendingJob, RunningJob, Snapshot, UserUsage,
};
pub use super::bindings::v0_1_0::selector::exports::comfyume::plugin::selection::{
    Backend, JobInfo,
};
pub use super::bindings::v0_1_0::types::{
    CostEstimate, PluginInfo, PluginKind, PriorityClass, Tier,
};
pub use super::bindings::v0_1_0::validator::exports::comfyume::plugin::validation::{
    Accepted, InputValue, Link, Node, NodeInput, Problem, ProblemType, Verdict,
};
