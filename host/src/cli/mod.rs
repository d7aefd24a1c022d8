//! The `comfyume` command line: `serve` and `plugin check`.
//!
//! Errors leave as one line on stderr and a non-zero exit code; the full
//! chain goes to the log at debug level.

mod plugin;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-user ComfyUI workshop host.
#[derive(Debug, Parser)]
#[command(name = "comfyume", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: the attendee front, the queue, the dispatcher.
    Serve(ServeArgs),
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `comfyume serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (default: config/comfyume.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:8188).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data folder (default ./data).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a plugin, print its describe() and conformance report as JSON,
    /// exit non-zero with one line on stderr if anything fails.
    Check(plugin::CheckArgs),
}

/// Parses the command line, runs the command, maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Plugin(PluginCommand::Check(args)) => plugin::check(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::debug!(error = ?error, "command failed");
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: text by default, JSON with `COMFYUME_LOG_FORMAT=json`;
/// the filter comes from `COMFYUME_LOG` (default `info`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COMFYUME_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("COMFYUME_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
