//! The Rust SDK for ComfyUMe plugins.
//!
//! A plugin is a `wasm32-wasip2` component built against the WIT package
//! `comfyume:plugin@0.1.0` (`wit/` at the workspace root). This crate holds
//! the bindings of its three worlds, generated once, and the helpers the
//! built-in plugins share, so a plugin crate holds only its own policy:
//!
//! | world | bindings | export macro | helpers |
//! |---|---|---|---|
//! | `scheduler` | [`scheduler`] | [`export_scheduler!`] | [`schedule`] |
//! | `validator` | [`validator`] | [`export_validator!`] | [`validate`] |
//! | `selector` | [`selector`] | [`export_selector!`] | [`select`] |
//!
//! The interfaces every world shares (`types`, `log`) are generated once as
//! well, in [`types`] and [`log`], so a `PriorityClass` or a `CostEstimate`
//! is the same Rust type in every world.
//!
//! A plugin implements the world's traits and exports its type, guarding
//! the export so the crate also builds natively (tests, benchmarks):
//!
//! ```
//! use comfyume_plugin_sdk::scheduler::{Guest, PluginInfo, Snapshot, scheduling};
//! use comfyume_plugin_sdk::{schedule, types::PluginKind};
//!
//! /// Oldest pending job first, skipping users at their cap.
//! pub struct Oldest;
//!
//! impl scheduling::Guest for Oldest {
//!     fn pick_next(snapshot: Snapshot) -> Option<u32> {
//!         let room = |user| !schedule::at_cap(&snapshot, user);
//!         let job = snapshot
//!             .pending
//!             .iter()
//!             .enumerate()
//!             .filter(|(_, job)| room(job.user))
//!             .min_by_key(|(_, job)| (job.submitted_at_ms, job.id))?;
//!         u32::try_from(job.0).ok()
//!     }
//! }
//!
//! impl Guest for Oldest {
//!     fn describe() -> PluginInfo {
//!         PluginInfo {
//!             name: "oldest".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             kind: PluginKind::Scheduler,
//!             summary: "Oldest pending job first.".into(),
//!         }
//!     }
//! }
//!
//! #[cfg(target_arch = "wasm32")]
//! comfyume_plugin_sdk::export_scheduler!(Oldest);
//! ```
//!
//! The export macros take the type alone: each one knows where its world's
//! bindings live (`comfyume_plugin_sdk::scheduler`, …), so the plugin crate
//! needs no `wit-bindgen` of its own. (The long form,
//! `export_scheduler!(Oldest with_types_in comfyume_plugin_sdk::scheduler)`,
//! is what the short one expands to.)
//!
//! With the `testing` feature (for `[dev-dependencies]`), the `testing`
//! module adds fixtures for native tests of plugins.

#![deny(missing_docs)]

pub mod schedule;
pub mod select;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub mod scheduler {
    //! Bindings of the `scheduler` world: export `scheduling.pick-next` and
    //! `describe`, import `log`.
    //!
    //! Implement [`scheduling::Guest`] and [`Guest`], then export the type
    //! with [`export_scheduler!`](crate::export_scheduler).
    #![allow(missing_docs)]

    wit_bindgen::generate!({
        path: "../../wit",
        world: "scheduler",
        pub_export_macro: true,
        export_macro_name: "export_scheduler",
        default_bindings_module: "comfyume_plugin_sdk::scheduler",
    });

    pub use self::exports::comfyume::plugin::scheduling::{
        self, PendingJob, RunningJob, Snapshot, UserUsage,
    };
}

pub mod validator {
    //! Bindings of the `validator` world: export `validation.validate` and
    //! `describe`, import `log`.
    //!
    //! Implement [`validation::Guest`] and [`Guest`], then export the type
    //! with [`export_validator!`](crate::export_validator).
    #![allow(missing_docs)]

    wit_bindgen::generate!({
        path: "../../wit",
        world: "validator",
        with: {
            "comfyume:plugin/types@0.1.0": crate::types,
            "comfyume:plugin/log@0.1.0": crate::log,
        },
        pub_export_macro: true,
        export_macro_name: "export_validator",
        default_bindings_module: "comfyume_plugin_sdk::validator",
    });

    pub use self::exports::comfyume::plugin::validation::{
        self, Accepted, InputValue, Link, Node, NodeInput, Problem, ProblemType, Verdict,
    };
}

pub mod selector {
    //! Bindings of the `selector` world: export `selection.select` and
    //! `describe`, import `log`.
    //!
    //! Implement [`selection::Guest`] and [`Guest`], then export the type
    //! with [`export_selector!`](crate::export_selector).
    #![allow(missing_docs)]

    wit_bindgen::generate!({
        path: "../../wit",
        world: "selector",
        with: {
            "comfyume:plugin/types@0.1.0": crate::types,
            "comfyume:plugin/log@0.1.0": crate::log,
        },
        pub_export_macro: true,
        export_macro_name: "export_selector",
        default_bindings_module: "comfyume_plugin_sdk::selector",
    });

    pub use self::exports::comfyume::plugin::selection::{self, Backend, JobInfo};
}

/// The `types` interface every world uses: plugin kinds and info, priority
/// classes, pool tiers, cost estimates. Generated once (with the scheduler
/// world) and shared by all three worlds.
pub use scheduler::comfyume::plugin::types;

/// The `log` import every world has: messages to the operator's logs,
/// capped per call by the host. Generated once and shared by all worlds.
pub use scheduler::comfyume::plugin::log;

pub use scheduler::export_scheduler;
pub use selector::export_selector;
pub use validator::export_validator;
