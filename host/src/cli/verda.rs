//! `comfyume verda apply [--dry-run]` and `comfyume verda status`: the
//! config's `verda` pools as Verda container deployments (docs/gpu.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::dispatch::verda_apply::{self, Plan};
use crate::dispatch::verda_deploy;
use crate::dispatch::verda_scaling::VerdaScaling;

/// `comfyume verda …`.
#[derive(Debug, clap::Subcommand)]
pub enum VerdaCommand {
    /// Create or update the deployment of every `verda` pool.
    Apply(ApplyArgs),
    /// Show each deployment's status, replicas and scaling.
    Status(StatusArgs),
}

/// `comfyume verda apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Config file (default: config/comfyume.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the requests as JSON instead of sending them (reads are still
    /// made when management credentials are configured).
    #[arg(long)]
    pub dry_run: bool,
}

/// `comfyume verda status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Config file (default: config/comfyume.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn client(config: &Config) -> anyhow::Result<Option<VerdaScaling>> {
    let v = &config.verda;
    match (&v.client_id, &v.client_secret) {
        (Some(id), Some(secret)) => Ok(Some(VerdaScaling::new(
            &v.management_url,
            id,
            secret.clone(),
            Duration::from_secs(config.timeouts.poll_secs.max(10)),
        )?)),
        _ => Ok(None),
    }
}

/// Runs a `verda` command.
pub fn run(command: VerdaCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        VerdaCommand::Apply(args) => runtime.block_on(apply(args)),
        VerdaCommand::Status(args) => runtime.block_on(status(args)),
    }
}

async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let specs = verda_deploy::specs(&config)?;
    if specs.is_empty() {
        anyhow::bail!("no pool of kind \"verda\" in the config: nothing to deploy");
    }
    let plans: Vec<Plan> = match client(&config)? {
        Some(api) => verda_apply::apply(&api, &specs, !args.dry_run).await?,
        None if args.dry_run => {
            eprintln!(
                "no verda.client_id / client_secret: Verda not read, every deployment planned as new"
            );
            specs
                .iter()
                .map(|spec| verda_apply::plan(spec, None, None))
                .collect()
        }
        None => anyhow::bail!(
            "verda apply needs verda.client_id and verda.client_secret (COMFYUME_VERDA__CLIENT_SECRET)"
        ),
    };
    if args.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&plans).context("printing the plan")?
        );
    } else {
        for plan in &plans {
            println!(
                "{:<10} {} (pool {})",
                plan.action, plan.deployment, plan.pool
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let specs = verda_deploy::specs(&config)?;
    let api = client(&config)?.context(
        "verda status needs verda.client_id and verda.client_secret (COMFYUME_VERDA__CLIENT_SECRET)",
    )?;
    let statuses = verda_apply::status(&api, &specs).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<28} {:<16} {:<9} replicas",
        "pool", "deployment", "status", "min/max"
    );
    for s in &statuses {
        let bounds = match (s.min_replicas, s.max_replicas) {
            (Some(min), Some(max)) => format!("{min}/{max}"),
            _ => "-".into(),
        };
        let replicas: Vec<String> = s.replicas.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let replicas = if replicas.is_empty() {
            "none".to_string()
        } else {
            replicas.join(", ")
        };
        println!(
            "{:<14} {:<28} {:<16} {:<9} {replicas}",
            s.pool, s.deployment, s.status, bounds
        );
    }
    Ok(ExitCode::SUCCESS)
}
