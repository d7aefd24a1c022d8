//! The one wasmtime engine every plugin runs on.
//!
//! Policy, in one place:
//! - **Pooling allocator.** Instance slots are reserved up front and reused,
//!   so a fresh instance per call costs microseconds, not an `mmap`. The pool
//!   bounds how many plugin calls can be in flight at once
//!   ([`RuntimeConfig::max_instances`]); a call beyond that fails fast and the
//!   slot's built-in default decides.
//! - **Epoch interruption.** A ticker thread bumps the engine's epoch every
//!   [`TICK`]; each call gets a deadline in ticks, so an infinite loop is
//!   stopped within one tick of its deadline, with no per-instruction fuel cost.
//! - **No concurrency support.** No export is `async`, and turning the
//!   component-model concurrency machinery off makes each call ~3× cheaper.
//! - **One linker.** WASI preview 2 (with a context that grants nothing, see
//!   [`super::sandbox`]) plus the `log` import. Every world imports the same
//!   set, so one linker serves all three kinds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::v0_1_0::log;
use super::cache::CompileCache;
use super::sandbox::PluginState;

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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 64,
            max_memory_mib: 512,
            max_table_elements: 100_000,
        }
    }
}

/// The shared engine, its linker and its compile cache.
pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<PluginState>,
    pub(super) cache: CompileCache,
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
        log::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;

        let ticker = Ticker::start(engine.clone())?;
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            cache,
            ticker,
        }))
    }

    /// The compile cache (its [`stats`](CompileCache::stats) say whether
    /// loads compiled or read an artefact).
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// The wasmtime engine (for benchmarks and checks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Deadline in epoch ticks for a deadline in milliseconds (at least one).
    pub(super) fn ticks_for(deadline_ms: u64) -> u64 {
        let tick = TICK.as_millis() as u64;
        deadline_ms.div_ceil(tick).max(1)
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
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
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
