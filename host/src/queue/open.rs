//! Opening the store the configuration names, and its housekeeping.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::clock::system;
use super::embedded::EmbeddedStore;
use super::error::StoreError;
use super::redis::RedisStore;
use super::store::{JobStore, StoreLimits};
use crate::config::{QueueConfig, QueueStore};

/// The journal's file name under the data folder.
pub const JOURNAL_FILE: &str = "queue.sqlite";

/// The store limits a config asks for.
pub fn limits(config: &QueueConfig) -> StoreLimits {
    StoreLimits {
        max_payload_bytes: config.max_payload_bytes,
        max_recoveries: config.max_recoveries,
        max_attempts: config.max_attempts,
    }
}

/// Opens the embedded journal under `data_dir`, or connects to Redis.
pub async fn open(config: &QueueConfig, data_dir: &Path) -> Result<Arc<dyn JobStore>, StoreError> {
    let limits = limits(config);
    Ok(match config.store {
        QueueStore::Embedded => Arc::new(EmbeddedStore::open(
            &data_dir.join(JOURNAL_FILE),
            limits,
            system(),
        )?),
        QueueStore::Redis => {
            let url = config
                .redis_url
                .as_deref()
                .ok_or_else(|| StoreError::Unavailable("queue.redis_url is not set".into()))?;
            Arc::new(RedisStore::connect(url, &config.redis_prefix, limits, system()).await?)
        }
    })
}

/// Trims finished jobs older than the retention period, hourly, for as
/// long as the task runs. Failures are logged and retried next round.
pub async fn retention_loop(store: Arc<dyn JobStore>, retention: Duration) {
    if retention.is_zero() {
        return;
    }
    let clock = system();
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = clock.now_ms().saturating_sub(retention.as_millis() as u64);
        match store.trim(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "finished jobs past retention removed from the queue"
            ),
            Err(e) => tracing::warn!(error = %e, "queue retention pass failed; retrying next hour"),
        }
    }
}
