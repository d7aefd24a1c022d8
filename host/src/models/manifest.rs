//! `config/models.toml`: the manifest's format and its checks.
//!
//! ```toml
//! token_env = "HF_TOKEN"        # optional: a bearer token for every URL
//! [[model]]
//! file = "flux2-vae.safetensors"
//! folder = "vae"                # ComfyUI's models sub-folder
//! loaders = ["VAELoader"]       # the node classes that list it
//! url = "https://…/flux2-vae.safetensors"
//! size = 336213556              # optional, bytes
//! sha256 = "…"                  # optional, lowercase hex
//! ```
//!
//! A bad manifest is refused whole, naming the entry: a file name with a
//! path in it, a folder outside `[a-z0-9_]`, a URL that is not http(s), a
//! sha256 that is not 64 hex digits, or the same file twice.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The manifest's path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not the manifest's TOML shape.
    #[error("{path}: {message}")]
    Parse {
        /// The manifest's path.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// An entry breaks a rule.
    #[error("{path}: model {file:?}: {reason}")]
    Entry {
        /// The manifest's path.
        path: String,
        /// The entry's file name.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The environment variable holding a bearer token sent with every
    /// download (e.g. `HF_TOKEN` for gated Hugging Face files). Unset or
    /// empty: no token is sent.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The files, `[[model]]` tables.
    #[serde(default, rename = "model")]
    pub models: Vec<ModelFile>,
}

/// One model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// The file name ComfyUI lists (no folders).
    pub file: String,
    /// ComfyUI's models sub-folder, e.g. `diffusion_models`.
    pub folder: String,
    /// The node classes whose list holds the file, e.g. `UNETLoader`.
    #[serde(default)]
    pub loaders: Vec<String>,
    /// Where to download it.
    pub url: String,
    /// Its size in bytes, when known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Its sha256 (lowercase hex), when known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The workshop templates that use it (documentation).
    #[serde(default)]
    pub templates: Vec<String>,
}

impl ModelFile {
    /// `<folder>/<file>`.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.folder, self.file)
    }
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and checks manifest text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        use figment::providers::Format as _;
        let manifest: Manifest = figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(|e| ManifestError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &str) -> Result<(), ManifestError> {
        let mut seen = HashSet::new();
        for m in &self.models {
            let bad = |reason: &str| ManifestError::Entry {
                path: path.into(),
                file: m.file.clone(),
                reason: reason.into(),
            };
            if m.file.is_empty()
                || m.file.contains(['/', '\\'])
                || m.file.starts_with('.')
                || m.file.ends_with(".part")
            {
                return Err(bad("file must be a plain file name"));
            }
            if m.folder.is_empty()
                || !m
                    .folder
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(bad(
                    "folder must be a ComfyUI models folder name ([a-z0-9_])",
                ));
            }
            if !(m.url.starts_with("https://") || m.url.starts_with("http://")) {
                return Err(bad("url must be http(s)"));
            }
            if let Some(sha) = &m.sha256
                && (sha.len() != 64
                    || !sha
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            {
                return Err(bad("sha256 must be 64 lowercase hex digits"));
            }
            if !seen.insert(m.relative_path()) {
                return Err(bad("listed twice in the same folder"));
            }
        }
        Ok(())
    }

    /// The bearer token named by `token_env`, when set and non-empty.
    pub fn token(&self) -> Option<String> {
        let var = self.token_env.as_deref()?;
        std::env::var(var).ok().filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
        [[model]]
        file = "a.safetensors"
        folder = "vae"
        url = "https://example.org/a.safetensors"
    "#;

    #[test]
    fn the_repository_manifest_loads_and_covers_the_workshop_templates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = Manifest::load(&root.join("config/models.toml")).unwrap();
        // Every model file a workshop template's API prompt names is listed,
        // in the folder of the loader that reads it.
        for entry in std::fs::read_dir(root.join("workflows/api")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("comfyume_") {
                continue;
            }
            let prompt: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for node in prompt.as_object().unwrap().values() {
                let class = node["class_type"].as_str().unwrap_or_default();
                for value in node["inputs"].as_object().into_iter().flatten() {
                    let Some(file) = value.1.as_str() else {
                        continue;
                    };
                    if !file.ends_with(".safetensors") {
                        continue;
                    }
                    let listed = manifest.models.iter().find(|m| m.file == file);
                    let listed = listed.unwrap_or_else(|| panic!("{name}: {file} not listed"));
                    assert!(
                        listed.loaders.iter().any(|l| l == class),
                        "{name}: {file} is read by {class}, not among {:?}",
                        listed.loaders
                    );
                }
            }
        }
    }

    #[test]
    fn bad_entries_are_refused_naming_the_file() {
        for (change, reason) in [
            (("a.safetensors", "../a.safetensors"), "plain file name"),
            (("\"vae\"", "\"../vae\""), "models folder"),
            (("https://", "file://"), "http(s)"),
        ] {
            let text = ONE.replace(change.0, change.1);
            let e = Manifest::parse(&text, "m.toml").unwrap_err().to_string();
            assert!(e.contains(reason), "{e}");
        }
        let bad_sha = format!("{ONE}sha256 = \"ABC\"\n");
        let e = Manifest::parse(&bad_sha, "m.toml").unwrap_err().to_string();
        assert!(e.contains("64 lowercase hex"), "{e}");
        let twice = format!("{ONE}{ONE}");
        let e = Manifest::parse(&twice, "m.toml").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let unknown = format!("{ONE}colour = \"red\"\n");
        assert!(Manifest::parse(&unknown, "m.toml").is_err());
    }
}
