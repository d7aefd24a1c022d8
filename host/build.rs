//! Builds the built-in plugins (and the test-only hostile fixtures) as
//! `wasm32-wasip2` components, so `cargo build` / `cargo test` at the root need
//! no manual step.
//!
//! The same pattern as wasmtime's and Spin's test-program crates: run cargo for
//! the wasm target into a target directory of its own (so it never waits on the
//! outer build's lock), copy the components into `OUT_DIR`, and generate
//! `builtin_plugins.rs`, which embeds the built-ins in the `comfyume` binary and
//! tells the tests where the fixtures are.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in plugins embedded in the binary: crate directory under `plugins/`.
const BUILTINS: &[&str] = &[
    "scheduler-fifo",
    "scheduler-round-robin",
    "scheduler-priority",
    "scheduler-fair-share",
    "validator-flux2-klein",
    "validator-ltx2",
    "selector-h200-spot",
    "selector-b300-on-demand",
];

/// Test-only fixtures under `tests/fixtures/plugins/`, exposed as file paths.
const FIXTURES: &[&str] = &[
    "hostile-loop",
    "hostile-memory",
    "hostile-panic",
    "hostile-nonsense",
    "hostile-sleep",
    "hostile-sleep-validator",
    "hostile-sleep-selector",
    "hostile-capped",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("host/ sits in the workspace root");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugin-build");

    for dir in ["wit", "plugins", "tests/fixtures/plugins", "workflows"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&target);
    for name in BUILTINS.iter().chain(FIXTURES) {
        cmd.args(["-p", name]);
    }
    // The outer build's flags and wrappers (clippy, coverage, native
    // RUSTFLAGS) are for the host, not for wasm guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugin components failed (see above); is the wasm32-wasip2 target \
         installed? `rustup target add wasm32-wasip2`"
    );

    let built = target.join("wasm32-wasip2").join("plugin");
    let mut generated = String::from(
        "/// Built-in plugin components: (crate name, component bytes).\n\
         pub(crate) const BUILTIN_COMPONENTS: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTINS {
        let file = copy(&built, &out, name);
        writeln!(
            generated,
            "    ({name:?}, include_bytes!({:?})),",
            file.display()
        )
        .unwrap();
    }
    generated.push_str("];\n\n/// Test-only hostile components: (crate name, path).\n");
    generated.push_str("#[allow(dead_code)]\npub const FIXTURE_COMPONENTS: &[(&str, &str)] = &[\n");
    for name in FIXTURES {
        let file = copy(&built, &out, name);
        writeln!(
            generated,
            "    ({name:?}, {:?}),",
            file.display().to_string()
        )
        .unwrap();
    }
    generated.push_str("];\n\n/// Workshop templates: (file name, API-format JSON).\n");
    generated.push_str("pub(crate) const WORKFLOW_TEMPLATES: &[(&str, &str)] = &[\n");
    let mut templates: Vec<PathBuf> = std::fs::read_dir(root.join("workflows/api"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    templates.retain(|p| p.extension().is_some_and(|e| e == "json"));
    templates.sort();
    for path in templates {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        writeln!(
            generated,
            "    ({name:?}, include_str!({:?})),",
            path.display()
        )
        .unwrap();
    }
    generated.push_str("];\n\n");
    // The editor-format templates attendees open (`workflows/ui`), used
    // when `attendees.templates_dir` is not found (e.g. `serve` run away
    // from the checkout): (file name, JSON, modified ms).
    generated.push_str(
        "/// Workshop templates in the editor's format: (file name, JSON, modified ms).\n",
    );
    generated.push_str("pub(crate) const UI_TEMPLATES: &[(&str, &str, u64)] = &[\n");
    let mut ui: Vec<PathBuf> = std::fs::read_dir(root.join("workflows/ui"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    ui.retain(|p| p.extension().is_some_and(|e| e == "json"));
    ui.sort();
    for path in ui {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        writeln!(
            generated,
            "    ({name:?}, include_str!({:?}), {modified}),",
            path.display()
        )
        .unwrap();
    }
    generated.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), generated).expect("writing builtin_plugins.rs");
}

/// Copies `<name>.wasm` out of the plugin target dir so the embedded bytes do
/// not change under a running build.
fn copy(built: &Path, out: &Path, name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let to = out.join(&file);
    std::fs::copy(built.join(&file), &to)
        .unwrap_or_else(|e| panic!("copying {file} from {}: {e}", built.display()));
    to
}
