//! Configuration: built-in defaults, then the TOML file, then the
//! environment.
//!
//! Layering (later wins), all through `figment`:
//! 1. the defaults in this module ([`Config::default`]);
//! 2. `config/comfyume.toml`, or the file given with `--config`;
//! 3. the predecessor's variable names (`INFERENCE_MODE`, `SERVERLESS_*`,
//!    `REDIS_*`…, see [`legacy`]), so an existing `.env` keeps working;
//! 4. `COMFYUME_<SECTION>__<KEY>`, e.g. `COMFYUME_PLUGINS__DEADLINE_MS=500`;
//! 5. command-line flags (`--listen`, `--data`).
//!
//! A bad value stops start-up with one line naming the key, the reason and
//! where the value came from. Unknown keys are errors too: a typo in a
//! workshop config must not silently fall back to a default.

mod deploy;
mod env;
pub mod legacy;
mod sections;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use env::EnvVar;

pub use deploy::VerdaDeployConfig;
pub use sections::*;

/// A configuration problem, as one line: `key: reason (source)`.
#[derive(Debug, thiserror::Error)]
#[error("config error: {key}: {reason}{source_note}")]
pub struct ConfigError {
    /// The dotted key, e.g. `plugins.deadline_ms`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
    /// Where the value came from, if known (` (from …)`).
    pub source_note: String,
}

impl ConfigError {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
            source_note: String::new(),
        }
    }
}

/// Verda's rule for a deployment name (its CLI's `validateDeploymentName`,
/// "enforced by the API"): an RFC-1123 label, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`,
/// at most 63 characters. It is part of the inference URL.
pub fn is_deployment_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-')
}

/// The default config file, used when it exists and `--config` is not given.
pub const DEFAULT_FILE: &str = "config/comfyume.toml";

impl Config {
    /// Loads the layered configuration. `file` is `--config` (must exist);
    /// without it [`DEFAULT_FILE`] is read when present.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE));
            }
            None => {}
        }
        for (key, raw, var) in legacy::overrides(&env) {
            let string = key != "timeouts.job_wait_secs";
            figment = figment.merge(EnvVar {
                var,
                key,
                raw,
                string,
            });
        }
        for var in env::prefixed(&env) {
            figment = figment.merge(var);
        }
        let config: Config = figment.extract().map_err(from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "server.tls_key",
                    "is required with server.tls_cert",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "server.tls_cert",
                    "is required with server.tls_key",
                ));
            }
            _ => {}
        }
        for (key, value) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs as usize,
            ),
            (
                "server.body_timeout_secs",
                self.server.body_timeout_secs as usize,
            ),
            (
                "server.max_connections_per_address",
                self.server.max_connections_per_address,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        let a = &self.attendees;
        if a.max_upload_mib == 0 || a.max_upload_mib > 4096 {
            return Err(ConfigError::new(
                "attendees.max_upload_mib",
                "must be between 1 and 4096",
            ));
        }
        for (key, value) in [
            (
                "attendees.max_upload_megapixels",
                a.max_upload_megapixels as usize,
            ),
            ("attendees.max_userdata_kib", a.max_userdata_kib),
            ("attendees.max_userdata_files", a.max_userdata_files),
            ("attendees.max_settings_kib", a.max_settings_kib),
            ("attendees.max_upload_files", a.max_upload_files),
            ("attendees.max_upload_total_mib", a.max_upload_total_mib),
            ("attendees.max_prompt_nodes", a.max_prompt_nodes),
            ("attendees.max_prompt_inputs", a.max_prompt_inputs),
            ("attendees.max_prompt_links", a.max_prompt_links),
            (
                "attendees.submits_per_minute",
                a.submits_per_minute as usize,
            ),
            ("attendees.submit_burst", a.submit_burst as usize),
            (
                "attendees.max_concurrent_checks",
                a.max_concurrent_checks as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        let p = &self.plugins;
        if p.deadline_ms == 0 || p.deadline_ms > 60_000 {
            return Err(ConfigError::new(
                "plugins.deadline_ms",
                "must be between 1 and 60000",
            ));
        }
        if p.memory_mib == 0 || p.memory_mib > p.max_memory_mib {
            return Err(ConfigError::new(
                "plugins.memory_mib",
                format!(
                    "must be between 1 and plugins.max_memory_mib ({})",
                    p.max_memory_mib
                ),
            ));
        }
        for (key, limits) in &p.limits {
            if limits.deadline_ms.is_some_and(|d| d == 0 || d > 60_000) {
                return Err(ConfigError::new(
                    &format!("plugins.limits.{key}.deadline_ms"),
                    "must be between 1 and 60000",
                ));
            }
            if limits
                .memory_mib
                .is_some_and(|m| m == 0 || m > p.max_memory_mib)
            {
                return Err(ConfigError::new(
                    &format!("plugins.limits.{key}.memory_mib"),
                    format!(
                        "must be between 1 and plugins.max_memory_mib ({})",
                        p.max_memory_mib
                    ),
                ));
            }
        }
        if p.max_memory_mib > 4096 {
            return Err(ConfigError::new(
                "plugins.max_memory_mib",
                "must be at most 4096",
            ));
        }
        if p.max_failures == 0 {
            return Err(ConfigError::new(
                "plugins.max_failures",
                "must be at least 1",
            ));
        }
        if p.max_instances == 0 || p.max_instances > 10_000 {
            return Err(ConfigError::new(
                "plugins.max_instances",
                "must be between 1 and 10000",
            ));
        }
        if p.instances_per_slot == 0 || p.instances_per_slot > p.max_instances {
            return Err(ConfigError::new(
                "plugins.instances_per_slot",
                "must be between 1 and plugins.max_instances",
            ));
        }
        if self.timeouts.job_wait_secs == 0 {
            return Err(ConfigError::new(
                "timeouts.job_wait_secs",
                "must be at least 1",
            ));
        }
        if self.timeouts.poll_secs == 0 || self.timeouts.poll_secs >= self.timeouts.job_wait_secs {
            return Err(ConfigError::new(
                "timeouts.poll_secs",
                "must be at least 1 and shorter than timeouts.job_wait_secs",
            ));
        }
        let t = &self.timeouts;
        for (key, value) in [
            ("timeouts.submit_secs", t.submit_secs),
            ("timeouts.ws_idle_secs", t.ws_idle_secs),
            ("timeouts.download_secs", t.download_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if t.ws_idle_secs >= t.job_wait_secs {
            return Err(ConfigError::new(
                "timeouts.ws_idle_secs",
                "must be shorter than timeouts.job_wait_secs",
            ));
        }
        if self.verda.poll_interval_ms == 0 {
            return Err(ConfigError::new(
                "verda.poll_interval_ms",
                "must be at least 1",
            ));
        }
        // Less than one poll interval means the first failed poll sends a
        // job that may still be running to another pool: paid twice.
        if self.verda.outage_patience_secs.saturating_mul(1000) < self.verda.poll_interval_ms {
            return Err(ConfigError::new(
                "verda.outage_patience_secs",
                "must be at least one poll interval (verda.poll_interval_ms)",
            ));
        }
        if self.verda.request_ttl_secs == 0 || self.verda.worker_max_request_mib == 0 {
            let key = if self.verda.request_ttl_secs == 0 {
                "verda.request_ttl_secs"
            } else {
                "verda.worker_max_request_mib"
            };
            return Err(ConfigError::new(key, "must be at least 1"));
        }
        if let Some(url) = &self.dispatch.callback_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "dispatch.callback_url",
                "must be an http:// or https:// URL",
            ));
        }
        let q = &self.queue;
        if q.lease_secs < 2 || q.lease_secs > 3600 {
            return Err(ConfigError::new(
                "queue.lease_secs",
                "must be between 2 and 3600",
            ));
        }
        if q.max_pending == 0 || q.max_running == 0 {
            let key = if q.max_pending == 0 {
                "queue.max_pending"
            } else {
                "queue.max_running"
            };
            return Err(ConfigError::new(key, "must be at least 1"));
        }
        if q.max_payload_bytes < 1024 || q.max_payload_bytes > 64 << 20 {
            return Err(ConfigError::new(
                "queue.max_payload_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if q.max_attempts == 0 {
            return Err(ConfigError::new("queue.max_attempts", "must be at least 1"));
        }
        if q.redis_prefix.is_empty() || q.redis_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "queue.redis_prefix",
                "must be a non-empty word",
            ));
        }
        for (name, pool) in &self.pools {
            let key = |k: &str| format!("pools.{name}.{k}");
            if pool.capacity == 0 {
                return Err(ConfigError::new(&key("capacity"), "must be at least 1"));
            }
            if !matches!(pool.tier.as_str(), "spot" | "on-demand") {
                return Err(ConfigError::new(
                    &key("tier"),
                    "must be \"spot\" or \"on-demand\"",
                ));
            }
            match pool.kind {
                PoolKind::Comfyui if pool.url.as_deref().is_none_or(|u| !u.starts_with("http")) => {
                    return Err(ConfigError::new(
                        &key("url"),
                        "a comfyui pool needs an http(s) url",
                    ));
                }
                PoolKind::Verda => {
                    if !pool.deployment.as_deref().is_some_and(is_deployment_name) {
                        return Err(ConfigError::new(
                            &key("deployment"),
                            "a verda pool needs its deployment's name as Verda allows it: \
                             lowercase letters, digits and '-', starting and ending with a \
                             letter or digit, at most 63 characters",
                        ));
                    }
                    if pool.api_key.is_none() && self.verda.api_key.is_none() {
                        return Err(ConfigError::new(
                            &key("api_key"),
                            "a verda pool needs an inference key (here or in verda.api_key)",
                        ));
                    }
                    let base = &self.verda.base_url;
                    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                        .iter()
                        .any(|p| base.starts_with(p));
                    if !base.starts_with("https://") && !loopback {
                        return Err(ConfigError::new(
                            "verda.base_url",
                            "must be https:// (plain http only on loopback, for a local fake)",
                        ));
                    }
                }
                _ => {}
            }
        }
        self.frontend.validate()?;
        if self.queue.store == QueueStore::Redis && self.queue.redis_url.is_none() {
            return Err(ConfigError::new(
                "queue.redis_url",
                "is required when queue.store = \"redis\"",
            ));
        }
        Ok(())
    }

    /// The pools in force: the configured ones, or the default (a `local`
    /// ComfyUI pool when `dispatch.comfyui_url` is set, else one rehearsal pool).
    pub fn effective_pools(&self) -> std::collections::BTreeMap<String, PoolConfig> {
        if !self.pools.is_empty() {
            return self.pools.clone();
        }
        let mut pools = std::collections::BTreeMap::new();
        match &self.dispatch.comfyui_url {
            Some(url) => pools.insert(
                "local".to_string(),
                PoolConfig {
                    kind: PoolKind::Comfyui,
                    url: Some(url.clone()),
                    gpu: "unknown".into(),
                    ..PoolConfig::rehearsal()
                },
            ),
            None => pools.insert("rehearsal".to_string(), PoolConfig::rehearsal()),
        };
        pools
    }

    /// Applies `--listen` and `--data` on top of everything else.
    pub fn with_flags(
        mut self,
        listen: Option<std::net::SocketAddr>,
        data: Option<PathBuf>,
    ) -> Self {
        if let Some(listen) = listen {
            self.server.listen = listen;
        }
        if let Some(data) = data {
            self.server.data_dir = data;
        }
        self
    }
}

impl FrontendConfig {
    /// The version becomes a folder name under the data folder, so it must be
    /// a plain version string; the rest must be usable as written.
    fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.version;
        let plain = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'));
        if v.is_empty() || v.len() > 64 || !plain || v.starts_with('.') {
            return Err(ConfigError::new(
                "frontend.version",
                "must be a version such as \"1.58.1\" (letters, digits, . + - _)",
            ));
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(ConfigError::new(
                "frontend.sha256",
                "must be 64 hexadecimal digits",
            ));
        }
        if !(self.index_url.starts_with("https://") || self.index_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "frontend.index_url",
                "must be an http(s) URL",
            ));
        }
        Ok(())
    }
}

fn from_figment(error: figment::Error) -> ConfigError {
    let key = if error.path.is_empty() {
        "(top level)".to_string()
    } else {
        error.path.join(".")
    };
    let source_note = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    ConfigError {
        key,
        reason: error.kind.to_string(),
        source_note,
    }
}
