//! The embedded store (the default): the queue in memory, journaled to
//! SQLite under the data folder, reloaded on restart.
//!
//! One host, no server to run. A mutation is applied to the in-memory
//! [`Core`] under a short lock, then its rows are journaled and the call
//! returns only once they are on disk (see [`super::journal`] for the group
//! commit). If the journal ever fails, the store refuses every later
//! mutation with `Unavailable` until a restart reloads the journal: memory
//! must never run ahead of disk for longer than one failed write.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::clock::Clock;
use super::core::{Applied, Core};
use super::error::StoreError;
use super::job::{
    BackendRef, Job, JobEvent, JobId, NewJob, Output, Page, Priority, Progress, UserLimits,
};
use super::journal::Journal;
use super::snapshot::QueueSnapshot;
use super::store::{CancelOutcome, JobStore, Recovery, Requester, StoreLimits};

/// The embedded job store.
pub struct EmbeddedStore {
    core: Mutex<Core>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<JobEvent>,
    broken: AtomicBool,
}

impl EmbeddedStore {
    /// Opens the journal at `path` (created if missing) and reloads it.
    pub fn open(
        path: &Path,
        limits: StoreLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let (journal, loaded) = Journal::open(path)?;
        let core = Core::load(limits, loaded.users, loaded.jobs, loaded.payloads);
        let (events, _) = broadcast::channel(4096);
        Ok(EmbeddedStore {
            core: Mutex::new(core),
            journal,
            clock,
            events,
            broken: AtomicBool::new(false),
        })
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Applies a mutation to memory, journals it, announces it.
    async fn apply<T>(
        &self,
        op: impl FnOnce(&mut Core, u64) -> Result<Applied<T>, StoreError>,
    ) -> Result<T, StoreError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "an earlier journal write failed; restart the host to reload the queue".into(),
            ));
        }
        let now = self.now();
        let Applied {
            value,
            changes,
            event,
        } = op(&mut self.core(), now)?;
        if let Err(e) = self.journal.write(changes).await {
            self.broken.store(true, Ordering::Release);
            return Err(e);
        }
        if let Some(event) = event {
            let _ = self.events.send(event);
        }
        Ok(value)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn set_user(&self, limits: UserLimits) -> Result<(), StoreError> {
        self.apply(|c, _| Ok(c.set_user(limits))).await
    }

    async fn enqueue(&self, job: NewJob) -> Result<Job, StoreError> {
        self.apply(|c, now| c.enqueue(job, now)).await
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        Ok(self.core().snapshot(self.now()))
    }

    async fn claim(&self, id: JobId, owner: &str, lease: Duration) -> Result<Job, StoreError> {
        self.apply(|c, now| c.claim(id, owner, ms(lease), now))
            .await
    }

    async fn renew(&self, id: JobId, owner: &str, lease: Duration) -> Result<(), StoreError> {
        self.apply(|c, now| c.renew(id, owner, ms(lease), now))
            .await
    }

    async fn dispatched(
        &self,
        id: JobId,
        owner: &str,
        backend: BackendRef,
    ) -> Result<Job, StoreError> {
        self.apply(|c, now| c.dispatched(id, owner, backend, now))
            .await
    }

    async fn running(
        &self,
        id: JobId,
        owner: &str,
        progress: Option<Progress>,
    ) -> Result<Job, StoreError> {
        self.apply(|c, now| c.running(id, owner, progress, now))
            .await
    }

    async fn succeed(
        &self,
        id: JobId,
        owner: &str,
        outputs: Vec<Output>,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.apply(|c, now| c.succeed(id, owner, outputs, gpu_seconds, now))
            .await
    }

    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.apply(|c, now| c.fail(id, owner, reason, gpu_seconds, now))
            .await
    }

    async fn cancelled(&self, id: JobId, owner: &str, gpu_seconds: f64) -> Result<Job, StoreError> {
        self.apply(|c, now| c.cancelled(id, owner, gpu_seconds, now))
            .await
    }

    async fn requeue(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        lost_to_reclaim: bool,
    ) -> Result<Job, StoreError> {
        self.apply(|c, now| c.requeue(id, owner, reason, lost_to_reclaim, now))
            .await
    }

    async fn cancel(&self, id: JobId, by: Requester<'_>) -> Result<CancelOutcome, StoreError> {
        self.apply(|c, now| c.cancel(id, by, now)).await
    }

    async fn user_limits(&self, user: &str) -> Result<Option<UserLimits>, StoreError> {
        Ok(self.core().user_limits(user))
    }

    async fn reprioritise(&self, id: JobId, priority: Priority) -> Result<Job, StoreError> {
        self.apply(|c, now| c.reprioritise(id, priority, now)).await
    }

    async fn expired_leases(&self, now_ms: u64) -> Result<Vec<Job>, StoreError> {
        Ok(self.core().expired_leases(now_ms))
    }

    async fn recover(&self, id: JobId, how: Recovery, lease: Duration) -> Result<Job, StoreError> {
        self.apply(|c, now| c.recover(id, how, ms(lease), now))
            .await
    }

    async fn payload(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        self.core().payload(id).map(|p| p.as_ref().clone())
    }

    async fn get(&self, id: JobId, by: Requester<'_>) -> Result<Job, StoreError> {
        self.core().get(id, by)
    }

    async fn get_by_prompt_id(
        &self,
        prompt_id: &str,
        by: Requester<'_>,
    ) -> Result<Job, StoreError> {
        self.core().get_by_prompt_id(prompt_id, by)
    }

    async fn list_user(&self, user: &str, page: Page) -> Result<Vec<Job>, StoreError> {
        Ok(self.core().list_user(user, page))
    }

    async fn trim(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.apply(|c, _| Ok(c.trim(before_ms))).await
    }

    async fn lead(&self, _host: &str, _ttl: Duration) -> Result<bool, StoreError> {
        // One host owns the journal, so it always leads.
        Ok(true)
    }

    fn events(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }
}
