//! `comfyume plugin check FILE.wasm`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::plugins::cache::CompileCache;
use crate::plugins::check::{check as run_check, first_failure};
use crate::plugins::{CallLimits, LoadedPlugin, PluginEngine, RuntimeConfig};

/// Arguments of `plugin check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The component to check.
    pub file: PathBuf,
    /// Deadline per call in ms (raise it for Python/JS plugins).
    #[arg(long, default_value_t = CallLimits::default().deadline_ms)]
    pub deadline_ms: u64,
    /// Memory cap per call in MiB.
    #[arg(long, default_value_t = CallLimits::default().memory_mib)]
    pub memory_mib: usize,
    /// Keep the compiled component in this folder, keyed by its hash, so a
    /// second check of a large (Python, JavaScript) component skips the
    /// compile. Default: no cache.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// Loads the file, runs the conformance fixtures, prints the report.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("plugin check: cannot read {}", args.file.display()))?;
    let engine = PluginEngine::new(
        &RuntimeConfig::default(),
        CompileCache::new(args.cache.clone()),
    )?;
    let limits = CallLimits {
        deadline_ms: args.deadline_ms,
        memory_mib: args.memory_mib,
    };
    let plugin = match LoadedPlugin::load(&engine, &bytes, limits) {
        Ok(plugin) => plugin,
        Err(error) => {
            eprintln!("plugin check failed: {}: {error}", args.file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = run_check(&plugin);
    println!("{}", serde_json::to_string_pretty(&report)?);
    match first_failure(&report) {
        None => Ok(ExitCode::SUCCESS),
        Some(failure) => {
            eprintln!(
                "plugin check failed: {} ({}): {failure}",
                args.file.display(),
                plugin.label()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
