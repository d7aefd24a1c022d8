//! The operator's dashboard: a small static page at `/admin` over the JSON
//! API under `/admin/api`, kept current by a server-sent event feed.
//!
//! Policy:
//! - Everything here, the page and its assets included, is behind the same
//!   admin login as the API ([`require_role`] with [`Role::Admin`]): an
//!   attendee gets a 403, a stranger a 401 (and the browser's login prompt).
//! - The page is plain JavaScript embedded in the binary (`include_str!`):
//!   no framework, no CDN, no build step, nothing fetched from elsewhere.
//!   Its Content-Security-Policy allows only this origin, so an attendee
//!   name or a plugin's error text can never run as script (the page also
//!   writes every value as text, never as HTML).
//! - It only reads through `/admin/api/events` (or `/admin/api/snapshot`
//!   when the event stream fails) and acts through the ordinary API routes,
//!   so the dashboard can do nothing the API does not allow, and every
//!   refusal the API gives is shown to the operator, never swallowed.
//! - The feed is one task per host, built from the API's own handlers, that
//!   runs only while a dashboard is open: see [`feed`].

pub(super) mod feed;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;

use super::Admin;
use crate::auth::{Role, require_role};

/// The page and its assets: (name, content type, text).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("app.js"),
    ),
    (
        "render.js",
        "text/javascript; charset=utf-8",
        include_str!("render.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("dom.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("api.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("style.css"),
    ),
];

/// Only this origin: no inline script, no frames, no other hosts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/admin`, `/admin/`, `/admin/assets/{name}`, `/admin/api/events`,
/// `/admin/api/snapshot` and a 404 for every other `/admin/…` path, behind
/// the admin login; merges into any router. The page itself answers a
/// logged-in account that may not use it with a readable HTML page
/// ([`refusal_page`]), not the API's JSON.
pub(super) fn router<S: Clone + Send + Sync + 'static>(admin: Arc<Admin>) -> Router<S> {
    let auth = admin.state.auth.clone();
    let pages = Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .layer(require_role(auth.clone(), Role::Admin))
        .layer(axum::middleware::map_response(refusal_page));
    Router::new()
        .route("/admin/assets/{name}", get(asset))
        .route("/admin/api/events", get(feed::events))
        .route("/admin/api/snapshot", get(feed::snapshot))
        .route("/admin/{*rest}", any(not_found))
        .layer(require_role(auth, Role::Admin))
        .with_state(feed::Feed::new(admin))
        .merge(pages)
}

/// Longest refusal text read from the login layer's JSON answer.
const REFUSAL_BYTES: usize = 4096;

/// A 403 from the login layer on `/admin` (an attendee's or a disabled
/// account's login) as an HTML page saying what it means and what to do;
/// every other answer passes unchanged. A 401 stays as it is: its
/// challenge makes the browser ask for a login.
async fn refusal_page(response: Response) -> Response {
    if response.status() != StatusCode::FORBIDDEN {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), REFUSAL_BYTES)
        .await
        .unwrap_or_default();
    let said = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    let html = REFUSAL_HTML.replace("{reason}", &escape_html(&said));
    let mut response = (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// The refusal page; `{reason}` is the login layer's own sentence.
const REFUSAL_HTML: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Not an operator: ComfyUMe</title>
<link rel=\"icon\" href=\"data:,\">
</head><body><main>
<h1>This page is for the workshop's operators</h1>
<p data-test=\"refusal\">You are logged in with an account that is not an operator account, so the
operator's dashboard is not yours to open ({reason}).</p>
<p>Your workshop editor is at <a href=\"/\">the start page</a>. To open the dashboard as an
operator, log in with an operator account: close this browser window (or open a private
window) and sign in again.</p>
</main></body></html>
";

/// Text made safe to put inside HTML.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Any other `/admin/…` path: a JSON 404 naming it, not the editor's files
/// (the page shows this text when it calls a route this host lacks).
async fn not_found(uri: axum::http::Uri) -> Response {
    let error = format!("this host has no operator route {}", uri.path());
    (StatusCode::NOT_FOUND, axum::Json(json!({ "error": error }))).into_response()
}

/// `GET /admin`: the page.
async fn page() -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("index.html"),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /admin/assets/{name}`: the script and the style sheet.
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => (
            [
                (header::CONTENT_TYPE, *kind),
                // Revalidated on every load: a new host version shows at once.
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such dashboard file").into_response(),
    }
}
