//! On-disk cache of compiled components.
//!
//! Compiling a component takes 30–40 ms for a small Rust plugin and seconds
//! for a Python or JavaScript one, so compiled artefacts are kept under the
//! data folder, keyed by the component's SHA-256 and by the engine's
//! compatibility hash (a new wasmtime or different settings never load an old
//! artefact). `Component::deserialize` trusts its input completely, so the
//! cache only ever loads files it wrote: each artefact is written atomically
//! beside a checksum file, and an artefact whose checksum does not match is
//! recompiled, never deserialized.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components live; `None` disables the cache (tests, `plugin check`).
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    stats: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    compiles: AtomicU64,
}

/// What a cache has done since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from an artefact on disk (no compile).
    pub hits: u64,
    /// Loads that compiled the component (cache off, missing or bad artefact).
    pub compiles: u64,
}

impl CompileCache {
    /// A cache in `dir` (created on first write), or none.
    pub fn new(dir: Option<PathBuf>) -> Self {
        CompileCache {
            dir,
            stats: Arc::default(),
        }
    }

    /// Hits and compiles so far: how a test (or an operator's log) tells that
    /// a restart did not recompile a large component.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.stats.hits.load(Ordering::Relaxed),
            compiles: self.stats.compiles.load(Ordering::Relaxed),
        }
    }

    fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        Component::new(engine, bytes)
    }

    /// Returns the compiled component for `bytes` (whose SHA-256 hex is
    /// `hash`), loading it from disk when a valid artefact exists.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return self.compile(engine, bytes);
        };
        let artefact = dir.join(format!("{hash}-{}.cwasm", engine_key(engine)));
        if let Some(component) = load(engine, &artefact) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let component = self.compile(engine, bytes)?;
        if let Err(e) = store(&component, &artefact) {
            // A read-only or full disk costs a recompile next time, nothing more.
            tracing::warn!(path = %artefact.display(), error = %e, "could not cache compiled plugin");
        }
        Ok(component)
    }
}

/// A stable key for "artefacts this engine can load".
fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn checksum_path(artefact: &Path) -> PathBuf {
    artefact.with_extension("cwasm.sha256")
}

fn load(engine: &Engine, artefact: &Path) -> Option<Component> {
    let bytes = std::fs::read(artefact).ok()?;
    let expected = std::fs::read_to_string(checksum_path(artefact)).ok()?;
    if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
        tracing::warn!(path = %artefact.display(), "cached plugin artefact failed its checksum; recompiling");
        return None;
    }
    // SAFETY: the artefact was written by `store` below for this engine
    // configuration (the file name carries the engine's compatibility hash)
    // and its checksum matches what we recorded when writing it.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %artefact.display(), error = %e, "cached plugin artefact unusable; recompiling");
            None
        }
    }
}

fn store(component: &Component, artefact: &Path) -> anyhow::Result<()> {
    let dir = artefact.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let checksum = hex::encode(Sha256::digest(&bytes));
    // Checksum first: a crash between the two renames leaves an artefact
    // without a matching checksum, which is recompiled, never trusted.
    write_atomically(dir, &checksum_path(artefact), checksum.as_bytes())?;
    write_atomically(dir, artefact, &bytes)?;
    Ok(())
}

fn write_atomically(dir: &Path, to: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(to)?;
    Ok(())
}
