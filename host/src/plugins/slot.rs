//! One plugin slot: the active version, its history, and its health.
//!
//! Activation is one atomic pointer swap ([`ArcSwapOption`]): a call already
//! running keeps its `Arc` to the old version and finishes on it; every call
//! that starts after the swap sees the new one. Rollback re-activates the
//! version that was active before. Failures are counted in a sliding window;
//! once the window holds `max_failures`, the slot disables its plugin (the
//! built-in default decides from then on) and records why, until the
//! operator activates a version again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::component::LoadedPlugin;
use super::error::PluginError;
use super::lanes::Lane;

/// When a misbehaving plugin is switched off.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Failures within `window` that disable the plugin.
    pub max_failures: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_failures: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// What the operator sees about a slot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SlotStatus {
    /// The slot's name, e.g. `scheduler` or `validator:ltx2`.
    pub slot: String,
    /// `name@version` of the active plugin, if any.
    pub active: Option<String>,
    /// SHA-256 of the active plugin.
    pub active_hash: Option<String>,
    /// Versions that rollback can return to, newest first.
    pub history: Vec<String>,
    /// Failures in the current window.
    pub recent_failures: u32,
    /// Failures since the active version was activated.
    pub total_failures: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Why the plugin was disabled, if it was.
    pub disabled: Option<String>,
    /// Calls the default answered that were not the plugin's fault (a busy
    /// host, no free instance in the slot's share), since activation.
    pub not_counted: u64,
    /// Plugin instances of the slot's share in use now.
    pub instances_in_use: u32,
    /// The slot's share of the instance pool.
    pub instance_share: u32,
}

#[derive(Default)]
struct Health {
    window: VecDeque<Instant>,
    total: u64,
    not_counted: u64,
    last_error: Option<String>,
    disabled: Option<String>,
}

/// A slot: the active plugin and what happened to it.
pub struct Slot {
    name: String,
    policy: FailurePolicy,
    lane: Lane,
    active: ArcSwapOption<LoadedPlugin>,
    history: Mutex<Vec<Arc<LoadedPlugin>>>,
    health: Mutex<Health>,
}

/// Rollback had nothing to go back to.
#[derive(Debug, thiserror::Error)]
#[error("slot {0} has no earlier version to roll back to")]
pub struct NothingToRollBack(pub String);

impl Slot {
    /// An empty slot whose calls hold at most `lane`'s share of instances.
    pub fn new(name: impl Into<String>, policy: FailurePolicy, lane: Lane) -> Self {
        Slot {
            name: name.into(),
            policy,
            lane,
            active: ArcSwapOption::empty(),
            history: Mutex::new(Vec::new()),
            health: Mutex::new(Health::default()),
        }
    }

    /// The slot's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slot's share of the instance pool: every call of its plugin runs in it.
    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// The plugin that decides now; `None` when empty or disabled.
    pub fn active(&self) -> Option<Arc<LoadedPlugin>> {
        self.active.load_full()
    }

    /// Makes `plugin` the active version and clears the failure record.
    pub fn activate(&self, plugin: Arc<LoadedPlugin>) {
        let mut history = lock(&self.history);
        let previous = self.active.swap(Some(plugin.clone()));
        *lock(&self.health) = Health::default();
        if let Some(previous) = previous
            && previous.hash() != plugin.hash()
        {
            history.push(previous);
        }
        history.retain(|p| p.hash() != plugin.hash());
        tracing::info!(slot = %self.name, plugin = plugin.label(), hash = plugin.hash(), "plugin activated");
    }

    /// Re-activates the version active before the current one.
    pub fn rollback(&self) -> Result<Arc<LoadedPlugin>, NothingToRollBack> {
        let target = {
            let mut history = lock(&self.history);
            history
                .pop()
                .ok_or_else(|| NothingToRollBack(self.name.clone()))?
        };
        let current = self.active.swap(Some(target.clone()));
        *lock(&self.health) = Health::default();
        // The version we rolled back from is not pushed: rollback walks back.
        drop(current);
        tracing::info!(slot = %self.name, plugin = target.label(), "plugin rolled back");
        Ok(target)
    }

    /// Records a failure of `plugin`. Returns true when this failure disabled it.
    /// A failure of a version that is no longer active (a call that started
    /// before a swap) is logged but does not count against the new version.
    /// A failure that is not the plugin's fault (a busy host, a full share)
    /// is noted for the operator and never counted.
    pub fn record_failure(&self, plugin: &LoadedPlugin, error: &PluginError) -> bool {
        if !error.is_plugins_fault() {
            tracing::info!(slot = %self.name, plugin = plugin.label(), cause = error.cause(), %error, "plugin not asked in time (not its failure); built-in default decides");
            lock(&self.health).not_counted += 1;
            return false;
        }
        tracing::warn!(slot = %self.name, plugin = plugin.label(), cause = error.cause(), %error, "plugin failed; built-in default decides");
        let still_active = self
            .active
            .load()
            .as_ref()
            .is_some_and(|a| a.hash() == plugin.hash());
        if !still_active {
            return false;
        }
        let mut health = lock(&self.health);
        let now = Instant::now();
        while health
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            health.window.pop_front();
        }
        health.window.push_back(now);
        health.total += 1;
        health.last_error = Some(error.to_string());
        if health.window.len() < self.policy.max_failures as usize {
            return false;
        }
        let reason = format!(
            "{} disabled after {} failures within {} s; last: {error}",
            plugin.label(),
            health.window.len(),
            self.policy.window.as_secs()
        );
        tracing::error!(slot = %self.name, plugin = plugin.label(), %reason, "plugin disabled");
        health.disabled = Some(reason);
        // Keep the disabled version in history so the operator can re-enable
        // it with one rollback.
        if let Some(previous) = self.active.swap(None) {
            lock(&self.history).push(previous);
        }
        true
    }

    /// Why the slot's plugin is disabled, if it is.
    pub fn disabled(&self) -> Option<String> {
        lock(&self.health).disabled.clone()
    }

    /// A snapshot for the operator.
    pub fn status(&self) -> SlotStatus {
        let active = self.active();
        let health = lock(&self.health);
        let (instances_in_use, instance_share) = self.lane.usage();
        SlotStatus {
            slot: self.name.clone(),
            active: active.as_ref().map(|p| p.label().to_string()),
            active_hash: active.as_ref().map(|p| p.hash().to_string()),
            history: lock(&self.history)
                .iter()
                .rev()
                .map(|p| p.label().to_string())
                .collect(),
            recent_failures: health.window.len() as u32,
            total_failures: health.total,
            last_error: health.last_error.clone(),
            disabled: health.disabled.clone(),
            not_counted: health.not_counted,
            instances_in_use,
            instance_share,
        }
    }
}

/// Locks a mutex, recovering from poisoning: the data here stays consistent
/// across a panic (every update is a single assignment or push).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
