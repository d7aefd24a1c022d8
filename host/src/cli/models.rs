//! `comfyume models sync` and `comfyume models check`: the workshop's model
//! files (`config/models.toml`) into a ComfyUI models folder.
//!
//! `sync` exits 0 only when every file is in place and checked, and only
//! then writes ComfyUI's `extra_model_paths.yaml`; `check` reads nothing
//! but sizes and the remembered hashes, for a health check or a script.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::models::sync::{Outcome, SyncOptions};
use crate::models::{Manifest, check, extra_model_paths};

/// `comfyume models …`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Download the missing files, resume partial ones, check sizes and
    /// sha256, and write ComfyUI's extra_model_paths.yaml.
    Sync(SyncArgs),
    /// Say which files are missing or unchecked, without downloading.
    Check(CheckArgs),
}

/// `comfyume models sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The manifest.
    #[arg(
        long,
        default_value = "config/models.toml",
        env = "COMFYUME_MODELS_MANIFEST"
    )]
    pub manifest: PathBuf,
    /// The ComfyUI models folder (one sub-folder per model folder).
    #[arg(long, env = "COMFYUME_MODELS_DIR")]
    pub dest: PathBuf,
    /// Where to write extra_model_paths.yaml (default <dest>/extra_model_paths.yaml).
    #[arg(long)]
    pub extra_model_paths: Option<PathBuf>,
    /// Transport failures retried per file.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Hash every file again, even those remembered as checked.
    #[arg(long)]
    pub verify: bool,
}

/// `comfyume models check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The manifest.
    #[arg(
        long,
        default_value = "config/models.toml",
        env = "COMFYUME_MODELS_MANIFEST"
    )]
    pub manifest: PathBuf,
    /// The ComfyUI models folder.
    #[arg(long, env = "COMFYUME_MODELS_DIR")]
    pub dest: PathBuf,
}

/// Runs a `models` command.
pub fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Sync(args) => sync(args),
        ModelsCommand::Check(args) => {
            let manifest = Manifest::load(&args.manifest)?;
            let problems = check(&manifest, &args.dest);
            for (file, problem) in &problems {
                eprintln!("{file}: {problem}");
            }
            if problems.is_empty() {
                println!("ready: {} model file(s)", manifest.models.len());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "not ready: {} of {} file(s)",
                    problems.len(),
                    manifest.models.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(&args.manifest)?;
    std::fs::create_dir_all(&args.dest)
        .with_context(|| format!("creating {}", args.dest.display()))?;
    let dest = args
        .dest
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dest.display()))?;
    let options = SyncOptions {
        retries: args.retries,
        verify: args.verify,
        ..SyncOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crate::models::sync::sync(&manifest, &dest, &options));
    let mut failed = 0;
    for (file, outcome) in &report.files {
        match outcome {
            Outcome::Failed(reason) => {
                failed += 1;
                eprintln!("FAILED {file}: {reason}");
            }
            Outcome::Present => println!("present    {file}"),
            Outcome::Verified => println!("verified   {file}"),
            Outcome::Downloaded { pin } => {
                println!("downloaded {file}");
                if let Some((size, sha)) = pin {
                    println!("pin: {file}: size = {size}, sha256 = \"{sha}\"");
                }
            }
        }
    }
    if !report.ready() {
        anyhow::bail!(
            "not ready: {failed} of {} model file(s) failed (see above); extra_model_paths.yaml not written",
            report.files.len()
        );
    }
    let yaml_path = args
        .extra_model_paths
        .unwrap_or_else(|| dest.join("extra_model_paths.yaml"));
    std::fs::write(&yaml_path, extra_model_paths(&manifest, &dest))
        .with_context(|| format!("writing {}", yaml_path.display()))?;
    println!(
        "ready: {} model file(s) in {}; ComfyUI: --extra-model-paths-config {}",
        report.files.len(),
        dest.display(),
        yaml_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
