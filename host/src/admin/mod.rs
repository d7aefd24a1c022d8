//! The operator's API under `/admin/api`, and `/metrics`.
//!
//! Policy:
//! - Every `/admin` route is behind [`crate::auth::require_role`] with
//!   [`Role::Admin`]: an attendee or instructor gets a 403, a stranger a 401.
//! - The API changes the running host without a restart: plugins are
//!   uploaded, checked (the same conformance run as `comfyume plugin
//!   check`), activated and rolled back; the job wait changes for the next
//!   job; the session opens, drains or closes. Live settings are persisted
//!   in `<data>/admin_settings.json` so a restart keeps them.
//! - The operator may act on any job (cancel), and sees every attendee's
//!   jobs; everything else here is read-only views over the queue, pools,
//!   plugins and logins.
//! - `/metrics` is Prometheus text without a login (scrapers have none); it
//!   carries counts only, never a name or a prompt.
//!
//! - Accounts are created, reset, disabled and capped here as with
//!   `comfyume user`, except admin accounts, which only the command line
//!   changes.
//!
//! The dashboard at `/admin` (module `dashboard`) is a page over this API.
//!
//! Pools are defined in the configuration file; the operator switches
//! them in and out of use live but cannot add one without a restart.
//!
//! The API is described by an OpenAPI document (module `openapi`).

mod accounts;
mod attendees;
mod backup;
mod control;
mod costs;
mod dashboard;
mod export;
mod jobs;
mod metrics;
pub mod openapi;
pub(crate) mod plugins;
mod prewarm;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::auth::{Role, require_role};
use crate::front::{ApiError, Front};
use crate::server::AppState;
use crate::session::Session;

pub use backup::backup_loop;
pub use control::LiveSettings;
pub use costs::budget_loop;

/// What the operator's routes share.
pub struct Admin {
    state: AppState,
    front: Arc<Front>,
    session: Arc<Session>,
    settings: Arc<LiveSettings>,
    exports: export::Exports,
    scaling: Option<Arc<crate::dispatch::verda_scaling::VerdaScaling>>,
    backups: backup::Backups,
}

impl Admin {
    /// The operator's API over the host's state.
    pub fn new(
        state: &AppState,
        front: Arc<Front>,
        session: Arc<Session>,
        settings: Arc<LiveSettings>,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            state: state.clone(),
            front,
            session,
            settings,
            exports: export::Exports::default(),
            scaling: prewarm::client(&state.config),
            backups: backup::Backups::default(),
        })
    }
}

impl Admin {
    /// The users file, read off the executor (it takes the editors' lock
    /// only to write, but reading is still file I/O).
    async fn users(&self) -> Result<crate::auth::UsersFile, ApiError> {
        let data_dir = self.state.config.server.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::auth::UsersFile::load(&data_dir))
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading the users: {e}")))?
            .map_err(|e| ApiError::Unavailable(format!("reading the users: {e}")))
    }
}

/// `/admin/api/…` behind the admin login, and `/metrics`.
pub fn router(admin: Arc<Admin>) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::detail))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/priority", post(jobs::reprioritise))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/attendees", get(attendees::list).post(accounts::create))
        .route("/attendees/{name}", put(accounts::change))
        .route("/attendees/{name}/password", post(accounts::reset_password))
        .route("/plugins", get(plugins::status).post(plugins::upload))
        .route("/plugins/{hash}/activate", post(plugins::activate))
        .route("/plugins/slots/{slot}", delete(plugins::remove_slot))
        .route("/plugins/slots/{slot}/rollback", post(plugins::rollback))
        .route(
            "/plugins/shadow",
            put(plugins::set_shadow).delete(plugins::clear_shadow),
        )
        .route("/pools", get(control::pools))
        .route("/pools/{name}", put(control::switch_pool))
        .route(
            "/pools/{name}/prewarm",
            post(prewarm::prewarm).delete(prewarm::release),
        )
        .route("/costs", get(costs::render))
        .route("/export", get(export::export))
        .route("/export/status", get(export::status))
        .route("/backups", get(backup::status).post(backup::now))
        .route(
            "/settings",
            get(control::settings).put(control::change_settings),
        )
        .route(
            "/session",
            get(control::session).put(control::switch_session),
        )
        .layer(plugins::body_limit())
        .layer(require_role(admin.state.auth.clone(), Role::Admin))
        .with_state(admin.clone());
    Router::new()
        .nest("/admin/api", api)
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .merge(dashboard::router(admin.clone()))
        .with_state(admin)
}
