//! Request-level limits every route shares: a declared body over the
//! host's largest cap is refused before it is read, a body that stops
//! arriving times out, and every 413 is JSON.
//!
//! Policy: each route caps its own body (prompts, uploads, user data,
//! settings) and answers in its own shape; this layer is the floor under
//! all of them, so no route, present or future, waits for a declared
//! 10 GiB body or answers the framework's plain-text 413.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses a request whose declared `Content-Length` is over `max`, with a
/// JSON 413 and `Connection: close` (its body is never read).
pub async fn refuse_declared_over(max: u64, request: Request, next: Next) -> Response {
    let declared = crate::front::body::declared_length(request.headers());
    if let Some(declared) = declared.filter(|n| *n > max) {
        tracing::info!(declared, max, path = %request.uri().path(), "body refused on its declared length");
        crate::front::body::linger(request.into_body(), declared, max);
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!("the request body is larger than this host accepts ({} MiB)", max >> 20)
            })),
        )
            .into_response();
    }
    next.run(request).await
}

/// A 413 is answered before the body was read, so the connection cannot
/// carry another request: say so (`Connection: close`). Without it a
/// client may send its next request on the connection the server is
/// closing and get a cut answer instead of a response (seen in tests).
/// A 413 the framework answered in plain text is made JSON like the rest.
pub async fn close_after_too_large(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut response = if json {
        response
    } else {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({"error": "the request body is too large"})),
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The longest pause allowed while a request body arrives.
pub fn body_timeout(pause: Duration) -> tower_http::timeout::RequestBodyTimeoutLayer {
    tower_http::timeout::RequestBodyTimeoutLayer::new(pause)
}
