//! Helpers shared by the host's integration tests: an engine, loaded
//! built-ins and hostile fixtures, and small queue builders.

#![allow(dead_code)] // each test file uses a different subset

pub mod flaky_store;
pub mod prerequisite;
pub mod queue;
pub mod redis;

use std::sync::Arc;

use comfyume::plugins::api::{PendingJob, PriorityClass, Snapshot, UserUsage};
use comfyume::plugins::cache::CompileCache;
use comfyume::plugins::slot::FailurePolicy;
use comfyume::plugins::{
    CallLimits, LoadedPlugin, PluginEngine, Registry, RuntimeConfig, Unclaimed, builtin,
};

pub fn engine() -> Arc<PluginEngine> {
    PluginEngine::new(&RuntimeConfig::default(), CompileCache::new(None)).expect("engine")
}

pub fn builtin_bytes(name: &str) -> &'static [u8] {
    builtin::component(name).unwrap_or_else(|| panic!("no built-in plugin {name}"))
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = builtin::fixture(name).unwrap_or_else(|| panic!("no fixture {name}"));
    std::fs::read(path).expect("fixture file")
}

pub fn load(engine: &Arc<PluginEngine>, bytes: &[u8]) -> LoadedPlugin {
    LoadedPlugin::load(engine, bytes, CallLimits::default()).expect("plugin loads")
}

/// A registry with a 3-failure policy and the named scheduler active.
pub fn registry_with_scheduler(bytes: &[u8], limits: CallLimits) -> Registry {
    let registry = Registry::new(
        engine(),
        FailurePolicy {
            max_failures: 3,
            window: std::time::Duration::from_secs(60),
            retry_after: None,
        },
        Unclaimed::Accept,
    );
    let plugin = registry.load(bytes, limits).expect("load");
    registry.activate(plugin.hash()).expect("activate");
    registry
}

pub const NOW: u64 = 1_764_000_000_000;

pub fn user(name: &str) -> UserUsage {
    UserUsage {
        name: name.into(),
        priority: PriorityClass::Normal,
        running: 0,
        pending: 0,
        gpu_seconds_used: 0.0,
        jobs_done: 0,
        max_running: None,
        last_dispatched_at_ms: None,
    }
}

pub fn job(id: u64, user: u32, submitted_at_ms: u64) -> PendingJob {
    PendingJob {
        id,
        user,
        kind: 0,
        priority: PriorityClass::Normal,
        submitted_at_ms,
        est_gpu_seconds: 10.0,
        attempts: 0,
    }
}

pub fn snapshot(users: Vec<UserUsage>, pending: Vec<PendingJob>) -> Snapshot {
    let mut snapshot = Snapshot {
        now_ms: NOW,
        pending,
        running: Vec::new(),
        users,
        kinds: vec!["flux2-klein".into(), "ltx2".into()],
    };
    recount(&mut snapshot);
    snapshot
}

/// Keeps `users[*].pending` in step with the pending list.
pub fn recount(snapshot: &mut Snapshot) {
    for user in &mut snapshot.users {
        user.pending = 0;
    }
    for job in &snapshot.pending {
        snapshot.users[job.user as usize].pending += 1;
    }
}

/// Simulates the dispatcher: asks `pick` `n` times, removing the chosen job and
/// marking its user as just served. Returns the user names in dispatch order.
pub fn dispatch_order(
    mut snapshot: Snapshot,
    n: usize,
    mut pick: impl FnMut(&Snapshot) -> Option<u32>,
) -> Vec<String> {
    let mut order = Vec::new();
    for step in 0..n {
        let Some(index) = pick(&snapshot) else { break };
        let job = snapshot.pending.remove(index as usize);
        let user = &mut snapshot.users[job.user as usize];
        user.last_dispatched_at_ms = Some(snapshot.now_ms + step as u64);
        user.jobs_done += 1;
        user.gpu_seconds_used += job.est_gpu_seconds;
        order.push(user.name.clone());
        snapshot.now_ms += 1000;
        recount(&mut snapshot);
    }
    order
}
