//! The `comfyume` command line: `serve`, `user`, `frontend install`,
//! `plugin check`, `plugin new`, `worker`, `models`, `verda` and `rehearse`.
//!
//! Errors leave as one line on stderr and a non-zero exit code; the full
//! chain goes to the log at debug level.

mod frontend;
mod models;
mod plugin;
pub mod plugin_new;
mod rehearse;
mod serve;
mod user;
mod verda;

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
    /// Manage attendee logins (safe while serve runs).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Install the ComfyUI editor's files (see docs/operators.md, Frontend).
    #[command(subcommand)]
    Frontend(FrontendCommand),
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The GPU-side sidecar that runs beside ComfyUI (see docs/worker.md).
    Worker(WorkerArgs),
    /// The workshop's model files (config/models.toml, see docs/gpu.md).
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// The Verda container deployments of the config's verda pools
    /// (see docs/gpu.md).
    #[command(subcommand)]
    Verda(verda::VerdaCommand),
    /// Play a workshop day against real hosts with fake GPUs and faults,
    /// and report what every attendee got (see docs/rehearsal.md).
    Rehearse(rehearse::RehearseArgs),
}

/// `comfyume worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Where the load balancer reaches the worker.
    #[arg(long, default_value = "0.0.0.0:8000", env = "COMFYUME_WORKER_LISTEN")]
    pub listen: SocketAddr,
    /// The local ComfyUI.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8188",
        env = "COMFYUME_WORKER_COMFYUI"
    )]
    pub comfyui: String,
    /// How long one job may take, in seconds.
    #[arg(long, default_value_t = 600, env = "COMFYUME_WORKER_JOB_WAIT_SECS")]
    pub job_wait_secs: u64,
    /// Largest output file, in MiB.
    #[arg(long, default_value_t = 512, env = "COMFYUME_WORKER_MAX_OUTPUT_MIB")]
    pub max_output_mib: usize,
    /// The local ComfyUI's input folder: each job's inputs
    /// (`comfyume/<prompt id>/` in it) are removed after the job.
    #[arg(long, env = "COMFYUME_WORKER_COMFYUI_INPUT_DIR")]
    pub comfyui_input_dir: Option<PathBuf>,
    /// Start ComfyUI with this shell command and keep it running
    /// (restarted with backoff when it exits); /health waits for it.
    #[arg(long, env = "COMFYUME_WORKER_COMFYUI_CMD")]
    pub comfyui_cmd: Option<String>,
    /// With --models-dir: /health waits until every file of this models
    /// manifest is in place.
    #[arg(long, env = "COMFYUME_MODELS_MANIFEST", requires = "models_dir")]
    pub models_manifest: Option<PathBuf>,
    /// The ComfyUI models folder --models-manifest is checked in.
    #[arg(long, env = "COMFYUME_MODELS_DIR", requires = "models_manifest")]
    pub models_dir: Option<PathBuf>,
    /// Largest request (prompt and inputs in base64), in MiB; the host's
    /// `verda.worker_max_request_mib` must not be larger.
    #[arg(long, default_value_t = 64, env = "COMFYUME_WORKER_MAX_REQUEST_MIB")]
    pub max_request_mib: usize,
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
enum FrontendCommand {
    /// Download the pinned comfyui-frontend-package wheel, check its sha256
    /// and extract the editor into <data>/frontend/<version>/.
    Install(frontend::InstallArgs),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a plugin, print its describe() and conformance report as JSON,
    /// exit non-zero with one line on stderr if anything fails.
    Check(plugin::CheckArgs),
    /// Write a ready-to-build plugin skeleton (Rust, Python or JavaScript)
    /// with the host's WIT files, a minimal implementation, a build script
    /// and a README.
    New(plugin_new::NewArgs),
}

/// Parses the command line, runs the command, maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    crate::tls::install_provider();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::User(command) => user::run(command),
        Command::Frontend(FrontendCommand::Install(args)) => frontend::install(args),
        Command::Plugin(PluginCommand::Check(args)) => plugin::check(args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::new(args),
        Command::Worker(args) => worker(args),
        Command::Models(command) => models::run(command),
        Command::Verda(command) => verda::run(command),
        Command::Rehearse(args) => rehearse::run(args),
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

fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    use crate::dispatch::comfyui::client::ClientLimits;
    let config = crate::worker::WorkerConfig {
        comfyui_url: args.comfyui,
        comfyui_input_dir: args.comfyui_input_dir,
        job_wait: std::time::Duration::from_secs(args.job_wait_secs),
        max_request_bytes: args.max_request_mib << 20,
        client: ClientLimits {
            max_output_bytes: args.max_output_mib << 20,
            ..ClientLimits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let models = match (args.models_manifest, args.models_dir) {
        (Some(manifest), Some(dir)) => Some((crate::models::Manifest::load(&manifest)?, dir)),
        _ => None,
    };
    if args.comfyui_cmd.is_none() && models.is_none() {
        runtime.block_on(crate::worker::main(args.listen, config))?;
    } else {
        let options = crate::worker::supervise::SuperviseOptions {
            comfyui_cmd: args.comfyui_cmd,
            models,
            ..Default::default()
        };
        runtime.block_on(crate::worker::supervise::main(args.listen, config, options))?;
    }
    Ok(ExitCode::SUCCESS)
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
