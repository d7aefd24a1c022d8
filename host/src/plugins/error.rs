//! Why a plugin could not be loaded or could not decide.

use super::api::PluginKind;

/// A plugin failure, typed so the registry can count it and the operator can
/// read it. Every variant's message is one line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a WebAssembly component (a core module, or garbage).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but it exports none of the known worlds.
    #[error("implements no known plugin world (expected one of: {expected}); it exports: {found}")]
    UnknownWorld {
        /// The export names the host looks for.
        expected: String,
        /// What the component exports.
        found: String,
    },
    /// The component asks for imports a plugin may not have.
    #[error("cannot be linked: {0}")]
    Link(String),
    /// `describe()` names a different kind than the world it implements.
    #[error("describe() says kind {declared:?} but the component implements the {world:?} world")]
    KindMismatch {
        /// What `describe()` returned.
        declared: PluginKind,
        /// The world found by inspecting the exports.
        world: PluginKind,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("exceeded its {deadline_ms} ms deadline and was stopped")]
    Deadline {
        /// The configured deadline.
        deadline_ms: u64,
    },
    /// The host was too busy to finish the call: the wall-clock backstop
    /// passed while the plugin had used less than its own-time budget. Not
    /// the plugin's failure.
    #[error(
        "was stopped after {wall_ms} ms because the host was busy (it had used {own_ms} ms of its {deadline_ms} ms)"
    )]
    HostBusy {
        /// The plugin's own time (CPU plus waits) when stopped.
        own_ms: u64,
        /// Wall time when stopped.
        wall_ms: u64,
        /// The configured deadline.
        deadline_ms: u64,
    },
    /// No instance was free in the caller's share of the pool; the plugin
    /// was not run. Not the plugin's failure.
    #[error("was not asked: {0}")]
    Busy(String),
    /// The guest tried to grow its memory past the cap.
    #[error("exceeded its memory cap of {cap_mib} MiB (asked for {asked_mib} MiB)")]
    MemoryCap {
        /// The configured cap.
        cap_mib: usize,
        /// What the guest asked for.
        asked_mib: usize,
    },
    /// The guest trapped (a panic, an `unreachable`, a bad memory access).
    #[error("trapped: {0}")]
    Trap(String),
    /// The guest answered, but the answer breaks the contract.
    #[error("returned an invalid answer: {0}")]
    BadAnswer(String),
    /// Anything else wasmtime reported (compilation, instantiation).
    #[error("{0}")]
    Runtime(String),
}

impl PluginError {
    /// A short stable label for metrics and counters.
    pub fn cause(&self) -> &'static str {
        match self {
            PluginError::NotAComponent(_) => "not-a-component",
            PluginError::UnknownWorld { .. } => "unknown-world",
            PluginError::Link(_) => "link",
            PluginError::KindMismatch { .. } => "kind-mismatch",
            PluginError::Deadline { .. } => "deadline",
            PluginError::HostBusy { .. } => "host-busy",
            PluginError::Busy(_) => "busy",
            PluginError::MemoryCap { .. } => "memory-cap",
            PluginError::Trap(_) => "trap",
            PluginError::BadAnswer(_) => "bad-answer",
            PluginError::Runtime(_) => "runtime",
        }
    }

    /// Whether the plugin caused this failure, so that it counts towards
    /// disabling it. A busy host or a full instance share is the host's
    /// business: the default decides that call and nothing is counted.
    pub fn is_plugins_fault(&self) -> bool {
        !matches!(self, PluginError::HostBusy { .. } | PluginError::Busy(_))
    }
}
