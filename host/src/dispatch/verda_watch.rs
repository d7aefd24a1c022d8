//! Following one Verda inference from its submit to its end: which look
//! means what, and when the host stops waiting.
//!
//! Policy (see [`super::verda`] for the why):
//! - The job's wait starts when Verda first says `Inference`; until then
//!   it waits in Verda's queue, which Verda bounds by the request TTL: a
//!   404 then says Verda dropped it (it never ran: requeued). While Verda
//!   still says `Queue` the job may yet run, so the host never gives it up
//!   on its own (that could pay twice); past the TTL it says so in a
//!   warning (the TTL the host assumed is shorter than the deployment's).
//! - A 404 before the id was ever known is "not yet known"; after, "gone".
//! - Failed looks (and a 404 not yet known) are tolerated for
//!   `outage_patience` in a row; a 429 backs off and is not a failure.

use std::time::{Duration, Instant};

use super::backend::BackendError;
use super::comfyui::protocol::Outcome;
use super::verda::{Look, Progress, VerdaSettings, back_off};

/// What to do after one look.
pub(super) enum Flow {
    /// Look again after this pause.
    Again(Duration),
    /// The wait is over.
    End(Result<Outcome, BackendError>),
}

/// The state of one wait.
pub(super) struct Watch {
    deployment: String,
    started: Instant,
    running_since: Option<Instant>,
    /// Verda answered a status for the id at least once.
    seen: bool,
    /// Since when looks have failed in a row, and the last failure.
    unknown: Option<(Instant, BackendError)>,
    throttled: u32,
    warned: bool,
    job_wait: Duration,
    request_ttl: Duration,
    poll: Duration,
    patience: Duration,
    /// For the worker's answer to be stored and a poll to see it.
    slack: Duration,
}

impl Watch {
    /// A wait starting now, for a job allowed `job_wait` on its GPU.
    pub(super) fn new(settings: &VerdaSettings, job_wait: Duration) -> Self {
        Watch {
            deployment: settings.deployment.clone(),
            started: Instant::now(),
            running_since: None,
            seen: false,
            unknown: None,
            throttled: 0,
            warned: false,
            job_wait,
            request_ttl: settings.request_ttl,
            poll: settings.poll_interval,
            patience: settings.outage_patience,
            slack: settings.request + settings.poll_interval,
        }
    }

    /// Takes one look's finding into account.
    pub(super) fn step(&mut self, look: Look, id: &str) -> Flow {
        let mut pause = self.poll;
        match look {
            Look::Over(outcome) => return Flow::End(outcome),
            Look::Pending(progress) => {
                self.seen = true;
                self.unknown = None;
                self.throttled = 0;
                if progress == Progress::Running && self.running_since.is_none() {
                    self.running_since = Some(Instant::now());
                    tracing::debug!(inference = id, "on a GPU: the job's wait starts");
                }
            }
            Look::NotKnown if self.seen => {
                return Flow::End(Err(BackendError::Unavailable(format!(
                    "verda {}: Verda no longer knows inference {id} (dropped after the \
                     deployment's request TTL, or its replica was lost)",
                    self.deployment
                ))));
            }
            Look::NotKnown => {
                let e = BackendError::Unavailable(format!(
                    "verda {}: Verda does not know inference {id} (HTTP 404 since the submit)",
                    self.deployment
                ));
                if let Some(end) = self.failed(e) {
                    return end;
                }
            }
            Look::Throttled(asked) => {
                pause = back_off(asked, self.throttled, self.poll);
                self.throttled += 1;
                tracing::debug!(
                    inference = id,
                    pause_ms = pause.as_millis() as u64,
                    "HTTP 429: backing off"
                );
            }
            Look::Unknown(e) => {
                tracing::debug!(error = %e, "status poll failed; the run may go on, polling again");
                if let Some(end) = self.failed(e) {
                    return end;
                }
            }
        }
        let now = Instant::now();
        let Some(since) = self.running_since else {
            if !self.warned && now >= self.started + self.request_ttl + self.slack {
                self.warned = true;
                tracing::warn!(inference = id, deployment = %self.deployment,
                    ttl_secs = self.request_ttl.as_secs(),
                    "still queued at Verda after the request TTL: the deployment's TTL is longer \
                     than the host assumes (verda.request_ttl_secs); waiting as long as Verda keeps it");
            }
            return Flow::Again(pause);
        };
        let deadline = since + self.job_wait + self.slack;
        if now >= deadline {
            return Flow::End(Err(self.give_up()));
        }
        Flow::Again(pause.min(deadline - now))
    }

    /// A look that told nothing: `Some(end)` once that has lasted
    /// `patience`.
    fn failed(&mut self, e: BackendError) -> Option<Flow> {
        let since = self.unknown.as_ref().map_or_else(Instant::now, |(t, _)| *t);
        if since.elapsed() >= self.patience {
            return Some(Flow::End(Err(e)));
        }
        self.unknown = Some((since, e));
        None
    }

    /// Why the wait ends at its deadline.
    fn give_up(&mut self) -> BackendError {
        // Not known to have failed: by now its worker has given up (it was
        // told the job's wait), so running it again elsewhere is safe.
        if let Some((_, e)) = self.unknown.take() {
            return e;
        }
        BackendError::TimedOut(format!(
            "no result from verda {} within {} s of the job starting on a GPU",
            self.deployment,
            self.job_wait.as_secs()
        ))
    }
}
