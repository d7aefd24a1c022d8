//! `comfyume serve`: load the config, start the plugin runtime, serve HTTP.

use std::process::ExitCode;

use anyhow::Context as _;

use super::ServeArgs;
use crate::config::Config;
use crate::server;

/// Runs the host until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config.with_flags(args.listen, args.data),
        Err(error) => {
            // One line naming the key: the operator fixes it and restarts.
            eprintln!("{error}");
            return Ok(ExitCode::from(2));
        }
    };
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "creating the data folder {}",
            config.server.data_dir.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(config))?;
    Ok(ExitCode::SUCCESS)
}
