//! The workshop's model files: the manifest (`config/models.toml`), the
//! check that they are in place, and `comfyume models sync`.
//!
//! Policy: the manifest is the one truth for which model files a GPU needs
//! (file name, ComfyUI folder, the loaders that read it, source URL and,
//! when known, size and sha256). A file is *ready* when it exists under
//! `<dest>/<folder>/<file>` with the manifest's size (when given) and, when
//! a sha256 is given, once it has been hashed to that value: the hash is
//! remembered in `<dest>/.comfyume-models.json` with the file's size and
//! modification time, so a replica that starts against a volume synced
//! ahead of the day does not re-read 60 GB before it turns healthy.
//! Downloads go to `<file>.part` (a name ComfyUI does not list) and are
//! renamed into place only once checked.

mod manifest;
mod state;
pub mod sync;

pub use manifest::{Manifest, ManifestError, ModelFile};
pub use state::Verified;

use std::path::Path;

/// Why a model file is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// No file at its place.
    Missing,
    /// A file of another size than the manifest says.
    WrongSize {
        /// What the manifest says.
        expected: u64,
        /// What is on disk.
        found: u64,
    },
    /// A sha256 is given but the file was never hashed to it (or changed
    /// since): `models sync` must check it first.
    Unverified,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Missing => f.write_str("missing"),
            NotReady::WrongSize { expected, found } => {
                write!(f, "{found} bytes, the manifest says {expected}")
            }
            NotReady::Unverified => f.write_str("not checked against its sha256"),
        }
    }
}

/// Checks every file of `manifest` under `dest` without reading them:
/// presence, size, and the remembered hash. Returns the files not ready.
pub fn check(manifest: &Manifest, dest: &Path) -> Vec<(String, NotReady)> {
    let verified = state::load(dest);
    let mut problems = Vec::new();
    for model in &manifest.models {
        if let Some(problem) = readiness(model, dest, &verified) {
            problems.push((model.relative_path(), problem));
        }
    }
    problems
}

fn readiness(model: &ModelFile, dest: &Path, verified: &state::State) -> Option<NotReady> {
    let path = dest.join(model.relative_path());
    let Ok(meta) = std::fs::metadata(&path) else {
        return Some(NotReady::Missing);
    };
    if !meta.is_file() {
        return Some(NotReady::Missing);
    }
    if let Some(expected) = model.size
        && meta.len() != expected
    {
        return Some(NotReady::WrongSize {
            expected,
            found: meta.len(),
        });
    }
    if let Some(sha) = &model.sha256 {
        let stamp = Verified::of(&meta, sha);
        if verified.get(&model.relative_path()) != Some(&stamp) {
            return Some(NotReady::Unverified);
        }
    }
    None
}

/// ComfyUI's `extra_model_paths.yaml` for `dest`: one section whose base
/// path is `dest` and one line per folder the manifest uses.
pub fn extra_model_paths(manifest: &Manifest, dest: &Path) -> String {
    let mut folders: Vec<&str> = manifest.models.iter().map(|m| m.folder.as_str()).collect();
    folders.sort_unstable();
    folders.dedup();
    let mut yaml = String::from(
        "# Written by `comfyume models sync` from the workshop's models manifest.\n\
         # Start ComfyUI with --extra-model-paths-config <this file>.\n\
         comfyume:\n",
    );
    yaml.push_str(&format!(
        "  base_path: {}\n",
        yaml_string(&dest.to_string_lossy())
    ));
    for folder in folders {
        yaml.push_str(&format!("  {folder}: {folder}/\n"));
    }
    yaml
}

/// A YAML double-quoted scalar (paths may hold `:` or `#`).
fn yaml_string(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}
