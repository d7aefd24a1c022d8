//! The attendee front: what a browser talks to.
//!
//! The real ComfyUI editor runs unmodified in each attendee's browser; the
//! host answers the same paths a ComfyUI server would, but per user:
//!
//! - [`assets`]: the editor's static files.
//! - [`boot`]: the small answers the editor needs to start (`/api/users`,
//!   `/api/features`, `/api/object_info` from [`catalogue`], …).
//! - [`settings`] and [`userdata`]: each attendee's settings and saved
//!   workflows, with the workshop templates read-only beside them.
//! - [`prompt`]: `POST /api/prompt` → validators → the durable queue.
//! - [`jobs`]: the attendee's own jobs, queue, history, cancel, interrupt.
//! - [`files`]: `/api/view` and uploads, inside the attendee's folder.
//! - [`ws`]: `/ws`, with the attendee's own execution events and their
//!   queue position.
//!
//! Policy: every route here, the static files included, is behind
//! [`crate::auth::require_user`]; a handler learns who is asking from the
//! [`Identity`] the layer put there and never from the request (ComfyUI's
//! `Comfy-User` header is ignored). Each module is a router over one shared
//! [`Front`]; no global state.

pub mod assets;
pub mod body;
pub mod boot;
pub mod budget;
pub mod catalogue;
pub mod error;
pub mod fair;
pub mod files;
pub mod jobs;
pub mod prompt;
pub mod settings;
pub mod upload;
pub mod userdata;
pub mod ws;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{AuthError, Authenticator, Identity, Role, require_user};
use crate::config::{AttendeesConfig, Config};
use crate::dispatch::dispatcher::Dispatcher;
use crate::plugins::Registry;
use crate::queue::{JobStore, Priority, UserLimits};

pub use error::ApiError;

/// Everything the attendee routes share.
pub struct Front {
    /// The data folder: `users/<name>/…` lives here.
    pub data_dir: PathBuf,
    /// The durable job queue.
    pub queue: Arc<dyn JobStore>,
    /// Validators (and the rest of the plugins).
    pub plugins: Arc<Registry>,
    /// Woken when a job is queued; its pools feed the ETA.
    pub dispatcher: Arc<Dispatcher>,
    /// Checks logins for every route.
    pub auth: Arc<Authenticator>,
    /// The node catalogue.
    pub catalogue: Arc<catalogue::Catalogue>,
    /// The workshop templates.
    pub templates: Arc<userdata::Templates>,
    /// Caps on what attendees send and keep.
    pub limits: AttendeesConfig,
    /// Largest `POST /api/prompt` body, in bytes.
    pub max_prompt_bytes: usize,
    /// Each attendee's submit rate and validator slots.
    pub fair: fair::Fairness,
    /// Default caps for a user the queue has not seen.
    pub default_pending: u32,
    /// Default running cap for a user the queue has not seen.
    pub default_running: u32,
    /// Queue positions and ETAs, recomputed as the queue moves.
    pub positions: ws::position::Positions,
    /// The workshop session: prompts are refused unless it is open.
    pub session: Arc<crate::session::Session>,
    /// Open websockets per user (the operator's "connected").
    pub sockets: Mutex<HashMap<String, usize>>,
    /// One lock per user for read-modify-write of their files.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Front {
    /// The front for `config`, over the host's queue, plugins and dispatcher.
    pub fn new(
        config: &Config,
        queue: Arc<dyn JobStore>,
        plugins: Arc<Registry>,
        dispatcher: Arc<Dispatcher>,
        auth: Arc<Authenticator>,
        catalogue: Arc<catalogue::Catalogue>,
        session: Arc<crate::session::Session>,
    ) -> Arc<Front> {
        let templates = Arc::new(userdata::Templates::load(&config.attendees.templates_dir));
        let cold_start_ms = config
            .effective_pools()
            .values()
            .map(|pool| pool.cold_start_ms)
            .max()
            .unwrap_or(0);
        let positions =
            ws::position::Positions::start(queue.clone(), dispatcher.clone(), cold_start_ms);
        Arc::new(Front {
            data_dir: config.server.data_dir.clone(),
            queue,
            plugins,
            dispatcher,
            auth,
            catalogue,
            templates,
            limits: config.attendees.clone(),
            // The stored payload is the prompt and its extra data, about
            // the body: a little room for the framing the store drops.
            max_prompt_bytes: config.queue.max_payload_bytes + 64 * 1024,
            fair: fair::Fairness::new(
                config.attendees.submits_per_minute,
                config.attendees.submit_burst,
                config.attendees.max_concurrent_checks,
            ),
            default_pending: config.queue.max_pending,
            default_running: config.queue.max_running,
            positions,
            session,
            sockets: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// `<data>/users/<name>` (names are checked when accounts are made).
    pub fn user_dir(&self, user: &Identity) -> Result<PathBuf, ApiError> {
        crate::dispatch::outputs::user_dir(&self.data_dir, &user.name)
            .ok_or_else(|| ApiError::Forbidden("this account name cannot own files".into()))
    }

    /// Counts a socket of `user` open (`+1`) or closed (`-1`).
    pub fn socket_opened(&self, user: &str, delta: isize) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let count = sockets.entry(user.to_string()).or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            sockets.remove(user);
        }
    }

    /// Open websockets of `user`.
    pub fn sockets_of(&self, user: &str) -> usize {
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.get(user).copied().unwrap_or(0)
    }

    /// The lock serialising changes to one user's files.
    pub fn user_lock(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(user.to_string()).or_default().clone()
    }

    /// The prompt budget from `[attendees]`.
    pub fn budget(&self) -> budget::Budget {
        budget::Budget {
            max_nodes: self.limits.max_prompt_nodes,
            max_inputs: self.limits.max_prompt_inputs,
            max_links: self.limits.max_prompt_links,
        }
    }

    /// The limits a user gets the first time they queue a job: the
    /// configured caps, and the instructor lane for instructors.
    pub fn first_limits(&self, user: &Identity) -> UserLimits {
        UserLimits {
            name: user.name.clone(),
            max_pending: self.default_pending,
            max_running: self.default_running,
            priority: if user.role >= Role::Instructor {
                Priority::Instructor
            } else {
                Priority::Normal
            },
        }
    }
}

/// The caller of an attendee route, as the login layer identified them.
///
/// Routes here are always behind [`require_user`]; without it (a routing
/// mistake) the request is refused, never served anonymously.
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Caller)
            .ok_or(AuthError::Missing)
    }
}

/// Every attendee route, the editor's files (`static_files`) as the
/// fallback, all behind the login.
pub fn router(front: Arc<Front>, static_files: Router) -> Router {
    let api = Router::new()
        .merge(boot::router())
        .merge(settings::router())
        .merge(userdata::router())
        .merge(prompt::router())
        .merge(jobs::router())
        .merge(files::router())
        .merge(files::upload_router(
            front.limits.max_upload_mib * 1024 * 1024,
        ))
        .merge(ws::router())
        .with_state(front.clone());
    // The editor calls most routes under `/api` and a few at the root, as
    // ComfyUI serves both.
    Router::new()
        .nest("/api", api.clone())
        .merge(api)
        .fallback_service(static_files)
        .layer(require_user(front.auth.clone()))
}

/// Reads a small JSON file of an attendee's, `None` when it does not exist
/// or does not parse. A corrupt file (a crash mid-write by an older
/// version, a hand edit, JSON nested deeper than the parser takes) is
/// logged for the operator and answered as empty: a 503 here would stop
/// the editor from starting at all, and the next write replaces the file.
/// The answer never carries the host's path.
pub(crate) async fn read_json_file(path: &Path) -> Result<Option<serde_json::Value>, ApiError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "an attendee's file is corrupt; answered as empty");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::io("reading your data", e)),
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
pub(crate) async fn write_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), ApiError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || crate::paths::write_atomic(&path, &bytes))
        .await
        .map_err(|e| ApiError::Unavailable(format!("writing your data: {e}")))?
        .map_err(|e| ApiError::io("writing your data", e))
}
