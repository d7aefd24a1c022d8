//! The job state machine as pure functions on one job.
//!
//! Both stores run exactly this code to decide what a transition does: the
//! embedded store applies the result to memory, the Redis store sends it to
//! a Lua script that checks the job was not changed meanwhile (a version
//! compare-and-set), checks the caps, and writes the job, the indexes and
//! the user's counters in one atomic step. One implementation of the rules,
//! two ways to make them durable.

use super::error::StoreError;
use super::job::{BackendRef, Job, JobId, JobState, Lease, Output, Priority, Progress, Transition};
use super::store::{CancelOutcome, Recovery, Requester, StoreLimits};

/// How a transition changes the owner's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UserDelta {
    /// Change in jobs waiting.
    pub pending: i32,
    /// Change in jobs on GPUs.
    pub running: i32,
    /// Jobs finished by this change (0 or 1).
    pub done: u32,
    /// GPU seconds to add to the user's usage.
    pub gpu_seconds: f64,
    /// Set the user's last dispatch time (a claim).
    pub dispatched_at_ms: Option<u64>,
}

/// The outcome of a transition: the job as it should be stored.
#[derive(Debug, Clone)]
pub struct Step {
    /// The new job.
    pub job: Job,
    /// The state before.
    pub from: JobState,
    /// The counter changes.
    pub delta: UserDelta,
    /// Whether this is a claim (the store checks the running cap).
    pub claim: bool,
    /// Whether the change is worth announcing to websockets.
    pub announce: bool,
}

fn delta(from: JobState, to: JobState, gpu: f64) -> UserDelta {
    let mut d = UserDelta::default();
    if from == JobState::Queued {
        d.pending -= 1;
    }
    if to == JobState::Queued {
        d.pending += 1;
    }
    if from.is_active() && !to.is_active() {
        d.running -= 1;
    }
    if to.is_active() && !from.is_active() {
        d.running += 1;
    }
    if to.is_terminal() && !from.is_terminal() {
        d.done = 1;
        if gpu.is_finite() && gpu > 0.0 {
            d.gpu_seconds = gpu;
        }
    }
    d
}

fn step(mut job: Job, to: JobState, now_ms: u64, note: Option<String>) -> Step {
    let from = job.state;
    job.enter(to, now_ms, note);
    Step {
        delta: delta(from, to, job.gpu_seconds),
        job,
        from,
        claim: false,
        announce: true,
    }
}

/// A step that changes fields but not the state.
fn touch(mut job: Job, now_ms: u64, announce: bool) -> Step {
    job.updated_at_ms = now_ms;
    Step {
        from: job.state,
        job,
        delta: UserDelta::default(),
        claim: false,
        announce,
    }
}

/// Checks that `owner` holds the lease of an active job.
pub fn held(job: &Job, owner: &str) -> Result<(), StoreError> {
    match &job.lease {
        Some(lease) if job.state.is_active() && lease.owner == owner => Ok(()),
        lease => Err(StoreError::LeaseLost {
            id: job.id,
            holder: lease.as_ref().map(|l| l.owner.clone()),
            caller: owner.to_string(),
        }),
    }
}

fn invalid(job: &Job, action: &'static str) -> StoreError {
    StoreError::InvalidTransition {
        id: job.id,
        state: job.state,
        action,
    }
}

/// The job, if `by` may see it; someone else's job is `NotFound`.
pub fn visible(job: Job, by: Requester<'_>) -> Result<Job, StoreError> {
    match by {
        Requester::User(user) if job.user != user => Err(StoreError::NotFound(job.id.to_string())),
        _ => Ok(job),
    }
}

/// queued → leased. The store checks the running cap.
pub fn claim(mut job: Job, owner: &str, lease_ms: u64, now_ms: u64) -> Result<Step, StoreError> {
    if job.state != JobState::Queued {
        return Err(invalid(&job, "claim"));
    }
    job.attempts += 1;
    job.lease = Some(Lease {
        owner: owner.to_string(),
        expires_at_ms: now_ms + lease_ms,
    });
    let note = format!("attempt {} by {owner}", job.attempts);
    let mut s = step(job, JobState::Leased, now_ms, Some(note));
    s.claim = true;
    s.delta.dispatched_at_ms = Some(now_ms);
    Ok(s)
}

/// Extends the lease.
pub fn renew(mut job: Job, owner: &str, lease_ms: u64, now_ms: u64) -> Result<Step, StoreError> {
    held(&job, owner)?;
    job.lease = Some(Lease {
        owner: owner.to_string(),
        expires_at_ms: now_ms + lease_ms,
    });
    Ok(touch(job, now_ms, false))
}

/// leased → dispatched, recording the backend's job id.
pub fn dispatched(
    mut job: Job,
    owner: &str,
    backend: BackendRef,
    now_ms: u64,
) -> Result<Step, StoreError> {
    held(&job, owner)?;
    // The same record again: the first call's write landed but its answer
    // was lost with the connection (Redis killed just after the write).
    // Refusing it would make the caller give a running GPU job up.
    if job.backend.as_ref() == Some(&backend)
        && matches!(job.state, JobState::Dispatched | JobState::Running)
    {
        return Ok(touch(job, now_ms, false));
    }
    if job.state != JobState::Leased {
        return Err(invalid(&job, "record a backend id"));
    }
    let note = format!("{} job {}", backend.pool, backend.job_id);
    job.backend = Some(backend);
    Ok(step(job, JobState::Dispatched, now_ms, Some(note)))
}

/// dispatched → running, or progress while running.
pub fn running(
    mut job: Job,
    owner: &str,
    progress: Option<Progress>,
    now_ms: u64,
) -> Result<Step, StoreError> {
    held(&job, owner)?;
    if progress.is_some() {
        job.progress = progress;
    }
    match job.state {
        JobState::Dispatched => Ok(step(job, JobState::Running, now_ms, None)),
        JobState::Running => Ok(touch(job, now_ms, true)),
        _ => Err(invalid(&job, "mark running")),
    }
}

fn finish(
    mut job: Job,
    owner: &str,
    to: JobState,
    reason: String,
    gpu_seconds: f64,
    now_ms: u64,
) -> Result<Step, StoreError> {
    held(&job, owner)?;
    job.lease = None;
    job.gpu_seconds = if gpu_seconds.is_finite() {
        gpu_seconds.max(0.0)
    } else {
        0.0
    };
    job.reason = Some(reason.clone());
    Ok(step(job, to, now_ms, Some(reason)))
}

/// → succeeded.
pub fn succeed(
    mut job: Job,
    owner: &str,
    outputs: Vec<Output>,
    gpu_seconds: f64,
    now_ms: u64,
) -> Result<Step, StoreError> {
    held(&job, owner)?;
    let reason = format!("{} output(s)", outputs.len());
    job.outputs = outputs;
    finish(job, owner, JobState::Succeeded, reason, gpu_seconds, now_ms)
}

/// → failed.
pub fn fail(
    job: Job,
    owner: &str,
    reason: &str,
    gpu_seconds: f64,
    now_ms: u64,
) -> Result<Step, StoreError> {
    finish(
        job,
        owner,
        JobState::Failed,
        reason.to_string(),
        gpu_seconds,
        now_ms,
    )
}

/// → cancelled, confirmed by the dispatcher.
pub fn cancelled(job: Job, owner: &str, gpu_seconds: f64, now_ms: u64) -> Result<Step, StoreError> {
    finish(
        job,
        owner,
        JobState::Cancelled,
        "cancelled while running".into(),
        gpu_seconds,
        now_ms,
    )
}

/// Clears the attempt's fields and goes back to the queue (or dead).
fn back_to_queue(mut job: Job, reason: String, dead: bool, now_ms: u64) -> Step {
    job.lease = None;
    job.backend = None;
    job.progress = None;
    job.reason = Some(reason.clone());
    let to = if dead {
        JobState::Dead
    } else {
        JobState::Queued
    };
    step(job, to, now_ms, Some(reason))
}

/// active → queued (attempts were counted at claim), dead when exhausted,
/// cancelled when a cancel was requested meanwhile.
pub fn requeue(
    mut job: Job,
    owner: &str,
    reason: &str,
    lost_to_reclaim: bool,
    limits: &StoreLimits,
    now_ms: u64,
) -> Result<Step, StoreError> {
    held(&job, owner)?;
    job.lost_to_reclaim |= lost_to_reclaim;
    if job.cancel_requested {
        job.lease = None;
        job.reason = Some("cancelled".into());
        return Ok(step(
            job,
            JobState::Cancelled,
            now_ms,
            Some(format!("cancelled ({reason})")),
        ));
    }
    let exhausted = job.attempts >= limits.max_attempts;
    let reason = if exhausted {
        format!("{reason}; gave up after {} attempts", job.attempts)
    } else {
        reason.to_string()
    };
    Ok(back_to_queue(job, reason, exhausted, now_ms))
}

/// Cancel: queued → cancelled; active → cancel requested; terminal → no-op.
pub fn cancel(
    mut job: Job,
    by: Requester<'_>,
    now_ms: u64,
) -> Result<(CancelOutcome, Option<Step>), StoreError> {
    job = visible(job, by)?;
    let who = match by {
        Requester::User(_) => "its owner",
        Requester::Admin => "the operator",
    };
    Ok(match job.state {
        s if s.is_terminal() => (CancelOutcome::AlreadyFinished, None),
        JobState::Queued => {
            let reason = format!("cancelled by {who}");
            job.reason = Some(reason.clone());
            (
                CancelOutcome::Cancelled,
                Some(step(job, JobState::Cancelled, now_ms, Some(reason))),
            )
        }
        _ => {
            job.cancel_requested = true;
            (CancelOutcome::Requested, Some(touch(job, now_ms, true)))
        }
    })
}

/// The operator moves a waiting job to another priority class; it stays
/// queued (its place follows the new class) and the change is in its
/// history. A job already on its way to a GPU cannot be moved.
pub fn reprioritise(mut job: Job, priority: Priority, now_ms: u64) -> Result<Step, StoreError> {
    if job.state != JobState::Queued {
        return Err(invalid(&job, "reprioritise"));
    }
    let note = format!(
        "priority {} → {} by the operator",
        job.priority.name(),
        priority.name()
    );
    job.priority = priority;
    Ok(step(job, JobState::Queued, now_ms, Some(note)))
}

/// True when the job's lease lapsed before `now_ms`.
pub fn expired(job: &Job, now_ms: u64) -> bool {
    job.state.is_active() && job.lease.as_ref().is_some_and(|l| l.expires_at_ms < now_ms)
}

/// Resolves an expired lease: re-attach, requeue, or dead after too many.
pub fn recover(
    mut job: Job,
    how: Recovery,
    lease_ms: u64,
    limits: &StoreLimits,
    now_ms: u64,
) -> Result<Step, StoreError> {
    if !expired(&job, now_ms) {
        return Err(StoreError::LeaseLost {
            id: job.id,
            holder: job.lease.as_ref().map(|l| l.owner.clone()),
            caller: "recovery".into(),
        });
    }
    if matches!(how, Recovery::Reattach { .. }) && job.backend.is_none() {
        return Err(invalid(&job, "re-attach without a backend id"));
    }
    let previous = job
        .lease
        .as_ref()
        .map(|l| l.owner.clone())
        .unwrap_or_default();
    job.recoveries += 1;
    if job.recoveries > limits.max_recoveries {
        let reason = format!(
            "lease of {previous} expired {} times; giving up",
            job.recoveries
        );
        return Ok(back_to_queue(job, reason, true, now_ms));
    }
    Ok(match how {
        Recovery::Reattach { owner } => {
            job.lease = Some(Lease {
                owner: owner.clone(),
                expires_at_ms: now_ms + lease_ms,
            });
            job.history.push(Transition {
                state: job.state,
                at_ms: now_ms,
                note: Some(format!(
                    "re-attached by {owner} after the lease of {previous} expired"
                )),
            });
            touch(job, now_ms, false)
        }
        Recovery::Requeue { reason } => back_to_queue(
            job,
            format!("lease of {previous} expired: {reason}"),
            false,
            now_ms,
        ),
    })
}

/// The id of a job, for error messages about a missing one.
pub fn not_found(id: JobId) -> StoreError {
    StoreError::NotFound(id.to_string())
}
