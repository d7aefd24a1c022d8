//! The durable job queue: one [`JobStore`] trait, two stores.
//!
//! - [`EmbeddedStore`] (default): in memory, journaled to SQLite under the
//!   data folder; survives a restart; one host.
//! - `RedisStore`: several hosts share one Redis; every state change is one
//!   Lua script; a leader lease picks the one dispatcher.
//!
//! Every accepted job is written durably before the attendee's request is
//! answered. Dispatchers hold short renewed leases; [`Recovery`] resolves
//! expired ones (re-attach when a backend id was recorded, requeue when not,
//! `dead` after `max_recoveries`), so a GPU run is never paid for twice.

mod clock;
mod core;
mod embedded;
mod error;
mod job;
mod journal;
mod open;
mod recovery;
mod redis;
mod snapshot;
mod store;
mod transition;

pub use clock::{Clock, ManualClock, SystemClock, system as system_clock};
pub use core::is_prompt_id;
pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use job::{
    BackendRef, Cost, Job, JobEvent, JobId, JobState, Lease, NewJob, Output, Page, Priority,
    Progress, Transition, UserLimits,
};
pub use open::{JOURNAL_FILE, limits as store_limits, open, retention_loop};
pub use recovery::{BackendProbe, RecoveryReport, recover_expired, recovery_loop};
pub use redis::RedisStore;
pub use snapshot::{PendingSummary, QueueSnapshot, RunningSummary, UserSummary};
pub use store::{CancelOutcome, JobStore, Recovery, Requester, StoreLimits};
