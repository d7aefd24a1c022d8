//! Building the registry the host starts with: every built-in loaded, the
//! validators active, and the scheduler and selector the config names.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::api::PluginKind;
use super::builtin;
use super::cache::CompileCache;
use super::slot::FailurePolicy;
use super::{PluginEngine, Registry, RuntimeConfig};
use crate::config::{ConfigError, PluginsConfig};

/// Loads the built-ins into a new registry and activates the configured ones.
pub fn registry_from_config(config: &PluginsConfig, data_dir: &Path) -> anyhow::Result<Registry> {
    let runtime = RuntimeConfig {
        max_instances: config.max_instances,
        instances_per_slot: config.instances_per_slot,
        max_memory_mib: config.max_memory_mib,
        ..RuntimeConfig::default()
    };
    let cache = CompileCache::new(Some(data_dir.join("plugin-cache")));
    let engine = PluginEngine::new(&runtime, cache).context("starting the plugin engine")?;
    let registry = Registry::new(
        engine,
        FailurePolicy {
            max_failures: config.max_failures,
            window: Duration::from_secs(config.failure_window_secs),
            retry_after: (config.retry_disabled_after_secs > 0)
                .then(|| Duration::from_secs(config.retry_disabled_after_secs)),
        },
        config.unclaimed,
    );
    registry.set_validator_order(config.validator_order.clone());
    registry.set_disabled_validator(config.disabled_validator);
    let limits = config.limits_table();
    let mut names: Vec<(PluginKind, String, String)> = Vec::new();
    for (crate_name, bytes) in builtin::components() {
        let plugin = registry
            .load_with(bytes, &limits)
            .with_context(|| format!("loading built-in plugin {crate_name}"))?;
        registry.mark_builtin(plugin.hash());
        names.push((
            plugin.kind(),
            plugin.info().name.clone(),
            plugin.hash().to_string(),
        ));
        if plugin.kind() == PluginKind::Validator {
            registry.activate(plugin.hash())?;
        }
    }
    for (kind, wanted, key) in [
        (
            PluginKind::Scheduler,
            &config.scheduler,
            "plugins.scheduler",
        ),
        (PluginKind::Selector, &config.selector, "plugins.selector"),
    ] {
        let Some((_, _, hash)) = names.iter().find(|(k, n, _)| *k == kind && n == wanted) else {
            let choices: Vec<&str> = names
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, n, _)| n.as_str())
                .collect();
            return Err(ConfigError {
                key: key.into(),
                reason: format!(
                    "no built-in named {wanted:?} (choose one of: {})",
                    choices.join(", ")
                ),
                source_note: String::new(),
            }
            .into());
        };
        registry.activate(hash)?;
    }
    Ok(registry)
}
