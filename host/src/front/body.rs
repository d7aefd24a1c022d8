//! Reading a request body within a cap, refusing early.
//!
//! Policy: a declared `Content-Length` over the cap is refused before a
//! byte is read; an undeclared (chunked) body is read only up to the cap
//! and refused as soon as it passes it. The route answers the refusal in
//! its own shape (JSON, never the framework's plain text), which is why
//! routes take the raw [`Body`] and call [`read_capped`] instead of the
//! `Bytes` extractor with its fixed 2 MB default.
//!
//! A body refused unread is not simply dropped when it is of a plausible
//! size (at most twice the cap): it is read and thrown away in the
//! background ([`linger`]) for a few seconds, so that a client still
//! sending it gets to read the refusal instead of a broken pipe. A body
//! declared far larger is not waited for at all.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the cap (declared or as read).
    #[error("the request body is larger than {max} bytes")]
    TooLarge {
        /// The cap, in bytes.
        max: usize,
    },
    /// The client stopped sending or the connection broke.
    #[error("the request body could not be read: {0}")]
    Broken(String),
}

/// The declared `Content-Length`, if any and well-formed.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The whole body, at most `max` bytes.
pub async fn read_capped(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, BodyError> {
    if let Some(declared) = declared_length(headers).filter(|n| *n > max as u64) {
        linger(body, declared, max as u64);
        return Err(BodyError::TooLarge { max });
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // `to_bytes` reports the limit as a boxed `LengthLimitError`.
        let limited = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if limited {
            BodyError::TooLarge { max }
        } else {
            BodyError::Broken(e.to_string())
        }
    })
}

/// How long a refused body is read and thrown away at most.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and discards a refused `body` declared `declared` bytes in the
/// background, when that is at most twice `cap`; see the module docs.
pub fn linger(body: Body, declared: u64, cap: u64) {
    if declared > cap.saturating_mul(2) {
        return;
    }
    tokio::spawn(async move {
        use http_body_util::BodyExt as _;
        let mut body = body;
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

impl From<BodyError> for super::ApiError {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge { max } => super::ApiError::TooLarge(format!(
                "the request is larger than the {} KiB accepted here",
                max / 1024
            )),
            BodyError::Broken(_) => super::ApiError::BadRequest(error.to_string()),
        }
    }
}

/// How deep `value` nests (a scalar is 1), counted without recursion so a
/// hostile value cannot exhaust the stack.
pub fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn depth_counts_the_deepest_branch() {
        assert_eq!(super::depth(&json!(1)), 1);
        assert_eq!(super::depth(&json!({"a": [1, {"b": []}]})), 4);
    }
}
