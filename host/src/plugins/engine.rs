//! The one wasmtime engine every plugin runs on.
//!
//! Policy, in one place:
//! - **Pooling allocator.** Instance slots are reserved up front and reused,
//!   so a fresh instance per call costs microseconds, not an `mmap`. The pool
//!   bounds how many plugin calls can be in flight at once
//!   ([`RuntimeConfig::max_instances`]). The engine's pool semaphore has one
//!   permit per instance and each caller (slot, shadow, direct) its own share
//!   ([`super::lanes`]), so the allocator itself never runs out and one
//!   slow slot cannot take the others' instances.
//! - **Epoch interruption.** A ticker thread bumps the engine's epoch every
//!   [`TICK`], kept in step with the wall clock (a late wake-up catches up,
//!   so a loaded machine does not stretch the ticks); at each tick past a
//!   call's first check its store compares the call's own time with its
//!   budget ([`super::budget`]), so a loop is stopped within about one tick
//!   of its deadline, with no per-instruction fuel cost.
//! - **No concurrency support.** No export is `async`, and turning the
//!   component-model concurrency machinery off makes each call ~3× cheaper.
//! - **One linker.** WASI preview 2 (with a context that grants nothing, see
//!   [`super::sandbox`]) plus the `log` import. Every world imports the same
//!   set, so one linker serves all three kinds. `wasi:io/poll` is shadowed by
//!   a version whose waits end with the call's budget, so a sleeping plugin
//!   is stopped at its deadline too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::v0_1_0::log;
use super::cache::CompileCache;
use super::lanes::{Lane, Semaphore};
use super::sandbox::{HasBoundedIo, PluginState};

/// How often the epoch advances. Deadlines are rounded up to whole ticks.
pub const TICK: Duration = Duration::from_millis(5);

/// Engine-wide limits, from the `[plugins]` config section.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Plugin instances that may be alive at once (pool size).
    pub max_instances: u32,
    /// The largest linear memory any plugin may ever have, in MiB. Per-plugin
    /// caps are enforced below this by the store's limiter.
    pub max_memory_mib: usize,
    /// Largest table, in elements (interpreted guests have large tables).
    pub max_table_elements: usize,
    /// Instances one slot may hold at once (its share of the pool); the
    /// shadow gets one.
    pub instances_per_slot: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 64,
            max_memory_mib: 512,
            max_table_elements: 100_000,
            instances_per_slot: 8,
        }
    }
}

/// The shared engine, its linker and its compile cache.
pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<PluginState>,
    pub(super) cache: CompileCache,
    /// One permit per pooled instance: every call holds one.
    pub(super) pool: Semaphore,
    /// The share of calls made outside a slot (`describe()`, checks, tests).
    pub(super) direct: Lane,
    slot_share: u32,
    ticker: Ticker,
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: &RuntimeConfig, cache: CompileCache) -> anyhow::Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        // A component is several core instances (the guest, its WASI adapter
        // shims, componentize-py's interpreter and libraries), hence the factors.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 4)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memories_per_module(2)
            .max_tables_per_module(4)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(1 << 20)
            .table_elements(config.max_table_elements)
            .max_memory_size(config.max_memory_mib << 20);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // WASI's own `poll` blocks for as long as the guest asks; replace it
        // (same resource types) with the one bounded by the call's budget.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<PluginState, HasBoundedIo>(
            &mut linker,
            PluginState::bounded_io,
        )?;
        linker.allow_shadowing(false);
        log::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;

        let ticker = Ticker::start(engine.clone())?;
        let slot_share = config.instances_per_slot.clamp(1, instances);
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            cache,
            pool: Semaphore::new(instances),
            direct: Lane::new("direct calls", slot_share),
            slot_share,
            ticker,
        }))
    }

    /// The compile cache (its [`stats`](CompileCache::stats) say whether
    /// loads compiled or read an artefact).
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// A new lane for the slot `name`, of the configured per-slot share.
    pub fn slot_lane(&self, name: &str) -> Lane {
        Lane::new(name, self.slot_share)
    }

    /// Instances in use now, and the pool size.
    pub fn pool_usage(&self) -> (u32, u32) {
        (self.pool.in_use(), self.pool.size())
    }

    /// The wasmtime engine (for benchmarks and checks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whole epoch ticks in `span`, at least one: the store checks its
    /// budget after this many, never before the span has passed (the first
    /// tick may come early by up to one tick, and the check then re-arms).
    pub(super) fn ticks_for(span: Duration) -> u64 {
        (span.as_nanos() / TICK.as_nanos()).max(1) as u64
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// The thread that advances the epoch.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                // The epoch counts TICKs of wall time since the start: a
                // sleep that overslept is made up at once, so deadlines in
                // ticks do not stretch on a loaded machine.
                let start = Instant::now();
                let tick = TICK.as_nanos() as u64;
                let mut ticks: u64 = 0;
                while !flag.load(Ordering::Relaxed) {
                    let due = start + Duration::from_nanos(tick * (ticks + 1));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let now = (start.elapsed().as_nanos() / u128::from(tick)) as u64;
                    while ticks < now {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                }
            })?;
        Ok(Ticker {
            stop,
            handle: Some(handle),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
