//! The `JobStore` trait: the one seam between the queue's users (front,
//! dispatcher, admin) and its two implementations (embedded, Redis).
//!
//! Every method is atomic: it either applies fully and durably or returns an
//! error and changes nothing. Methods that act for a dispatcher take the
//! lease `owner` and fail with [`StoreError::LeaseLost`] once another
//! dispatcher has taken the job over, so a dispatcher that was paused (GC,
//! network) cannot clobber the new owner's work.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::error::StoreError;
use super::job::{
    BackendRef, Job, JobEvent, JobId, NewJob, Output, Page, Priority, Progress, UserLimits,
};
use super::snapshot::QueueSnapshot;

/// Who asks to cancel: the owner (checked) or the operator (any job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester<'a> {
    /// An attendee: may only touch their own jobs.
    User(&'a str),
    /// The operator.
    Admin,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting: it is cancelled now.
    Cancelled,
    /// The job is on a GPU: the dispatcher will stop it and confirm.
    Requested,
    /// The job had already finished; nothing changed.
    AlreadyFinished,
}

/// How recovery resolves an expired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The backend still knows the job: the new owner takes the lease and
    /// follows the same backend job (no second GPU run).
    Reattach {
        /// The dispatcher taking over.
        owner: String,
    },
    /// The job never reached a backend, or the backend lost it: queue it again.
    Requeue {
        /// Why, for the history.
        reason: String,
    },
}

/// Static settings every store enforces the same way.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Lease expiries a job survives before it goes `dead`.
    pub max_recoveries: u32,
    /// Dispatch attempts (claims) before a requeued job goes `dead`.
    pub max_attempts: u32,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_payload_bytes: 2 << 20,
            max_recoveries: 3,
            max_attempts: 5,
        }
    }
}

/// The durable job queue.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Registers or updates a user's limits and class.
    async fn set_user(&self, limits: UserLimits) -> Result<(), StoreError>;

    /// Writes a new queued job durably and returns it. Checks the user, the
    /// payload size, the user's pending cap and the prompt id.
    async fn enqueue(&self, job: NewJob) -> Result<Job, StoreError>;

    /// Pending jobs, running jobs and per-user usage, for the scheduler.
    async fn snapshot(&self) -> Result<QueueSnapshot, StoreError>;

    /// Atomically moves a queued job to leased, owned by `owner` until
    /// `now + lease`. Fails if the job is not queued (someone else claimed
    /// it) or its user is at their running cap.
    async fn claim(&self, id: JobId, owner: &str, lease: Duration) -> Result<Job, StoreError>;

    /// Extends the lease of an active job.
    async fn renew(&self, id: JobId, owner: &str, lease: Duration) -> Result<(), StoreError>;

    /// Records the backend's job id: leased → dispatched. Call this before
    /// anything else happens to the backend job, so recovery can re-attach.
    async fn dispatched(
        &self,
        id: JobId,
        owner: &str,
        backend: BackendRef,
    ) -> Result<Job, StoreError>;

    /// dispatched/running → running, with optional step progress.
    async fn running(
        &self,
        id: JobId,
        owner: &str,
        progress: Option<Progress>,
    ) -> Result<Job, StoreError>;

    /// → succeeded, with the outputs and the GPU seconds used.
    async fn succeed(
        &self,
        id: JobId,
        owner: &str,
        outputs: Vec<Output>,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError>;

    /// → failed, with the reason and the GPU seconds used.
    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError>;

    /// The dispatcher confirms it stopped a job whose cancel was requested.
    async fn cancelled(&self, id: JobId, owner: &str, gpu_seconds: f64) -> Result<Job, StoreError>;

    /// Back to queued (attempts + 1), e.g. after a spot reclaim; `dead` once
    /// attempts reach the limit.
    async fn requeue(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        lost_to_reclaim: bool,
    ) -> Result<Job, StoreError>;

    /// Cancels a job: queued → cancelled at once; active → cancel requested.
    async fn cancel(&self, id: JobId, by: Requester<'_>) -> Result<CancelOutcome, StoreError>;

    /// A user's limits and class as the store has them (none: the user has
    /// not been registered yet).
    async fn user_limits(&self, user: &str) -> Result<Option<UserLimits>, StoreError>;

    /// Moves a queued job to another priority class (the operator's
    /// reprioritise); `InvalidTransition` once it left the queue.
    async fn reprioritise(&self, id: JobId, priority: Priority) -> Result<Job, StoreError>;

    /// Active jobs whose lease lapsed before `now_ms`.
    async fn expired_leases(&self, now_ms: u64) -> Result<Vec<Job>, StoreError>;

    /// Resolves one expired lease. Fails with `LeaseLost` if the lease was
    /// renewed or resolved meanwhile. After `max_recoveries` the job goes
    /// `dead` instead, whatever `how` says.
    async fn recover(&self, id: JobId, how: Recovery, lease: Duration) -> Result<Job, StoreError>;

    /// The prompt payload of a job (for the dispatcher).
    async fn payload(&self, id: JobId) -> Result<Vec<u8>, StoreError>;

    /// A job by id, for its owner (someone else's job is `NotFound`).
    async fn get(&self, id: JobId, by: Requester<'_>) -> Result<Job, StoreError>;

    /// A job by prompt id, for its owner.
    async fn get_by_prompt_id(&self, prompt_id: &str, by: Requester<'_>)
    -> Result<Job, StoreError>;

    /// A user's jobs, newest first.
    async fn list_user(&self, user: &str, page: Page) -> Result<Vec<Job>, StoreError>;

    /// Removes terminal jobs last changed before `before_ms` (their output
    /// files are kept). Returns how many were removed.
    async fn trim(&self, before_ms: u64) -> Result<usize, StoreError>;

    /// Tries to take or keep the dispatcher leadership for `ttl`. Exactly one
    /// host leads at a time; the embedded store always says yes.
    async fn lead(&self, host: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Job changes, as they happen, on every host.
    fn events(&self) -> broadcast::Receiver<JobEvent>;
}
