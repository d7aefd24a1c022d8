//! The queue in memory: the embedded store's truth.
//!
//! Holds every job and the indexes a decision needs (waiting, active, per
//! user, per prompt id) and each user's counters. What a transition does is
//! decided by [`super::transition`], shared with the Redis store; this module
//! only stores the result and returns the rows that changed, so the caller
//! can journal them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::job::{
    BackendRef, Job, JobEvent, JobId, JobState, NewJob, Output, Page, Priority, Progress,
    UserLimits,
};
use super::snapshot::{PendingSummary, QueueSnapshot, RunningSummary, UserSummary};
use super::store::{CancelOutcome, Recovery, Requester, StoreLimits};
use super::transition::{self as t, Step, UserDelta, not_found};

/// A user's limits and running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    /// Limits and class.
    pub limits: UserLimits,
    /// GPU seconds used by finished jobs.
    pub gpu_seconds_used: f64,
    /// Jobs finished.
    pub jobs_done: u32,
    /// Last dispatch.
    pub last_dispatched_at_ms: Option<u64>,
    /// Jobs waiting (derived; rebuilt on load).
    #[serde(skip)]
    pub pending: u32,
    /// Jobs on GPUs (derived; rebuilt on load).
    #[serde(skip)]
    pub running: u32,
}

impl UserRow {
    fn new(limits: UserLimits) -> Self {
        UserRow {
            limits,
            gpu_seconds_used: 0.0,
            jobs_done: 0,
            last_dispatched_at_ms: None,
            pending: 0,
            running: 0,
        }
    }
}

/// A row to write to the journal.
#[derive(Debug, Clone)]
pub enum Change {
    /// A job's current form.
    Job(Box<Job>),
    /// A new job's payload (written once).
    Payload(JobId, Arc<Vec<u8>>),
    /// A user's row.
    User(UserRow),
    /// A trimmed job.
    Delete(JobId),
}

/// The result of a mutation: the value, the rows to journal, the event to send.
pub struct Applied<T> {
    /// What the caller gets.
    pub value: T,
    /// Rows that changed.
    pub changes: Vec<Change>,
    /// What to announce.
    pub event: Option<JobEvent>,
}

impl<T> Applied<T> {
    fn map<U>(self, value: U) -> Applied<U> {
        Applied {
            value,
            changes: self.changes,
            event: self.event,
        }
    }
}

/// The in-memory queue.
#[derive(Default)]
pub struct Core {
    limits: StoreLimits,
    next_id: JobId,
    jobs: BTreeMap<JobId, Job>,
    payloads: HashMap<JobId, Arc<Vec<u8>>>,
    queued: BTreeSet<JobId>,
    active: BTreeSet<JobId>,
    by_user: HashMap<String, BTreeSet<JobId>>,
    by_prompt: HashMap<String, JobId>,
    users: HashMap<String, UserRow>,
}

/// What a job change is announced as.
pub fn event(job: &Job) -> JobEvent {
    JobEvent {
        id: job.id,
        prompt_id: job.prompt_id.clone(),
        user: job.user.clone(),
        state: job.state,
        progress: job.progress,
    }
}

/// True for a lowercase hyphenated UUID, ComfyUI's `prompt_id` form.
pub fn is_prompt_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

impl Core {
    /// An empty queue.
    pub fn new(limits: StoreLimits) -> Self {
        Core {
            limits,
            next_id: 1,
            ..Core::default()
        }
    }

    /// Rebuilds the queue from journaled rows.
    pub fn load(
        limits: StoreLimits,
        users: Vec<UserRow>,
        jobs: Vec<Job>,
        payloads: Vec<(JobId, Vec<u8>)>,
    ) -> Self {
        let mut core = Core::new(limits);
        for user in users {
            core.users.insert(user.limits.name.clone(), user);
        }
        for (id, payload) in payloads {
            core.payloads.insert(id, Arc::new(payload));
        }
        for job in jobs {
            core.next_id = core.next_id.max(job.id + 1);
            core.index(&job);
            core.jobs.insert(job.id, job);
        }
        core
    }

    /// Adds a job to the indexes and its user's counters.
    fn index(&mut self, job: &Job) {
        self.by_user
            .entry(job.user.clone())
            .or_default()
            .insert(job.id);
        self.by_prompt.insert(job.prompt_id.clone(), job.id);
        let user = self.users.entry(job.user.clone()).or_insert_with(|| {
            UserRow::new(UserLimits {
                name: job.user.clone(),
                max_pending: u32::MAX,
                max_running: u32::MAX,
                priority: job.priority,
            })
        });
        if job.state == JobState::Queued {
            self.queued.insert(job.id);
            user.pending += 1;
        } else if job.state.is_active() {
            self.active.insert(job.id);
            user.running += 1;
        }
    }

    /// Stores a transition's result: the job, the index sets, the user's
    /// counters; checks the running cap for a claim. Nothing changes on error.
    fn commit(&mut self, step: Step) -> Result<Applied<Job>, StoreError> {
        let Step {
            job,
            from,
            delta,
            claim,
            announce,
        } = step;
        let user = self
            .users
            .get_mut(&job.user)
            .ok_or_else(|| StoreError::UnknownUser(job.user.clone()))?;
        if claim && user.running >= user.limits.max_running {
            return Err(StoreError::AtRunningCap {
                user: job.user.clone(),
                running: user.running,
                max: user.limits.max_running,
            });
        }
        user.pending = user.pending.saturating_add_signed(delta.pending);
        user.running = user.running.saturating_add_signed(delta.running);
        user.jobs_done += delta.done;
        user.gpu_seconds_used += delta.gpu_seconds;
        if delta.dispatched_at_ms.is_some() {
            user.last_dispatched_at_ms = delta.dispatched_at_ms;
        }
        let user_row = (delta != UserDelta::default()).then(|| Change::User(user.clone()));
        let id = job.id;
        if from != job.state {
            if from == JobState::Queued {
                self.queued.remove(&id);
            }
            if from.is_active() {
                self.active.remove(&id);
            }
            if job.state == JobState::Queued {
                self.queued.insert(id);
            }
            if job.state.is_active() {
                self.active.insert(id);
            }
        }
        let mut changes = vec![Change::Job(Box::new(job.clone()))];
        changes.extend(user_row);
        let event = announce.then(|| event(&job));
        self.jobs.insert(id, job.clone());
        Ok(Applied {
            value: job,
            changes,
            event,
        })
    }

    fn cloned(&self, id: JobId) -> Result<Job, StoreError> {
        self.jobs.get(&id).cloned().ok_or_else(|| not_found(id))
    }

    /// See [`super::JobStore::set_user`].
    pub fn set_user(&mut self, limits: UserLimits) -> Applied<()> {
        let row = self
            .users
            .entry(limits.name.clone())
            .or_insert_with(|| UserRow::new(limits.clone()));
        row.limits = limits;
        Applied {
            value: (),
            changes: vec![Change::User(row.clone())],
            event: None,
        }
    }

    /// See [`super::JobStore::enqueue`].
    pub fn enqueue(&mut self, new: NewJob, now_ms: u64) -> Result<Applied<Job>, StoreError> {
        if new.payload.len() > self.limits.max_payload_bytes {
            return Err(StoreError::PayloadTooLarge {
                size: new.payload.len(),
                max: self.limits.max_payload_bytes,
            });
        }
        let user = self
            .users
            .get(&new.user)
            .ok_or_else(|| StoreError::UnknownUser(new.user.clone()))?;
        if user.pending >= user.limits.max_pending {
            return Err(StoreError::TooManyPending {
                user: new.user.clone(),
                pending: user.pending,
                max: user.limits.max_pending,
            });
        }
        if !is_prompt_id(&new.prompt_id) || self.by_prompt.contains_key(&new.prompt_id) {
            return Err(StoreError::BadPromptId(new.prompt_id.clone()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let job = Job::new(id, &new, now_ms);
        let payload = Arc::new(new.payload);
        self.payloads.insert(id, payload.clone());
        self.index(&job);
        self.jobs.insert(id, job.clone());
        let mut changes = vec![
            Change::Payload(id, payload),
            Change::Job(Box::new(job.clone())),
        ];
        changes.extend(self.users.get(&job.user).cloned().map(Change::User));
        Ok(Applied {
            event: Some(event(&job)),
            changes,
            value: job,
        })
    }

    /// See [`super::JobStore::snapshot`].
    pub fn snapshot(&self, now_ms: u64) -> QueueSnapshot {
        let pending = self
            .queued
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(pending_summary)
            .collect();
        let running = self
            .active
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(running_summary)
            .collect();
        let mut users: Vec<UserSummary> = self.users.values().map(user_summary).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        QueueSnapshot {
            now_ms,
            pending,
            running,
            users,
        }
    }

    /// See [`super::JobStore::claim`].
    pub fn claim(
        &mut self,
        id: JobId,
        owner: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::claim(self.cloned(id)?, owner, lease_ms, now_ms)?)
    }

    /// See [`super::JobStore::renew`].
    pub fn renew(
        &mut self,
        id: JobId,
        owner: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Applied<()>, StoreError> {
        Ok(self
            .commit(t::renew(self.cloned(id)?, owner, lease_ms, now_ms)?)?
            .map(()))
    }

    /// See [`super::JobStore::dispatched`].
    pub fn dispatched(
        &mut self,
        id: JobId,
        owner: &str,
        backend: BackendRef,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::dispatched(self.cloned(id)?, owner, backend, now_ms)?)
    }

    /// See [`super::JobStore::running`].
    pub fn running(
        &mut self,
        id: JobId,
        owner: &str,
        progress: Option<Progress>,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::running(self.cloned(id)?, owner, progress, now_ms)?)
    }

    /// See [`super::JobStore::succeed`].
    pub fn succeed(
        &mut self,
        id: JobId,
        owner: &str,
        outputs: Vec<Output>,
        gpu_seconds: f64,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::succeed(
            self.cloned(id)?,
            owner,
            outputs,
            gpu_seconds,
            now_ms,
        )?)
    }

    /// See [`super::JobStore::fail`].
    pub fn fail(
        &mut self,
        id: JobId,
        owner: &str,
        reason: &str,
        gpu_seconds: f64,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::fail(
            self.cloned(id)?,
            owner,
            reason,
            gpu_seconds,
            now_ms,
        )?)
    }

    /// See [`super::JobStore::cancelled`].
    pub fn cancelled(
        &mut self,
        id: JobId,
        owner: &str,
        gpu_seconds: f64,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::cancelled(self.cloned(id)?, owner, gpu_seconds, now_ms)?)
    }

    /// See [`super::JobStore::requeue`].
    pub fn requeue(
        &mut self,
        id: JobId,
        owner: &str,
        reason: &str,
        lost_to_reclaim: bool,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        let step = t::requeue(
            self.cloned(id)?,
            owner,
            reason,
            lost_to_reclaim,
            &self.limits,
            now_ms,
        )?;
        self.commit(step)
    }

    /// See [`super::JobStore::user_limits`].
    pub fn user_limits(&self, user: &str) -> Option<UserLimits> {
        self.users.get(user).map(|row| row.limits.clone())
    }

    /// See [`super::JobStore::reprioritise`].
    pub fn reprioritise(
        &mut self,
        id: JobId,
        priority: Priority,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        self.commit(t::reprioritise(self.cloned(id)?, priority, now_ms)?)
    }

    /// See [`super::JobStore::cancel`].
    pub fn cancel(
        &mut self,
        id: JobId,
        by: Requester<'_>,
        now_ms: u64,
    ) -> Result<Applied<CancelOutcome>, StoreError> {
        match t::cancel(self.cloned(id)?, by, now_ms)? {
            (outcome, Some(step)) => Ok(self.commit(step)?.map(outcome)),
            (outcome, None) => Ok(Applied {
                value: outcome,
                changes: vec![],
                event: None,
            }),
        }
    }

    /// See [`super::JobStore::expired_leases`].
    pub fn expired_leases(&self, now_ms: u64) -> Vec<Job> {
        self.active
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| t::expired(j, now_ms))
            .cloned()
            .collect()
    }

    /// See [`super::JobStore::recover`].
    pub fn recover(
        &mut self,
        id: JobId,
        how: Recovery,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Applied<Job>, StoreError> {
        let step = t::recover(self.cloned(id)?, how, lease_ms, &self.limits, now_ms)?;
        self.commit(step)
    }

    /// See [`super::JobStore::payload`].
    pub fn payload(&self, id: JobId) -> Result<Arc<Vec<u8>>, StoreError> {
        self.payloads.get(&id).cloned().ok_or_else(|| not_found(id))
    }

    /// See [`super::JobStore::get`].
    pub fn get(&self, id: JobId, by: Requester<'_>) -> Result<Job, StoreError> {
        t::visible(self.cloned(id)?, by)
    }

    /// See [`super::JobStore::get_by_prompt_id`].
    pub fn get_by_prompt_id(&self, prompt_id: &str, by: Requester<'_>) -> Result<Job, StoreError> {
        let missing = || StoreError::NotFound(prompt_id.to_string());
        let id = *self.by_prompt.get(prompt_id).ok_or_else(missing)?;
        t::visible(self.cloned(id)?, by).map_err(|_| missing())
    }

    /// See [`super::JobStore::list_user`].
    pub fn list_user(&self, user: &str, page: Page) -> Vec<Job> {
        let Some(ids) = self.by_user.get(user) else {
            return Vec::new();
        };
        ids.iter()
            .rev()
            .skip(page.offset)
            .take(page.limit.min(500))
            .filter_map(|id| self.jobs.get(id).cloned())
            .collect()
    }

    /// See [`super::JobStore::trim`].
    pub fn trim(&mut self, before_ms: u64) -> Applied<usize> {
        let old: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.state.is_terminal() && j.updated_at_ms < before_ms)
            .map(|j| j.id)
            .collect();
        for id in &old {
            if let Some(job) = self.jobs.remove(id) {
                self.payloads.remove(id);
                self.by_prompt.remove(&job.prompt_id);
                if let Some(set) = self.by_user.get_mut(&job.user) {
                    set.remove(id);
                }
            }
        }
        Applied {
            value: old.len(),
            changes: old.into_iter().map(Change::Delete).collect(),
            event: None,
        }
    }
}

/// A queued job as the scheduler sees it.
pub fn pending_summary(j: &Job) -> PendingSummary {
    PendingSummary {
        id: j.id,
        user: j.user.clone(),
        kind: j.workflow_kind.clone(),
        priority: j.priority,
        submitted_at_ms: j.created_at_ms,
        est_gpu_seconds: j.cost.gpu_seconds,
        attempts: j.attempts,
    }
}

/// An active job as the scheduler sees it.
pub fn running_summary(j: &Job) -> RunningSummary {
    RunningSummary {
        id: j.id,
        user: j.user.clone(),
        kind: j.workflow_kind.clone(),
        started_at_ms: j
            .history
            .iter()
            .rev()
            .find(|t| t.state == JobState::Leased)
            .map_or(j.updated_at_ms, |t| t.at_ms),
        est_gpu_seconds: j.cost.gpu_seconds,
    }
}

/// A user row as the scheduler sees it.
pub fn user_summary(u: &UserRow) -> UserSummary {
    UserSummary {
        name: u.limits.name.clone(),
        priority: u.limits.priority,
        running: u.running,
        pending: u.pending,
        gpu_seconds_used: u.gpu_seconds_used,
        jobs_done: u.jobs_done,
        max_running: u.limits.max_running,
        max_pending: u.limits.max_pending,
        last_dispatched_at_ms: u.last_dispatched_at_ms,
    }
}
