//! Building the configured pools, and the recovery probe that asks them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;

use super::backend::{Backend, PoolInfo};
use super::comfyui::client::{ClientLimits, ComfyClient};
use super::comfyui_backend::ComfyBackend;
use super::pool::Pool;
use super::rehearsal::{Rehearsal, RehearsalConfig};
use super::verda::{VerdaBackend, VerdaSettings};
use super::verda_scaling::VerdaScaling;
use crate::config::{Config, PoolConfig, PoolKind};
use crate::queue::{BackendProbe, BackendRef};

/// Starts rehearsal backends and connects to the configured pools.
pub async fn build(config: &Config) -> anyhow::Result<Vec<Arc<Pool>>> {
    let t = &config.timeouts;
    let limits = ClientLimits {
        request: Duration::from_secs(t.poll_secs),
        submit: Duration::from_secs(t.submit_secs),
        download: Duration::from_secs(t.download_secs),
        ws_idle: Duration::from_secs(t.ws_idle_secs),
        ..ClientLimits::default()
    };
    let mut pools = Vec::new();
    let scaling = match config
        .effective_pools()
        .values()
        .any(|p| p.kind == PoolKind::Verda)
    {
        true => VerdaScaling::from_config(config).context("verda.management_url")?,
        false => None,
    };
    for (name, pool) in config.effective_pools() {
        let url = match pool.kind {
            PoolKind::Comfyui => pool.url.clone().unwrap_or_default(),
            PoolKind::Rehearsal => {
                let rehearsal = Rehearsal::new(RehearsalConfig {
                    cold_start: Duration::from_millis(pool.cold_start_ms),
                    step_time: Duration::from_millis(pool.step_ms),
                    // The catalogue the worker image's ComfyUI would answer.
                    object_info: Some(Arc::new(crate::front::catalogue::embedded_value())),
                    ..RehearsalConfig::default()
                });
                let addr = rehearsal
                    .serve()
                    .await
                    .context("starting the rehearsal backend")?;
                tracing::warn!(pool = %name, %addr, "REHEARSAL pool: no GPU, placeholder outputs");
                format!("http://{addr}")
            }
            PoolKind::Verda => {
                let ttl = request_ttl(config, scaling.as_ref(), &name, &pool).await?;
                pools.push(Pool::new(Arc::new(verda_backend(
                    config, &name, &pool, ttl,
                )?)));
                continue;
            }
        };
        let client = ComfyClient::new(&url, limits).with_context(|| format!("pools.{name}.url"))?;
        let info = pool_info(&name, &pool);
        pools.push(Pool::new(Arc::new(ComfyBackend::new(info, client))));
    }
    Ok(pools)
}

/// The request TTL of the pool's deployment, checked to cover a job: the
/// job's wait once it runs plus the cold-start allowance (`queue_grace`)
/// before, so Verda never drops a job the host still waits for. Read
/// through the management API when credentials are set (a TTL too short
/// refuses the start); otherwise `verda.request_ttl_secs` is assumed, and
/// a warning says what the deployments need.
async fn request_ttl(
    config: &Config,
    scaling: Option<&VerdaScaling>,
    name: &str,
    pool: &PoolConfig,
) -> anyhow::Result<Duration> {
    let deployment = pool.deployment.as_deref().unwrap_or_default();
    let needed = config.timeouts.job_wait_secs + config.verda.queue_grace_secs;
    let assumed = Duration::from_secs(config.verda.request_ttl_secs);
    let Some(scaling) = scaling else {
        if assumed.as_secs() >= needed {
            return Ok(assumed);
        }
        tracing::warn!(pool = %name, %deployment, needed_secs = needed, assumed_secs = assumed.as_secs(),
            "cannot read the deployment's request TTL (no verda.client_id/client_secret): \
             make sure its queue_message_ttl_seconds is at least timeouts.job_wait_secs + \
             verda.queue_grace_secs, or Verda drops jobs the host still waits for");
        return Ok(assumed);
    };
    match scaling.request_ttl(deployment).await {
        Ok(ttl) if ttl.as_secs() < needed => anyhow::bail!(
            "pools.{name}: deployment {deployment}'s request TTL (queue_message_ttl_seconds) is \
             {} s, shorter than timeouts.job_wait_secs + verda.queue_grace_secs = {needed} s: \
             Verda would drop jobs the host still waits for; raise the TTL (or shorten the waits)",
            ttl.as_secs()
        ),
        Ok(ttl) => Ok(ttl),
        Err(error) => {
            tracing::warn!(pool = %name, %deployment, %error, assumed_secs = assumed.as_secs(),
                "cannot read the deployment's request TTL; assuming verda.request_ttl_secs");
            Ok(assumed)
        }
    }
}

fn verda_backend(
    config: &Config,
    name: &str,
    pool: &PoolConfig,
    request_ttl: Duration,
) -> anyhow::Result<VerdaBackend> {
    let settings = VerdaSettings {
        base_url: config.verda.base_url.clone(),
        deployment: pool.deployment.clone().unwrap_or_default(),
        api_key: pool
            .api_key
            .clone()
            .or_else(|| config.verda.api_key.clone())
            .with_context(|| format!("pools.{name}.api_key: no inference key"))?,
        request: Duration::from_secs(config.timeouts.poll_secs),
        submit: Duration::from_secs(config.timeouts.submit_secs),
        download: Duration::from_secs(config.timeouts.download_secs),
        poll_interval: Duration::from_millis(config.verda.poll_interval_ms),
        max_result_bytes: config.verda.max_result_mib << 20,
        request_ttl,
        max_request_bytes: config.verda.worker_max_request_mib << 20,
        outage_patience: Duration::from_secs(config.verda.outage_patience_secs),
    };
    if config.dispatch.callback_url.is_none() {
        tracing::warn!(pool = %name, "dispatch.callback_url is not set: no live progress from Verda, and a cancelled job runs to its end on the GPU");
    }
    VerdaBackend::new(pool_info(name, pool), settings).with_context(|| format!("pools.{name}"))
}

fn pool_info(name: &str, pool: &PoolConfig) -> PoolInfo {
    PoolInfo {
        name: name.to_string(),
        gpu: pool.gpu.clone(),
        spot: pool.tier == "spot",
        capacity: pool.capacity,
        price_per_hour: pool.price_per_hour,
    }
}

/// Recovery asks the pool a job was sent to whether it still has it.
pub struct PoolsProbe(pub BTreeMap<String, Arc<dyn Backend>>);

impl PoolsProbe {
    /// A probe over `pools`.
    pub fn new(pools: &[Arc<Pool>]) -> Self {
        PoolsProbe(
            pools
                .iter()
                .map(|p| (p.backend().info().name.clone(), p.backend().clone()))
                .collect(),
        )
    }
}

#[async_trait]
impl BackendProbe for PoolsProbe {
    async fn knows(&self, backend: &BackendRef) -> anyhow::Result<bool> {
        let pool = self
            .0
            .get(&backend.pool)
            .with_context(|| format!("pool {:?} is not configured on this host", backend.pool))?;
        Ok(pool.knows(&backend.job_id).await?)
    }
}
