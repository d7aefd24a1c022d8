//! A job: one attendee's prompt on its way through the queue.
//!
//! State machine (every transition is timestamped in `history`):
//!
//! ```text
//! queued ──claim──▶ leased ──dispatched(backend id)──▶ dispatched ──▶ running
//!   ▲                 │                                   │              │
//!   └──requeue────────┴───────────────────────────────────┴──────────────┤
//!                                                                        ▼
//!                               succeeded | failed | cancelled | dead (terminal)
//! ```
//!
//! A lease is owned by one dispatcher and expires unless renewed; recovery
//! re-attaches a job whose backend id was recorded and requeues one whose
//! was not, so a GPU run is never paid for twice. After `max_recoveries`
//! the job goes `dead` with the reason.

use serde::{Deserialize, Serialize};

use crate::plugins::api::PriorityClass;

/// A job's priority class, highest first. `instructor` is the lane that
/// skips the queue for live demos.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// The instructor's lane.
    Instructor,
    /// Ahead of normal.
    High,
    /// Everyone by default.
    #[default]
    Normal,
    /// Behind normal (e.g. re-runs, batch experiments).
    Low,
}

impl Priority {
    /// The class's name, as in the API (`instructor`, `high`, …).
    pub fn name(self) -> &'static str {
        match self {
            Priority::Instructor => "instructor",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// 0 (instructor) to 3 (low): lower runs first.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// From [`Priority::rank`].
    pub fn from_rank(rank: u8) -> Priority {
        match rank {
            0 => Priority::Instructor,
            1 => Priority::High,
            2 => Priority::Normal,
            _ => Priority::Low,
        }
    }

    /// The plugin contract's class.
    pub fn class(self) -> PriorityClass {
        match self {
            Priority::Instructor => PriorityClass::Instructor,
            Priority::High => PriorityClass::High,
            Priority::Normal => PriorityClass::Normal,
            Priority::Low => PriorityClass::Low,
        }
    }
}

/// The store's sequence number for a job: unique, increasing with submit order.
pub type JobId = u64;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for the scheduler.
    Queued,
    /// Claimed by a dispatcher, not yet sent to a backend.
    Leased,
    /// Sent; the backend's job id is recorded.
    Dispatched,
    /// The backend reports progress.
    Running,
    /// Finished with outputs.
    Succeeded,
    /// Finished without outputs; `reason` says why.
    Failed,
    /// Cancelled by its owner or the operator.
    Cancelled,
    /// Given up after too many failed recoveries.
    Dead,
}

impl JobState {
    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Dead
        )
    }

    /// True while a dispatcher holds the job (leased, dispatched, running).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Leased | JobState::Dispatched | JobState::Running
        )
    }

    /// The lowercase name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased => "leased",
            JobState::Dispatched => "dispatched",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Dead => "dead",
        }
    }

    /// Parses [`JobState::as_str`].
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "leased" => JobState::Leased,
            "dispatched" => JobState::Dispatched,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "dead" => JobState::Dead,
            _ => return None,
        })
    }
}

/// What the validator estimated (zeros when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Frames (1 for an image).
    pub frames: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Sampling steps over all stages.
    pub steps: u32,
    /// Estimated GPU seconds.
    pub gpu_seconds: f64,
}

/// What the front hands the store for a new job.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The owner (a known user).
    pub user: String,
    /// ComfyUI's `prompt_id`: a lowercase UUID the job keeps end to end.
    pub prompt_id: String,
    /// The editor's websocket client id, if it sent one.
    pub client_id: Option<String>,
    /// The job's priority class (from the user, or the instructor lane).
    pub priority: Priority,
    /// Detected by the validator, e.g. `ltx2`.
    pub workflow_kind: String,
    /// Estimated by the validator.
    pub cost: Cost,
    /// The prompt and its `extra_data`, as JSON bytes, passed to the backend.
    pub payload: Vec<u8>,
}

/// Which backend runs the job, and its id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRef {
    /// The pool's name, e.g. `h200-spot`.
    pub pool: String,
    /// The backend's own job id (ComfyUI prompt id, Verda inference id).
    pub job_id: String,
}

/// A dispatcher's hold on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The dispatcher (host id) that holds it.
    pub owner: String,
    /// When it lapses unless renewed (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// Step progress reported by the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub value: u32,
    /// Steps in total.
    pub max: u32,
}

/// One output file of a finished job, stored under the owner's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The node that produced it.
    pub node_id: String,
    /// File name as ComfyUI reports it.
    pub filename: String,
    /// Sub folder as ComfyUI reports it.
    pub subfolder: String,
    /// `output` or `temp`.
    pub kind: String,
    /// True for video (`animated: [true]`).
    pub animated: bool,
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: JobState,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Why, when there is something to say (reasons, backend ids, owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Store sequence number.
    pub id: JobId,
    /// ComfyUI prompt id (lowercase UUID).
    pub prompt_id: String,
    /// Owner.
    pub user: String,
    /// The editor's websocket client id.
    pub client_id: Option<String>,
    /// Priority class.
    pub priority: Priority,
    /// Workflow kind from the validator.
    pub workflow_kind: String,
    /// Cost estimate from the validator.
    pub cost: Cost,
    /// Current state.
    pub state: JobState,
    /// Dispatch attempts so far (claims).
    pub attempts: u32,
    /// Lease expiries resolved by recovery.
    pub recoveries: u32,
    /// The current lease, while leased/dispatched/running.
    pub lease: Option<Lease>,
    /// The backend and its job id, once dispatched.
    pub backend: Option<BackendRef>,
    /// The owner or operator asked to cancel a job that is already running.
    pub cancel_requested: bool,
    /// An earlier attempt was lost to a spot reclaim (the selector avoids spot).
    pub lost_to_reclaim: bool,
    /// Latest progress.
    pub progress: Option<Progress>,
    /// Outputs, once succeeded.
    pub outputs: Vec<Output>,
    /// Why the job ended (every terminal state has one) or was requeued.
    pub reason: Option<String>,
    /// GPU seconds actually used (billing).
    pub gpu_seconds: f64,
    /// When it was submitted (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it last changed state.
    pub updated_at_ms: u64,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
}

impl Job {
    /// A new queued job.
    pub fn new(id: JobId, new: &NewJob, now_ms: u64) -> Job {
        Job {
            id,
            prompt_id: new.prompt_id.clone(),
            user: new.user.clone(),
            client_id: new.client_id.clone(),
            priority: new.priority,
            workflow_kind: new.workflow_kind.clone(),
            cost: new.cost,
            state: JobState::Queued,
            attempts: 0,
            recoveries: 0,
            lease: None,
            backend: None,
            cancel_requested: false,
            lost_to_reclaim: false,
            progress: None,
            outputs: Vec::new(),
            reason: None,
            gpu_seconds: 0.0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            history: vec![Transition {
                state: JobState::Queued,
                at_ms: now_ms,
                note: None,
            }],
        }
    }

    /// Moves to `state` and records the transition.
    pub fn enter(&mut self, state: JobState, now_ms: u64, note: Option<String>) {
        self.state = state;
        self.updated_at_ms = now_ms;
        self.history.push(Transition {
            state,
            at_ms: now_ms,
            note,
        });
    }
}

/// Per-user limits and class, set by the operator (or defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLimits {
    /// The user name.
    pub name: String,
    /// Most jobs waiting at once.
    pub max_pending: u32,
    /// Most jobs on GPUs at once.
    pub max_running: u32,
    /// Priority class for this user's jobs.
    pub priority: Priority,
}

/// A page of a user's jobs, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Jobs to skip.
    pub offset: usize,
    /// Jobs to return (capped by the store at 500).
    pub limit: usize,
}

/// What a job's change is announced as, to every host's websockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: JobId,
    /// Its prompt id.
    pub prompt_id: String,
    /// Its owner: events go to this user's sockets only.
    pub user: String,
    /// The state after the change.
    pub state: JobState,
    /// Progress, when the change is progress.
    pub progress: Option<Progress>,
}
