//! Every GPU run the fake Verda gateways started, by prompt id, so a test or
//! a rehearsal can prove one GPU run per job.
//!
//! One ledger can be shared by several gateways (one per deployment): a job
//! the host moved from a failing H200 pool to a B300 pool while its H200 run
//! was still going is a duplicate too, and only a shared ledger sees both.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use axum::body::Bytes;
use serde_json::Value;

/// How one asynchronous GPU run of a prompt ended, as the gateway saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Still on a replica.
    Running,
    /// The replica answered 200 with the worker's `success`: the prompt
    /// ran to its end.
    Completed,
    /// The replica answered an error status, or the worker's `error` (the
    /// workflow raised, or a cancel interrupted it).
    Errored,
    /// The replica was reclaimed under it (spot).
    Reclaimed,
    /// The replica could not be reached.
    Unreachable,
}

/// A started run: which prompt, and its place in that prompt's runs.
#[derive(Debug, Clone)]
pub struct RunTicket {
    prompt_id: String,
    index: usize,
}

/// A second GPU run of a prompt while an earlier one was on a GPU or had
/// completed, with what a report needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DuplicateRun {
    /// The prompt run twice.
    pub prompt_id: String,
    /// The inference ids of the earlier runs that were on a GPU or had
    /// completed: whether the host had recorded one of them decides
    /// whether the second run broke the one-run promise.
    pub earlier: Vec<String>,
    /// When those earlier runs started (ms since the Unix epoch).
    pub earlier_started_ms: Vec<u64>,
}

/// One run: its inference id, when it started, how it ended.
#[derive(Debug, Clone)]
struct Run {
    inference: String,
    started_ms: u64,
    outcome: RunOutcome,
}

/// The runs of every prompt, and the duplicates among them.
#[derive(Default)]
pub struct RunLedger {
    runs: Mutex<HashMap<String, Vec<Run>>>,
    duplicates: Mutex<Vec<DuplicateRun>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `prompt_id` of a worker request body, if it has one.
pub(super) fn prompt_id(body: &Bytes) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("prompt_id")?
        .as_str()
        .map(str::to_owned)
}

impl RunLedger {
    /// Records the start of inference `inference`, a run of the prompt in
    /// `body` on `deployment`. A run that starts while an earlier one of the
    /// same prompt is still on a GPU (of any deployment) or already
    /// completed is a duplicate.
    pub fn start(&self, deployment: &str, body: &Bytes, inference: &str) -> Option<RunTicket> {
        let id = prompt_id(body)?;
        let mut all = lock(&self.runs);
        let runs = all.entry(id.clone()).or_default();
        let earlier: Vec<&Run> = runs
            .iter()
            .filter(|r| matches!(r.outcome, RunOutcome::Running | RunOutcome::Completed))
            .collect();
        if !earlier.is_empty() {
            tracing::warn!(prompt_id = %id, deployment, "fake verda: DUPLICATE GPU run of a prompt already run");
            lock(&self.duplicates).push(DuplicateRun {
                prompt_id: id.clone(),
                earlier: earlier.iter().map(|r| r.inference.clone()).collect(),
                earlier_started_ms: earlier.iter().map(|r| r.started_ms).collect(),
            });
        }
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        runs.push(Run {
            inference: inference.to_string(),
            started_ms,
            outcome: RunOutcome::Running,
        });
        Some(RunTicket {
            prompt_id: id,
            index: runs.len() - 1,
        })
    }

    /// Records how the run behind `ticket` ended.
    pub fn finish(&self, ticket: &Option<RunTicket>, outcome: RunOutcome) {
        if let Some(RunTicket { prompt_id, index }) = ticket
            && let Some(run) = lock(&self.runs)
                .get_mut(prompt_id)
                .and_then(|r| r.get_mut(*index))
        {
            run.outcome = outcome;
        }
    }

    /// Every run so far, by prompt id, in order.
    pub fn outcomes(&self) -> HashMap<String, Vec<RunOutcome>> {
        lock(&self.runs)
            .iter()
            .map(|(id, runs)| (id.clone(), runs.iter().map(|r| r.outcome).collect()))
            .collect()
    }

    /// Prompt ids that got a second GPU run while an earlier one was on a
    /// GPU or had completed (once per duplicate run).
    pub fn duplicates(&self) -> Vec<String> {
        lock(&self.duplicates)
            .iter()
            .map(|d| d.prompt_id.clone())
            .collect()
    }

    /// [`RunLedger::duplicates`], with the earlier runs' inference ids.
    pub fn duplicate_runs(&self) -> Vec<DuplicateRun> {
        lock(&self.duplicates).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id: &str) -> Bytes {
        Bytes::from(format!(r#"{{"prompt_id":"{id}","prompt":{{}}}}"#))
    }

    #[test]
    fn a_rerun_after_a_reclaim_is_not_a_duplicate_but_one_beside_a_live_run_is() {
        let ledger = RunLedger::default();
        let first = ledger.start("h200", &body("a"), "i1");
        ledger.finish(&first, RunOutcome::Reclaimed);
        let second = ledger.start("b300", &body("a"), "i2");
        assert!(
            ledger.duplicates().is_empty(),
            "a rerun after a reclaim is expected"
        );
        // The B300 run is still going: a third run on H200 is a duplicate.
        ledger.start("h200", &body("a"), "i3");
        assert_eq!(ledger.duplicates(), vec!["a".to_string()]);
        assert_eq!(ledger.duplicate_runs()[0].earlier, vec!["i2".to_string()]);
        ledger.finish(&second, RunOutcome::Completed);
        assert_eq!(
            ledger.outcomes()["a"],
            vec![
                RunOutcome::Reclaimed,
                RunOutcome::Completed,
                RunOutcome::Running
            ]
        );
        assert!(
            ledger
                .start("h200", &Bytes::from_static(b"not json"), "i4")
                .is_none()
        );
    }
}
