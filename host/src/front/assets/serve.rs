//! Serving an installed frontend folder over HTTP.
//!
//! Policy:
//! - Files come from `tower-http`'s `ServeDir`, which refuses `..` (also
//!   percent-encoded) and prefers the `.br`, then `.gz`, variant written at
//!   install time when the browser accepts it.
//! - Hashed build outputs (`/assets/<name>-<8-char hash>.<ext>`) never change
//!   under their name: `public, max-age=31536000, immutable`. Everything else
//!   (`/`, `index.html`, `scripts/…`, `extensions/…`) is `no-cache`, i.e.
//!   revalidated each time, so a new install is picked up on reload.
//! - The router holds no state beyond the folder, so authentication and the
//!   API routes can be layered in front of it.
//! - Every answer carries a Content-Security-Policy ([`editor_policy`]):
//!   scripts only from this host (plus the exact inline scripts of the
//!   installed `index.html`, by hash), styles inline as the editor sets
//!   them, images and media from this host, `data:` and `blob:` (previews),
//!   connections to this host and its websocket, no plugins, no framing by
//!   other sites. An attendee's upload is another origin's page in no case:
//!   `/api/view` serves it as an image or a download, with its own policy.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

/// One year, the longest `max-age` browsers honour.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Revalidate every time (with `If-Modified-Since`, answered 304).
const REVALIDATE: &str = "no-cache";

/// Serves the installed frontend in `dir` (`<data>/frontend/<version>/`):
/// `/` is `index.html`, the rest are files under it.
pub fn router(dir: PathBuf) -> Router {
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap_or_default();
    let policy = HeaderValue::from_str(&editor_policy(&index))
        .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'self'"));
    let files = ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(true);
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_headers))
        .layer(middleware::map_response(move |mut response: Response| {
            let policy = policy.clone();
            async move {
                response
                    .headers_mut()
                    .insert(CONTENT_SECURITY_POLICY, policy);
                response
            }
        }))
}

/// The editor's Content-Security-Policy, allowing the inline scripts of
/// `index_html` by their SHA-256 (the installed page's splash screen).
pub fn editor_policy(index_html: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut hashes = String::new();
    let mut rest = index_html;
    while let Some(start) = rest.find("<script") {
        let tag = &rest[start..];
        let Some(open_end) = tag.find('>') else { break };
        let opening = &tag[..open_end];
        let body = &tag[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !opening.contains("src=") && !body[..close].trim().is_empty() {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
            let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
            hashes.push_str(&format!(" 'sha256-{encoded}'"));
        }
        rest = &body[close..];
    }
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         style-src 'self' 'unsafe-inline' data: blob:; img-src 'self' data: blob:; \
         media-src 'self' data: blob:; font-src 'self' data:; \
         connect-src 'self' ws: wss: data: blob:; worker-src 'self' blob:; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    )
}

/// Answers every request with a 503 page telling the operator how to
/// install the frontend: what `comfyume serve` mounts when the install on
/// first start failed (e.g. a machine without internet access).
pub fn unavailable_router() -> Router {
    Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-store"),
            ],
            UNAVAILABLE_PAGE,
        )
            .into_response()
    })
}

/// The page says what to do, not why (the log has the reason, which may
/// name internal paths and URLs).
const UNAVAILABLE_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>ComfyUI editor not installed</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
<h1>The ComfyUI editor is not installed yet</h1>\
<p>The host could not install the editor's files when it started.</p>\
<p>Operator: run <code>comfyume frontend install</code> (or, on a machine without \
internet access, <code>comfyume frontend install --wheel FILE</code>), then restart \
<code>comfyume serve</code>. See the Frontend section of <code>docs/operators.md</code>.</p>\
</body></html>";

/// Sets `Cache-Control` by path, and the headers every static answer needs.
async fn cache_headers(request: Request, next: Next) -> Response {
    let hashed = is_hashed_asset(request.uri().path());
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        let policy = if hashed { IMMUTABLE } else { REVALIDATE };
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
        // The body depends on Accept-Encoding (precompressed variants).
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    response
}

/// Whether a request path names a content-hashed build output: directly
/// under `/assets/`, named `<name>-<hash>.<ext>` with Vite's 8-character
/// base64url hash. Unhashed files there (`favicon.ico`, `images/…`) do not
/// match; a false "no" only costs a revalidation, a false "yes" would pin a
/// stale file for a year, so the test is strict.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/assets/") else {
        return false;
    };
    if name.contains('/') {
        return false;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if ext.is_empty() || stem.len() < 10 || !stem.is_char_boundary(stem.len() - 9) {
        return false;
    }
    let (base, tail) = stem.split_at(stem.len() - 9);
    let Some(hash) = tail.strip_prefix('-') else {
        return false;
    };
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // An all-lowercase "hash" is more likely a word ("manifest") than a hash.
    let mixed = hash
        .chars()
        .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-');
    !base.is_empty() && hash.chars().all(alphabet) && mixed
}

#[cfg(test)]
mod tests {
    use super::{editor_policy, is_hashed_asset};

    #[test]
    fn the_editor_policy_allows_exactly_the_pages_inline_scripts() {
        let page = "<script type=\"module\" src=\"./a.js\"></script><script>splash()</script>";
        let policy = editor_policy(page);
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"splash()"));
        assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
        assert_eq!(policy.matches("sha256-").count(), 1, "{policy}");
        assert!(!policy.contains(" 'unsafe-eval'"), "{policy}");
        assert!(
            !policy.contains("script-src 'self' 'unsafe-inline'"),
            "{policy}"
        );
    }

    #[test]
    fn hashed_names_are_vites_and_nothing_else() {
        for hashed in [
            "/assets/index-B2rHQ9Sn.js",
            "/assets/hitpaw-D2Smrfa-.js",
            "/assets/vendor-other-CR2hlIPQ.js",
            "/assets/manifest-P9przInP.json",
            "/assets/outputAssetUtil-DB-LQ89w.css",
        ] {
            assert!(is_hashed_asset(hashed), "{hashed}");
        }
        for plain in [
            "/",
            "/index.html",
            "/assets/favicon.ico",
            "/assets/CREDIT.txt",
            "/assets/images/og-image.png",
            "/assets/images/x-B2rHQ9Sn.png",
            "/scripts/app.js",
            "/assets/foo-manifest.json",
            "/assets/-B2rHQ9Sn.js",
            "/assets/index-B2rHQ9Sn",
            "/assets/ééééé.js",
        ] {
            assert!(!is_hashed_asset(plain), "{plain}");
        }
    }
}
