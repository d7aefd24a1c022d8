//! Plugins in any WIT language: each example under `examples/plugins/` is
//! built by its own `build.sh`, passes `comfyume plugin check`, and decides
//! like the Rust policy it mirrors.
//!
//! - `python-fair-share` (componentize-py) makes the same pick-next
//!   decisions as the built-in `fair-share` on a shared set of queues;
//! - `js-priority` (componentize-js) the same as the built-in `priority`;
//! - `c-validator` (wit-bindgen c, clang for wasm32-wasi, wasm-tools) gives
//!   the expected verdicts on the Flux2 Klein templates and broken copies;
//! - `rust-ltx2-to-b300` (the Rust SDK) routes long LTX-2 jobs to B300.
//!
//! A language whose toolchain is absent fails its test with the step that
//! installs it (`tests/run` installs every one of them), never passes as
//! skipped. The
//! interpreted components are 12–18 MB: they are compiled once into a compile
//! cache under the target folder, shared by the in-process loads and the
//! `plugin check` runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use comfyume::plugins::api::{
    Node, PendingJob, PriorityClass, ProblemType, RunningJob, Snapshot, UserUsage, Verdict,
};
use comfyume::plugins::cache::CompileCache;
use comfyume::plugins::check::{sample_backends, sample_job};
use comfyume::plugins::graph::graph_from_prompt;
use comfyume::plugins::{CallLimits, LoadedPlugin, PluginEngine, RuntimeConfig};
use common::prerequisite::{self, has};
use common::*;

/// Limits that fit an interpreted guest on a busy 2-core debug build.
const INTERPRETED: CallLimits = CallLimits {
    deadline_ms: 10_000,
    memory_mib: 256,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository")
        .to_path_buf()
}

/// A compile cache shared by this test binary's runs and its `plugin check`
/// runs, so an 18 MB component is compiled once, not once per load.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("plugin-languages-cache")
}

fn cached_engine() -> Arc<PluginEngine> {
    PluginEngine::new(
        &RuntimeConfig::default(),
        CompileCache::new(Some(cache_dir())),
    )
    .expect("engine")
}

/// Runs the example's `build.sh` and returns its `plugin.wasm`.
fn build(example: &str) -> Vec<u8> {
    let dir = repo().join("examples/plugins").join(example);
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(dir.join("build.sh"))
        .current_dir(&dir)
        .output()
        .expect("running build.sh");
    assert!(
        out.status.success(),
        "{example}/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(dir.join("plugin.wasm")).expect("build.sh wrote plugin.wasm");
    eprintln!(
        "{example}: built {} bytes in {:.1?}",
        bytes.len(),
        started.elapsed()
    );
    bytes
}

/// `comfyume plugin check` on the example's component must pass.
fn plugin_check(example: &str, limits: CallLimits) -> serde_json::Value {
    let file = repo()
        .join("examples/plugins")
        .join(example)
        .join("plugin.wasm");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(["plugin", "check"])
        .arg(&file)
        .args(["--deadline-ms", &limits.deadline_ms.to_string()])
        .args(["--memory-mib", &limits.memory_mib.to_string()])
        .arg("--cache")
        .arg(cache_dir())
        .env("COMFYUME_LOG", "error")
        .output()
        .expect("running comfyume plugin check");
    eprintln!("{example}: plugin check took {:.1?}", started.elapsed());
    assert_eq!(
        out.status.code(),
        Some(0),
        "plugin check failed on {example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["passed"], true);
    report
}

/// A small deterministic generator (no dependency, same on every machine).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// 48 queues that exercise every rule of the two scheduling policies: ties
/// in usage and submit time, every priority class, users at and under their
/// caps, running work, and a few entries a confused host might send (NaN or
/// negative usage, a job naming an unknown user).
fn shared_snapshots() -> Vec<Snapshot> {
    let mut rng = Lcg(0x00c0_ffee);
    let classes = [
        PriorityClass::Instructor,
        PriorityClass::High,
        PriorityClass::Normal,
        PriorityClass::Low,
    ];
    let usages = [0.0, 0.0, 12.5, 30.0, 30.0, 180.0, 900.0, f64::NAN, -5.0];
    (0..48)
        .map(|n| {
            let users_n = 1 + rng.below(6) as usize;
            let users: Vec<UserUsage> = (0..users_n)
                .map(|u| {
                    let mut usage = user(&format!("u{u}"));
                    usage.gpu_seconds_used = usages[rng.below(usages.len() as u64) as usize];
                    usage.max_running = match rng.below(3) {
                        0 => None,
                        _ => Some(1 + rng.below(2) as u32),
                    };
                    usage.running = rng.below(3) as u32;
                    usage
                })
                .collect();
            let jobs_n = if n == 0 { 0 } else { rng.below(25) as usize };
            let pending: Vec<PendingJob> = (0..jobs_n)
                .map(|i| {
                    // Ids unique, not in submit order; one queue in 11 has
                    // a job naming a user the host did not send.
                    let mut j = job(
                        rng.below(10_000) * 100 + i as u64,
                        rng.below(users_n as u64 + u64::from(n % 11 == 5)) as u32,
                        NOW - rng.below(4) * 1000,
                    );
                    j.priority = classes[rng.below(4) as usize];
                    j.est_gpu_seconds = [12.0, 180.0, 0.0][rng.below(3) as usize];
                    j
                })
                .collect();
            let running: Vec<RunningJob> = (0..rng.below(4))
                .map(|i| RunningJob {
                    id: 50_000 + i,
                    user: rng.below(users_n as u64 + 1) as u32,
                    kind: 0,
                    started_at_ms: NOW - 5_000,
                    est_gpu_seconds: [12.0, 600.0, -1.0][rng.below(3) as usize],
                })
                .collect();
            Snapshot {
                now_ms: NOW,
                pending,
                running,
                users,
                kinds: vec!["flux2-klein".into(), "ltx2".into()],
            }
        })
        .collect()
}

/// Every decision of `plugin` equals the built-in's, over the shared queues
/// and, on each, over the whole dispatch order (pick, remove, pick again).
fn same_decisions(plugin: &LoadedPlugin, builtin: &LoadedPlugin) -> usize {
    let mut compared = 0;
    for (n, snapshot) in shared_snapshots().into_iter().enumerate() {
        let mut s = snapshot;
        loop {
            let theirs = builtin.pick_next(&s).expect("built-in decides");
            let ours = plugin.pick_next(&s).expect("example decides");
            compared += 1;
            assert_eq!(
                ours,
                theirs,
                "{} and {} disagree on queue {n} ({} pending)",
                plugin.label(),
                builtin.label(),
                s.pending.len()
            );
            match ours {
                Some(i) if compared < 400 => {
                    s.pending.remove(i as usize);
                }
                _ => break,
            }
        }
    }
    compared
}

#[test]
fn python_fair_share_decides_like_the_builtin() {
    prerequisite::require(
        "the Python example",
        prerequisite::program("componentize-py", "pip install componentize-py==0.25.1"),
    );
    let bytes = build("python-fair-share");
    plugin_check("python-fair-share", INTERPRETED);
    let engine = cached_engine();
    let plugin = LoadedPlugin::load(&engine, &bytes, INTERPRETED).expect("python plugin loads");
    assert_eq!(plugin.info().name, "python-fair-share");
    // `plugin check` compiled it into the shared cache: this load, and a
    // restarted engine's, read the artefact instead of compiling 18 MB again.
    assert_eq!(
        engine.cache().stats().compiles,
        0,
        "{:?}",
        engine.cache().stats()
    );
    drop(plugin);
    drop(engine);
    let restarted = cached_engine();
    let started = Instant::now();
    let plugin = LoadedPlugin::load(&restarted, &bytes, INTERPRETED).expect("reloads");
    eprintln!(
        "python-fair-share: load after a restart took {:.1?}",
        started.elapsed()
    );
    let stats = restarted.cache().stats();
    assert_eq!((stats.hits, stats.compiles), (1, 0), "{stats:?}");
    let builtin = load(&restarted, builtin_bytes("fair-share"));
    let compared = same_decisions(&plugin, &builtin);
    eprintln!("python-fair-share: {compared} decisions equal to fair-share's");
}

#[test]
fn js_priority_decides_like_the_builtin() {
    prerequisite::require(
        "the JavaScript example",
        prerequisite::program("node", "install Node.js 20 or newer")
            .or_else(|| prerequisite::program("npm", "install Node.js 20 or newer")),
    );
    let bytes = build("js-priority");
    plugin_check("js-priority", INTERPRETED);
    let engine = cached_engine();
    let plugin = LoadedPlugin::load(&engine, &bytes, INTERPRETED).expect("js plugin loads");
    assert_eq!(plugin.info().name, "js-priority");
    let builtin = load(&engine, builtin_bytes("priority"));
    let compared = same_decisions(&plugin, &builtin);
    eprintln!("js-priority: {compared} decisions equal to priority's");
}

/// The API-format prompt of a shipped template, edited by `edit`.
fn template(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<Node> {
    let path = repo().join("workflows/api").join(name);
    let mut prompt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("template")).expect("JSON");
    edit(&mut prompt);
    graph_from_prompt(&prompt).expect("graph")
}

fn c_toolchain_missing() -> Option<String> {
    if !has("clang-14") && !has("clang") {
        return Some("clang not found (apt-get install clang-14 lld-14)".into());
    }
    if !Path::new("/usr/lib/wasm32-wasi/libc.a").exists()
        && !Path::new("/usr/share/wasi-sysroot").exists()
    {
        return Some("the WASI sysroot is missing (apt-get install wasi-libc)".into());
    }
    prerequisite::program(
        "wit-bindgen",
        "cargo install --locked wit-bindgen-cli@0.46.0",
    )
    .or_else(|| prerequisite::program("wasm-tools", "cargo install --locked wasm-tools@1.239.0"))
}

#[test]
fn c_validator_gives_the_expected_verdicts() {
    prerequisite::require("the C example", c_toolchain_missing());
    let bytes = build("c-validator");
    let report = plugin_check("c-validator", CallLimits::default());
    assert_eq!(report["plugin"]["kind"], "validator");
    let engine = engine();
    let plugin = load(&engine, &bytes);
    let builtin = load(&engine, builtin_bytes("flux2-klein"));

    // Good: every shipped Flux2 Klein template; LTX-2 is not its family.
    for entry in std::fs::read_dir(repo().join("workflows/api")).expect("workflows/api") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let verdict = plugin.validate(&template(&name, |_| {})).expect("verdict");
        if name.contains("flux2_klein") {
            match verdict {
                Verdict::Accepted(a) => {
                    assert_eq!(a.workflow_kind, "flux2-klein", "{name}");
                    assert!(a.cost.width >= 256 && a.cost.height >= 256, "{name}");
                    assert!(a.cost.gpu_seconds > 0.0, "{name}");
                }
                other => panic!("{name}: expected accepted, got {other:?}"),
            }
        } else {
            assert!(
                matches!(verdict, Verdict::NotApplicable),
                "{name}: {verdict:?}"
            );
        }
    }

    // Bad: sizes set through the PrimitiveInt nodes of the text-to-image
    // template (75:68 width, 75:69 height); the problem is reported where the
    // literal lives, as the built-in reports it.
    let t2i = "image_flux2_klein_text_to_image.api.json";
    let cases = [
        ("75:68", 1000, ProblemType::ValueNotValid),
        ("75:68", 4096, ProblemType::ValueBiggerThanMax),
        ("75:69", 128, ProblemType::ValueSmallerThanMin),
    ];
    for (node, value, expected) in cases {
        let graph = template(t2i, |p| p[node]["inputs"]["value"] = value.into());
        let Verdict::Rejected(problems) = plugin.validate(&graph).expect("verdict") else {
            panic!("{node} = {value} must be rejected");
        };
        assert!(
            problems.iter().all(|p| p.node_id == node
                && p.input_name.as_deref() == Some("value")
                && p.type_ == expected),
            "{node} = {value}: {problems:?}"
        );
        let Verdict::Rejected(theirs) = builtin.validate(&graph).expect("built-in verdict") else {
            panic!("the built-in accepts {node} = {value}");
        };
        assert!(
            theirs
                .iter()
                .any(|p| p.node_id == node && p.input_name.as_deref() == Some("value")),
            "the built-in reports {node} = {value} elsewhere: {theirs:?}"
        );
    }
    // A literal written straight into the latent node is reported there.
    let graph = template(t2i, |p| p["75:66"]["inputs"]["width"] = 1020.into());
    let Verdict::Rejected(problems) = plugin.validate(&graph).expect("verdict") else {
        panic!("a literal width of 1020 must be rejected");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].node_id, "75:66");
    assert_eq!(problems[0].input_name.as_deref(), Some("width"));
    assert!(problems[0].message.contains("1020"), "{problems:?}");
}

#[test]
fn rust_selector_routes_long_ltx2_to_b300() {
    let bytes = build("rust-ltx2-to-b300");
    plugin_check("rust-ltx2-to-b300", CallLimits::default());
    let engine = engine();
    let plugin = load(&engine, &bytes);
    assert_eq!(plugin.info().name, "ltx2-to-b300");
    let pools = sample_backends(); // h200-spot, h200-on-demand, b300-spot, b300-on-demand
    let name = |answer: Result<u32, String>| pools[answer.expect("a pool") as usize].name.clone();
    let pick = |job| plugin.select(&job, &pools).expect("selector answers");
    assert_eq!(name(pick(sample_job("ltx2", 1280, 720, 257))), "b300-spot");
    assert_eq!(name(pick(sample_job("ltx2", 1280, 720, 121))), "h200-spot");
    assert_eq!(
        name(pick(sample_job("flux2-klein", 1024, 1024, 1))),
        "h200-spot"
    );

    // The cheapest healthy pool: with H200 spot unhealthy, B300 spot is next.
    let mut sick = pools.clone();
    sick[0].healthy = false;
    let answer = plugin
        .select(&sample_job("flux2-klein", 1024, 1024, 1), &sick)
        .expect("answers");
    assert_eq!(sick[answer.expect("a pool") as usize].name, "b300-spot");

    // Every B300 full: a long LTX-2 job waits for one, with the reason.
    let mut full = pools.clone();
    for pool in &mut full[2..] {
        pool.in_flight = pool.capacity;
    }
    let reason = plugin
        .select(&sample_job("ltx2", 1280, 720, 257), &full)
        .expect("answers")
        .expect_err("waits");
    assert!(reason.contains("B300"), "{reason}");

    // No B300 configured at all: treated like any other job.
    let h200_only = &pools[..2];
    let answer = plugin
        .select(&sample_job("ltx2", 1280, 720, 257), h200_only)
        .expect("answers");
    assert_eq!(answer, Ok(0));
}
