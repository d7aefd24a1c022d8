//! `comfyume rehearse`: the flags of a rehearsal and what it prints.
//!
//! Exit code 0 when every promise held, 1 when one broke (the report says
//! which), 2 when the rehearsal itself could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::rehearse::{self, Plan};

/// `comfyume rehearse`.
#[derive(Debug, clap::Args)]
pub struct RehearseArgs {
    /// Attendees.
    #[arg(long, default_value_t = 50)]
    attendees: u32,
    /// `comfyume serve` processes (two or more need `--store redis`).
    #[arg(long, default_value_t = 2)]
    hosts: usize,
    /// The job store: redis (a redis-server is started) or embedded.
    #[arg(long, default_value = "redis", value_parser = ["redis", "embedded"])]
    store: String,
    /// Workshop minutes to simulate.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Demos, each followed by a burst of Runs (default: one per 5 minutes,
    /// at least 6: one fault follows each of the first six).
    #[arg(long)]
    demos: Option<u32>,
    /// The scheduler the hosts start with.
    #[arg(long, default_value = "fair-share")]
    scheduler: String,
    /// Play no faults.
    #[arg(long)]
    no_faults: bool,
    /// Run the same workshop under fifo, round-robin, priority and
    /// fair-share (one host, no faults) and print them side by side.
    #[arg(long)]
    compare: bool,
    /// H200-spot replicas.
    #[arg(long, default_value_t = 6)]
    h200_replicas: usize,
    /// B300-on-demand replicas.
    #[arg(long, default_value_t = 3)]
    b300_replicas: usize,
    /// Milliseconds per sampling step on the fake GPUs.
    #[arg(long, default_value_t = 40)]
    step_ms: u64,
    /// A fake replica's cold start, milliseconds.
    #[arg(long, default_value_t = 500)]
    cold_start_ms: u64,
    /// How long each fault lasts, seconds.
    #[arg(long, default_value_t = 4)]
    fault_secs: u64,
    /// The most seconds to wait for the last jobs after the script.
    #[arg(long, default_value_t = 180)]
    drain_secs: u64,
    /// The workshop templates the hosts show (attendees.templates_dir).
    #[arg(long, default_value = "workflows/ui")]
    templates: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "rehearsal-report.json")]
    report: PathBuf,
    /// Keep the rehearsal's folder (host logs, data, configs).
    #[arg(long)]
    keep: bool,
    /// Seeds the attendees' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the rehearsal (or the comparison) and writes the report.
pub fn run(args: RehearseArgs) -> anyhow::Result<ExitCode> {
    let redis = args.store == "redis";
    anyhow::ensure!(
        redis || args.hosts == 1,
        "--hosts {} needs --store redis: hosts share the queue through it",
        args.hosts
    );
    anyhow::ensure!(
        args.attendees >= 1 && args.hosts >= 1,
        "at least one attendee and one host"
    );
    anyhow::ensure!(
        args.speed > 0.0 && args.minutes > 0.0,
        "--speed and --minutes must be positive"
    );
    let faults = !args.no_faults && !args.compare;
    let demos = args
        .demos
        .unwrap_or(((args.minutes / 5.0).round() as u32).max(6))
        .max(1);
    // One fault follows each of the first six demos; with fewer they would
    // pile up on each other and prove less.
    anyhow::ensure!(
        !faults || demos >= 6,
        "--demos {demos} with faults: the fault schedule needs at least 6 demos (or --no-faults)"
    );
    let plan = Plan {
        attendees: args.attendees,
        hosts: if args.compare { 1 } else { args.hosts },
        redis: redis && !args.compare,
        scheduler: args.scheduler,
        faults,
        minutes: args.minutes,
        speed: args.speed,
        demos,
        replicas: [args.h200_replicas.max(1), args.b300_replicas.max(1)],
        cold_start: Duration::from_millis(args.cold_start_ms),
        step_time: Duration::from_millis(args.step_ms),
        max_steps: 4,
        lease_secs: 4,
        max_pending: 20,
        fault_window: Duration::from_secs(args.fault_secs),
        drain: Duration::from_secs(args.drain_secs),
        templates_dir: args.templates,
        keep: args.keep,
        seed: args.seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.compare {
        let table = runtime.block_on(rehearse::compare(plan))?;
        std::fs::write(&args.report, serde_json::to_vec_pretty(&table)?)
            .with_context(|| format!("writing {}", args.report.display()))?;
        println!("comparison written to {}", args.report.display());
        let broken = table["comparison"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|row| row["violations"] == true);
        if broken {
            println!("FAIL: a scheduler's run broke a promise (see the report's rows)");
        }
        return Ok(if broken {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let report = runtime.block_on(rehearse::run(plan))?;
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    print!("{}", report.summary());
    println!("report written to {}", args.report.display());
    Ok(if report.violations.none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
