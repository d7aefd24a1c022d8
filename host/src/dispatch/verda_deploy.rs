//! The Verda container deployments the config describes, as the request
//! bodies of Verda's management API (`comfyume verda apply`).
//!
//! Field names follow Verda's public Python SDK (`DataCrunch-io/
//! datacrunch-python`, `datacrunch/containers/containers.py`: `Deployment`,
//! `Container`, `HealthcheckSettings`, `EnvVar`, `VolumeMount`,
//! `ComputeResource`, `ScalingOptions`, `ScalingTriggers`); see
//! docs/gpu.md.
//!
//! Policy: everything that can be checked without Verda is checked here,
//! before any request: an image without an explicit tag or with `:latest`
//! (replicas started at different times would run different builds), a
//! request TTL shorter than the job wait (Verda would drop a job the host
//! still waits for), a pool without a deployment name or GPU, fewer
//! maximum than minimum replicas, an environment variable named twice.

use serde_json::{Value, json};

use crate::config::{Config, PoolConfig, PoolKind};

/// Why the config cannot be deployed.
#[derive(Debug, thiserror::Error)]
#[error("pools.{pool}: {reason}")]
pub struct SpecError {
    /// The pool (or `verda.deploy` for the shared part).
    pub pool: String,
    /// What is wrong.
    pub reason: String,
}

/// One deployment as Verda should have it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// The pool that names it.
    pub pool: String,
    /// The deployment's name.
    pub name: String,
    /// `POST /container-deployments` body without `scaling`.
    pub deployment: Value,
    /// The `scaling` object (also `PATCH …/scaling`'s body).
    pub scaling: Value,
}

impl DeploymentSpec {
    /// The whole create body.
    pub fn create_body(&self) -> Value {
        let mut body = self.deployment.clone();
        body["scaling"] = self.scaling.clone();
        body
    }
}

/// Checks an image reference: a tag or digest, never `latest`.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.contains("@sha256:") {
        return Ok(());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Err(format!(
            "image {image:?} has no tag: give an explicit version tag or digest"
        )),
        Some((_, "latest")) => Err(format!(
            "image {image:?} uses :latest: replicas started at different times would run different builds; tag each build"
        )),
        Some((_, "")) => Err(format!("image {image:?} has an empty tag")),
        Some(_) => Ok(()),
    }
}

fn env_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The deployments of every `verda` pool, in pool-name order.
pub fn specs(config: &Config) -> Result<Vec<DeploymentSpec>, SpecError> {
    config
        .pools
        .iter()
        .filter(|(_, pool)| pool.kind == PoolKind::Verda)
        .map(|(name, pool)| spec(config, name, pool))
        .collect()
}

fn spec(config: &Config, pool_name: &str, pool: &PoolConfig) -> Result<DeploymentSpec, SpecError> {
    let d = &config.verda.deploy;
    let bad = |reason: String| SpecError {
        pool: pool_name.to_string(),
        reason,
    };
    let name = pool
        .deployment
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("a verda pool needs `deployment` (the deployment's name)".into()))?;
    let image = d
        .image
        .clone()
        .ok_or_else(|| bad("verda.deploy.image is not set".into()))?;
    check_image(&image).map_err(bad)?;
    if pool.gpu.is_empty() || pool.gpu == "unknown" {
        return Err(bad(
            "`gpu` must be Verda's compute name, e.g. \"H200\"".into()
        ));
    }
    if pool.capacity < d.min_replicas.max(1) {
        return Err(bad(format!(
            "capacity {} (the most replicas) is below verda.deploy.min_replicas {} or 1",
            pool.capacity, d.min_replicas
        )));
    }
    let job_wait = config.timeouts.job_wait_secs;
    let ttl = d
        .request_ttl_secs
        .unwrap_or(job_wait + config.verda.queue_grace_secs);
    if ttl < job_wait {
        return Err(bad(format!(
            "verda.deploy.request_ttl_secs {ttl} is shorter than timeouts.job_wait_secs {job_wait}: Verda would drop jobs the host still waits for"
        )));
    }
    let mut env = vec![
        (
            "COMFYUME_WORKER_LISTEN".to_string(),
            format!("0.0.0.0:{}", d.port),
        ),
        (
            "COMFYUME_WORKER_JOB_WAIT_SECS".to_string(),
            job_wait.to_string(),
        ),
        ("COMFYUME_MODELS_DIR".to_string(), d.models_path.clone()),
    ];
    env.extend(d.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut seen = std::collections::HashSet::new();
    let mut env_json = Vec::new();
    for (key, value) in &env {
        if !env_name_ok(key) || !seen.insert(key.clone()) {
            return Err(bad(format!(
                "environment variable {key:?} is invalid or set twice"
            )));
        }
        env_json.push(json!({"type": "plain", "name": key, "value_or_reference_to_secret": value}));
    }
    for (key, secret) in &d.secrets {
        if !env_name_ok(key) || !seen.insert(key.clone()) {
            return Err(bad(format!(
                "environment variable {key:?} is invalid or set twice"
            )));
        }
        env_json
            .push(json!({"type": "secret", "name": key, "value_or_reference_to_secret": secret}));
    }
    let mut volumes = Vec::new();
    if let Some(volume) = &d.models_volume_id {
        volumes.push(json!({"type": "shared", "mount_path": d.models_path, "volume_id": volume}));
    }
    if d.shm_mib > 0 {
        volumes.push(json!({"type": "memory", "mount_path": "/dev/shm", "size_in_mb": d.shm_mib}));
    }
    let registry = match &d.registry_credentials {
        Some(credentials) => json!({"is_private": true, "credentials": {"name": credentials}}),
        None => json!({"is_private": false}),
    };
    let deployment = json!({
        "name": name,
        "is_spot": pool.tier == "spot",
        "compute": {"name": pool.gpu, "size": d.gpu_count},
        "container_registry_settings": registry,
        "containers": [{
            "image": image,
            "exposed_port": d.port,
            "healthcheck": {"enabled": true, "port": d.port, "path": d.health_path},
            "entrypoint_overrides": {"enabled": false},
            "env": env_json,
            "volume_mounts": volumes,
        }],
    });
    let scaling = json!({
        "min_replica_count": d.min_replicas,
        "max_replica_count": pool.capacity,
        "scale_down_policy": {"delay_seconds": d.scale_down_delay_secs},
        "scale_up_policy": {"delay_seconds": d.scale_up_delay_secs},
        "queue_message_ttl_seconds": ttl,
        "concurrent_requests_per_replica": 1,
        "scaling_triggers": {"queue_load": {"threshold": d.queue_load_threshold}},
    });
    Ok(DeploymentSpec {
        pool: pool_name.to_string(),
        name,
        deployment,
        scaling,
    })
}

/// Whether everything in `wanted` is in `current` with the same value
/// (objects: each key of `wanted`; arrays: the same length, element by
/// element). Verda adds fields of its own (a container's `name`); those
/// are not differences.
pub fn contains(current: &Value, wanted: &Value) -> bool {
    match (current, wanted) {
        (Value::Object(c), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| c.get(k).is_some_and(|cv| contains(cv, v))),
        (Value::Array(c), Value::Array(w)) => {
            c.len() == w.len() && c.iter().zip(w).all(|(cv, wv)| contains(cv, wv))
        }
        (Value::Number(c), Value::Number(w)) => c.as_f64() == w.as_f64(),
        _ => current == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        config.verda.deploy.image = Some("ghcr.io/acme/comfyume-gpu:0.1.0".into());
        config.pools.insert(
            "h200-spot".into(),
            PoolConfig {
                kind: PoolKind::Verda,
                deployment: Some("comfyume-h200-spot".into()),
                gpu: "H200".into(),
                tier: "spot".into(),
                capacity: 4,
                ..PoolConfig::rehearsal()
            },
        );
        config.pools.insert("local".into(), PoolConfig::rehearsal());
        config
    }

    #[test]
    fn a_verda_pool_becomes_a_deployment_with_the_documented_fields() {
        let specs = specs(&config()).unwrap();
        assert_eq!(specs.len(), 1, "only verda pools");
        let s = &specs[0];
        let body = s.create_body();
        assert_eq!(body["name"], "comfyume-h200-spot");
        assert_eq!(body["is_spot"], true);
        assert_eq!(body["compute"], json!({"name": "H200", "size": 1}));
        let c = &body["containers"][0];
        assert_eq!(c["exposed_port"], 8000);
        assert_eq!(c["healthcheck"]["path"], "/health");
        assert!(
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "COMFYUME_WORKER_JOB_WAIT_SECS"
                    && e["value_or_reference_to_secret"] == "600")
        );
        let scaling = &body["scaling"];
        assert_eq!(scaling["max_replica_count"], 4);
        assert_eq!(scaling["concurrent_requests_per_replica"], 1);
        assert_eq!(scaling["queue_message_ttl_seconds"], 720);
        assert_eq!(scaling["scaling_triggers"]["queue_load"]["threshold"], 1.0);
    }

    #[test]
    fn what_verda_would_run_wrongly_is_refused_before_any_request() {
        for (image, reason) in [
            ("ghcr.io/acme/comfyume-gpu", "no tag"),
            ("ghcr.io/acme/comfyume-gpu:latest", ":latest"),
            ("localhost:5000/comfyume-gpu", "no tag"),
        ] {
            let mut c = config();
            c.verda.deploy.image = Some(image.into());
            let e = specs(&c).unwrap_err().to_string();
            assert!(e.contains(reason), "{image}: {e}");
        }
        assert!(check_image("localhost:5000/comfyume-gpu:1").is_ok());
        assert!(check_image("ghcr.io/a/b@sha256:abc").is_ok());
        let mut c = config();
        c.verda.deploy.request_ttl_secs = Some(60);
        assert!(specs(&c).unwrap_err().to_string().contains("shorter than"));
        let mut c = config();
        c.verda
            .deploy
            .secrets
            .insert("COMFYUME_MODELS_DIR".into(), "x".into());
        assert!(specs(&c).unwrap_err().to_string().contains("set twice"));
    }

    #[test]
    fn verda_s_own_fields_are_not_differences() {
        let wanted = json!({"containers": [{"image": "a:1", "env": [{"name": "X"}]}], "compute": {"size": 1}});
        let current = json!({"containers": [{"name": "c0", "image": "a:1", "env": [{"name": "X", "type": "plain"}]}], "compute": {"size": 1.0}, "created_at": "t"});
        assert!(contains(&current, &wanted));
        let changed = json!({"containers": [{"image": "a:2", "env": [{"name": "X"}]}], "compute": {"size": 1}});
        assert!(!contains(&current, &changed));
    }
}
