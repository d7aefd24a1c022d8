//! What Verda leaves undocumented, as switches of the fake gateway
//! ([`super::verda_gateway`]).
//!
//! Each switch has the forms Verda's documentation and SDKs leave open, and
//! the tests in `host/tests/verda.rs` play the host against every form, so
//! the host is right whichever one production turns out to have. The
//! documented behaviour (the status values, `/result` answering the
//! container's body, a request TTL, cold starts, routing only to replicas
//! whose health check answers 200) is not a switch: the fake always does
//! it. `docs/worker.md` lists which is which, with the sources.

use std::time::Duration;

/// The HTTP status `/result` answers with once the container answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// The container's own status code (a worker's 502 arrives as 502).
    Propagated,
    /// Always 200: only the container's body arrives.
    AlwaysOk,
}

/// What the request TTL (`queue_message_ttl_seconds`) bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlScope {
    /// Only the wait in the queue: a request still queued after the TTL is
    /// dropped; one that reached a replica lives on (the CLI's wording: "how
    /// long a pending request may live in the queue").
    Queued,
    /// The request's whole life from its submit: after the TTL it is gone
    /// whatever its state; a run in progress goes on and its answer is lost.
    FromSubmit,
}

/// What becomes of a request whose replica is lost under it (a spot
/// reclaim): Verda's SDK knows no failed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimEnd {
    /// The gateway's queue delivers the request again: it goes back to
    /// `Queue` and runs on another replica.
    Redeliver,
    /// The request ends `Completed` with the gateway's own error (HTTP 502,
    /// not the container's body) as its result.
    GatewayError,
    /// The request is forgotten: status and result answer 404.
    Gone,
}

/// The fake's settings: the undocumented behaviours, and the documented
/// ones whose size varies (TTL, cold start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// `/result`'s status code.
    pub result_code: ResultCode,
    /// How long after the submit `/status` and `/result` still answer 404
    /// (the status store lags the submit).
    pub status_lag: Duration,
    /// The deployment's request TTL; `None` keeps requests forever.
    pub ttl: Option<Duration>,
    /// What the TTL bounds.
    pub ttl_scope: TtlScope,
    /// How long a cold replica takes to come up (pull, load the models)
    /// before it can take a request; requests stay in `Queue` meanwhile.
    pub cold_start: Duration,
    /// What a reclaimed request becomes.
    pub reclaim_end: ReclaimEnd,
    /// On a 429, the `Retry-After` header in seconds, or none.
    pub retry_after: Option<u64>,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            result_code: ResultCode::Propagated,
            status_lag: Duration::ZERO,
            ttl: None,
            ttl_scope: TtlScope::Queued,
            cold_start: Duration::ZERO,
            reclaim_end: ReclaimEnd::Gone,
            retry_after: Some(1),
        }
    }
}
