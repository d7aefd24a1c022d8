//! `comfyume plugin new KIND --lang rust|python|js NAME [--dir DIR]`: a
//! skeleton with the host's WIT, a build script and a README; never over an
//! existing folder; and what it writes builds and passes `plugin check`
//! (per language; a missing toolchain fails with the step that installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn comfyume(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(args)
        .current_dir(dir)
        .env("COMFYUME_LOG", "error")
        .output()
        .expect("running comfyume")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

#[path = "common/prerequisite.rs"]
mod prerequisite;

#[test]
fn new_writes_a_skeleton_with_the_hosts_wit_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = comfyume(
        &[
            "plugin",
            "new",
            "selector",
            "--lang",
            "python",
            "my-pick",
            "--dir",
            "p/my-pick",
        ],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("p/my-pick");
    for file in [
        "README.md",
        "build.sh",
        ".gitignore",
        "app.py",
        "wit/selector.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    for wit in ["types", "scheduler", "validator", "selector"] {
        let file = format!("wit/{wit}.wit");
        assert_eq!(
            std::fs::read_to_string(dir.join(&file)).unwrap(),
            std::fs::read_to_string(repo().join(&file)).unwrap(),
            "{file} is the host's own"
        );
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("./build.sh") && readme.contains("comfyume plugin check"));
    assert!(
        std::fs::read_to_string(dir.join("app.py"))
            .unwrap()
            .contains("\"my-pick\"")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "build.sh is executable");
    }

    // Again into the same folder: refused, nothing changed.
    std::fs::write(dir.join("app.py"), "# mine").unwrap();
    let again = comfyume(
        &[
            "plugin",
            "new",
            "scheduler",
            "--lang",
            "js",
            "my-pick",
            "--dir",
            "p/my-pick",
        ],
        tmp.path(),
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app.py")).unwrap(),
        "# mine"
    );
    assert!(!dir.join("app.js").exists());

    // A name that is not a valid package name anywhere.
    let bad = comfyume(
        &["plugin", "new", "validator", "--lang", "rust", "My_Plugin"],
        tmp.path(),
    );
    assert!(!bad.status.success());
    assert!(!tmp.path().join("My_Plugin").exists());
}

/// `plugin new`, `./build.sh`, `plugin check`: the README's commands.
fn new_build_check(kind: &str, lang: &str, prepare: impl FnOnce(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-{kind}");
    let out = comfyume(&["plugin", "new", kind, "--lang", lang, &name], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join(&name);
    prepare(&dir);
    let build = Command::new("bash")
        .arg("build.sh")
        .current_dir(&dir)
        // The skeleton's own target/ (the Rust test links a shared one there).
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("build.sh");
    assert!(
        build.status.success(),
        "{lang} {kind} skeleton did not build:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("plugin-languages-cache");
    let check = comfyume(
        &[
            "plugin",
            "check",
            "plugin.wasm",
            "--deadline-ms",
            "10000",
            "--memory-mib",
            "256",
            "--cache",
            cache.to_str().expect("utf-8 path"),
        ],
        &dir,
    );
    assert!(
        check.status.success(),
        "{lang} {kind} skeleton failed its check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["plugin"]["name"], name.as_str());
    assert_eq!(report["plugin"]["kind"], kind);
}

#[test]
fn the_rust_skeletons_build_and_pass_the_check() {
    // One target folder for the three, so wit-bindgen is compiled once.
    let target = tempfile::tempdir().unwrap();
    for kind in ["scheduler", "validator", "selector"] {
        let target = target.path().to_path_buf();
        new_build_check(kind, "rust", move |dir| {
            // The skeleton's build.sh reads target/ under its folder.
            std::os::unix::fs::symlink(&target, dir.join("target")).unwrap();
        });
    }
}

#[test]
fn the_python_scheduler_skeleton_builds_and_passes_the_check() {
    prerequisite::require(
        "the Python skeleton",
        prerequisite::program("componentize-py", "pip install componentize-py==0.25.1"),
    );
    new_build_check("scheduler", "python", |_| {});
}

#[test]
fn the_js_selector_skeleton_builds_and_passes_the_check() {
    let example = repo().join("examples/plugins/js-priority/node_modules");
    prerequisite::require(
        "the JavaScript skeleton",
        prerequisite::program("node", "install Node.js 20 or newer").or_else(|| {
            (!example.join(".bin/componentize-js").exists()).then(|| {
                "componentize-js is not installed (npm ci in examples/plugins/js-priority)".into()
            })
        }),
    );
    // The pinned componentize-js the example installed (same version).
    new_build_check("selector", "js", |dir| {
        std::os::unix::fs::symlink(&example, dir.join("node_modules")).unwrap();
    });
}
