//! Conformance checks: what `comfyume plugin check` and an upload run before
//! a plugin may be activated.
//!
//! Each kind gets fixtures that a correct plugin must pass and that catch the
//! mistakes a plugin author actually makes: an index off by one, a scheduler
//! that never schedules or ignores caps, a validator that refuses the
//! workshop's own templates or trips over a malformed graph, a selector that
//! picks a full pool. A trap, deadline or memory-cap failure on any fixture
//! fails the check with that reason; once one fixture has run out of time
//! the rest are failed without calling the plugin again, so checking a
//! plugin that sleeps or loops takes one deadline, not one per fixture.
//!
//! **What a check is not.** It tests behaviour on fixtures: it tells an
//! author their plugin is wrong, it cannot prove a plugin honest. A plugin
//! can tell a fixture from live traffic if it tries, so passing the check is
//! no security boundary: the sandbox is (no capabilities, an own-time
//! deadline that also bounds sleeps, a memory cap, a per-slot share of
//! instances, failures counted and the plugin disabled, the built-in
//! default deciding). Every report says so in its `note`.

use std::cell::RefCell;

use serde::Serialize;

use super::api::{
    Backend, CostEstimate, InputValue, JobInfo, Link, Node, NodeInput, PendingJob, PluginInfo,
    PluginKind, PriorityClass, RunningJob, Snapshot, Tier, UserUsage, Verdict,
};
use super::builtin;
use super::component::LoadedPlugin;
use super::error::PluginError;
use super::graph::graph_from_prompt;

/// The outcome of one fixture.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureResult {
    /// What the fixture checks.
    pub fixture: String,
    /// Passed?
    pub ok: bool,
    /// What went wrong, or what the plugin answered.
    pub detail: String,
}

/// The full report, printed as JSON by `comfyume plugin check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `describe()`.
    pub plugin: PluginSummary,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Component size in bytes.
    pub size: usize,
    /// The world, e.g. `comfyume:plugin/scheduler@0.1.0`.
    pub world: String,
    /// Every fixture's result.
    pub fixtures: Vec<FixtureResult>,
    /// True when every fixture passed.
    pub passed: bool,
    /// What passing means (and does not).
    pub note: &'static str,
}

/// The sentence every report carries.
pub const CHECK_NOTE: &str = "The check tests the plugin's behaviour on sample inputs; it is not \
     a security boundary. The sandbox is: no files, network or environment, a deadline and a \
     memory cap per call, failures counted and the plugin disabled, the built-in default \
     deciding meanwhile.";

/// The plugin as the fixtures call it: after a call runs out of time, the
/// remaining fixtures fail at once instead of waiting out a deadline each;
/// and every snapshot and job is disguised ([`Disguise`]) so the fixtures
/// do not look the same from one check to the next.
struct Budgeted<'a> {
    plugin: &'a LoadedPlugin,
    out_of_time: RefCell<Option<PluginError>>,
    disguise: Disguise,
}

/// Per-check variation of the fixtures (issue 17 item 7): the clock is the
/// real one (the plugin can read it too), and user names and job ids are
/// random, so a plugin cannot recognise "the check" by a fixed time or name.
/// It makes cheating harder, not impossible: see [`CHECK_NOTE`].
struct Disguise {
    now_ms: u64,
    id_offset: u64,
    names: Vec<String>,
}

impl Disguise {
    fn new() -> Self {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let names = (0..256)
            .map(|_| {
                let len = rng.random_range(4..10);
                (0..len)
                    .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                    .collect::<String>()
            })
            .collect();
        Disguise {
            now_ms,
            id_offset: rng.random_range(1_000..50_000_000),
            names,
        }
    }

    fn name(&self, index: usize) -> String {
        // Unique within a snapshot even if two random names collide.
        let base = &self.names[index % self.names.len()];
        match index / self.names.len() {
            0 => base.clone(),
            n => format!("{base}{n}"),
        }
    }

    /// The same queue (same indices, same order of times), renamed, renumbered
    /// and moved to the real clock.
    fn snapshot(&self, snapshot: &Snapshot) -> Snapshot {
        let mut out = snapshot.clone();
        let shift = |t: u64| (t + self.now_ms).saturating_sub(snapshot.now_ms);
        out.now_ms = self.now_ms;
        for job in &mut out.pending {
            job.id += self.id_offset;
            job.submitted_at_ms = shift(job.submitted_at_ms);
        }
        for job in &mut out.running {
            job.id += self.id_offset;
            job.started_at_ms = shift(job.started_at_ms);
        }
        for (index, user) in out.users.iter_mut().enumerate() {
            user.name = self.name(index);
            user.last_dispatched_at_ms = user.last_dispatched_at_ms.map(shift);
        }
        out
    }

    fn job(&self, job: &JobInfo) -> JobInfo {
        let mut out = job.clone();
        out.id += self.id_offset;
        out.user = self.name(out.id as usize);
        out
    }
}

impl<'a> Budgeted<'a> {
    fn new(plugin: &'a LoadedPlugin) -> Self {
        Budgeted {
            plugin,
            out_of_time: RefCell::new(None),
            disguise: Disguise::new(),
        }
    }

    fn call<T>(
        &self,
        ask: impl FnOnce(&LoadedPlugin) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        if let Some(earlier) = self.out_of_time.borrow().as_ref() {
            return Err(PluginError::Runtime(format!(
                "was not asked: it already {earlier} on an earlier fixture"
            )));
        }
        let answer = ask(self.plugin);
        if let Err(e @ (PluginError::Deadline { .. } | PluginError::HostBusy { .. })) = &answer {
            *self.out_of_time.borrow_mut() = Some(e.clone());
        }
        answer
    }

    fn pick_next(&self, snapshot: &Snapshot) -> Result<Option<u32>, PluginError> {
        let snapshot = self.disguise.snapshot(snapshot);
        self.call(|p| p.pick_next(&snapshot))
    }

    fn validate(&self, graph: &[Node]) -> Result<Verdict, PluginError> {
        self.call(|p| p.validate(graph))
    }

    fn select(
        &self,
        job: &JobInfo,
        backends: &[Backend],
    ) -> Result<Result<u32, String>, PluginError> {
        let job = self.disguise.job(job);
        self.call(|p| p.select(&job, backends))
    }
}

/// `describe()` in serialisable form.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// `scheduler`, `validator` or `selector`.
    pub kind: String,
    /// One-line summary.
    pub summary: String,
}

impl From<&PluginInfo> for PluginSummary {
    fn from(info: &PluginInfo) -> Self {
        PluginSummary {
            name: info.name.clone(),
            version: info.version.clone(),
            kind: kind_name(info.kind).into(),
            summary: info.summary.clone(),
        }
    }
}

/// `scheduler`, `validator` or `selector`.
pub fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Scheduler => "scheduler",
        PluginKind::Validator => "validator",
        PluginKind::Selector => "selector",
    }
}

/// Runs every fixture for the plugin's kind.
pub fn check(plugin: &LoadedPlugin) -> CheckReport {
    let budgeted = Budgeted::new(plugin);
    let fixtures = match plugin.kind() {
        PluginKind::Scheduler => scheduler_fixtures(&budgeted),
        PluginKind::Validator => validator_fixtures(&budgeted),
        PluginKind::Selector => selector_fixtures(&budgeted),
    };
    CheckReport {
        plugin: plugin.info().into(),
        sha256: plugin.hash().to_string(),
        size: plugin.size(),
        world: format!(
            "comfyume:plugin/{}@{}",
            kind_name(plugin.kind()),
            super::bindings::LATEST
        ),
        passed: fixtures.iter().all(|f| f.ok),
        fixtures,
        note: CHECK_NOTE,
    }
}

/// The first failing fixture, as one line, if any.
pub fn first_failure(report: &CheckReport) -> Option<String> {
    report
        .fixtures
        .iter()
        .find(|f| !f.ok)
        .map(|f| format!("{}: {}", f.fixture, f.detail))
}

fn result(fixture: &str, outcome: Result<String, String>) -> FixtureResult {
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    FixtureResult {
        fixture: fixture.into(),
        ok,
        detail,
    }
}

fn failed(error: PluginError) -> String {
    format!("the plugin {error}")
}

// ---------------------------------------------------------------- scheduler

/// A sample queue: `users` users, `jobs` pending jobs spread over them.
pub fn sample_snapshot(users: usize, jobs: usize) -> Snapshot {
    let users = users.max(1);
    let now = 1_764_000_000_000u64;
    Snapshot {
        now_ms: now,
        pending: (0..jobs)
            .map(|i| PendingJob {
                id: i as u64 + 1,
                user: (i % users) as u32,
                kind: (i % 2) as u32,
                priority: if i % 17 == 3 {
                    PriorityClass::High
                } else {
                    PriorityClass::Normal
                },
                submitted_at_ms: now - 60_000 + i as u64 * 10,
                est_gpu_seconds: if i % 2 == 0 { 12.0 } else { 180.0 },
                attempts: u32::from(i % 13 == 0),
            })
            .collect(),
        running: Vec::new(),
        users: (0..users)
            .map(|u| UserUsage {
                name: format!("attendee{u:03}"),
                priority: PriorityClass::Normal,
                running: 0,
                pending: jobs.div_ceil(users) as u32,
                gpu_seconds_used: ((u * 37) % 200) as f64,
                jobs_done: (u % 5) as u32,
                max_running: Some(2),
                last_dispatched_at_ms: (u % 3 != 0).then_some(now - (u as u64) * 1000),
            })
            .collect(),
        kinds: vec!["flux2-klein".into(), "ltx2".into()],
    }
}

fn scheduler_fixtures(plugin: &Budgeted<'_>) -> Vec<FixtureResult> {
    let mut out = Vec::new();
    let empty = sample_snapshot(3, 0);
    out.push(result(
        "empty queue → none",
        match plugin.pick_next(&empty) {
            Ok(None) => Ok("none".into()),
            Ok(Some(i)) => Err(format!("picked index {i} from an empty queue")),
            Err(e) => Err(failed(e)),
        },
    ));
    for (users, jobs) in [(1, 1), (3, 10), (20, 200)] {
        let snapshot = sample_snapshot(users, jobs);
        out.push(result(
            &format!("{jobs} pending jobs from {users} users → an index in range"),
            match plugin.pick_next(&snapshot) {
                Ok(Some(i)) => Ok(format!("picked index {i}")),
                Ok(None) => {
                    Err("returned none although jobs are waiting and no user is at a cap".into())
                }
                Err(e) => Err(failed(e)),
            },
        ));
    }
    let mut capped = sample_snapshot(3, 9);
    for (index, user) in capped.users.iter_mut().enumerate() {
        user.running = 2;
        user.max_running = Some(2);
        capped.running.push(RunningJob {
            id: 100 + index as u64,
            user: index as u32,
            kind: 0,
            started_at_ms: capped.now_ms - 5_000,
            est_gpu_seconds: 12.0,
        });
    }
    out.push(result(
        "every user at their running cap → none",
        match plugin.pick_next(&capped) {
            Ok(None) => Ok("none".into()),
            Ok(Some(i)) => Err(format!(
                "picked index {i}, a job of a user already at their cap"
            )),
            Err(e) => Err(failed(e)),
        },
    ));
    out
}

// ---------------------------------------------------------------- validator

fn validator_fixtures(plugin: &Budgeted<'_>) -> Vec<FixtureResult> {
    let mut out = Vec::new();
    let mut claimed = 0;
    for (name, json) in builtin::templates() {
        let graph = match serde_json::from_str(json)
            .map_err(|e| e.to_string())
            .and_then(|v| graph_from_prompt(&v).map_err(|e| e.to_string()))
        {
            Ok(graph) => graph,
            Err(e) => {
                out.push(result(name, Err(format!("template unreadable: {e}"))));
                continue;
            }
        };
        let outcome = match plugin.validate(&graph) {
            Ok(Verdict::NotApplicable) => continue,
            Ok(Verdict::Accepted(a)) => {
                claimed += 1;
                Ok(format!(
                    "accepted as {} ({}x{}, {} frames, {} steps, ~{:.0} GPU-s)",
                    a.workflow_kind,
                    a.cost.width,
                    a.cost.height,
                    a.cost.frames,
                    a.cost.steps,
                    a.cost.gpu_seconds
                ))
            }
            Ok(Verdict::Rejected(problems)) => {
                claimed += 1;
                Err(format!(
                    "rejected a shipped workshop template: {}",
                    problems
                        .iter()
                        .map(|p| format!(
                            "node {} {}: {}",
                            p.node_id,
                            p.input_name.as_deref().unwrap_or("-"),
                            p.message
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }
            Err(e) => Err(failed(e)),
        };
        out.push(result(&format!("template {name} is accepted"), outcome));
    }
    out.push(result(
        "claims the workshop templates of its family",
        Ok(format!(
            "claimed {claimed} of {} shipped templates",
            builtin::templates().len()
        )),
    ));
    for (fixture, graph) in hostile_graphs() {
        out.push(result(
            fixture,
            match plugin.validate(&graph) {
                Ok(Verdict::NotApplicable) => Ok("not applicable".into()),
                Ok(Verdict::Accepted(a)) => Ok(format!("accepted as {}", a.workflow_kind)),
                Ok(Verdict::Rejected(p)) => Ok(format!("rejected with {} problem(s)", p.len())),
                Err(e) => Err(failed(e)),
            },
        ));
    }
    out
}

/// Graphs that must never make a validator trap.
fn hostile_graphs() -> Vec<(&'static str, Vec<Node>)> {
    let node = |id: &str, class: &str, inputs: Vec<(&str, InputValue)>| Node {
        id: id.into(),
        class_type: class.into(),
        inputs: inputs
            .into_iter()
            .map(|(name, value)| NodeInput {
                name: name.into(),
                value,
            })
            .collect(),
    };
    let link = |n: &str| {
        InputValue::Link(Link {
            node: n.into(),
            slot: 0,
        })
    };
    vec![
        ("an empty graph does not trap", vec![]),
        (
            "links to missing nodes and link cycles do not trap",
            vec![
                node(
                    "1",
                    "EmptyFlux2LatentImage",
                    vec![("width", link("2")), ("height", link("404"))],
                ),
                node("2", "PrimitiveInt", vec![("value", link("3"))]),
                node("3", "PrimitiveInt", vec![("value", link("2"))]),
                node(
                    "4",
                    "EmptyLTXVLatentVideo",
                    vec![("length", link("4")), ("width", link("2"))],
                ),
            ],
        ),
        (
            "extreme values do not trap",
            vec![
                node(
                    "1",
                    "EmptyFlux2LatentImage",
                    vec![
                        ("width", InputValue::Int(i64::MIN)),
                        ("height", InputValue::Float(f64::NAN)),
                        ("batch_size", InputValue::Int(i64::MAX)),
                    ],
                ),
                node(
                    "2",
                    "EmptyLTXVLatentVideo",
                    vec![
                        ("width", InputValue::Float(f64::INFINITY)),
                        ("height", InputValue::Str("wide".into())),
                        ("length", InputValue::Int(-1)),
                    ],
                ),
                node(
                    "3",
                    "Flux2Scheduler",
                    vec![("steps", InputValue::Other("null".into()))],
                ),
            ],
        ),
    ]
}

// ---------------------------------------------------------------- selector

/// A sample set of pools as the dispatcher would describe them.
pub fn sample_backends() -> Vec<Backend> {
    let pool = |name: &str, gpu: &str, tier, warm, in_flight, price| Backend {
        name: name.into(),
        gpu: gpu.into(),
        tier,
        healthy: true,
        warm,
        in_flight,
        capacity: 4,
        recent_failures: 0,
        price_per_hour: price,
    };
    vec![
        pool("h200-spot", "H200", Tier::Spot, true, 1, 1.15),
        pool("h200-on-demand", "H200", Tier::OnDemand, false, 0, 3.29),
        pool("b300-spot", "B300", Tier::Spot, false, 0, 1.91),
        pool("b300-on-demand", "B300", Tier::OnDemand, true, 0, 5.45),
    ]
}

/// A sample job.
pub fn sample_job(kind: &str, width: u32, height: u32, frames: u32) -> JobInfo {
    JobInfo {
        id: 7,
        user: "attendee001".into(),
        workflow_kind: kind.into(),
        priority: PriorityClass::Normal,
        cost: CostEstimate {
            frames,
            width,
            height,
            steps: 20,
            gpu_seconds: 30.0,
        },
        attempts: 0,
        lost_to_reclaim: false,
    }
}

fn selector_fixtures(plugin: &Budgeted<'_>) -> Vec<FixtureResult> {
    let mut out = Vec::new();
    let jobs = [
        (
            "a Flux2 Klein image",
            sample_job("flux2-klein", 1024, 1024, 1),
        ),
        (
            "an LTX-2 1280x720x121 video",
            sample_job("ltx2", 1280, 720, 121),
        ),
        ("an unknown workflow kind", sample_job("other", 512, 512, 1)),
    ];
    for (what, job) in &jobs {
        out.push(result(
            &format!("{what} with free pools → a pool"),
            match plugin.select(job, &sample_backends()) {
                Ok(Ok(i)) => Ok(format!("chose {}", sample_backends()[i as usize].name)),
                Ok(Err(reason)) => Err(format!("chose no pool although all have room: {reason}")),
                Err(e) => Err(failed(e)),
            },
        ));
    }
    let mut full = sample_backends();
    for pool in &mut full {
        pool.in_flight = pool.capacity;
    }
    for (fixture, backends) in [
        ("every pool full → a reason, no pool", full),
        ("no pools configured → a reason", Vec::new()),
    ] {
        out.push(result(
            fixture,
            match plugin.select(&jobs[0].1, &backends) {
                Ok(Err(reason)) if !reason.trim().is_empty() => Ok(format!("waits: {reason}")),
                Ok(Err(_)) => Err("gave an empty reason".into()),
                Ok(Ok(i)) => Err(format!("chose pool {i}")),
                Err(e) => Err(failed(e)),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_disguises_the_same_fixture_differently_and_keeps_its_shape() {
        let fixture = sample_snapshot(3, 10);
        let (a, b) = (Disguise::new(), Disguise::new());
        let (one, two) = (a.snapshot(&fixture), b.snapshot(&fixture));
        assert_ne!(
            (one.pending[0].id, &one.users[0].name),
            (two.pending[0].id, &two.users[0].name)
        );
        assert_ne!(
            one.now_ms, fixture.now_ms,
            "the real clock, not a fixed one"
        );
        // Same indices, owners and order of times: the right answer is unchanged.
        for (x, y) in fixture.pending.iter().zip(&one.pending) {
            assert_eq!(x.user, y.user);
            assert_eq!(
                fixture.now_ms - x.submitted_at_ms,
                one.now_ms - y.submitted_at_ms
            );
        }
    }
}
