//! A candidate scheduler run in shadow beside the active one.
//!
//! Policy: the operator names an uploaded scheduler as the shadow. From then
//! on every live decision of the active scheduler is also put to the shadow,
//! with the same snapshot; its answer is recorded and compared and decides
//! nothing. The comparison is by job (not by index), so the counts read as
//! "the shadow would have sent the same job". A shadow that traps, runs out
//! of time or answers out of range is counted as failed, never disabled and
//! never able to slow dispatch: the dispatcher asks it off the decision's
//! path (see `dispatch::dispatcher`). Setting a new shadow resets the counts.
//!
//! The shadow runs at most one call at a time, in a lane of one instance of
//! its own: a decision made while it is still thinking about the last one
//! is dropped (and counted as dropped), so a slow candidate can neither pile
//! up instances nor make a live call wait for one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::api::Snapshot;
use super::component::LoadedPlugin;
use super::lanes::Lane;

/// How many recent disagreements are kept for the operator to read.
const RECENT: usize = 20;

/// One live decision the shadow answered differently.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// The job the active scheduler sent (none: it held everything back).
    pub active_job: Option<u64>,
    /// The job the shadow would have sent.
    pub shadow_job: Option<u64>,
    /// How many jobs were waiting.
    pub pending: usize,
}

/// What the shadow has done so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowStatus {
    /// The candidate (`name@version`), none when no shadow is set.
    pub label: Option<String>,
    /// Its content hash.
    pub hash: Option<String>,
    /// Live decisions put to it.
    pub decisions: u64,
    /// Same job as the active scheduler.
    pub agreed: u64,
    /// Another job (or none where the active sent one, or the reverse).
    pub disagreed: u64,
    /// Calls that failed (trap, deadline, bad answer).
    pub failed: u64,
    /// Live decisions not put to it because it was still busy with an
    /// earlier one.
    pub dropped: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The latest disagreements, newest last.
    pub recent: VecDeque<Disagreement>,
}

/// The shadow slot.
pub struct Shadow {
    inner: Mutex<Option<(Arc<LoadedPlugin>, ShadowStatus)>>,
    busy: AtomicBool,
    lane: Lane,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow {
            inner: Mutex::new(None),
            busy: AtomicBool::new(false),
            lane: Lane::new("shadow", 1),
        }
    }
}

/// Clears the busy flag when a shadow call ends, however it ends.
struct Turn<'a>(&'a AtomicBool);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Shadow {
    /// Whether the shadow is still thinking about an earlier decision.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Counts a live decision the shadow was too busy to be asked about.
    pub fn drop_decision(&self) {
        if let Some((_, status)) = self.lock().as_mut() {
            status.dropped += 1;
        }
    }

    /// Runs `plugin` in shadow from now on, with fresh counts.
    pub fn set(&self, plugin: Arc<LoadedPlugin>) {
        let status = ShadowStatus {
            label: Some(plugin.label().to_string()),
            hash: Some(plugin.hash().to_string()),
            ..ShadowStatus::default()
        };
        *self.lock() = Some((plugin, status));
    }

    /// Stops the shadow run; returns what it had recorded.
    pub fn clear(&self) -> Option<ShadowStatus> {
        self.lock().take().map(|(_, status)| status)
    }

    /// The candidate, if one is set.
    pub fn candidate(&self) -> Option<Arc<LoadedPlugin>> {
        self.lock().as_ref().map(|(plugin, _)| plugin.clone())
    }

    /// The counts so far (default when no shadow is set).
    pub fn status(&self) -> ShadowStatus {
        self.lock()
            .as_ref()
            .map(|(_, status)| status.clone())
            .unwrap_or_default()
    }

    /// Puts one live decision to the shadow and records the comparison.
    /// `ids[i]` is the job at pending index `i`; `active` is the job the
    /// active scheduler chose. Blocking: call it off the async runtime.
    /// While an earlier call is running the decision is dropped instead.
    pub fn compare(&self, snapshot: &Snapshot, ids: &[u64], active: Option<u64>, now_ms: u64) {
        let Some(plugin) = self.candidate() else {
            return;
        };
        if self.busy.swap(true, Ordering::AcqRel) {
            self.drop_decision();
            return;
        }
        let turn = Turn(&self.busy);
        let answer = plugin.pick_next_in(&self.lane, snapshot);
        drop(turn);
        let mut guard = self.lock();
        // The shadow may have been replaced while it was thinking.
        let Some((current, status)) = guard.as_mut() else {
            return;
        };
        if current.hash() != plugin.hash() {
            return;
        }
        status.decisions += 1;
        match answer {
            Err(error) => {
                status.failed += 1;
                status.last_error = Some(error.to_string());
            }
            Ok(index) => {
                let shadow = index.and_then(|i| ids.get(i as usize).copied());
                if shadow == active {
                    status.agreed += 1;
                } else {
                    status.disagreed += 1;
                    if status.recent.len() == RECENT {
                        status.recent.pop_front();
                    }
                    status.recent.push_back(Disagreement {
                        at_ms: now_ms,
                        active_job: active,
                        shadow_job: shadow,
                        pending: ids.len(),
                    });
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<LoadedPlugin>, ShadowStatus)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
