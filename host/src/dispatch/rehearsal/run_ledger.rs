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
    /// The replica answered 200: the GPU work was done.
    Completed,
    /// The replica answered an error (e.g. the workflow raised).
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

/// The runs of every prompt, and the duplicates among them.
#[derive(Default)]
pub struct RunLedger {
    outcomes: Mutex<HashMap<String, Vec<RunOutcome>>>,
    duplicates: Mutex<Vec<String>>,
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
    /// Records the start of a run of the prompt in `body` on `deployment`.
    /// A run that starts while an earlier one of the same prompt is still on
    /// a GPU (of any deployment) or already completed is a duplicate.
    pub fn start(&self, deployment: &str, body: &Bytes) -> Option<RunTicket> {
        let id = prompt_id(body)?;
        let mut outcomes = lock(&self.outcomes);
        let runs = outcomes.entry(id.clone()).or_default();
        if runs
            .iter()
            .any(|o| matches!(o, RunOutcome::Running | RunOutcome::Completed))
        {
            tracing::warn!(prompt_id = %id, deployment, "fake verda: DUPLICATE GPU run of a prompt already run");
            lock(&self.duplicates).push(id.clone());
        }
        runs.push(RunOutcome::Running);
        Some(RunTicket {
            prompt_id: id,
            index: runs.len() - 1,
        })
    }

    /// Records how the run behind `ticket` ended.
    pub fn finish(&self, ticket: &Option<RunTicket>, outcome: RunOutcome) {
        if let Some(RunTicket { prompt_id, index }) = ticket
            && let Some(slot) = lock(&self.outcomes)
                .get_mut(prompt_id)
                .and_then(|r| r.get_mut(*index))
        {
            *slot = outcome;
        }
    }

    /// Every run so far, by prompt id, in order.
    pub fn outcomes(&self) -> HashMap<String, Vec<RunOutcome>> {
        lock(&self.outcomes).clone()
    }

    /// Prompt ids that got a second GPU run while an earlier one was on a
    /// GPU or had completed (once per duplicate run).
    pub fn duplicates(&self) -> Vec<String> {
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
        let first = ledger.start("h200", &body("a"));
        ledger.finish(&first, RunOutcome::Reclaimed);
        let second = ledger.start("b300", &body("a"));
        assert!(
            ledger.duplicates().is_empty(),
            "a rerun after a reclaim is expected"
        );
        // The B300 run is still going: a third run on H200 is a duplicate.
        ledger.start("h200", &body("a"));
        assert_eq!(ledger.duplicates(), vec!["a".to_string()]);
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
                .start("h200", &Bytes::from_static(b"not json"))
                .is_none()
        );
    }
}
