//! A loaded plugin: a compiled, type-checked component ready to instantiate.
//!
//! Loading compiles (or fetches from the cache), finds which world the
//! component implements from its export names, type-checks it against that
//! world, and calls `describe()` once. Every later call runs in a fresh
//! [`Store`] with the plugin's deadline and memory cap; the store is dropped
//! after the call, so an instance that trapped is never entered again.
//!
//! A call first takes an instance of its caller's [`Lane`] and of the
//! engine's pool (or reports [`PluginError::Busy`] without running); its
//! store checks the call's [`CallBudget`](super::budget::CallBudget) at every
//! epoch tick and stops it with the [`Overrun`] that ended it.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::api::{Backend, JobInfo, Node, PluginInfo, PluginKind, Snapshot, Verdict};
use super::bindings::v0_1_0::{
    SCHEDULER_EXPORT, SELECTOR_EXPORT, VALIDATOR_EXPORT, scheduler::SchedulerPre,
    selector::SelectorPre, validator::ValidatorPre,
};
use super::budget::Overrun;
use super::engine::PluginEngine;
use super::error::PluginError;
use super::lanes::Lane;
use super::sandbox::{LogQuota, PluginState};

/// Per-plugin call limits.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// The call's own-time budget (instantiation included), in ms: its CPU
    /// time plus the time it waits in `poll`. The wall clock stops it at a
    /// multiple of this ([`super::budget`]) without counting a failure.
    pub deadline_ms: u64,
    /// Linear-memory cap for one call, in MiB.
    pub memory_mib: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        // Generous for a Rust plugin (µs per call); issue-sized for the
        // interpreted guests, which are configured per plugin.
        CallLimits {
            deadline_ms: 250,
            memory_mib: 64,
        }
    }
}

/// Per-plugin limits chosen by name or slot, over a default: the
/// `[plugins.limits.<name or slot>]` tables of the config.
///
/// A Rust plugin decides in microseconds within the default limits; a Python
/// or JavaScript component carries its interpreter (12–18 MB of code, tens of
/// MiB of linear memory once instantiated) and needs a larger cap and a
/// longer deadline. An entry keyed by the plugin's `describe()` name wins over
/// one keyed by its slot (`scheduler`, `validator`, `selector`), which wins
/// over the default; each entry may set either limit alone.
#[derive(Debug, Clone, Default)]
pub struct LimitsTable {
    default: CallLimits,
    entries: Vec<(String, Option<u64>, Option<usize>)>,
}

impl LimitsTable {
    /// Every plugin gets `default`.
    pub fn uniform(default: CallLimits) -> Self {
        LimitsTable {
            default,
            entries: Vec::new(),
        }
    }

    /// Adds (or replaces) the entry for a plugin name or slot.
    pub fn set(&mut self, key: &str, deadline_ms: Option<u64>, memory_mib: Option<usize>) {
        self.entries.retain(|(k, _, _)| k != key);
        self.entries
            .push((key.to_string(), deadline_ms, memory_mib));
    }

    /// The limits of the plugin named `name` in slot `kind`.
    pub fn for_plugin(&self, name: &str, kind: PluginKind) -> CallLimits {
        let mut limits = self.default;
        for key in [super::check::kind_name(kind), name] {
            if let Some((_, deadline, memory)) = self.entries.iter().find(|(k, _, _)| k == key) {
                limits.deadline_ms = deadline.unwrap_or(limits.deadline_ms);
                limits.memory_mib = memory.unwrap_or(limits.memory_mib);
            }
        }
        limits
    }

    /// The widest limits of any entry: what `describe()` runs under while a
    /// plugin is loaded, before its name (and so its entry) is known.
    pub fn widest(&self) -> CallLimits {
        self.entries
            .iter()
            .fold(self.default, |acc, (_, deadline, memory)| CallLimits {
                deadline_ms: acc.deadline_ms.max(deadline.unwrap_or(0)),
                memory_mib: acc.memory_mib.max(memory.unwrap_or(0)),
            })
    }
}

/// The instantiate-ready form of each world.
enum WorldPre {
    Scheduler(SchedulerPre<PluginState>),
    Validator(ValidatorPre<PluginState>),
    Selector(SelectorPre<PluginState>),
}

/// A plugin ready to be called. Cheap to share behind an `Arc`.
pub struct LoadedPlugin {
    engine: Arc<PluginEngine>,
    pre: WorldPre,
    info: PluginInfo,
    hash: String,
    label: Arc<str>,
    limits: CallLimits,
    size: usize,
    quota: Arc<LogQuota>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("label", &self.label)
            .field("hash", &self.hash)
            .finish()
    }
}

impl LoadedPlugin {
    /// Compiles, links and describes `bytes`; every call gets `limits`.
    pub fn load(
        engine: &Arc<PluginEngine>,
        bytes: &[u8],
        limits: CallLimits,
    ) -> Result<Self, PluginError> {
        Self::load_with(engine, bytes, &LimitsTable::uniform(limits))
    }

    /// Compiles, links and describes `bytes`, then takes the limits `table`
    /// gives the plugin's name and slot (`describe()` itself runs under the
    /// table's widest limits).
    pub fn load_with(
        engine: &Arc<PluginEngine>,
        bytes: &[u8],
        table: &LimitsTable,
    ) -> Result<Self, PluginError> {
        let limits = table.widest();
        if !is_component(bytes) {
            return Err(PluginError::NotAComponent(
                if bytes.starts_with(b"\0asm") {
                    "this is a core WebAssembly module; build a component (wasm32-wasip2, or `wasm-tools component new`)"
                } else {
                    "the file does not start with the WebAssembly magic bytes"
                }
                .into(),
            ));
        }
        let hash = hex::encode(Sha256::digest(bytes));
        let component = engine
            .cache
            .load_or_compile(&engine.engine, bytes, &hash)
            .map_err(|e| PluginError::NotAComponent(format!("{e:#}")))?;
        let world = detect_world(engine, &component)?;
        let instance_pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link(one_line(&e)))?;
        let pre = match world {
            PluginKind::Scheduler => SchedulerPre::new(instance_pre).map(WorldPre::Scheduler),
            PluginKind::Validator => ValidatorPre::new(instance_pre).map(WorldPre::Validator),
            PluginKind::Selector => SelectorPre::new(instance_pre).map(WorldPre::Selector),
        }
        .map_err(|e| PluginError::Link(one_line(&e)))?;
        let mut plugin = LoadedPlugin {
            engine: engine.clone(),
            pre,
            info: PluginInfo {
                name: "unknown".into(),
                version: "?".into(),
                kind: world,
                summary: String::new(),
            },
            label: Arc::from(format!("{}…", &hash[..12])),
            hash,
            limits,
            size: bytes.len(),
            quota: Arc::new(LogQuota::default()),
        };
        let info = plugin.describe()?;
        if info.kind != world {
            return Err(PluginError::KindMismatch {
                declared: info.kind,
                world,
            });
        }
        if info.name.trim().is_empty() || info.name.len() > 64 || info.version.len() > 64 {
            return Err(PluginError::BadAnswer(
                "describe() must give a name (1–64 characters) and a version (≤64)".into(),
            ));
        }
        plugin.label = Arc::from(format!("{}@{}", info.name, info.version));
        plugin.limits = table.for_plugin(&info.name, info.kind);
        plugin.info = info;
        Ok(plugin)
    }

    /// What `describe()` returned at load time.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The world this plugin implements.
    pub fn kind(&self) -> PluginKind {
        self.info.kind
    }

    /// SHA-256 of the component bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `name@version`, for logs and messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The call limits in force.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Log lines dropped this minute over the per-minute limit.
    pub fn log_lines_dropped(&self) -> u64 {
        self.quota.dropped()
    }

    /// Calls `describe()` in a fresh instance.
    pub fn describe(&self) -> Result<PluginInfo, PluginError> {
        self.with_store(&self.engine.direct, |store, pre| match pre {
            WorldPre::Scheduler(p) => p.instantiate(&mut *store)?.call_describe(store),
            WorldPre::Validator(p) => p.instantiate(&mut *store)?.call_describe(store),
            WorldPre::Selector(p) => p.instantiate(&mut *store)?.call_describe(store),
        })
    }

    /// Scheduler: the index of the pending job to run next, checked in range
    /// and against its owner's running cap (a direct call, outside any
    /// slot's share).
    pub fn pick_next(&self, snapshot: &Snapshot) -> Result<Option<u32>, PluginError> {
        self.pick_next_in(&self.engine.direct, snapshot)
    }

    /// [`LoadedPlugin::pick_next`] within `lane`'s share of the pool.
    pub fn pick_next_in(
        &self,
        lane: &Lane,
        snapshot: &Snapshot,
    ) -> Result<Option<u32>, PluginError> {
        let WorldPre::Scheduler(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Scheduler));
        };
        let answer = self.with_store(lane, |store, _| {
            pre.instantiate(&mut *store)?
                .comfyume_plugin_scheduling()
                .call_pick_next(store, snapshot)
        })?;
        let Some(index) = answer else {
            return Ok(None);
        };
        let Some(job) = snapshot.pending.get(index as usize) else {
            return Err(PluginError::BadAnswer(format!(
                "pick-next returned index {index} but only {} jobs are pending",
                snapshot.pending.len()
            )));
        };
        // The dispatcher cannot start a job whose owner is at their running
        // cap; the snapshot said so, so such an answer is the plugin's error
        // (and asking again would get the same answer, forever).
        if let Some(user) = snapshot.users.get(job.user as usize)
            && let Some(cap) = user.max_running
            && user.running >= cap
        {
            return Err(PluginError::BadAnswer(format!(
                "pick-next chose job {} of {}, who is at their running cap ({}/{cap})",
                job.id, user.name, user.running
            )));
        }
        Ok(Some(index))
    }

    /// Validator: the verdict on a prompt graph, checked for consistency
    /// (a direct call, outside any slot's share).
    pub fn validate(&self, graph: &[Node]) -> Result<Verdict, PluginError> {
        self.validate_in(&self.engine.direct, graph)
    }

    /// [`LoadedPlugin::validate`] within `lane`'s share of the pool.
    pub fn validate_in(&self, lane: &Lane, graph: &[Node]) -> Result<Verdict, PluginError> {
        let WorldPre::Validator(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Validator));
        };
        let verdict = self.with_store(lane, |store, _| {
            pre.instantiate(&mut *store)?
                .comfyume_plugin_validation()
                .call_validate(store, graph)
        })?;
        match &verdict {
            Verdict::Rejected(problems) if problems.is_empty() => Err(PluginError::BadAnswer(
                "rejected the graph without naming a problem".into(),
            )),
            Verdict::Rejected(problems) => {
                if let Some(p) = problems
                    .iter()
                    .find(|p| !graph.iter().any(|n| n.id == p.node_id))
                {
                    return Err(PluginError::BadAnswer(format!(
                        "reported a problem on node {:?}, which is not in the graph",
                        p.node_id
                    )));
                }
                Ok(verdict)
            }
            Verdict::Accepted(a) if a.workflow_kind.trim().is_empty() => Err(
                PluginError::BadAnswer("accepted the graph with an empty workflow kind".into()),
            ),
            _ => Ok(verdict),
        }
    }

    /// Selector: the index of the backend to use, or the reason none fits
    /// (a direct call, outside any slot's share).
    pub fn select(
        &self,
        job: &JobInfo,
        backends: &[Backend],
    ) -> Result<Result<u32, String>, PluginError> {
        self.select_in(&self.engine.direct, job, backends)
    }

    /// [`LoadedPlugin::select`] within `lane`'s share of the pool.
    pub fn select_in(
        &self,
        lane: &Lane,
        job: &JobInfo,
        backends: &[Backend],
    ) -> Result<Result<u32, String>, PluginError> {
        let WorldPre::Selector(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Selector));
        };
        let answer = self.with_store(lane, |store, _| {
            pre.instantiate(&mut *store)?
                .comfyume_plugin_selection()
                .call_select(store, job, backends)
        })?;
        if let Ok(index) = answer {
            let Some(backend) = backends.get(index as usize) else {
                return Err(PluginError::BadAnswer(format!(
                    "select returned backend {index} but only {} are configured",
                    backends.len()
                )));
            };
            if backend.in_flight >= backend.capacity {
                return Err(PluginError::BadAnswer(format!(
                    "selected pool {:?}, which is full ({}/{})",
                    backend.name, backend.in_flight, backend.capacity
                )));
            }
        }
        Ok(answer)
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        PluginError::BadAnswer(format!(
            "{} is a {:?} plugin, not a {:?}",
            self.label, self.info.kind, wanted
        ))
    }

    /// Runs `call` in a fresh store with this plugin's limits, within
    /// `lane`'s share of the pool, and turns a wasmtime error into a
    /// [`PluginError`] that says what happened.
    fn with_store<R>(
        &self,
        lane: &Lane,
        call: impl FnOnce(&mut Store<PluginState>, &WorldPre) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        // Held until the store is gone (declared first, dropped last).
        let _permits = lane.enter(&self.engine.pool).map_err(PluginError::Busy)?;
        let memory_cap = self.limits.memory_mib << 20;
        let deadline = Duration::from_millis(self.limits.deadline_ms);
        let mut store = Store::new(
            &self.engine.engine,
            PluginState::new(self.label.clone(), memory_cap, deadline, self.quota.clone()),
        );
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(PluginEngine::ticks_for(deadline));
        // At each check: stop the call if its budget is spent, else look
        // again when the nearer limit could next be reached.
        store.epoch_deadline_callback(|store| match store.data().budget.remaining() {
            Ok((left, _)) => Ok(UpdateDeadline::Continue(PluginEngine::ticks_for(left))),
            Err(overrun) => Err(overrun.into()),
        });
        let result = call(&mut store, &self.pre);
        let state = store.into_data();
        let last_stderr = state.finish();
        let (own, wall) = (state.budget.own(), state.budget.wall());
        result.map_err(|error| {
            match error.downcast_ref::<Overrun>() {
                Some(Overrun::OwnTime) => {
                    return PluginError::Deadline {
                        deadline_ms: self.limits.deadline_ms,
                    };
                }
                Some(Overrun::HostBusy) => {
                    return PluginError::HostBusy {
                        own_ms: own.as_millis() as u64,
                        wall_ms: wall.as_millis() as u64,
                        deadline_ms: self.limits.deadline_ms,
                    };
                }
                None => {}
            }
            if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                return PluginError::Deadline {
                    deadline_ms: self.limits.deadline_ms,
                };
            }
            if let Some(asked) = state.limits.refused_memory {
                return PluginError::MemoryCap {
                    cap_mib: self.limits.memory_mib,
                    asked_mib: asked.div_ceil(1 << 20),
                };
            }
            let mut message = one_line(&error);
            if let Some(line) = last_stderr {
                message = format!("{message}; the plugin said: {line}");
            }
            if error.downcast_ref::<Trap>().is_some() {
                PluginError::Trap(message)
            } else {
                PluginError::Runtime(message)
            }
        })
    }
}

/// True when `bytes` carry the component-model layer in their preamble.
fn is_component(bytes: &[u8]) -> bool {
    // Preamble: "\0asm", then a u16 version and a u16 layer; layer 1 = component.
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0]
}

/// Which world the component implements, from its export names.
fn detect_world(engine: &PluginEngine, component: &Component) -> Result<PluginKind, PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(&engine.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let has = |name: &str| exports.iter().any(|e| e == name);
    let worlds = [
        (SCHEDULER_EXPORT, PluginKind::Scheduler),
        (VALIDATOR_EXPORT, PluginKind::Validator),
        (SELECTOR_EXPORT, PluginKind::Selector),
    ];
    let found: Vec<PluginKind> = worlds
        .iter()
        .filter(|(name, _)| has(name))
        .map(|(_, kind)| *kind)
        .collect();
    match found.as_slice() {
        [kind] if has("describe") => Ok(*kind),
        [_] => Err(PluginError::Link(
            "exports a plugin interface but no `describe` function".into(),
        )),
        [] => Err(PluginError::UnknownWorld {
            expected: worlds.map(|(n, _)| n).join(", "),
            found: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        }),
        _ => Err(PluginError::Link(
            "exports more than one plugin interface; a component fills one slot".into(),
        )),
    }
}

/// The first line of an error chain, joined: short enough for one log line.
fn one_line(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return trap.to_string();
    }
    let text = format!("{error:#}");
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.len() > 500 {
        format!("{}…", &line[..line.floor_char_boundary(500)])
    } else {
        line
    }
}
