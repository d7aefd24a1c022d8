//! A GPU pool as the dispatcher sees it: the backend plus live counters
//! (jobs in flight against its capacity, failures in the last five
//! minutes) that the selector plugin reads, and whether the operator has it
//! in use. A pool taken out of use gets no new job (the selector does not
//! see it); jobs already on it finish there.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backend::Backend;
use crate::plugins::api::{self, Tier};

/// A pool and its live counters.
pub struct Pool {
    backend: Arc<dyn Backend>,
    pub(super) in_flight: AtomicU32,
    failures: Mutex<Vec<Instant>>,
    in_use: AtomicBool,
}

impl Pool {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Pool {
            backend,
            in_flight: AtomicU32::new(0),
            failures: Mutex::new(Vec::new()),
            in_use: AtomicBool::new(true),
        })
    }

    /// Whether new jobs may go to this pool.
    pub fn in_use(&self) -> bool {
        self.in_use.load(Ordering::SeqCst)
    }

    /// Puts the pool in or out of use (the operator's switch).
    pub fn set_in_use(&self, in_use: bool) {
        self.in_use.store(in_use, Ordering::SeqCst);
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Jobs on this pool now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Failures in the last five minutes.
    pub fn recent_failures(&self) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|t| t.elapsed() < Duration::from_secs(300));
        failures.len() as u32
    }

    pub(super) fn fail(&self) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
    }

    pub(super) fn has_room(&self) -> bool {
        self.in_use() && self.in_flight.load(Ordering::SeqCst) < self.backend.info().capacity
    }

    pub(super) fn as_plugin(&self) -> api::Backend {
        let info = self.backend.info();
        let recent_failures = self.recent_failures();
        api::Backend {
            name: info.name.clone(),
            gpu: info.gpu.clone(),
            tier: if info.spot {
                Tier::Spot
            } else {
                Tier::OnDemand
            },
            healthy: recent_failures < 3,
            warm: self.backend.warm(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            capacity: info.capacity,
            recent_failures,
            price_per_hour: info.price_per_hour,
        }
    }
}
