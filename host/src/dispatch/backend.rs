//! The one seam between the dispatcher and a GPU pool.
//!
//! A backend runs one job to the end and reports how it went; the
//! dispatcher owns the queue, the leases and the files. Two kinds: a
//! ComfyUI server reached directly ([`super::comfyui_backend`], also the
//! rehearsal mode) and Verda serverless containers running `comfyume
//! worker` ([`super::verda`]).

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

/// An input file the prompt references (a `LoadImage` value), read from
/// the owner's `input` folder by the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFile {
    /// The name the prompt uses, without ComfyUI's ` [input]` annotation.
    pub name: String,
    /// Sub folder under ComfyUI's input folder (`""` for none).
    pub subfolder: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Everything a backend needs to start one job.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// Our prompt id (a lowercase UUID).
    pub prompt_id: &'a str,
    /// The ComfyUI client id the job's events are for.
    pub client_id: &'a str,
    /// `{"prompt": …, "extra_data": …}` as the attendee sent it.
    pub payload: &'a Value,
    /// Inputs to place beside the prompt before it runs.
    pub inputs: &'a [InputFile],
    /// How long the job may run: passed down so an inner layer (the worker)
    /// never gives up earlier or later than the host does.
    pub job_wait: Duration,
    /// Where the GPU side may report progress and learn of a cancel.
    pub callback: Option<&'a Callback>,
}

/// A signed progress callback on this host (see [`super::callback`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The full URL the worker POSTs progress to.
    pub url: String,
    /// The per-job bearer token proving the report is for this job.
    pub token: String,
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

    /// Whether a replica is warm (a job would start without a cold start).
    fn warm(&self) -> bool {
        true
    }

    /// Sends the job (with its inputs); returns the backend's job id.
    async fn submit(&self, job: Submission<'_>) -> Result<String, BackendError>;

    /// Waits for the job's end, reporting step progress.
    async fn wait(
        &self,
        backend_id: &str,
        client_id: &str,
        job_wait: Duration,
        progress: &mut (dyn FnMut(u32, u32) + Send),
    ) -> Result<Outcome, BackendError>;

    /// Fetches one output file of the job `backend_id`.
    async fn download(&self, backend_id: &str, file: &FileRef) -> Result<Vec<u8>, BackendError>;

    /// Drops anything kept for the job (outputs held in memory) once its
    /// outcome is recorded.
    fn forget(&self, _backend_id: &str) {}

    /// Stops the job's GPU work.
    async fn cancel(&self, backend_id: &str) -> Result<(), BackendError>;

    /// Whether the backend still knows the job (for recovery after a crash).
    async fn knows(&self, backend_id: &str) -> Result<bool, BackendError>;
}
