//! The queue as the scheduler plugin sees it.
//!
//! Stores produce a [`QueueSnapshot`] (owned, by name); [`QueueSnapshot::for_plugin`]
//! turns it into the plugin contract's indexed form, where jobs refer to
//! users and workflow kinds by index, and keeps the index → job id map so
//! the dispatcher can claim what the plugin picked.

use std::collections::HashMap;

use super::job::{JobId, Priority};
use crate::plugins::api::{PendingJob, RunningJob, Snapshot, UserUsage};

/// A waiting job, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSummary {
    /// Job id.
    pub id: JobId,
    /// Owner.
    pub user: String,
    /// Workflow kind.
    pub kind: String,
    /// Priority class.
    pub priority: Priority,
    /// Submit time (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// Estimated GPU seconds.
    pub est_gpu_seconds: f64,
    /// Dispatch attempts so far.
    pub attempts: u32,
}

/// A job on a GPU (leased, dispatched or running).
#[derive(Debug, Clone, PartialEq)]
pub struct RunningSummary {
    /// Job id.
    pub id: JobId,
    /// Owner.
    pub user: String,
    /// Workflow kind.
    pub kind: String,
    /// When it was claimed (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Estimated GPU seconds.
    pub est_gpu_seconds: f64,
}

/// One user's usage and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSummary {
    /// User name.
    pub name: String,
    /// Priority class.
    pub priority: Priority,
    /// Jobs on GPUs now.
    pub running: u32,
    /// Jobs waiting.
    pub pending: u32,
    /// GPU seconds used by finished jobs.
    pub gpu_seconds_used: f64,
    /// Jobs finished.
    pub jobs_done: u32,
    /// Running cap.
    pub max_running: u32,
    /// Pending cap.
    pub max_pending: u32,
    /// Last dispatch (ms since the Unix epoch).
    pub last_dispatched_at_ms: Option<u64>,
}

/// Everything a scheduling decision needs, owned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSnapshot {
    /// The store's clock (ms since the Unix epoch).
    pub now_ms: u64,
    /// Waiting jobs, oldest first.
    pub pending: Vec<PendingSummary>,
    /// Jobs on GPUs.
    pub running: Vec<RunningSummary>,
    /// Users (those with jobs, at least).
    pub users: Vec<UserSummary>,
}

impl QueueSnapshot {
    /// The plugin contract's form, and for each pending index the job id.
    pub fn for_plugin(&self) -> (Snapshot, Vec<JobId>) {
        let mut users: Vec<UserUsage> = Vec::with_capacity(self.users.len());
        let mut user_index: HashMap<String, u32> = HashMap::with_capacity(self.users.len());
        for u in &self.users {
            user_index.insert(u.name.clone(), users.len() as u32);
            users.push(UserUsage {
                name: u.name.clone(),
                priority: u.priority.class(),
                running: u.running,
                pending: u.pending,
                gpu_seconds_used: u.gpu_seconds_used,
                jobs_done: u.jobs_done,
                max_running: Some(u.max_running),
                last_dispatched_at_ms: u.last_dispatched_at_ms,
            });
        }
        // A job whose user is missing from `users` (a store race) gets a
        // user entry with no limits rather than being dropped from the decision.
        let mut user_of = |name: &str| -> u32 {
            if let Some(i) = user_index.get(name) {
                return *i;
            }
            let i = users.len() as u32;
            users.push(UserUsage {
                name: name.to_string(),
                priority: Priority::Normal.class(),
                running: 0,
                pending: 0,
                gpu_seconds_used: 0.0,
                jobs_done: 0,
                max_running: None,
                last_dispatched_at_ms: None,
            });
            user_index.insert(name.to_string(), i);
            i
        };
        let mut kinds: Vec<String> = Vec::new();
        let mut intern = |kind: &str| -> u32 {
            match kinds.iter().position(|k| k == kind) {
                Some(i) => i as u32,
                None => {
                    kinds.push(kind.to_string());
                    (kinds.len() - 1) as u32
                }
            }
        };
        let ids = self.pending.iter().map(|j| j.id).collect();
        let pending = self
            .pending
            .iter()
            .map(|j| PendingJob {
                id: j.id,
                user: user_of(&j.user),
                kind: intern(&j.kind),
                priority: j.priority.class(),
                submitted_at_ms: j.submitted_at_ms,
                est_gpu_seconds: j.est_gpu_seconds,
                attempts: j.attempts,
            })
            .collect();
        let running = self
            .running
            .iter()
            .map(|j| RunningJob {
                id: j.id,
                user: user_of(&j.user),
                kind: intern(&j.kind),
                started_at_ms: j.started_at_ms,
                est_gpu_seconds: j.est_gpu_seconds,
            })
            .collect();
        (
            Snapshot {
                now_ms: self.now_ms,
                pending,
                running,
                users,
                kinds,
            },
            ids,
        )
    }
}
