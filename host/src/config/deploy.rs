//! `[verda.deploy]`: what `comfyume verda apply` puts in every Verda
//! container deployment a `verda` pool names (docs/gpu.md).
//!
//! The pool gives the rest: `deployment` (the name), `gpu` (Verda's
//! compute name, e.g. `H200`), `tier` (`spot` → `is_spot`) and `capacity`
//! (the most replicas: one job per replica).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[verda.deploy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerdaDeployConfig {
    /// The worker image (`config/gpu/Dockerfile`) with an explicit tag or
    /// digest; `:latest` is refused, so every replica runs the same build.
    pub image: Option<String>,
    /// The name of the registry credentials stored in Verda, for a private
    /// image (none: a public image).
    pub registry_credentials: Option<String>,
    /// The port the worker listens on, exposed and health-checked.
    pub port: u16,
    /// The health check path (the worker's `/health`).
    pub health_path: String,
    /// GPUs per replica.
    pub gpu_count: u32,
    /// Replicas kept running when idle (pre-warm raises it for a session).
    pub min_replicas: u32,
    /// Seconds of queued work before another replica starts.
    pub scale_up_delay_secs: u64,
    /// Seconds a replica stays idle before it is stopped.
    pub scale_down_delay_secs: u64,
    /// Queued requests per replica that start another replica.
    pub queue_load_threshold: f64,
    /// How long a request may wait in Verda's queue, in seconds; default
    /// `timeouts.job_wait_secs` + `verda.queue_grace_secs`, never less than
    /// the job wait.
    pub request_ttl_secs: Option<u64>,
    /// A Verda shared filesystem holding the models (synced ahead of the
    /// day, docs/gpu.md), mounted at `models_path`. None: each replica
    /// downloads them at start (slow cold starts).
    pub models_volume_id: Option<String>,
    /// Where the models are inside the container.
    pub models_path: String,
    /// Size of `/dev/shm` in MiB (0: Verda's default).
    pub shm_mib: u32,
    /// Plain environment variables for the worker image.
    pub env: BTreeMap<String, String>,
    /// Environment variables taken from Verda secrets: variable → secret
    /// name (e.g. `HF_TOKEN = "hf-read-token"`). Values never pass here.
    pub secrets: BTreeMap<String, String>,
}

impl Default for VerdaDeployConfig {
    fn default() -> Self {
        VerdaDeployConfig {
            image: None,
            registry_credentials: None,
            port: 8000,
            health_path: "/health".into(),
            gpu_count: 1,
            min_replicas: 0,
            scale_up_delay_secs: 0,
            scale_down_delay_secs: 300,
            queue_load_threshold: 1.0,
            request_ttl_secs: None,
            models_volume_id: None,
            models_path: "/models".into(),
            shm_mib: 0,
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}
