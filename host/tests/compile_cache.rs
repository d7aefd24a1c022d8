//! The on-disk compile cache: a second load reads the artefact; a corrupted
//! artefact is recompiled, never deserialized.

mod common;

use comfyume::plugins::cache::CompileCache;
use comfyume::plugins::{CallLimits, LoadedPlugin, PluginEngine, RuntimeConfig};
use common::*;

#[test]
fn compiled_components_are_cached_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(
        &RuntimeConfig::default(),
        CompileCache::new(Some(dir.path().to_path_buf())),
    )
    .unwrap();
    let bytes = builtin_bytes("fair-share");
    let first = LoadedPlugin::load(&engine, bytes, CallLimits::default()).unwrap();
    let artefacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artefacts.len(), 1);
    let name = artefacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(first.hash()), "{name}");
    let written = std::fs::metadata(&artefacts[0])
        .unwrap()
        .modified()
        .unwrap();

    assert_eq!(engine.cache().stats().compiles, 1);

    // Second load: served from the artefact, not rewritten.
    let second = LoadedPlugin::load(&engine, bytes, CallLimits::default()).unwrap();
    assert_eq!(engine.cache().stats().hits, 1);
    assert_eq!(second.info().name, "fair-share");
    assert_eq!(
        std::fs::metadata(&artefacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        written
    );

    // Corrupt it: the checksum catches it, the plugin is recompiled and works.
    let mut corrupt = std::fs::read(&artefacts[0]).unwrap();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    std::fs::write(&artefacts[0], &corrupt).unwrap();
    let third = LoadedPlugin::load(&engine, bytes, CallLimits::default()).unwrap();
    let s = snapshot(vec![user("a")], vec![job(1, 0, NOW)]);
    assert_eq!(third.pick_next(&s).unwrap(), Some(0));
    assert_ne!(
        std::fs::read(&artefacts[0]).unwrap(),
        corrupt,
        "artefact rewritten"
    );
}

#[test]
fn a_restarted_engine_reads_the_artefact_instead_of_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = builtin_bytes("priority");
    let start = || {
        PluginEngine::new(
            &RuntimeConfig::default(),
            CompileCache::new(Some(dir.path().to_path_buf())),
        )
        .unwrap()
    };
    let first = start();
    LoadedPlugin::load(&first, bytes, CallLimits::default()).unwrap();
    assert_eq!(first.cache().stats().compiles, 1);
    drop(first);
    // A new engine (a restart of the host) over the same folder.
    let second = start();
    let plugin = LoadedPlugin::load(&second, bytes, CallLimits::default()).unwrap();
    assert_eq!(plugin.info().name, "priority");
    let stats = second.cache().stats();
    assert_eq!((stats.hits, stats.compiles), (1, 0), "{stats:?}");
}
