//! The Redis store: several hosts share one queue.
//!
//! Layout under the key prefix `P` (default `comfyume:`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P:seq` | string | job id sequence |
//! | `P:job:<id>` | hash | `v` (version), `json` (the job), `state`, `user`, `prompt` |
//! | `P:payload:<id>` | string | the prompt payload |
//! | `P:queued` | zset | waiting jobs, score = priority rank × 10¹² + id |
//! | `P:active` | zset | leased/dispatched/running jobs, score = lease expiry (ms) |
//! | `P:done` | zset | terminal jobs, score = when they ended (for retention) |
//! | `P:user:<name>` | hash | limits and counters (`pending`, `running`, `jobs_done`, `gpu_seconds`) |
//! | `P:user:<name>:jobs` | zset | the user's jobs, score = id (newest-first paging) |
//! | `P:users` | set | user names |
//! | `P:prompt:<uuid>` | string | prompt id → job id |
//! | `P:leader` | string | the dispatcher leader's host id, with a TTL |
//! | `P:events` | channel | job events for every host's websockets |
//!
//! Every state change is one Lua script. The transition itself is computed
//! by the same Rust code as the embedded store ([`super::transition`]); the
//! `commit` script applies it only if the job's version is unchanged (else
//! the host re-reads and retries) and only within the user's running cap,
//! and updates the job, the indexes, the counters and publishes the event
//! atomically.
//!
//! Outages: commands time out after [`RESPONSE_TIMEOUT`] and fail with
//! `StoreError::Unavailable` (the front answers 503); the connection
//! manager reconnects in the background, and the event subscriber
//! resubscribes, so the store recovers by itself when Redis is back.
//! (`enqueue.lua` and `trim.lua` build key names from the prefix, so this layout assumes a
//! single Redis, not a cluster.)

mod store;

pub use store::RedisStore;

/// How long one command may take before the store reports Redis unavailable.
pub const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
