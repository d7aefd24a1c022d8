//! The plugin registry: which plugin fills each slot, and who decides when it
//! cannot.
//!
//! Slots: one scheduler, one selector, and one validator per workflow family
//! (keyed by the validator's `describe()` name, e.g. `ltx2`). Every loaded
//! version is kept by content hash, so activation and rollback never reload
//! anything, and the operator can activate any stored version (built-ins
//! included) by hash. A decision always comes back: from the active plugin,
//! or, when it is missing, disabled or fails, from the built-in default
//! ([`super::fallback`]); a validator that fails fails closed for that
//! prompt, because letting an unchecked graph through would spend GPU time
//! on a prompt nobody checked.
//!
//! Validators are the operator's to arrange: they are asked in the order
//! the operator configured ([`Registry::set_validator_order`], then by
//! name), a validator slot can be removed, and what a *disabled* validator
//! means for the prompts it would have been asked about is the operator's
//! choice ([`DisabledValidator`]). By default it is passed over, so a
//! disabled validator never turns away a prompt it would not have claimed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::api::{Backend, CostEstimate, JobInfo, Node, PluginKind, Problem, Snapshot, Verdict};
use super::component::{CallLimits, LimitsTable, LoadedPlugin};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::fallback;
use super::shadow::{Shadow, ShadowStatus};
use super::slot::{FailurePolicy, NothingToRollBack, Slot, SlotStatus};

/// What happens to a graph no validator claims.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Unclaimed {
    /// Queue it with workflow kind `other` (a workshop that allows free play).
    Accept,
    /// Refuse it (a workshop that runs only its templates).
    Refuse,
}

/// What a disabled validator means for prompts it would have been asked about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DisabledValidator {
    /// Passed over: the next validators decide, then the `unclaimed` rule.
    /// A prompt it would have claimed may then run as `other` under
    /// `unclaimed = "accept"`.
    Skip,
    /// Fail closed: while any validator is disabled, a prompt no other
    /// validator claims is refused (it might have been the disabled one's).
    Refuse,
}

/// One stored version, for the operator's list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoredVersion {
    /// SHA-256: activate it by this.
    pub hash: String,
    /// `name@version`.
    pub label: String,
    /// `scheduler`, `validator` or `selector`.
    pub kind: String,
    /// Shipped with the host.
    pub builtin: bool,
}

/// How validators are arranged, for the operator.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ValidatorPolicy {
    /// The slots in the order they are asked.
    pub order: Vec<String>,
    /// What a disabled validator means.
    pub disabled: DisabledValidator,
    /// What happens to a prompt no validator claims.
    pub unclaimed: Unclaimed,
}

/// Who made a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum DecidedBy {
    /// The active plugin (`name@version`).
    Plugin(String),
    /// The built-in default, and why the plugin did not decide.
    Fallback(String),
}

/// A decision and who made it.
#[derive(Debug, Clone)]
pub struct Decision<T> {
    /// The decision.
    pub value: T,
    /// Who made it.
    pub by: DecidedBy,
}

/// The outcome of validating a prompt graph.
#[derive(Debug, Clone)]
pub enum Validation {
    /// Queue it.
    Accepted {
        /// Detected workflow kind (`other` for an unclaimed graph).
        workflow_kind: String,
        /// The validator's estimate.
        cost: CostEstimate,
        /// The validator (`name@version`), or `none` for an unclaimed graph.
        by: String,
    },
    /// Do not queue it: the problems, in ComfyUI's vocabulary.
    Rejected {
        /// What is wrong, per node and input.
        problems: Vec<Problem>,
        /// The validator (`name@version`).
        by: String,
    },
    /// Do not queue it: no validator could give a verdict (fail closed).
    Refused {
        /// A sentence for the attendee and the operator.
        reason: String,
    },
}

/// Registry errors the admin API maps to 4xx.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The plugin did not load.
    #[error(transparent)]
    Load(#[from] PluginError),
    /// No loaded version has this hash.
    #[error("no loaded plugin has hash {0}")]
    UnknownHash(String),
    /// Rollback with no history.
    #[error(transparent)]
    NothingToRollBack(#[from] NothingToRollBack),
    /// No validator slot of that name.
    #[error("no validator slot named {0}")]
    UnknownSlot(String),
    /// Only a scheduler can run in shadow.
    #[error("{0} is not a scheduler: only a scheduler can run in shadow")]
    NotAScheduler(String),
    /// The scheduler and selector slots always exist.
    #[error("slot {0} cannot be removed: only validator slots can")]
    NotRemovable(String),
}

/// Every slot and every loaded version.
pub struct Registry {
    engine: Arc<PluginEngine>,
    policy: FailurePolicy,
    unclaimed: Unclaimed,
    scheduler: Slot,
    selector: Slot,
    validators: RwLock<BTreeMap<String, Arc<Slot>>>,
    versions: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    builtins: Mutex<HashSet<String>>,
    validator_order: RwLock<Vec<String>>,
    disabled_validator: RwLock<DisabledValidator>,
    shadow: Shadow,
}

impl Registry {
    /// An empty registry: every slot decides by its built-in default.
    pub fn new(engine: Arc<PluginEngine>, policy: FailurePolicy, unclaimed: Unclaimed) -> Self {
        Registry {
            policy,
            unclaimed,
            scheduler: Slot::new("scheduler", policy, engine.slot_lane("scheduler")),
            selector: Slot::new("selector", policy, engine.slot_lane("selector")),
            validators: RwLock::new(BTreeMap::new()),
            versions: Mutex::new(HashMap::new()),
            builtins: Mutex::new(HashSet::new()),
            validator_order: RwLock::new(Vec::new()),
            disabled_validator: RwLock::new(DisabledValidator::Skip),
            shadow: Shadow::default(),
            engine,
        }
    }

    /// Loads (or finds, by hash) a plugin version without activating it.
    pub fn load(
        &self,
        bytes: &[u8],
        limits: CallLimits,
    ) -> Result<Arc<LoadedPlugin>, RegistryError> {
        self.load_with(bytes, &LimitsTable::uniform(limits))
    }

    /// Like [`Registry::load`], with limits chosen by the plugin's name and
    /// slot from `table`.
    pub fn load_with(
        &self,
        bytes: &[u8],
        table: &LimitsTable,
    ) -> Result<Arc<LoadedPlugin>, RegistryError> {
        let plugin = self.compile_with(bytes, table)?;
        Ok(self.admit(plugin))
    }

    /// Compiles a component with limits from `table` without adding it to
    /// the registry: an upload is checked first and admitted only if it
    /// passes, so a refused one can never be activated.
    pub fn compile_with(
        &self,
        bytes: &[u8],
        table: &LimitsTable,
    ) -> Result<LoadedPlugin, RegistryError> {
        Ok(LoadedPlugin::load_with(&self.engine, bytes, table)?)
    }

    /// Adds a compiled version (the one already there, if the same hash was
    /// admitted before), ready to activate.
    pub fn admit(&self, plugin: LoadedPlugin) -> Arc<LoadedPlugin> {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions
            .entry(plugin.hash().to_string())
            .or_insert_with(|| Arc::new(plugin))
            .clone()
    }

    /// A loaded version by hash.
    pub fn version(&self, hash: &str) -> Option<Arc<LoadedPlugin>> {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    /// Activates a loaded version in the slot its kind (and, for a validator,
    /// its name) calls for. Returns the slot name.
    pub fn activate(&self, hash: &str) -> Result<String, RegistryError> {
        let plugin = self
            .version(hash)
            .ok_or_else(|| RegistryError::UnknownHash(hash.to_string()))?;
        let slot = self.slot_for(&plugin);
        slot.activate(plugin);
        Ok(slot.name().to_string())
    }

    /// Marks a stored version as shipped with the host.
    pub fn mark_builtin(&self, hash: &str) {
        lock(&self.builtins).insert(hash.to_string());
    }

    /// Every stored version, by kind then label: any of them can be
    /// activated by hash.
    pub fn versions(&self) -> Vec<StoredVersion> {
        let builtins = lock(&self.builtins).clone();
        let mut all: Vec<StoredVersion> = lock(&self.versions)
            .values()
            .map(|p| StoredVersion {
                hash: p.hash().to_string(),
                label: p.label().to_string(),
                kind: super::check::kind_name(p.kind()).to_string(),
                builtin: builtins.contains(p.hash()),
            })
            .collect();
        all.sort_by(|a, b| (&a.kind, &a.label, &a.hash).cmp(&(&b.kind, &b.label, &b.hash)));
        all
    }

    /// Asks validators named in `order` (validator names, with or without
    /// the `validator:` prefix) first, in that order; the rest by name.
    pub fn set_validator_order(&self, order: Vec<String>) {
        *self
            .validator_order
            .write()
            .unwrap_or_else(|p| p.into_inner()) = order
            .into_iter()
            .map(|n| {
                if n.starts_with("validator:") {
                    n
                } else {
                    format!("validator:{n}")
                }
            })
            .collect();
    }

    /// Sets what a disabled validator means.
    pub fn set_disabled_validator(&self, policy: DisabledValidator) {
        *self
            .disabled_validator
            .write()
            .unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// How validators are arranged now.
    pub fn validator_policy(&self) -> ValidatorPolicy {
        ValidatorPolicy {
            order: self
                .validator_slots()
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            disabled: *self
                .disabled_validator
                .read()
                .unwrap_or_else(|p| p.into_inner()),
            unclaimed: self.unclaimed,
        }
    }

    /// Removes a validator slot (`validator:<name>`): its plugin is asked no
    /// more. Its versions stay stored, so activating one brings it back.
    pub fn remove_validator(&self, slot: &str) -> Result<(), RegistryError> {
        if matches!(slot, "scheduler" | "selector") {
            return Err(RegistryError::NotRemovable(slot.to_string()));
        }
        self.validators
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(slot)
            .map(|_| tracing::info!(%slot, "validator slot removed"))
            .ok_or_else(|| RegistryError::UnknownSlot(slot.to_string()))
    }

    /// Rolls the named slot (`scheduler`, `selector`, `validator:<name>`) back.
    pub fn rollback(&self, slot: &str) -> Result<Arc<LoadedPlugin>, RegistryError> {
        Ok(self.slot_named(slot)?.rollback()?)
    }

    /// Every slot's status, scheduler first.
    pub fn status(&self) -> Vec<SlotStatus> {
        let mut all = vec![self.scheduler.status(), self.selector.status()];
        all.extend(self.validator_slots().iter().map(|s| s.status()));
        all
    }

    /// Runs the loaded scheduler `hash` in shadow beside the active one.
    pub fn set_shadow(&self, hash: &str) -> Result<ShadowStatus, RegistryError> {
        let plugin = self
            .version(hash)
            .ok_or_else(|| RegistryError::UnknownHash(hash.to_string()))?;
        if plugin.kind() != PluginKind::Scheduler {
            return Err(RegistryError::NotAScheduler(plugin.label().to_string()));
        }
        self.shadow.set(plugin);
        Ok(self.shadow.status())
    }

    /// The engine every plugin runs on.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// The shadow run (its candidate and counts).
    pub fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    /// The scheduler slot (for the admin API and tests).
    pub fn scheduler(&self) -> &Slot {
        &self.scheduler
    }

    /// The selector slot.
    pub fn selector(&self) -> &Slot {
        &self.selector
    }

    /// Which pending job runs next. Never fails: the built-in FIFO decides
    /// when the plugin cannot.
    pub fn pick_next(&self, snapshot: &Snapshot) -> Decision<Option<u32>> {
        decide(
            &self.scheduler,
            |p, lane| p.pick_next_in(lane, snapshot),
            || fallback::pick_next(snapshot),
        )
    }

    /// Counts a scheduler answer the dispatcher could not use (its job was
    /// no longer pending, or its owner had reached their cap by the time
    /// the job was claimed) against the plugin that gave it, if that plugin
    /// is still active. Returns whether it was counted.
    pub fn scheduler_answer_unusable(&self, by: &DecidedBy, reason: &str) -> bool {
        let DecidedBy::Plugin(label) = by else {
            return false;
        };
        let Some(plugin) = self.scheduler.active().filter(|p| p.label() == label) else {
            return false;
        };
        self.scheduler.record_failure(
            &plugin,
            &PluginError::BadAnswer(format!("the dispatcher could not use its choice: {reason}")),
        );
        true
    }

    /// Which backend runs `job`. Never fails: the built-in selector decides
    /// when the plugin cannot.
    pub fn select(&self, job: &JobInfo, backends: &[Backend]) -> Decision<Result<u32, String>> {
        decide(
            &self.selector,
            |p, lane| p.select_in(lane, job, backends),
            || fallback::select(job, backends),
        )
    }

    /// Runs the validators, in the operator's order, until one claims the
    /// graph.
    pub fn validate(&self, graph: &[Node]) -> Validation {
        let refuse_for_disabled = *self
            .disabled_validator
            .read()
            .unwrap_or_else(|p| p.into_inner())
            == DisabledValidator::Refuse;
        let mut disabled = Vec::new();
        for slot in self.validator_slots() {
            let Some(plugin) = slot.active() else {
                if let Some(reason) = slot.disabled()
                    && refuse_for_disabled
                {
                    disabled.push(reason);
                }
                continue;
            };
            let started = std::time::Instant::now();
            let verdict = plugin.validate_in(slot.lane(), graph);
            crate::observe::recorder().plugin_call(
                plugin.label(),
                slot.name(),
                started.elapsed(),
                verdict.as_ref().err().map(|e| e.cause()),
            );
            match verdict {
                Ok(Verdict::NotApplicable) => continue,
                Ok(Verdict::Accepted(a)) => {
                    return Validation::Accepted {
                        workflow_kind: a.workflow_kind,
                        cost: a.cost,
                        by: plugin.label().to_string(),
                    };
                }
                Ok(Verdict::Rejected(problems)) => {
                    return Validation::Rejected {
                        problems,
                        by: plugin.label().to_string(),
                    };
                }
                Err(error) if !error.is_plugins_fault() => {
                    slot.record_failure(&plugin, &error);
                    return Validation::Refused {
                        reason: format!(
                            "the host is busy and validator {} could not check this prompt in time; try again in a moment",
                            plugin.label()
                        ),
                    };
                }
                Err(error) => {
                    slot.record_failure(&plugin, &error);
                    return Validation::Refused {
                        reason: format!(
                            "validator {} failed ({error}); the prompt was not queued",
                            plugin.label()
                        ),
                    };
                }
            }
        }
        if !disabled.is_empty() {
            // The operator chose to fail closed: a disabled validator might
            // have claimed this graph.
            return Validation::Refused {
                reason: format!(
                    "a workflow validator is switched off, so this prompt cannot be checked: {}",
                    disabled.join("; ")
                ),
            };
        }
        match self.unclaimed {
            Unclaimed::Accept => Validation::Accepted {
                workflow_kind: "other".into(),
                cost: CostEstimate {
                    frames: 0,
                    width: 0,
                    height: 0,
                    steps: 0,
                    gpu_seconds: 0.0,
                },
                by: "none".into(),
            },
            Unclaimed::Refuse => Validation::Refused {
                reason: "this workshop only runs its own templates (Flux2 Klein, LTX-2); \
                         no validator recognised this workflow"
                    .into(),
            },
        }
    }

    /// The validator slots in the order they are asked: the operator's
    /// order first, then by name.
    fn validator_slots(&self) -> Vec<Arc<Slot>> {
        let order = self
            .validator_order
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut slots: Vec<Arc<Slot>> = self
            .validators
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        // Stable: within the unlisted ones the map's name order stays.
        slots.sort_by_key(|s| {
            order
                .iter()
                .position(|n| n == s.name())
                .unwrap_or(usize::MAX)
        });
        slots
    }

    fn slot_for(&self, plugin: &LoadedPlugin) -> SlotRef<'_> {
        match plugin.kind() {
            PluginKind::Scheduler => SlotRef::Fixed(&self.scheduler),
            PluginKind::Selector => SlotRef::Fixed(&self.selector),
            PluginKind::Validator => {
                let name = format!("validator:{}", plugin.info().name);
                let mut validators = self.validators.write().unwrap_or_else(|p| p.into_inner());
                SlotRef::Shared(
                    validators
                        .entry(name.clone())
                        .or_insert_with(|| {
                            let lane = self.engine.slot_lane(&name);
                            Arc::new(Slot::new(name, self.policy, lane))
                        })
                        .clone(),
                )
            }
        }
    }

    fn slot_named(&self, name: &str) -> Result<SlotRef<'_>, RegistryError> {
        match name {
            "scheduler" => Ok(SlotRef::Fixed(&self.scheduler)),
            "selector" => Ok(SlotRef::Fixed(&self.selector)),
            other => self
                .validators
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(other)
                .cloned()
                .map(SlotRef::Shared)
                .ok_or_else(|| RegistryError::UnknownSlot(other.to_string())),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fixed slot (a field) or a validator slot (shared from the map).
enum SlotRef<'a> {
    Fixed(&'a Slot),
    Shared(Arc<Slot>),
}

impl std::ops::Deref for SlotRef<'_> {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        match self {
            SlotRef::Fixed(s) => s,
            SlotRef::Shared(s) => s,
        }
    }
}

/// Asks the slot's plugin; on any failure, counts it and asks the default.
fn decide<T>(
    slot: &Slot,
    ask: impl FnOnce(&LoadedPlugin, &super::lanes::Lane) -> Result<T, PluginError>,
    default: impl FnOnce() -> T,
) -> Decision<T> {
    let Some(plugin) = slot.active() else {
        let why = slot
            .disabled()
            .unwrap_or_else(|| "no plugin active".to_string());
        return Decision {
            value: default(),
            by: DecidedBy::Fallback(why),
        };
    };
    let started = std::time::Instant::now();
    let answer = ask(&plugin, slot.lane());
    crate::observe::recorder().plugin_call(
        plugin.label(),
        slot.name(),
        started.elapsed(),
        answer.as_ref().err().map(|e| e.cause()),
    );
    match answer {
        Ok(value) => Decision {
            value,
            by: DecidedBy::Plugin(plugin.label().to_string()),
        },
        Err(error) => {
            slot.record_failure(&plugin, &error);
            Decision {
                value: default(),
                by: DecidedBy::Fallback(format!("{} failed: {error}", plugin.label())),
            }
        }
    }
}
