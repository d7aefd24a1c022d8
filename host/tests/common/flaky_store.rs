//! A job store whose `dispatched` write fails the way a Redis restart makes
//! it fail: unreachable for a while, and once with the write applied but
//! its answer lost. Everything else goes straight to the store inside, so a
//! test sees exactly what the dispatcher does about one unreliable record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use comfyume::queue::{
    BackendRef, CancelOutcome, Job, JobEvent, JobId, JobStore, NewJob, Output, Page, Priority,
    Progress, QueueSnapshot, Recovery, Requester, StoreError, UserLimits,
};
use tokio::sync::broadcast;

/// Wraps a store; see the module doc for what goes wrong.
pub struct FlakyDispatched {
    inner: Arc<dyn JobStore>,
    /// Calls still to refuse without writing.
    unreachable: AtomicU32,
    /// Calls still to apply and then answer as unreachable.
    answer_lost: AtomicU32,
    /// Every `dispatched` call seen, answered or not.
    pub calls: AtomicU32,
}

impl FlakyDispatched {
    /// The first `unreachable` calls write nothing; the next `answer_lost`
    /// write and then fail; the rest go through.
    pub fn new(inner: Arc<dyn JobStore>, unreachable: u32, answer_lost: u32) -> Self {
        Self {
            inner,
            unreachable: AtomicU32::new(unreachable),
            answer_lost: AtomicU32::new(answer_lost),
            calls: AtomicU32::new(0),
        }
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl JobStore for FlakyDispatched {
    async fn dispatched(
        &self,
        id: JobId,
        owner: &str,
        backend: BackendRef,
    ) -> Result<Job, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.unreachable) {
            return Err(StoreError::Unavailable("connection refused (test)".into()));
        }
        if take(&self.answer_lost) {
            self.inner.dispatched(id, owner, backend).await?;
            return Err(StoreError::Unavailable(
                "connection reset after the write (test)".into(),
            ));
        }
        self.inner.dispatched(id, owner, backend).await
    }

    async fn set_user(&self, limits: UserLimits) -> Result<(), StoreError> {
        self.inner.set_user(limits).await
    }
    async fn enqueue(&self, job: NewJob) -> Result<Job, StoreError> {
        self.inner.enqueue(job).await
    }
    async fn snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        self.inner.snapshot().await
    }
    async fn claim(&self, id: JobId, owner: &str, lease: Duration) -> Result<Job, StoreError> {
        self.inner.claim(id, owner, lease).await
    }
    async fn renew(&self, id: JobId, owner: &str, lease: Duration) -> Result<(), StoreError> {
        self.inner.renew(id, owner, lease).await
    }
    async fn running(
        &self,
        id: JobId,
        owner: &str,
        progress: Option<Progress>,
    ) -> Result<Job, StoreError> {
        self.inner.running(id, owner, progress).await
    }
    async fn succeed(
        &self,
        id: JobId,
        owner: &str,
        outputs: Vec<Output>,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.inner.succeed(id, owner, outputs, gpu_seconds).await
    }
    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.inner.fail(id, owner, reason, gpu_seconds).await
    }
    async fn cancelled(&self, id: JobId, owner: &str, gpu_seconds: f64) -> Result<Job, StoreError> {
        self.inner.cancelled(id, owner, gpu_seconds).await
    }
    async fn requeue(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        lost_to_reclaim: bool,
    ) -> Result<Job, StoreError> {
        self.inner.requeue(id, owner, reason, lost_to_reclaim).await
    }
    async fn cancel(&self, id: JobId, by: Requester<'_>) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id, by).await
    }
    async fn user_limits(&self, user: &str) -> Result<Option<UserLimits>, StoreError> {
        self.inner.user_limits(user).await
    }
    async fn reprioritise(&self, id: JobId, priority: Priority) -> Result<Job, StoreError> {
        self.inner.reprioritise(id, priority).await
    }
    async fn expired_leases(&self, now_ms: u64) -> Result<Vec<Job>, StoreError> {
        self.inner.expired_leases(now_ms).await
    }
    async fn recover(&self, id: JobId, how: Recovery, lease: Duration) -> Result<Job, StoreError> {
        self.inner.recover(id, how, lease).await
    }
    async fn payload(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        self.inner.payload(id).await
    }
    async fn get(&self, id: JobId, by: Requester<'_>) -> Result<Job, StoreError> {
        self.inner.get(id, by).await
    }
    async fn get_by_prompt_id(
        &self,
        prompt_id: &str,
        by: Requester<'_>,
    ) -> Result<Job, StoreError> {
        self.inner.get_by_prompt_id(prompt_id, by).await
    }
    async fn list_user(&self, user: &str, page: Page) -> Result<Vec<Job>, StoreError> {
        self.inner.list_user(user, page).await
    }
    async fn trim(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.inner.trim(before_ms).await
    }
    async fn lead(&self, host: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.lead(host, ttl).await
    }
    fn events(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events()
    }
}
