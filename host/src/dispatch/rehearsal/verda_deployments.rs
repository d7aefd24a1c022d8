//! The fake management API's container deployments: create, read, update,
//! status and replicas, with the refusals `verda apply` must report.
//!
//! Field names and shapes follow Verda's public Python SDK
//! (`datacrunch/containers/containers.py`): a create body has `name`,
//! `containers` (`image`, `exposed_port`, `healthcheck`, `env`,
//! `volume_mounts`), `compute` (`name`, `size`), `is_spot`,
//! `container_registry_settings` and `scaling` (`min_replica_count`,
//! `max_replica_count`, `scale_down_policy`, `scale_up_policy`,
//! `queue_message_ttl_seconds`, `concurrent_requests_per_replica`,
//! `scaling_triggers`); status answers `{"status"}`, replicas `{"list"}`.
//!
//! Refusals (400 with `code` and `message`): a missing field, an image
//! without a tag or with `:latest`, an image the registry does not have
//! (when the test lists the images that exist), and a GPU quota (the sum
//! of `compute.size × max_replica_count` over the account's deployments).
//! A second create of the same name is a 409.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::verda_management::{FakeManagement, lock};

/// The deployments and the account's limits.
#[derive(Default)]
pub struct Deployments {
    bodies: Mutex<BTreeMap<String, Value>>,
    gpu_quota: Mutex<Option<u64>>,
    images: Mutex<Option<HashSet<String>>>,
    writes: Mutex<Vec<(String, String, Value)>>,
}

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, Json(json!({"code": code, "message": message})))
}

impl FakeManagement {
    /// At most this many GPUs over all deployments' maximum replicas.
    pub fn set_gpu_quota(&self, gpus: u64) {
        *lock(&self.deployments.gpu_quota) = Some(gpus);
    }

    /// Only these images exist in the registry (default: any tagged image).
    pub fn set_images(&self, images: &[&str]) {
        *lock(&self.deployments.images) = Some(images.iter().map(|s| s.to_string()).collect());
    }

    /// The deployment as stored (with its current scaling), if any.
    pub fn deployment(&self, name: &str) -> Option<Value> {
        let mut body = lock(&self.deployments.bodies).get(name)?.clone();
        if let Some(scaling) = lock(&self.scaling).get(name) {
            body["scaling"] = scaling.clone();
        }
        Some(body)
    }

    /// Every create and update: `(method, path, body)`, in order.
    pub fn deployment_writes(&self) -> Vec<(String, String, Value)> {
        lock(&self.deployments.writes).clone()
    }

    fn check_body(&self, name: &str, body: &Value, creating: bool) -> Result<(), Answer> {
        let bad = |m: &str| Err(refuse(StatusCode::BAD_REQUEST, "invalid_request", m));
        if creating || body.get("containers").is_some() {
            let Some(container) = body["containers"].get(0) else {
                return bad("containers: at least one container is required");
            };
            let Some(image) = container["image"].as_str() else {
                return bad("containers[0].image is required");
            };
            if container["exposed_port"].as_u64().is_none() {
                return bad("containers[0].exposed_port is required");
            }
            let last = image.rsplit('/').next().unwrap_or(image);
            match last.split_once(':') {
                None => return bad("image must have an explicit tag"),
                Some((_, "latest")) => {
                    return bad("the latest tag is not supported: use a specific version tag");
                }
                _ => {}
            }
            if let Some(images) = lock(&self.deployments.images).as_ref()
                && !images.contains(image)
            {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "image_not_found",
                    &format!("image {image} could not be found in the registry"),
                ));
            }
        }
        if creating
            && (body["compute"]["name"].as_str().is_none()
                || body["compute"]["size"].as_u64().is_none())
        {
            return bad("compute.name and compute.size are required");
        }
        if creating {
            let s = &body["scaling"];
            for key in [
                "min_replica_count",
                "max_replica_count",
                "scale_down_policy",
                "scale_up_policy",
                "queue_message_ttl_seconds",
                "concurrent_requests_per_replica",
                "scaling_triggers",
            ] {
                if s.get(key).is_none() {
                    return bad(&format!("scaling.{key} is required"));
                }
            }
        }
        if let Some(quota) = *lock(&self.deployments.gpu_quota) {
            let gpus = |b: &Value, s: Option<&Value>| {
                b["compute"]["size"].as_u64().unwrap_or(1)
                    * s.and_then(|s| s["max_replica_count"].as_u64()).unwrap_or(0)
            };
            let scaling = lock(&self.scaling);
            let others: u64 = lock(&self.deployments.bodies)
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(n, b)| gpus(b, scaling.get(n)))
                .sum();
            let this = gpus(body, body.get("scaling").or(scaling.get(name)));
            if others + this > quota {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "quota_exceeded",
                    &format!("GPU quota of {quota} exceeded: {} requested", others + this),
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn routes() -> Router<Arc<FakeManagement>> {
    Router::new()
        .route("/v1/container-deployments", post(create))
        .route("/v1/container-deployments/{name}", get(read).patch(update))
        .route("/v1/container-deployments/{name}/status", get(status))
        .route("/v1/container-deployments/{name}/replicas", get(replicas))
}

fn unauthorised() -> Answer {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Unauthorized"})),
    )
}

fn not_found() -> Answer {
    refuse(StatusCode::NOT_FOUND, "not_found", "Deployment not found")
}

async fn create(
    State(fake): State<Arc<FakeManagement>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if !fake.authorised(&headers) {
        return unauthorised();
    }
    let Some(name) = body["name"].as_str().map(str::to_string) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name is required",
        );
    };
    if lock(&fake.deployments.bodies).contains_key(&name) {
        return refuse(
            StatusCode::CONFLICT,
            "conflict",
            "a deployment with this name exists",
        );
    }
    if let Err(answer) = fake.check_body(&name, &body, true) {
        return answer;
    }
    let mut stored = body.clone();
    let scaling = stored
        .as_object_mut()
        .and_then(|o| o.remove("scaling"))
        .unwrap_or(Value::Null);
    if let Some(container) = stored["containers"].get_mut(0) {
        container["name"] = json!(format!("{name}-0"));
    }
    stored["endpoint_base_url"] = json!(format!("https://containers.datacrunch.io/{name}"));
    stored["created_at"] = json!("2026-12-07T00:00:00Z");
    lock(&fake.scaling).insert(name.clone(), scaling);
    lock(&fake.deployments.bodies).insert(name.clone(), stored);
    lock(&fake.deployments.writes).push(("POST".into(), "/container-deployments".into(), body));
    (
        StatusCode::CREATED,
        Json(fake.deployment(&name).unwrap_or_default()),
    )
}

async fn read(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    if !fake.authorised(&headers) {
        return unauthorised();
    }
    match fake.deployment(&name) {
        Some(body) => (StatusCode::OK, Json(body)),
        None => not_found(),
    }
}

async fn update(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if !fake.authorised(&headers) {
        return unauthorised();
    }
    if !lock(&fake.deployments.bodies).contains_key(&name) {
        return not_found();
    }
    if let Err(answer) = fake.check_body(&name, &body, false) {
        return answer;
    }
    {
        let mut bodies = lock(&fake.deployments.bodies);
        let Some(stored) = bodies.get_mut(&name) else {
            return not_found();
        };
        for (key, value) in body.as_object().into_iter().flatten() {
            if key == "scaling" {
                lock(&fake.scaling).insert(name.clone(), value.clone());
            } else if key != "name" {
                stored[key] = value.clone();
            }
        }
        if let Some(container) = stored["containers"].get_mut(0) {
            container["name"] = json!(format!("{name}-0"));
        }
    }
    lock(&fake.deployments.writes).push((
        "PATCH".into(),
        format!("/container-deployments/{name}"),
        body,
    ));
    (
        StatusCode::OK,
        Json(fake.deployment(&name).unwrap_or_default()),
    )
}

async fn status(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    if !fake.authorised(&headers) {
        return unauthorised();
    }
    match fake.deployment(&name) {
        Some(_) => (StatusCode::OK, Json(json!({"status": "healthy"}))),
        None => not_found(),
    }
}

async fn replicas(
    State(fake): State<Arc<FakeManagement>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    if !fake.authorised(&headers) {
        return unauthorised();
    }
    let Some(body) = fake.deployment(&name) else {
        return not_found();
    };
    let running = body["scaling"]["min_replica_count"].as_u64().unwrap_or(0);
    let list: Vec<Value> = (0..running)
        .map(|i| json!({"id": format!("{name}-r{i}"), "status": "running", "started_at": "2026-12-07T00:00:00Z"}))
        .collect();
    (StatusCode::OK, Json(json!({"list": list})))
}
