//! The editor's files while `serve` installs them: the host listens at
//! once and the install runs beside it.
//!
//! Policy:
//! - Until the install ends, every editor path answers a 503 page saying
//!   the editor is being installed, how far it is, and that the page
//!   reloads itself; the API, `/admin` and `/health` answer as usual
//!   (`/health` says `installing`).
//! - When it ends, the installed files are served from the next request
//!   on; when it fails, the page that says how to install them by hand
//!   ([`super::unavailable_router`]), and the log says why.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::progress::{InstallStatus, StatusView};
use crate::config::FrontendConfig;

/// What the editor's paths serve now.
pub struct Editor {
    state: RwLock<Serving>,
}

#[derive(Clone)]
enum Serving {
    /// The installed files, or the "not installed" page.
    Files(Router),
    /// The install is under way.
    Installing(Arc<InstallStatus>),
}

impl Editor {
    /// Serves `files` from the start.
    pub fn serving(files: Router) -> Arc<Editor> {
        Arc::new(Editor {
            state: RwLock::new(Serving::Files(files)),
        })
    }

    /// Installs `config.version` into `data_dir` on the current runtime,
    /// answering the "being installed" page meanwhile.
    pub fn install_in_background(config: &FrontendConfig, data_dir: PathBuf) -> Arc<Editor> {
        let status = InstallStatus::new();
        let editor = Arc::new(Editor {
            state: RwLock::new(Serving::Installing(status.clone())),
        });
        let options = super::InstallOptions {
            force: true,
            // Log lines, not bars: they go to the host's log with the rest.
            progress: false,
            status: Some(status.clone()),
            ..super::InstallOptions::from_config(config, &data_dir)
        };
        let version = config.version.clone();
        let done = editor.clone();
        tokio::spawn(async move {
            tracing::info!(%version, "installing the editor's files (first start); the host answers meanwhile");
            let files = match super::install(options).await {
                Ok(report) => {
                    tracing::info!(
                        path = %report.dir.display(),
                        files = report.installed.files,
                        bytes = report.installed.bytes,
                        seconds = report.elapsed.as_secs_f32(),
                        "frontend installed; serving the editor"
                    );
                    status.finish(None);
                    super::router(report.dir)
                }
                Err(error) => {
                    let reason = super::install::error_chain(&error);
                    tracing::warn!(
                        error = %reason,
                        "the ComfyUI editor could not be installed (attendees get a 503 page); \
                         run `comfyume frontend install` and restart"
                    );
                    status.finish(Some(reason));
                    super::unavailable_router()
                }
            };
            if let Ok(mut state) = done.state.write() {
                *state = Serving::Files(files);
            }
        });
        editor
    }

    /// How far the install is, while it runs.
    pub fn installing(&self) -> Option<StatusView> {
        match &*self.state.read().ok()? {
            Serving::Installing(status) => Some(status.view()),
            Serving::Files(_) => None,
        }
    }
}

/// The editor's paths, whatever they serve now (see the module docs).
pub fn editor_router(editor: Arc<Editor>) -> Router {
    Router::new().fallback(dispatch).with_state(editor)
}

async fn dispatch(State(editor): State<Arc<Editor>>, request: Request) -> Response {
    // Cloned out of the lock: never held across the request.
    let serving = {
        let guard = editor.state.read().ok();
        guard.map(|s| s.clone())
    };
    match serving {
        Some(Serving::Files(files)) => match files.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Some(Serving::Installing(status)) => installing_page(&status.view()),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the editor is unavailable").into_response(),
    }
}

/// The 503 page while installing; it reloads itself every few seconds.
fn installing_page(view: &StatusView) -> Response {
    let page = INSTALLING_PAGE.replace("{progress}", &view.describe());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (RETRY_AFTER, "5"),
        ],
        page,
    )
        .into_response()
}

/// `{progress}` is the status in words (steps and numbers only: no paths).
const INSTALLING_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"5\">\
<title>The editor is being installed</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
<h1>The workshop editor is being installed</h1>\
<p>The host is installing the ComfyUI editor's files on its first start; this takes a \
minute or two. This page reloads itself and the editor opens when it is ready.</p>\
<p>Now: <strong>{progress}</strong></p>\
</body></html>";
