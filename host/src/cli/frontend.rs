//! `comfyume frontend install`: put the ComfyUI editor's files in the data
//! folder (see [`crate::front::assets`]).
//!
//! Policy: the same layered config as `serve` (so `frontend.*` keys and
//! `COMFYUME_FRONTEND__*` variables apply), flags on top; a summary on
//! stdout, progress bars on stderr when it is a terminal.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::front::assets::{self, InstallOptions, PACKAGE};

/// `comfyume frontend install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Package version (default: frontend.version, i.e. the pinned one).
    #[arg(long)]
    pub version: Option<String>,
    /// Data folder (default: server.data_dir, ./data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (default: config/comfyume.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Reinstall even if this version is installed.
    #[arg(long)]
    pub force: bool,
    /// Index with PyPI's JSON API (default: frontend.index_url).
    #[arg(long)]
    pub index_url: Option<String>,
    /// The wheel's expected sha256 (default: the pin, frontend.sha256, or
    /// the index's own).
    #[arg(long)]
    pub sha256: Option<String>,
    /// Install this wheel file instead of downloading (offline machines).
    #[arg(long)]
    pub wheel: Option<PathBuf>,
}

/// Runs `comfyume frontend install`.
pub fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(config) => config.with_flags(None, args.data),
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(2));
        }
    };
    let front = &mut config.frontend;
    if let Some(version) = args.version
        && version != front.version
    {
        // The configured hash belongs to the configured version only.
        front.version = version;
        front.sha256 = None;
    }
    if let Some(sha256) = args.sha256 {
        front.sha256 = Some(sha256.to_ascii_lowercase());
    }
    if let Some(index_url) = args.index_url {
        front.index_url = index_url;
    }
    if let Err(error) = config.validate() {
        eprintln!("{}", error.to_string().replace("frontend.", "--"));
        return Ok(ExitCode::from(2));
    }
    let options = InstallOptions {
        wheel: args.wheel,
        force: args.force,
        progress: std::io::stderr().is_terminal(),
        ..InstallOptions::from_config(&config.frontend, &config.server.data_dir)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let version = options.version.clone();
    let report = runtime
        .block_on(assets::install(options))
        .with_context(|| format!("installing {PACKAGE} {version}"))?;
    let dir = report.dir.display();
    let m = &report.installed;
    if report.already {
        println!("{PACKAGE} {version} is already installed in {dir} (--force reinstalls)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("installed {PACKAGE} {version} in {dir}");
    println!(
        "  wheel {} ({}), sha256 {} ({})",
        m.wheel,
        if report.downloaded > 0 {
            format!(
                "{} downloaded in {:.1} s",
                mb(report.downloaded),
                report.download_time.as_secs_f32()
            )
        } else {
            "local file".to_string()
        },
        m.sha256,
        m.sha256_from
    );
    println!(
        "  {} files, {} (source maps left out: {}); .gz/.br for {} files, {}",
        m.files,
        mb(m.bytes),
        m.skipped_maps,
        m.precompressed,
        mb(m.precompressed_bytes)
    );
    println!("  took {:.1} s", report.elapsed.as_secs_f32());
    Ok(ExitCode::SUCCESS)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
