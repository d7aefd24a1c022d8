//! The authenticator in front of axum routes.
//!
//! Policy:
//! - Wrap attendee routes, the websocket upgrade included, in
//!   [`require_user`]; `/admin` routes in [`require_role`]`(…, Role::Admin)`.
//!   The layer verifies, then puts the [`Identity`] in the request's
//!   extensions, where the [`Identity`] extractor finds it. The extractor
//!   also works alone (it verifies itself) when the router's state provides
//!   an `Arc<Authenticator>`.
//! - The client address is the TCP peer (`ConnectInfo<SocketAddr>`; serve
//!   with `into_make_service_with_connect_info`). `X-Forwarded-For` is
//!   believed only from the configured trusted proxies
//!   ([`Authenticator::client_address`]). Without `ConnectInfo` (in-process tests) every request counts as
//!   `0.0.0.0` for rate limiting.
//! - 401 carries `WWW-Authenticate: Basic realm="ComfyUMe", charset="UTF-8"`
//!   so the browser prompts once and re-sends the credentials afterwards;
//!   403 and 429 do not (a re-prompt would not help). Bodies are
//!   `{"error": "…"}`; bad input is never a 500.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;

use super::{AuthError, Authenticator, Identity, Role};

/// The `WWW-Authenticate` challenge on every 401.
pub const CHALLENGE: &str = "Basic realm=\"ComfyUMe\", charset=\"UTF-8\"";

impl AuthError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Disabled(_) | AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = axum::Json(serde_json::json!({"error": self.to_string()}));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::InvalidCredentials => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                );
            }
            AuthError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// The peer address, or `0.0.0.0` when the server was not built with
/// `ConnectInfo` (e.g. `Router::oneshot` in tests).
pub fn client_ip(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Verifies the request's credentials and checks `min_role`.
async fn authorize(
    auth: &Authenticator,
    parts_headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    min_role: Role,
) -> Result<Identity, AuthError> {
    // A header that is not visible ASCII cannot be Basic: 401, not 500.
    let header = match parts_headers.get(header::AUTHORIZATION) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| AuthError::Malformed("header is not plain ASCII"))?,
        ),
        None => None,
    };
    let client = auth.client_address(client_ip(extensions), parts_headers);
    let identity = auth.verify(header, client).await?;
    if identity.role < min_role {
        return Err(AuthError::Forbidden(min_role));
    }
    Ok(identity)
}

impl<S> FromRequestParts<S> for Identity
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Behind `require_user` the work is done already.
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        let auth = Arc::<Authenticator>::from_ref(state);
        authorize(&auth, &parts.headers, &parts.extensions, Role::Attendee).await
    }
}

/// Lets in any enabled account; see the module docs.
pub fn require_user(auth: Arc<Authenticator>) -> RequireUser {
    require_role(auth, Role::Attendee)
}

/// Lets in accounts with at least `role` (an attendee on an admin route: 403).
pub fn require_role(auth: Arc<Authenticator>, role: Role) -> RequireUser {
    RequireUser { auth, role }
}

/// The tower layer made by [`require_user`] and [`require_role`].
#[derive(Clone)]
pub struct RequireUser {
    auth: Arc<Authenticator>,
    role: Role,
}

impl<S> tower_layer::Layer<S> for RequireUser {
    type Service = RequireUserService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireUserService {
            inner,
            gate: self.clone(),
        }
    }
}

/// The service [`RequireUser`] wraps routes in.
#[derive(Clone)]
pub struct RequireUserService<S> {
    inner: S,
    gate: RequireUser,
}

impl<S> tower_service::Service<Request> for RequireUserService<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready goes with this call; a fresh clone
        // stays for the next one (the usual tower idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let verdict = authorize(
                &gate.auth,
                request.headers(),
                request.extensions(),
                gate.role,
            )
            .await;
            match verdict {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(error) => Ok(error.into_response()),
            }
        })
    }
}
