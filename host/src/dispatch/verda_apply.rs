//! `comfyume verda apply` and `comfyume verda status`: the config's Verda
//! deployments made real, and read back.
//!
//! Policy:
//! - each deployment is read first (`GET /container-deployments/{name}`):
//!   absent → `POST /container-deployments` with the whole spec; present →
//!   `PATCH /container-deployments/{name}` with the container, compute and
//!   registry settings only when they differ (a change rolls the replicas,
//!   so an unchanged deployment is not touched), then `PATCH …/scaling`
//!   when the scaling differs;
//! - a live deployment keeps a minimum above the config's (pre-warm raises
//!   it for a session; apply must not undo that mid-workshop);
//! - `--dry-run` makes the same reads and prints the writes it would make;
//!   without management credentials it reads nothing and plans creates;
//! - a refusal (quota, an image Verda cannot pull) stops at that
//!   deployment with Verda's own message; those before it stay applied.

use serde::Serialize;
use serde_json::{Value, json};

use super::verda_deploy::{DeploymentSpec, contains};
use super::verda_scaling::{ScalingError, VerdaScaling};

/// One request `apply` makes (or would make).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// `POST` or `PATCH`.
    pub method: String,
    /// Under the management base URL.
    pub path: String,
    /// The JSON body.
    pub body: Value,
}

/// What `apply` did (or would do) to one deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The pool.
    pub pool: String,
    /// The deployment.
    pub deployment: String,
    /// `create`, `update` or `unchanged`.
    pub action: String,
    /// The writes, in order.
    pub requests: Vec<Request>,
}

/// Why apply or status failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Authentication or transport.
    #[error(transparent)]
    Api(#[from] ScalingError),
    /// Verda refused a request.
    #[error("{deployment}: {method} {path} refused ({status}): {message}")]
    Refused {
        /// The deployment.
        deployment: String,
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// Verda's status.
        status: u16,
        /// Verda's message.
        message: String,
    },
}

fn message(value: &Value) -> String {
    let text = value
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    match value.get("code").and_then(Value::as_str) {
        Some(code) => format!("{code}: {text}"),
        None => text,
    }
}

/// Plans one deployment from what Verda has now (`None`: absent).
pub fn plan(
    spec: &DeploymentSpec,
    current: Option<&Value>,
    current_scaling: Option<&Value>,
) -> Plan {
    let path = format!("/container-deployments/{}", spec.name);
    let mut requests = Vec::new();
    let action = match current {
        None => {
            requests.push(Request {
                method: "POST".into(),
                path: "/container-deployments".into(),
                body: spec.create_body(),
            });
            "create"
        }
        Some(current) => {
            if !contains(current, &spec.deployment) {
                requests.push(Request {
                    method: "PATCH".into(),
                    path: path.clone(),
                    body: spec.deployment.clone(),
                });
            }
            let mut scaling = spec.scaling.clone();
            let live_min = current_scaling
                .and_then(|s| s["min_replica_count"].as_u64())
                .unwrap_or(0);
            let max = scaling["max_replica_count"].as_u64().unwrap_or(0);
            let min = scaling["min_replica_count"].as_u64().unwrap_or(0);
            scaling["min_replica_count"] = json!(min.max(live_min).min(max));
            if !current_scaling.is_some_and(|c| contains(c, &scaling)) {
                requests.push(Request {
                    method: "PATCH".into(),
                    path: format!("{path}/scaling"),
                    body: scaling,
                });
            }
            if requests.is_empty() {
                "unchanged"
            } else {
                "update"
            }
        }
    };
    Plan {
        pool: spec.pool.clone(),
        deployment: spec.name.clone(),
        action: action.into(),
        requests,
    }
}

async fn read(
    api: &VerdaScaling,
    deployment: &str,
    path: &str,
) -> Result<Option<Value>, ApplyError> {
    let (status, value) = api.request(reqwest::Method::GET, path, None).await?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(ApplyError::Refused {
            deployment: deployment.into(),
            method: "GET".into(),
            path: path.into(),
            status: status.as_u16(),
            message: message(&value),
        });
    }
    Ok(Some(value))
}

/// Plans every deployment from Verda's current state; writes when
/// `write`. Returns the plans in order.
pub async fn apply(
    api: &VerdaScaling,
    specs: &[DeploymentSpec],
    write: bool,
) -> Result<Vec<Plan>, ApplyError> {
    let mut plans = Vec::new();
    for spec in specs {
        let path = format!("/container-deployments/{}", spec.name);
        let current = read(api, &spec.name, &path).await?;
        let scaling = match &current {
            Some(_) => read(api, &spec.name, &format!("{path}/scaling")).await?,
            None => None,
        };
        let plan = plan(spec, current.as_ref(), scaling.as_ref());
        if write {
            for request in &plan.requests {
                let method = reqwest::Method::from_bytes(request.method.as_bytes())
                    .unwrap_or(reqwest::Method::POST);
                let (status, value) = api
                    .request(method, &request.path, Some(&request.body))
                    .await?;
                if !status.is_success() {
                    return Err(ApplyError::Refused {
                        deployment: spec.name.clone(),
                        method: request.method.clone(),
                        path: request.path.clone(),
                        status: status.as_u16(),
                        message: message(&value),
                    });
                }
                tracing::info!(deployment = %spec.name, method = %request.method, path = %request.path, "applied");
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// One deployment as Verda reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The pool.
    pub pool: String,
    /// The deployment.
    pub deployment: String,
    /// Verda's status (`healthy`, `initializing`, `quota_reached`…) or
    /// `absent`.
    pub status: String,
    /// Replicas by their status, e.g. `{"running": 2}`.
    pub replicas: std::collections::BTreeMap<String, u32>,
    /// The scaling bounds now.
    pub min_replicas: Option<u64>,
    /// The scaling bounds now.
    pub max_replicas: Option<u64>,
    /// The image running.
    pub image: Option<String>,
}

/// Reads each deployment's status, replicas and scaling.
pub async fn status(
    api: &VerdaScaling,
    specs: &[DeploymentSpec],
) -> Result<Vec<Status>, ApplyError> {
    let mut out = Vec::new();
    for spec in specs {
        let path = format!("/container-deployments/{}", spec.name);
        let mut status = Status {
            pool: spec.pool.clone(),
            deployment: spec.name.clone(),
            status: "absent".into(),
            replicas: Default::default(),
            min_replicas: None,
            max_replicas: None,
            image: None,
        };
        if let Some(current) = read(api, &spec.name, &path).await? {
            status.image = current["containers"][0]["image"]
                .as_str()
                .map(str::to_string);
            if let Some(s) = read(api, &spec.name, &format!("{path}/status")).await? {
                status.status = s["status"].as_str().unwrap_or("unknown").to_string();
            }
            if let Some(r) = read(api, &spec.name, &format!("{path}/replicas")).await? {
                for replica in r["list"].as_array().into_iter().flatten() {
                    let state = replica["status"].as_str().unwrap_or("unknown").to_string();
                    *status.replicas.entry(state).or_default() += 1;
                }
            }
            if let Some(s) = read(api, &spec.name, &format!("{path}/scaling")).await? {
                status.min_replicas = s["min_replica_count"].as_u64();
                status.max_replicas = s["max_replica_count"].as_u64();
            }
        }
        out.push(status);
    }
    Ok(out)
}
