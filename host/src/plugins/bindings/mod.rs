//! Host-side bindings for each released version of the plugin contract.
//!
//! One module per WIT package version (as Zed does for its extension API):
//! a released version is never edited, so components built against it keep
//! loading. The newest version's types double as the host's own plugin types
//! (see [`crate::plugins::api`]); older versions, once there are any, convert
//! into them at the edge.

pub mod v0_1_0;

/// The package version string this host speaks natively.
pub const LATEST: &str = "0.1.0";
