//! What a test needs from the machine (a language toolchain, a browser),
//! checked up front: a missing prerequisite fails the test with the step that
//! installs it, never lets it pass as skipped. `tests/run` (the README's test
//! command) installs every one of them.

use std::process::Command;

/// True when `program --version` runs.
pub fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the calling test when `missing` names something, with how to get it.
pub fn require(what: &str, missing: Option<String>) {
    if let Some(reason) = missing {
        panic!(
            "{what} cannot run: {reason}.\n\
             `tests/run` installs every prerequisite of the tests (`tests/run --setup` \
             installs them without running the tests)."
        );
    }
}

/// `Some(how to install)` when `program` is not on PATH.
pub fn program(program: &str, install: &str) -> Option<String> {
    (!has(program)).then(|| format!("`{program}` is not on PATH ({install})"))
}
