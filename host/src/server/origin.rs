//! Refuses cross-site requests that would act with a browser's cached
//! login.
//!
//! Policy: Basic Auth credentials are cached by the browser per site and
//! sent with any request to it, including a form another site posts or a
//! websocket another site opens. So every request that changes something
//! (any method but GET, HEAD and OPTIONS) and every websocket upgrade is
//! refused (403, with the reason) when its `Origin` names another site.
//! "This site" is the `Host` the request was sent to, or the
//! `X-Forwarded-Host` a proxy passed on (a page cannot set that header on a
//! cross-site request without a CORS preflight, which this host never
//! grants), or one of `server.allowed_origins`. Requests without `Origin`
//! (curl, scripts, the GPU workers' callbacks) are not browsers acting for
//! someone else and pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The origins allowed besides the request's own host.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Arc<Vec<String>>,
}

impl Origins {
    /// `allowed`: full origins such as `https://workshop.example.org`.
    pub fn new(allowed: &[String]) -> Origins {
        Origins {
            allowed: Arc::new(
                allowed
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Whether a request carrying `origin` comes from this site.
    fn same_site(&self, origin: &str, headers: &HeaderMap) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        // `scheme://host[:port]` → `host[:port]`.
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        [header::HOST.as_str(), "x-forwarded-host"]
            .iter()
            .filter_map(|name| headers.get(*name)?.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|host| host.trim().eq_ignore_ascii_case(authority))
    }
}

fn acts(request: &Request) -> bool {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade
        || !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
}

/// The middleware: see the module docs.
pub async fn same_site_only(
    State(origins): State<Origins>,
    request: Request,
    next: Next,
) -> Response {
    if acts(&request)
        && let Some(origin) = request
            .headers()
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?").to_string())
        && !origins.same_site(&origin, request.headers())
    {
        tracing::warn!(%origin, method = %request.method(), path = %request.uri().path(), "cross-site request refused");
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "error": format!(
                    "cross-site request refused: this page comes from {origin}, not from this workshop host (an operator behind a proxy may list it in server.allowed_origins)"
                )
            })),
        )
            .into_response();
    }
    next.run(request).await
}
