//! One plugin slot: the active version, its history, and its health.
//!
//! Activation is one atomic pointer swap ([`ArcSwapOption`]): a call already
//! running keeps its `Arc` to the old version and finishes on it; every call
//! that starts after the swap sees the new one. Failures are counted in a
//! sliding window; once the window holds `max_failures`, the slot disables
//! its plugin (the built-in default decides from then on) and records why.
//!
//! Policy for what comes after a disable (issue 17 item 5, and the
//! operator-enabled retry):
//! - **Rollback** returns to the version that was active *before* the
//!   failing one (history holds only versions that were active and healthy
//!   when replaced, each shown with its hash); the disabled version is kept
//!   aside ([`SlotStatus::disabled_version`]) and can be activated again by
//!   hash like any stored version, never by rollback.
//! - **Retry after a cool-down** (a circuit breaker's half-open state) only
//!   when the operator sets [`FailurePolicy::retry_after`]: the disabled
//!   version is put back on probation, and one failure within the window
//!   disables it again at once. Without it the plugin stays off, and the
//!   slot says so, until the operator activates a version.

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
    /// Retry a disabled plugin after this cool-down (half-open); `None`
    /// keeps it off until the operator acts.
    pub retry_after: Option<Duration>,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_failures: 5,
            window: Duration::from_secs(300),
            retry_after: None,
        }
    }
}

/// One stored version, as the operator sees it: activate it by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionRef {
    /// `name@version`.
    pub label: String,
    /// SHA-256 of the component.
    pub hash: String,
}

impl VersionRef {
    fn of(plugin: &LoadedPlugin) -> Self {
        VersionRef {
            label: plugin.label().to_string(),
            hash: plugin.hash().to_string(),
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
    /// Versions that rollback can return to, newest first (the first is
    /// where the next rollback goes).
    pub history: Vec<VersionRef>,
    /// Failures in the current window.
    pub recent_failures: u32,
    /// Failures since the active version was activated.
    pub total_failures: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Why the plugin was disabled, if it was.
    pub disabled: Option<String>,
    /// The version that was disabled (activate it by hash to try it again).
    pub disabled_version: Option<VersionRef>,
    /// Seconds until a disabled plugin is retried (only when the operator
    /// enabled retries); `None` means it stays off until the operator acts.
    pub retry_in_secs: Option<u64>,
    /// The plugin is on probation after an automatic retry: one failure
    /// disables it again.
    pub on_probation: bool,
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
    disabled_at: Option<Instant>,
    disabled_version: Option<Arc<LoadedPlugin>>,
    /// When an automatic retry put the disabled version back.
    half_open_at: Option<Instant>,
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

    /// The plugin that decides now; `None` when empty or disabled (unless
    /// the retry cool-down has passed: then the disabled version is put back
    /// on probation and returned).
    pub fn active(&self) -> Option<Arc<LoadedPlugin>> {
        self.active.load_full().or_else(|| self.half_open())
    }

    /// Puts a disabled plugin back on probation once its cool-down passed,
    /// when the operator enabled retries.
    fn half_open(&self) -> Option<Arc<LoadedPlugin>> {
        let cool_down = self.policy.retry_after?;
        let mut health = lock(&self.health);
        if health.disabled_at?.elapsed() < cool_down {
            return None;
        }
        let plugin = health.disabled_version.take()?;
        // Another thread may have activated something meanwhile.
        let current = self
            .active
            .compare_and_swap(&None::<Arc<LoadedPlugin>>, Some(plugin.clone()));
        if current.is_some() {
            return self.active.load_full();
        }
        health.window.clear();
        health.disabled = None;
        health.disabled_at = None;
        health.half_open_at = Some(Instant::now());
        tracing::warn!(slot = %self.name, plugin = plugin.label(), cool_down_secs = cool_down.as_secs(), "retrying a disabled plugin after its cool-down (one failure disables it again)");
        Some(plugin)
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
        let on_probation = health
            .half_open_at
            .is_some_and(|at| now.duration_since(at) <= self.policy.window);
        if !on_probation && health.window.len() < self.policy.max_failures as usize {
            return false;
        }
        let after = match self.policy.retry_after {
            Some(cool_down) => format!("retried automatically in {} s", cool_down.as_secs()),
            None => "stays off until the operator activates a version".to_string(),
        };
        let reason = if on_probation {
            format!(
                "{} disabled again: it failed on probation after a retry; {after}; last: {error}",
                plugin.label()
            )
        } else {
            format!(
                "{} disabled after {} failures within {} s; {after}; last: {error}",
                plugin.label(),
                health.window.len(),
                self.policy.window.as_secs()
            )
        };
        tracing::error!(slot = %self.name, plugin = plugin.label(), %reason, "plugin disabled");
        health.disabled = Some(reason);
        health.disabled_at = Some(now);
        health.half_open_at = None;
        // The disabled version is kept aside, not in history: rollback goes
        // to the version before it, and the operator can still activate it
        // again by hash.
        health.disabled_version = self.active.swap(None);
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
        let retry_in_secs = match (self.policy.retry_after, health.disabled_at) {
            (Some(cool_down), Some(at)) if health.disabled_version.is_some() => {
                Some(cool_down.saturating_sub(at.elapsed()).as_secs())
            }
            _ => None,
        };
        SlotStatus {
            slot: self.name.clone(),
            active: active.as_ref().map(|p| p.label().to_string()),
            active_hash: active.as_ref().map(|p| p.hash().to_string()),
            history: lock(&self.history)
                .iter()
                .rev()
                .map(|p| VersionRef::of(p))
                .collect(),
            disabled_version: health.disabled_version.as_deref().map(VersionRef::of),
            retry_in_secs,
            on_probation: health
                .half_open_at
                .is_some_and(|at| at.elapsed() <= self.policy.window),
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
