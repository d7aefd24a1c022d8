//! The HTTP server behind `comfyume serve`.
//!
//! This is the skeleton later parts plug into (the attendee front, the admin
//! API): it builds the shared state, binds the listener, answers `/health`,
//! and shuts down cleanly on Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::config::Config;
use crate::plugins::{Registry, shared_registry};

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The plugin registry.
    pub plugins: Arc<Registry>,
}

/// Builds the router for `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

/// Starts everything and serves until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    let plugins_config = config.plugins.clone();
    let plugins = tokio::task::spawn_blocking(move || shared_registry(&plugins_config, &data_dir))
        .await
        .context("loading plugins")??;
    for slot in plugins.status() {
        tracing::info!(slot = %slot.slot, active = ?slot.active, "plugin slot ready");
    }
    let listen = config.server.listen;
    let state = AppState {
        config: Arc::new(config),
        plugins,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listen, "comfyume listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// `GET /health`: liveness and the plugin slots in use.
async fn health(State(state): State<AppState>) -> Json<Value> {
    let slots: Vec<Value> = state
        .plugins
        .status()
        .into_iter()
        .map(|s| json!({"slot": s.slot, "active": s.active, "disabled": s.disabled.is_some()}))
        .collect();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "plugins": slots,
    }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
