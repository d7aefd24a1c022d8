//! A fake of Verda's management API for tests and rehearsals: OAuth client
//! credentials, a deployment's scaling settings, and whole deployments.
//!
//! It answers `POST /v1/oauth2/token` (JSON `grant_type=client_credentials`,
//! `client_id`, `client_secret`; a wrong pair is a 401), and
//! `GET`/`PATCH /v1/container-deployments/{name}/scaling` with a bearer
//! token it issued (else 401; an unknown deployment is a 404). Tokens can be
//! expired on demand to exercise the client's refresh, and every PATCH is
//! kept so a test can read what the host asked for.
//!
//! Deployments (`verda_deployments`): `POST /v1/container-deployments`,
//! `GET`/`PATCH /v1/container-deployments/{name}`, `GET …/status` and
//! `GET …/replicas`, with the field names of Verda's SDK and its refusals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The fake's state.
pub struct FakeManagement {
    client_id: String,
    client_secret: String,
    tokens: Mutex<Vec<String>>,
    pub(super) scaling: Mutex<HashMap<String, Value>>,
    patches: Mutex<Vec<(String, Value)>>,
    pub(super) deployments: super::verda_deployments::Deployments,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeManagement {
    /// An account with these credentials and `deployments` at min 0, max 4,
    /// a request TTL of 900 s.
    pub fn new(client_id: &str, client_secret: &str, deployments: &[&str]) -> Arc<Self> {
        let scaling = deployments
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    json!({
                        "min_replica_count": 0,
                        "max_replica_count": 4,
                        "queue_message_ttl_seconds": 900,
                        "concurrent_requests_per_replica": 1,
                        "scale_down_policy": {"delay_seconds": 300},
                    }),
                )
            })
            .collect();
        Arc::new(FakeManagement {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tokens: Mutex::new(Vec::new()),
            scaling: Mutex::new(scaling),
            patches: Mutex::new(Vec::new()),
            deployments: Default::default(),
        })
    }

    /// Serves on a loopback port; the management base URL is
    /// `http://{addr}/v1`.
    pub async fn serve(self: &Arc<Self>) -> std::io::Result<SocketAddr> {
        let router = Router::new()
            .route("/v1/oauth2/token", post(token))
            .route(
                "/v1/container-deployments/{name}/scaling",
                get(read_scaling).patch(write_scaling),
            )
            .merge(super::verda_deployments::routes())
            .with_state(self.clone());
        super::serve_on_loopback(router).await
    }

    /// The deployment's minimum replicas now.
    pub fn min_replicas(&self, deployment: &str) -> Option<u64> {
        lock(&self.scaling).get(deployment)?["min_replica_count"].as_u64()
    }

    /// The deployment's maximum replicas now.
    pub fn max_replicas(&self, deployment: &str) -> Option<u64> {
        lock(&self.scaling).get(deployment)?["max_replica_count"].as_u64()
    }

    /// Sets the deployment's request TTL (`queue_message_ttl_seconds`).
    pub fn set_request_ttl(&self, deployment: &str, seconds: u64) {
        if let Some(scaling) = lock(&self.scaling).get_mut(deployment) {
            scaling["queue_message_ttl_seconds"] = json!(seconds);
        }
    }

    /// Every PATCH body, in order.
    pub fn patches(&self) -> Vec<(String, Value)> {
        lock(&self.patches).clone()
    }

    /// Forgets every token issued (the next call gets a 401).
    pub fn expire_tokens(&self) {
        lock(&self.tokens).clear();
    }

    pub(super) fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        lock(&self.tokens).iter().any(|t| t == token)
    }
}

async fn token(
    State(fake): State<Arc<FakeManagement>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let right = body["grant_type"] == "client_credentials"
        && body["client_id"] == fake.client_id.as_str()
        && body["client_secret"] == fake.client_secret.as_str();
    if !right {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "unauthorized_request", "message": "Invalid client credentials"})),
        );
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    lock(&fake.tokens).push(token.clone());
    (
        StatusCode::OK,
        Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "unused",
            "scope": "cloud-api-v1",
        })),
    )
}

async fn read_scaling(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !fake.authorised(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        );
    }
    match lock(&fake.scaling).get(&name) {
        Some(scaling) => (StatusCode::OK, Json(scaling.clone())),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Deployment not found"})),
        ),
    }
}

async fn write_scaling(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !fake.authorised(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        );
    }
    let mut scaling = lock(&fake.scaling);
    let Some(current) = scaling.get_mut(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Deployment not found"})),
        );
    };
    let (Some(min), Some(max)) = (
        body["min_replica_count"].as_u64(),
        body["max_replica_count"].as_u64(),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "min_replica_count and max_replica_count are required"})),
        );
    };
    if min > max {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "min_replica_count exceeds max_replica_count"})),
        );
    }
    *current = body.clone();
    lock(&fake.patches).push((name, body));
    (StatusCode::OK, Json(current.clone()))
}
