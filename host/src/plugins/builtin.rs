//! The built-in plugins, embedded in the binary at build time.
//!
//! `host/build.rs` compiles each crate under `plugins/` to a component and
//! embeds it here, so a fresh install has working policies with no files to
//! copy. They are ordinary plugins: loaded, checked and swapped like any
//! upload.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The built-in components: (crate name, bytes).
pub fn components() -> &'static [(&'static str, &'static [u8])] {
    BUILTIN_COMPONENTS
}

/// One built-in component by crate name (e.g. `scheduler-fair-share`) or by
/// plugin name (e.g. `fair-share`).
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTIN_COMPONENTS
        .iter()
        .find(|(crate_name, _)| {
            *crate_name == name
                || crate_name
                    .split_once('-')
                    .is_some_and(|(_, plugin)| plugin == name)
        })
        .map(|(_, bytes)| *bytes)
}

/// Paths of the test-only hostile components (see `tests/fixtures/plugins`).
#[doc(hidden)]
pub fn fixture(name: &str) -> Option<&'static str> {
    FIXTURE_COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
}

/// The workshop templates shipped in `workflows/api/`: (file name, JSON).
pub fn templates() -> &'static [(&'static str, &'static str)] {
    WORKFLOW_TEMPLATES
}

/// The workshop templates in the editor's format (`workflows/ui`), built
/// into the binary: (file name, JSON, modified ms).
pub fn ui_templates() -> &'static [(&'static str, &'static str, u64)] {
    UI_TEMPLATES
}
