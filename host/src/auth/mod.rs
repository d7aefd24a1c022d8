//! Attendee identity: who is asking, and may they.
//!
//! Policy, in one place:
//! - Accounts live in `<data>/users.json` ([`users`]), edited by the
//!   `comfyume user` command while `serve` runs; the host notices the file
//!   changed (mtime, size, inode) and reloads it, dropping every cached login.
//! - Passwords are argon2id PHC hashes. A verified password is remembered for
//!   a few minutes as a keyed hash (a per-process secret, never written
//!   anywhere), compared in constant time, so a request does not pay argon2
//!   every time ([`cache`]).
//! - HTTP Basic is the only scheme: the browser prompts once and re-sends the
//!   credentials on every same-origin request, the websocket upgrade included.
//! - Failed logins are rate-limited per client address and per (address,
//!   user name) pair, unknown names included, with lockouts that double
//!   while failures go on; a request with credentials verified recently
//!   is let in before the limiter is asked. Unknown names cost one argon2
//!   verification like known ones, so names cannot be probed by timing
//!   ([`limiter`]).
//! - Passwords and hashes are never logged; errors name the user at most.
//!
//! [`Authenticator`] does the checking; [`http`] puts it in front of axum
//! routes; [`bootstrap`] creates the first accounts on a fresh data folder.

mod authenticator;
mod basic;
pub mod cache;
pub mod http;
pub mod limiter;
pub mod users;

use serde::{Deserialize, Serialize};

pub use authenticator::{AuthSettings, Authenticator};
pub use http::{RequireUser, require_role, require_user};
pub use users::{User, UsersFile, bootstrap, generate_password, hash_password};

/// What an account may do. Ordered: an admin may do what an instructor may,
/// an instructor what an attendee may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A workshop attendee: the editor, their own jobs and outputs.
    Attendee,
    /// Runs the session: sees the queue, not the admin controls.
    Instructor,
    /// The operator: everything, `/admin` included.
    Admin,
}

impl Role {
    /// The name used in the users file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Attendee => "attendee",
            Role::Instructor => "instructor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "attendee" => Ok(Role::Attendee),
            "instructor" => Ok(Role::Instructor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (expected attendee, instructor or admin)"
            )),
        }
    }
}

/// Who a request comes from, once their password checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name; also their folder under `<data>/users/`.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// Why a request was not let in. Each maps to one HTTP status in [`http`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (401: the browser prompts).
    #[error("log in with your workshop user name and password")]
    Missing,
    /// An `Authorization` header that is not well-formed Basic (401).
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// Unknown user or wrong password; deliberately not saying which (401).
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// The account exists and the password is right, but it is disabled (403).
    #[error("the account {0:?} is disabled; ask the workshop staff")]
    Disabled(String),
    /// Too many failed logins from this address, or for this name from it (429).
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    RateLimited {
        /// When the oldest counted failure leaves the window.
        retry_after_secs: u64,
    },
    /// Logged in, but the route needs a higher role (403).
    #[error("this needs the {0} role")]
    Forbidden(Role),
    /// The users file could not be read or the verification task died (503):
    /// the host's fault, not the attendee's, and it says so.
    #[error("logins are unavailable right now: {0}")]
    Unavailable(String),
}

/// True when `name` can be a user name: 1 to 64 characters from
/// `[A-Za-z0-9_.-]`, not starting with `.`. The rule exists because the name
/// becomes a folder, `<data>/users/<name>/`: no separators, no `..`, no
/// hidden folders.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
}
