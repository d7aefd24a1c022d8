//! `comfyume plugin check`: a JSON report and exit 0 for a good plugin; one
//! clear line and a non-zero exit, in bounded time, for anything else.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(bytes: &[u8], extra: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.wasm");
    std::fs::write(&file, bytes).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_comfyume"))
        .args(["plugin", "check"])
        .arg(&file)
        .args(extra)
        .env("COMFYUME_LOG", "error")
        .output()
        .unwrap();
    eprintln!("plugin check took {:?}", started.elapsed());
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn every_builtin_passes_and_prints_its_description() {
    for (crate_name, bytes) in comfyume::plugins::builtin::components() {
        let out = check(bytes, &[]);
        assert_eq!(out.code, Some(0), "{crate_name}: {}", out.stderr);
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(report["passed"], true);
        let kind = report["plugin"]["kind"].as_str().unwrap();
        assert!(crate_name.starts_with(kind), "{crate_name} is a {kind}");
        assert_eq!(report["world"], format!("comfyume:plugin/{kind}@0.1.0"));
        assert!(report["fixtures"].as_array().unwrap().len() >= 3);
        assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    }
}

fn assert_one_line_failure(out: &Outcome, needle: &str) {
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stderr: {:?}",
        out.stderr
    );
    assert!(lines[0].starts_with("plugin check failed:"), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {:?}",
        lines[0]
    );
}

#[test]
fn hostile_plugins_fail_with_one_line_naming_the_cause() {
    let cases = [
        ("hostile-loop", "deadline"),
        ("hostile-memory", "memory cap"),
        ("hostile-panic", "trapped"),
        ("hostile-nonsense", "invalid answer"),
    ];
    for (name, needle) in cases {
        let out = check(
            &fixture_bytes(name),
            &["--deadline-ms", "100", "--memory-mib", "16"],
        );
        assert_one_line_failure(&out, needle);
        assert!(out.stderr.contains(name), "{}", out.stderr);
    }
}

#[test]
fn files_that_are_not_plugins_are_refused_with_the_reason() {
    assert_one_line_failure(&check(b"hello, I am not wasm", &[]), "magic bytes");
    // A valid core module (the smallest): not a component.
    assert_one_line_failure(&check(b"\0asm\x01\0\0\0", &[]), "core WebAssembly module");
    // A valid empty component: implements no world.
    assert_one_line_failure(
        &check(b"\0asm\x0d\0\x01\0", &[]),
        "implements no known plugin world",
    );
}
