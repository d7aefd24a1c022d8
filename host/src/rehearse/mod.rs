//! `comfyume rehearse`: the workshop day played against the real host
//! before the real day, with everything that goes wrong on one.
//!
//! It starts `comfyume serve` processes (two on one Redis by default), a
//! fake Verda gateway with H200-spot and B300-on-demand replicas (each a
//! `comfyume worker` beside a rehearsal ComfyUI: cold start, time per step,
//! spot reclaims), then plays a scripted workshop: N attendees log in, keep
//! the editor's websocket open, and after every demo press Run as their
//! persona does (15 at once for the eager ones), cancel some, upload the
//! images edit workflows need and download what comes out. The fault
//! schedule ([`faults`]) kills the dispatching host, Redis and spot
//! replicas, breaks a pool, swaps the scheduler and forces a hostile
//! plugin in, each once. The report ([`report`]) says what every attendee
//! got and every promise that broke; the run fails when one did.
//!
//! Time is compressed: `--minutes` of workshop play in `minutes × 60 /
//! speed` seconds, and the fake GPUs run a step in `--step-ms`.

mod attendee;
mod cluster;
mod faults;
mod png;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use attendee::Attendee;
use cluster::Cluster;
use report::{Report, StoredJob};

/// Who an attendee is: how they press Run.
#[derive(Debug, Clone, Copy)]
pub struct Persona {
    /// Shown in the report.
    pub name: &'static str,
    /// Prompts queued after each demo.
    pub burst: u32,
    /// Whether they edit an uploaded image (upload first).
    pub edits: bool,
    /// Chance of cancelling the last of a burst.
    pub cancel_chance: f64,
    /// The operator's priority class for them, if not the default.
    pub priority: Option<&'static str>,
    /// The workshop templates they use.
    pub templates: &'static [&'static str],
}

const T2I: &str = "image_flux2_klein_text_to_image.api.json";
const EDIT: &str = "image_flux2_klein_image_edit_4b_distilled.api.json";
const T2V: &str = "video_ltx2_t2v_distilled.api.json";

/// One in ten queues 15 at once; four in ten edit images; a mentor has
/// high priority; the rest try one or two things.
fn persona(index: u32) -> Persona {
    match index % 10 {
        0 => Persona {
            name: "eager",
            burst: 15,
            edits: false,
            cancel_chance: 0.2,
            priority: None,
            templates: &[T2I, T2V],
        },
        1..=4 => Persona {
            name: "editor",
            burst: 4,
            edits: true,
            cancel_chance: 0.3,
            priority: None,
            templates: &[EDIT, T2I],
        },
        5 => Persona {
            name: "mentor",
            burst: 2,
            edits: false,
            cancel_chance: 0.0,
            priority: Some("high"),
            templates: &[T2I, T2V],
        },
        _ => Persona {
            name: "light",
            burst: 2,
            edits: false,
            cancel_chance: 0.1,
            priority: None,
            templates: &[T2I],
        },
    }
}

/// A workshop template by file name, as the API-format JSON.
fn template(name: &str) -> Value {
    crate::plugins::builtin::templates()
        .iter()
        .find(|(file, _)| *file == name)
        .and_then(|(_, json)| serde_json::from_str(json).ok())
        .unwrap_or(Value::Null)
}

/// Everything a run is made of.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Attendees.
    pub attendees: u32,
    /// `comfyume serve` processes.
    pub hosts: usize,
    /// Redis (true) or the embedded store.
    pub redis: bool,
    /// The scheduler the hosts start with.
    pub scheduler: String,
    /// Whether the fault schedule plays.
    pub faults: bool,
    /// Simulated workshop minutes.
    pub minutes: f64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Demos (each followed by a burst of Runs).
    pub demos: u32,
    /// Replicas of the H200-spot and B300-on-demand deployments.
    pub replicas: [usize; 2],
    /// A replica's cold start.
    pub cold_start: Duration,
    /// A sampling step.
    pub step_time: Duration,
    /// Steps simulated per sampler at most.
    pub max_steps: u32,
    /// The hosts' lease length.
    pub lease_secs: u64,
    /// Jobs waiting per attendee at most.
    pub max_pending: u32,
    /// How long each fault lasts (reclaims, 500s, Redis down, host down).
    pub fault_window: Duration,
    /// How long to wait for the last jobs after the script.
    pub drain: Duration,
    /// `attendees.templates_dir` for the hosts.
    pub templates_dir: PathBuf,
    /// Keep the folder (logs, data, config) afterwards.
    pub keep: bool,
    /// Seeds the attendees' choices.
    pub seed: u64,
}

impl Plan {
    /// The script's length in real time.
    pub fn script_len(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0 / self.speed)
    }

    /// When the script starts after the attendees are in.
    pub fn script_start_offset(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// When demo `i` ends (and the Runs begin).
    pub fn demo_at(&self, i: u32) -> Duration {
        self.script_start_offset()
            + self
                .script_len()
                .mul_f64(f64::from(i) / f64::from(self.demos))
    }

    /// Attendees press Run over one simulated minute after a demo (at most
    /// half the time to the next one).
    pub fn burst_spread_ms(&self) -> u64 {
        let minute = 60_000.0 / self.speed;
        let half_gap = self.script_len().as_millis() as f64 / f64::from(self.demos) / 2.0;
        minute.min(half_gap) as u64
    }

    /// When the script ends.
    pub fn script_end(&self) -> Duration {
        self.script_start_offset() + self.script_len()
    }

    /// The lease.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

/// Time since the run started, and the wall clock the host's records use.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Sleeps until `offset` after the start.
    pub async fn sleep_until(&self, offset: Duration) {
        tokio::time::sleep_until((self.0 + offset).into()).await;
    }

    /// Milliseconds since the Unix epoch (what job records carry).
    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Plays one rehearsal; returns its report (also written to `out`).
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let plan = Arc::new(plan);
    let cluster = Cluster::start(&plan).await?;
    tracing::info!(dir = %cluster.dir.display(), hosts = cluster.hosts.len(), "rehearsal cluster up");
    let accounts = create_attendees(&cluster, &plan).await?;
    let urls = Arc::new(cluster.hosts.iter().map(|h| h.url()).collect::<Vec<_>>());
    let cluster = Arc::new(Mutex::new(cluster));

    let (stop_tx, stop) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(cluster.clone(), stop.clone()));
    let clock = Clock(Instant::now());
    let mut attendees = Vec::new();
    for (i, (name, password)) in accounts.into_iter().enumerate() {
        let attendee = Attendee::new(
            name,
            password,
            persona(i as u32),
            urls.clone(),
            i % urls.len(),
            plan.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
        );
        attendees.push(tokio::spawn(attendee.run(
            plan.clone(),
            clock,
            stop.clone(),
        )));
    }
    let faults = plan
        .faults
        .then(|| tokio::spawn(faults::play(plan.clone(), clock, cluster.clone())));

    clock.sleep_until(plan.script_end()).await;
    let played = match faults {
        Some(task) => task.await.context("the fault schedule panicked")?,
        None => Vec::new(),
    };
    drain(&cluster, &plan).await;
    let _ = stop_tx.send(true);
    let mut records = Vec::new();
    for task in attendees {
        records.push(task.await.context("an attendee task panicked")?);
    }
    let _ = sampler.await;

    let guard = cluster.lock().await;
    let jobs = stored_jobs(&guard, &records).await?;
    let cost = guard
        .admin(reqwest::Method::GET, "/admin/api/costs")
        .send()
        .await?
        .json::<Value>()
        .await?;
    let duplicates = judge_duplicates(&guard, &jobs).await;
    let mut gpu_runs: BTreeMap<String, usize> = BTreeMap::new();
    for outcomes in guard.ledger.outcomes().values() {
        for outcome in outcomes {
            let name = serde_json::to_value(outcome).unwrap_or(Value::Null);
            *gpu_runs
                .entry(name.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let window = |name: &str| -> Vec<(u64, u64)> {
        played
            .iter()
            .filter(|f| f.fault == name)
            .map(|f| (f.from_ms, f.to_ms))
            .collect()
    };
    let mut plan_json = serde_json::to_value(&*plan)?;
    plan_json["folder"] = json!(guard.dir.display().to_string());
    let report = report::build(report::Inputs {
        plan: plan_json,
        records,
        jobs,
        duplicates,
        gpu_runs,
        cost,
        rss_kib: guard
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.rss_max_kib))
            .collect(),
        outages: window("redis-restart"),
        host_losses: window("host-kill"),
        faults: played,
    });
    Ok(report)
}

/// Creates the attendees through the operator's API (generated passwords,
/// shown once) and gives mentors their class.
async fn create_attendees(cluster: &Cluster, plan: &Plan) -> anyhow::Result<Vec<(String, String)>> {
    let answer: Value = cluster
        .admin(reqwest::Method::POST, "/admin/api/attendees")
        .json(&json!({"count": plan.attendees, "prefix": "attendee"}))
        .send()
        .await?
        .error_for_status()
        .context("creating the attendees")?
        .json()
        .await?;
    let mut accounts = Vec::new();
    for (i, created) in answer["created"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = created["name"].as_str().unwrap_or_default().to_string();
        if let Some(class) = persona(i as u32).priority {
            cluster
                .admin(
                    reqwest::Method::PUT,
                    &format!("/admin/api/attendees/{name}"),
                )
                .json(&json!({"priority": class}))
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("giving {name} the {class} class"))?;
        }
        accounts.push((
            name,
            created["password"].as_str().unwrap_or_default().to_string(),
        ));
    }
    anyhow::ensure!(
        accounts.len() == plan.attendees as usize,
        "created {} attendees of {}",
        accounts.len(),
        plan.attendees
    );
    Ok(accounts)
}

/// Waits (bounded by `plan.drain`) until no job is waiting or running.
async fn drain(cluster: &Mutex<Cluster>, plan: &Plan) {
    let deadline = tokio::time::Instant::now() + plan.drain;
    while tokio::time::Instant::now() < deadline {
        let guard = cluster.lock().await;
        let mut active = 0;
        // Every count must come from a 200: a 503 during a late outage is
        // no answer, and must not end the drain early.
        let mut answered = true;
        for state in ["queued", "leased", "dispatched", "running"] {
            let list = guard
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/api/jobs?state={state}&limit=1"),
                )
                .send()
                .await;
            match list {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(body) => active += body["jobs"].as_array().map_or(0, Vec::len),
                    Err(_) => answered = false,
                },
                _ => answered = false,
            }
        }
        drop(guard);
        if answered && active == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every duplicated GPU run, with whether the host had recorded one of the
/// earlier runs' inference ids (as the job's transitions in the store say).
async fn judge_duplicates(
    cluster: &Cluster,
    jobs: &HashMap<String, StoredJob>,
) -> Vec<report::Duplicate> {
    let mut judged = Vec::new();
    for run in cluster.ledger.duplicate_runs() {
        let notes = match jobs.get(&run.prompt_id) {
            Some(job) => job_notes(cluster, job.id).await,
            None => None,
        };
        // A job or history that cannot be read counts as recorded: a doubt
        // counts against the platform, not for it.
        let recorded = notes.as_ref().is_none_or(|notes| {
            run.earlier
                .iter()
                .any(|id| notes.iter().any(|note| note.contains(id.as_str())))
        });
        judged.push(report::Duplicate {
            run,
            recorded,
            history: notes.unwrap_or_default(),
        });
    }
    judged
}

/// Job `id`'s transitions as `state note` (a dispatch's note names its
/// backend id).
async fn job_notes(cluster: &Cluster, id: u64) -> Option<Vec<String>> {
    let detail: Value = cluster
        .admin(reqwest::Method::GET, &format!("/admin/api/jobs/{id}"))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        detail["history"]
            .as_array()?
            .iter()
            .map(|t| {
                let state = t["state"].as_str().unwrap_or("?");
                format!("{state} {}", t["note"].as_str().unwrap_or(""))
                    .trim_end()
                    .to_string()
            })
            .collect(),
    )
}

/// Every job of every attendee, from the store, by prompt id.
async fn stored_jobs(
    cluster: &Cluster,
    records: &[attendee::Record],
) -> anyhow::Result<HashMap<String, StoredJob>> {
    let mut jobs = HashMap::new();
    for record in records {
        let list: Value = cluster
            .admin(
                reqwest::Method::GET,
                &format!("/admin/api/jobs?user={}&limit=2000", record.name),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        jobs.extend(
            list["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(StoredJob::from_summary),
        );
    }
    Ok(jobs)
}

async fn sample_rss(cluster: Arc<Mutex<Cluster>>, mut stop: watch::Receiver<bool>) {
    loop {
        for host in cluster.lock().await.hosts.iter_mut() {
            host.sample_rss();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The same burst under each built-in scheduler, side by side.
pub async fn compare(base: Plan) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for scheduler in ["fifo", "round-robin", "priority", "fair-share"] {
        let plan = Plan {
            scheduler: scheduler.to_string(),
            ..base.clone()
        };
        let report = run(plan).await?;
        let by_persona = |name: &str| {
            report::Spread::of(
                report
                    .attendees
                    .iter()
                    // An attendee whose jobs never waited (all cancelled
                    // first) has no p95 to count.
                    .filter(|a| a.persona == name && a.wait.n > 0)
                    .map(|a| a.wait.p95)
                    .collect(),
            )
        };
        let row = json!({
            "scheduler": scheduler,
            "wait_seconds": report.wait_seconds,
            "p95_wait_by_persona": {
                "eager": by_persona("eager").p50, "editor": by_persona("editor").p50,
                "mentor": by_persona("mentor").p50, "light": by_persona("light").p50,
            },
            "p95_wait_by_attendee": report.attendees.iter()
                .map(|a| (a.name.clone(), json!(a.wait.p95)))
                .collect::<serde_json::Map<_, _>>(),
            "fairness_gpu_seconds": report.fairness_gpu_seconds,
            "fairness_wait_p95": report.fairness_wait_p95,
            "succeeded": report.totals.succeeded,
            "violations": !report.violations.none(),
        });
        println!(
            "{scheduler:<12} wait p50 {:>6.2}s p95 {:>6.2}s max {:>6.2}s | attendee p95 (median over persona) eager {:>6.2} editor {:>6.2} mentor {:>6.2} light {:>6.2} | Jain GPU-s {:.3} p95-wait {:.3}",
            report.wait_seconds.p50,
            report.wait_seconds.p95,
            report.wait_seconds.max,
            by_persona("eager").p50,
            by_persona("editor").p50,
            by_persona("mentor").p50,
            by_persona("light").p50,
            report.fairness_gpu_seconds,
            report.fairness_wait_p95,
        );
        rows.push(row);
    }
    Ok(json!({"comparison": rows}))
}
