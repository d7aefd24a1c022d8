//! Queue positions and ETAs for every attendee, recomputed as the queue
//! moves and shared with every socket through a `watch` channel.
//!
//! Policy:
//! - One task per host does the work (a snapshot after each burst of queue
//!   changes, at most every 250 ms, and every 5 s regardless), so a
//!   thousand sockets cost one snapshot, not a thousand.
//! - The position is an estimate: waiting jobs in priority-class order, then
//!   submit order. The scheduler plugin decides the real order (fair-share
//!   moves a newcomer ahead of a heavy user), so the editor shows "about".
//! - ETA = (the expected run time of every job ahead + what is left of the
//!   running ones) / the pools' capacity, plus a cold start when no pool is
//!   warm. A job's expected run time is the recent mean for its workflow
//!   kind (the last finished jobs of that kind, exponentially weighted), or
//!   its validator's estimate until one has finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::dispatch::dispatcher::Dispatcher;
use crate::queue::{JobState, JobStore, QueueSnapshot, Requester};

/// One of an attendee's waiting jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spot {
    /// The job's number (the `number` `/api/prompt` answered).
    pub number: u64,
    /// 1 = next to run.
    pub position: usize,
    /// Jobs waiting ahead of it, everyone's.
    pub ahead: usize,
    /// Estimated seconds until it starts.
    pub eta_seconds: u64,
    /// The estimate includes a cold start.
    pub cold: bool,
}

/// Each user's waiting jobs, best placed first.
pub type Spots = HashMap<String, Vec<Spot>>;

/// The shared positions.
#[derive(Clone)]
pub struct Positions {
    rx: watch::Receiver<Arc<Spots>>,
    nudge: Arc<Notify>,
}

impl Positions {
    /// Starts the task that keeps the positions current.
    pub fn start(
        queue: Arc<dyn JobStore>,
        dispatcher: Arc<Dispatcher>,
        cold_start_ms: u64,
    ) -> Positions {
        let (tx, rx) = watch::channel(Arc::new(Spots::new()));
        let nudge = Arc::new(Notify::new());
        tokio::spawn(watch_queue(
            queue,
            dispatcher,
            cold_start_ms,
            tx,
            nudge.clone(),
        ));
        Positions { rx, nudge }
    }

    /// The positions, as they change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Spots>> {
        self.rx.clone()
    }

    /// Asks for a recomputation soon (a job was queued or cancelled here).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

/// Recent mean run time per workflow kind, in seconds.
#[derive(Default)]
struct Durations {
    by_kind: HashMap<String, f64>,
}

impl Durations {
    fn record(&mut self, kind: &str, seconds: f64) {
        let mean = self.by_kind.entry(kind.to_string()).or_insert(seconds);
        *mean = 0.7 * *mean + 0.3 * seconds;
    }

    fn expected(&self, kind: &str, estimate: f64) -> f64 {
        self.by_kind
            .get(kind)
            .copied()
            .unwrap_or(if estimate > 0.0 { estimate } else { 30.0 })
    }
}

async fn watch_queue(
    queue: Arc<dyn JobStore>,
    dispatcher: Arc<Dispatcher>,
    cold_start_ms: u64,
    tx: watch::Sender<Arc<Spots>>,
    nudge: Arc<Notify>,
) {
    let mut events = queue.events();
    let mut durations = Durations::default();
    loop {
        let mut finished = Vec::new();
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if event.state == JobState::Succeeded => finished.push(event.id),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            () = nudge.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        // Let a burst of changes settle into one snapshot.
        tokio::time::sleep(Duration::from_millis(250)).await;
        while let Ok(event) = events.try_recv() {
            if event.state == JobState::Succeeded {
                finished.push(event.id);
            }
        }
        for id in finished {
            if let Ok(job) = queue.get(id, Requester::Admin).await
                && let Some(started) = crate::front::jobs::shape::started_ms(&job)
            {
                let seconds = job.updated_at_ms.saturating_sub(started) as f64 / 1000.0;
                durations.record(&job.workflow_kind, seconds);
            }
        }
        let Ok(snapshot) = queue.snapshot().await else {
            continue; // a store outage: keep the last positions
        };
        let pools: Vec<_> = dispatcher.pools().iter().filter(|p| p.in_use()).collect();
        let capacity: u32 = pools.iter().map(|p| p.backend().info().capacity).sum();
        let cold = !pools.iter().any(|p| p.backend().warm());
        let spots = compute(
            &snapshot,
            &durations,
            capacity.max(1),
            cold.then_some(cold_start_ms),
        );
        tx.send_if_modified(|current| {
            if **current == spots {
                false
            } else {
                *current = Arc::new(spots);
                true
            }
        });
        if tx.is_closed() {
            return;
        }
    }
}

/// Positions and ETAs from one snapshot.
fn compute(
    snapshot: &QueueSnapshot,
    durations: &Durations,
    capacity: u32,
    cold_start_ms: Option<u64>,
) -> Spots {
    let mut pending: Vec<_> = snapshot.pending.iter().collect();
    pending.sort_by_key(|p| (p.priority.rank(), p.id));
    let running_left: f64 = snapshot
        .running
        .iter()
        .map(|r| {
            let elapsed = snapshot.now_ms.saturating_sub(r.started_at_ms) as f64 / 1000.0;
            (durations.expected(&r.kind, r.est_gpu_seconds) - elapsed).max(0.0)
        })
        .sum();
    let cold_seconds = cold_start_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
    let mut spots = Spots::new();
    let mut work_ahead = running_left;
    for (index, job) in pending.iter().enumerate() {
        // With free capacity the job starts now; otherwise when the work
        // ahead of it has drained through every GPU.
        let busy = snapshot.running.len() + index;
        let wait = if busy < capacity as usize {
            0.0
        } else {
            work_ahead / capacity as f64
        };
        spots.entry(job.user.clone()).or_default().push(Spot {
            number: job.id,
            position: index + 1,
            ahead: index,
            eta_seconds: (wait + cold_seconds).round() as u64,
            cold: cold_start_ms.is_some(),
        });
        work_ahead += durations.expected(&job.kind, job.est_gpu_seconds);
    }
    spots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{PendingSummary, Priority, RunningSummary};

    fn pending(id: u64, user: &str, priority: Priority) -> PendingSummary {
        PendingSummary {
            id,
            user: user.into(),
            kind: "flux2-klein".into(),
            priority,
            submitted_at_ms: id,
            est_gpu_seconds: 10.0,
            attempts: 0,
        }
    }

    #[test]
    fn positions_follow_class_then_submit_order_and_etas_grow() {
        let snapshot = QueueSnapshot {
            now_ms: 10_000,
            pending: vec![
                pending(1, "ann", Priority::Normal),
                pending(2, "bob", Priority::Normal),
                pending(3, "tia", Priority::Instructor),
            ],
            running: vec![RunningSummary {
                id: 0,
                user: "cy".into(),
                kind: "flux2-klein".into(),
                started_at_ms: 5_000,
                est_gpu_seconds: 10.0,
            }],
            users: vec![],
        };
        let mut durations = Durations::default();
        durations.record("flux2-klein", 20.0);
        let spots = compute(&snapshot, &durations, 1, None);
        assert_eq!(spots["tia"][0].position, 1);
        assert_eq!(spots["ann"][0].position, 2);
        assert_eq!(spots["bob"][0].position, 3);
        // 15 s left on the running job, then 20 s per job ahead.
        assert_eq!(spots["tia"][0].eta_seconds, 15);
        assert_eq!(spots["ann"][0].eta_seconds, 35);
        assert_eq!(spots["bob"][0].eta_seconds, 55);
        let cold = compute(&snapshot, &durations, 1, Some(60_000));
        assert_eq!(cold["tia"][0].eta_seconds, 75);
        assert!(cold["tia"][0].cold);
    }

    #[test]
    fn free_capacity_means_no_wait() {
        let snapshot = QueueSnapshot {
            now_ms: 0,
            pending: vec![pending(1, "ann", Priority::Normal)],
            running: vec![],
            users: vec![],
        };
        let spots = compute(&snapshot, &Durations::default(), 2, None);
        assert_eq!(spots["ann"][0].eta_seconds, 0);
    }
}
