//! Resolving expired leases: the step that makes a host crash cost nothing
//! but time.
//!
//! Run on start and periodically by whichever host leads. For each job whose
//! lease lapsed:
//! - a backend job id was recorded → ask the backend whether it still knows
//!   that job; if it does, take the lease and follow the same backend job
//!   (no second GPU run); if it says it does not, requeue;
//! - no backend id → the job never reached a GPU: requeue;
//! - the backend cannot be asked right now → leave the job alone this round
//!   (requeueing could pay for the same work twice); it is retried next round.
//!
//! The store turns the third (configurable) recovery of the same job into
//! `dead`, so a job that keeps killing hosts cannot loop forever.

use std::time::Duration;

use async_trait::async_trait;

use super::error::StoreError;
use super::job::{BackendRef, JobId};
use super::store::{JobStore, Recovery};

/// Asks a backend about a job it was given.
#[async_trait]
pub trait BackendProbe: Send + Sync {
    /// `Ok(true)` if the backend still has the job (queued, running or
    /// finished with a result to fetch), `Ok(false)` if it does not know it,
    /// `Err` if it cannot be asked now.
    async fn knows(&self, backend: &BackendRef) -> anyhow::Result<bool>;
}

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecoveryReport {
    /// Taken over; follow the same backend job.
    pub reattached: Vec<JobId>,
    /// Back in the queue.
    pub requeued: Vec<JobId>,
    /// Given up on.
    pub dead: Vec<JobId>,
    /// Left for the next pass, with why.
    pub skipped: Vec<(JobId, String)>,
}

/// Resolves every lease that expired before `now_ms`, taking re-attached
/// jobs over as `owner`.
pub async fn recover_expired(
    store: &dyn JobStore,
    probe: &dyn BackendProbe,
    owner: &str,
    lease: Duration,
    now_ms: u64,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    for job in store.expired_leases(now_ms).await? {
        let how = match &job.backend {
            None => Recovery::Requeue {
                reason: "it had not reached a GPU".into(),
            },
            Some(backend) => match probe.knows(backend).await {
                Ok(true) => Recovery::Reattach {
                    owner: owner.to_string(),
                },
                Ok(false) => Recovery::Requeue {
                    reason: format!("{} no longer knows job {}", backend.pool, backend.job_id),
                },
                Err(e) => {
                    tracing::warn!(job = job.id, pool = %backend.pool, error = %e, "cannot ask the backend; recovery retried later");
                    report.skipped.push((job.id, format!("{e:#}")));
                    continue;
                }
            },
        };
        match store.recover(job.id, how, lease).await {
            Ok(after) if after.state == super::JobState::Dead => report.dead.push(job.id),
            Ok(after) if after.state == super::JobState::Queued => report.requeued.push(job.id),
            Ok(_) => report.reattached.push(job.id),
            // Renewed or resolved by someone else meanwhile: nothing to do.
            Err(StoreError::LeaseLost { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if report != RecoveryReport::default() {
        tracing::info!(?report, "expired leases resolved");
    }
    Ok(report)
}

/// Runs recovery every half lease while this host holds the dispatcher
/// leadership (always, with the embedded store), for as long as the task
/// runs. The first pass runs at once, so a restart recovers immediately.
pub async fn recovery_loop(
    store: std::sync::Arc<dyn JobStore>,
    probe: std::sync::Arc<dyn BackendProbe>,
    host: String,
    lease: Duration,
) {
    let clock = super::clock::system();
    let mut tick = tokio::time::interval((lease / 2).max(Duration::from_secs(1)));
    let mut leading = false;
    loop {
        tick.tick().await;
        match store.lead(&host, lease).await {
            Ok(true) => {
                if !leading {
                    tracing::info!(%host, "this host leads the dispatcher");
                }
                leading = true;
                if let Err(e) =
                    recover_expired(&*store, &*probe, &host, lease, clock.now_ms()).await
                {
                    tracing::warn!(error = %e, "recovery pass failed; retrying");
                }
            }
            Ok(false) => {
                if leading {
                    tracing::warn!(%host, "lost the dispatcher leadership");
                }
                leading = false;
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach the queue to renew leadership"),
        }
    }
}
