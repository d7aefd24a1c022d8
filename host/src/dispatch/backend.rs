//! The one seam between the dispatcher and a GPU pool.
//!
//! A backend runs one job to the end and reports how it went; the
//! dispatcher owns the queue, the leases and the files. Two kinds are
//! planned: a ComfyUI server reached directly ([`super::comfyui_backend`],
//! also the rehearsal mode) and Verda serverless containers (not yet built).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::comfyui::protocol::{FileRef, Outcome};

/// Why a backend call failed, and what the dispatcher should do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend refused the job itself (validation): fail the job.
    #[error("{0}")]
    Refused(String),
    /// The backend is unreachable, answered 5xx, or lost the replica: the
    /// job may run again elsewhere (requeue).
    #[error("{0}")]
    Unavailable(String),
    /// No result before the job wait ran out: fail the job with this reason.
    #[error("{0}")]
    TimedOut(String),
}

/// A GPU pool's static description, from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolInfo {
    /// The pool's name, e.g. `h200-spot`.
    pub name: String,
    /// e.g. `H200`.
    pub gpu: String,
    /// Spot pools may lose a replica mid-job.
    pub spot: bool,
    /// Jobs in flight at most (Verda's own queue is FIFO: anything sent
    /// beyond this would escape our scheduling policy).
    pub capacity: u32,
    /// Price per GPU hour, for costs.
    pub price_per_hour: f64,
}

/// A GPU pool.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Static description.
    fn info(&self) -> &PoolInfo;

    /// The backend job id this job will have, when the backend lets us
    /// choose it (ComfyUI accepts our prompt id): recorded before submitting,
    /// so a crash between the two is recoverable.
    fn chosen_id(&self, prompt_id: &str) -> Option<String>;

    /// Sends the job; returns the backend's job id.
    async fn submit(
        &self,
        prompt_id: &str,
        client_id: &str,
        payload: &Value,
    ) -> Result<String, BackendError>;

    /// Waits for the job's end, reporting step progress.
    async fn wait(
        &self,
        backend_id: &str,
        client_id: &str,
        job_wait: Duration,
        progress: &mut (dyn FnMut(u32, u32) + Send),
    ) -> Result<Outcome, BackendError>;

    /// Fetches one output file.
    async fn download(&self, file: &FileRef) -> Result<Vec<u8>, BackendError>;

    /// Stops the job's GPU work.
    async fn cancel(&self, backend_id: &str) -> Result<(), BackendError>;

    /// Whether the backend still knows the job (for recovery after a crash).
    async fn knows(&self, backend_id: &str) -> Result<bool, BackendError>;
}
