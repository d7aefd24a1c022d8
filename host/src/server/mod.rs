//! The HTTP server behind `comfyume serve`.
//!
//! This is the skeleton later parts plug into (the attendee front, the admin
//! API): it builds the shared state (plugins, the job queue, the
//! authenticator), creates the first accounts on a fresh data folder,
//! binds the listener, installs the editor's files on first start beside it
//! (`/health` says `installing` meanwhile, the editor's paths a 503 page),
//! answers `/health` (unauthenticated: probes have no login), serves the attendee
//! API and the editor behind the login ([`crate::front`]), trims old jobs,
//! and shuts down cleanly on Ctrl-C or SIGTERM.

pub mod conn;
pub mod limits;
pub mod origin;
pub mod progress;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::admin;
use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::dispatch::{
    self,
    dispatcher::{Dispatcher, DispatcherConfig},
};
use crate::front::{self, Front, catalogue::Catalogue};
use crate::plugins::{Registry, registry_from_config};
use crate::queue::{self, JobStore};
use crate::session::Session;

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The plugin registry.
    pub plugins: Arc<Registry>,
    /// The durable job queue.
    pub queue: Arc<dyn JobStore>,
    /// The dispatcher (progress callbacks, live settings).
    pub dispatcher: Arc<Dispatcher>,
    /// Checks attendee logins; wrap routes in [`auth::require_user`].
    pub auth: Arc<Authenticator>,
    /// The editor's files: served, or being installed.
    pub editor: Arc<front::assets::Editor>,
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Builds the router for `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(progress::router(state.dispatcher.clone()))
        .with_state(state)
}

/// A host built and running its background tasks, not yet listening.
pub struct Host {
    /// Every route: health, progress callbacks, the attendee API, the editor.
    pub app: Router,
    /// The shared state.
    pub state: AppState,
    /// The attendee front.
    pub front: Arc<Front>,
}

/// Starts everything and serves until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };
    let conn_limits = conn::ConnLimits {
        header_timeout: std::time::Duration::from_secs(config.server.header_timeout_secs),
        per_address: config.server.max_connections_per_address,
        exempt: config.server.trusted_proxies.clone(),
    };
    // Bound first: a taken port fails at once, and a client that connects
    // while the host builds waits in the backlog instead of being refused.
    let listener = match tls {
        Some(_) => None,
        None => Some(
            tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?,
        ),
    };
    let host = build(config).await?;
    let Some(listener) = listener else {
        let (cert, key) = tls.context("TLS settings")?;
        // ConnectInfo gives the auth layer the peer address for rate limiting.
        let app = host.app.into_make_service_with_connect_info::<SocketAddr>();
        return serve_tls(listen, &cert, &key, app).await;
    };
    tracing::info!(address = %listen, "comfyume listening");
    conn::serve(listener, host.app, conn_limits, shutdown_signal()).await;
    Ok(())
}

/// `listener` with `TCP_NODELAY` set on every accepted connection.
///
/// Why: with Nagle's algorithm on, a small answer written in two segments
/// on a kept-alive connection waits for the client's delayed ACK (~40 ms on
/// Linux): 6-8 of 25 small `/api/view` answers stalled so, and the editor's
/// websocket path added 23-57 ms per trivial job. ComfyUI (aiohttp) sets it;
/// so does every listener here (`serve`, the worker, the test doubles).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    // A named type (not `impl Listener`): axum gives the peer address
    // (`ConnectInfo`, for rate limiting) for a `TapIo` listener only.
    listener.tap_io(set_no_delay as fn(&mut tokio::net::TcpStream))
}

pub(crate) fn set_no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
    }
}

/// HTTPS in the host itself (rustls), so a small workshop needs no proxy.
async fn serve_tls(
    listen: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
) -> anyhow::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "loading the TLS certificate {} and key {}",
                cert.display(),
                key.display()
            )
        })?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    tracing::info!(address = %listen, "comfyume listening (HTTPS)");
    // TCP_NODELAY under the TLS layer, for the reason given at [`no_delay`].
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle)
        .serve(app)
        .await
        .context("serving HTTPS")
}

/// Builds the host for `config`: users, plugins, queue, pools, dispatcher
/// and the attendee front, with their background tasks started on the
/// current runtime. Tests and the load benchmark serve [`Host::app`]
/// themselves.
pub async fn build(config: Config) -> anyhow::Result<Host> {
    let auth = start_auth(&config.server.data_dir, &config.server.trusted_proxies).await?;
    let data_dir = config.server.data_dir.clone();
    let plugins_config = config.plugins.clone();
    let plugins = tokio::task::spawn_blocking(move || {
        registry_from_config(&plugins_config, &data_dir).map(Arc::new)
    })
    .await
    .context("loading plugins")??;
    for slot in plugins.status() {
        tracing::info!(slot = %slot.slot, active = ?slot.active, "plugin slot ready");
    }
    let queue = queue::open(&config.queue, &config.server.data_dir)
        .await
        .with_context(|| format!("opening the {:?} job queue", config.queue.store))?;
    let snapshot = queue.snapshot().await.context("reading the job queue")?;
    tracing::info!(
        store = ?config.queue.store,
        pending = snapshot.pending.len(),
        running = snapshot.running.len(),
        "job queue ready"
    );
    // The queue journal exists now: the data folder and what is in it are
    // the host's alone (users.json, queue.sqlite, every attendee's files).
    let data_dir = config.server.data_dir.clone();
    if let Err(error) = crate::paths::restrict(&data_dir) {
        tracing::warn!(%error, path = %data_dir.display(), "could not make the data folder private");
    }
    let retention = std::time::Duration::from_secs(config.queue.retention_hours * 3600);
    tokio::spawn(queue::retention_loop(queue.clone(), retention));
    let host_id = format!("host-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let lease = std::time::Duration::from_secs(config.queue.lease_secs);
    let pools = dispatch::pools::build(&config)
        .await
        .context("starting the GPU pools")?;
    for pool in &pools {
        let info = pool.backend().info();
        tracing::info!(pool = %info.name, gpu = %info.gpu, capacity = info.capacity, "pool ready");
    }
    let dispatcher = Dispatcher::new(
        queue.clone(),
        plugins.clone(),
        pools,
        DispatcherConfig {
            host: host_id,
            lease,
            job_wait: std::time::Duration::from_secs(config.timeouts.job_wait_secs),
            tick: std::time::Duration::from_millis(250),
            data_dir: config.server.data_dir.clone(),
            max_input_bytes: config.dispatch.max_input_bytes,
            callback_url: config.dispatch.callback_url.clone(),
        },
    );
    // Recovery follows the jobs it re-attaches, so it is the dispatcher's.
    tokio::spawn(dispatcher.clone().recovery_loop());
    tokio::spawn(dispatcher.clone().run());
    let catalogue = Catalogue::load(&config.server.data_dir);
    tokio::spawn(catalogue.clone().refresh_from(comfyui_clients(&config)));
    let session = Arc::new(Session::load(&config.server.data_dir));
    dispatcher.follow_session(session.clone());
    let settings = admin::LiveSettings::load(&config.server.data_dir);
    settings.apply(&dispatcher);
    let attendees = Front::new(
        &config,
        queue.clone(),
        plugins.clone(),
        dispatcher.clone(),
        auth.clone(),
        catalogue,
        session.clone(),
    );
    // Installed in the background when missing: the host answers meanwhile.
    let editor = front::assets::editor(&config.frontend, &config.server.data_dir);
    let static_files = front::assets::editor_router(editor.clone());
    let state = AppState {
        config: Arc::new(config),
        plugins,
        queue,
        dispatcher,
        auth,
        editor,
    };
    // The attendee API and the editor's files (whatever no route claims),
    // all behind the login.
    let operator = admin::Admin::new(&state, attendees.clone(), session, settings);
    tokio::spawn(admin::budget_loop(operator.clone()));
    tokio::spawn(admin::backup_loop(operator.clone()));
    let origins = origin::Origins::new(&state.config.server.allowed_origins);
    let max_body = largest_body(&state.config);
    let body_pause = std::time::Duration::from_secs(state.config.server.body_timeout_secs);
    let app = router(state.clone())
        .merge(admin::router(operator))
        .merge(front::router(attendees.clone(), static_files))
        .layer(axum::middleware::from_fn_with_state(
            origins,
            origin::same_site_only,
        ))
        .layer(limits::body_timeout(body_pause))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                limits::refuse_declared_over(max_body, request, next)
            },
        ))
        .layer(axum::middleware::map_response(
            limits::close_after_too_large,
        ));
    Ok(Host {
        app,
        state,
        front: attendees,
    })
}

/// The largest body any route takes: what [`limits::refuse_declared_over`]
/// refuses beyond, before a byte is read.
fn largest_body(config: &Config) -> u64 {
    let room = 1 << 20;
    [
        (config.attendees.max_upload_mib as u64) << 20,
        config.queue.max_payload_bytes as u64,
        (config.attendees.max_userdata_kib as u64) << 10,
        (config.attendees.max_settings_kib as u64) << 10,
        admin::plugins::MAX_UPLOAD as u64,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
        + room
}

/// Creates the first accounts on a fresh data folder (printing their
/// passwords once, on stdout, for the operator) and loads the users file.
async fn start_auth(
    data_dir: &std::path::Path,
    trusted_proxies: &[std::net::IpAddr],
) -> anyhow::Result<Arc<Authenticator>> {
    let data_dir = data_dir.to_owned();
    let settings = auth::AuthSettings {
        trusted_proxies: trusted_proxies.to_vec(),
        ..auth::AuthSettings::default()
    };
    // argon2 hashing is CPU work: keep it off the executor threads.
    tokio::task::spawn_blocking(move || {
        if let Some(created) = auth::bootstrap(&data_dir)? {
            print_first_users(&created, &data_dir);
        }
        let auth = Authenticator::with_settings(&data_dir, settings)
            .with_context(|| format!("loading the users of {}", data_dir.display()))?;
        anyhow::Ok(Arc::new(auth))
    })
    .await
    .context("starting the authenticator")?
}

fn print_first_users(created: &[(String, auth::Role, String)], data_dir: &std::path::Path) {
    let file = auth::UsersFile::path(data_dir);
    let rule = "=".repeat(72);
    println!("{rule}");
    println!("first start: created users (passwords shown once, write them down)");
    for (name, role, password) in created {
        println!("  {name:<12} {role:<10} {password}");
    }
    println!("stored as argon2id hashes in {}", file.display());
    println!("more: comfyume user add --bulk 20 --prefix attendee");
    println!("{rule}");
    tracing::info!(users = created.len(), file = %file.display(), "first start: users created");
}

/// Clients for the `comfyui` pools, which are asked for their node catalogue.
fn comfyui_clients(config: &Config) -> Vec<crate::dispatch::comfyui::client::ComfyClient> {
    use crate::dispatch::comfyui::client::{ClientLimits, ComfyClient};
    config
        .effective_pools()
        .iter()
        .filter(|(_, pool)| pool.kind == crate::config::PoolKind::Comfyui)
        .filter_map(|(_, pool)| pool.url.as_deref())
        .filter_map(|url| ComfyClient::new(url, ClientLimits::default()).ok())
        .collect()
}

/// `GET /health`: the plugin slots in use and the queue's state; 503 while
/// the job store is unreachable (e.g. a Redis outage), and 503 with status
/// `installing` and the install's progress while the editor's files are
/// installed on first start (everything else already answers).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let pools: Vec<Value> = state
        .config
        .effective_pools()
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": p.kind, "gpu": p.gpu, "tier": p.tier, "capacity": p.capacity,
            "rehearsal": p.kind == crate::config::PoolKind::Rehearsal}))
        .collect();
    let slots: Vec<Value> = state
        .plugins
        .status()
        .into_iter()
        .map(|s| json!({"slot": s.slot, "active": s.active, "disabled": s.disabled.is_some()}))
        .collect();
    // The queue's health is part of the host's: a Redis outage shows here.
    let (code, queue) = match state.queue.snapshot().await {
        Ok(s) => (
            StatusCode::OK,
            json!({"status": "ok", "pending": s.pending.len(), "running": s.running.len()}),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "error": e.to_string()}),
        ),
    };
    let installing = state.editor.installing();
    let (code, status) = match (code, &installing) {
        (StatusCode::OK, None) => (code, "ok"),
        (StatusCode::OK, Some(_)) => (StatusCode::SERVICE_UNAVAILABLE, "installing"),
        _ => (code, "degraded"),
    };
    let frontend = match &installing {
        Some(view) => json!({"state": "installing", "progress": view, "says": view.describe()}),
        None => json!({"state": "serving"}),
    };
    (
        code,
        Json(json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "host": state.dispatcher.host_id(),
            "leader": state.dispatcher.leading(),
            "plugins": slots,
            "queue": queue,
            "pools": pools,
            "frontend": frontend,
        })),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    /// Every connection the host accepts has Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::no_delay(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }
}
