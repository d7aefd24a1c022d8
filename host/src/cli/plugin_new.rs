//! `comfyume plugin new KIND --lang rust|python|js NAME [--dir DIR]`: writes
//! a ready-to-build plugin skeleton.
//!
//! The skeleton holds the WIT files of the host's own contract (embedded in
//! the binary, so a skeleton always matches the host that made it), a
//! minimal correct implementation of the world (a FIFO scheduler, a
//! validator that accepts every non-empty graph, a selector that takes the
//! first healthy pool with room), a build script and a README with the two
//! commands to build and check it. An existing folder is never touched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// The WIT package, as the host reads it: (file name, text).
pub const WIT_FILES: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("scheduler.wit", include_str!("../../../wit/scheduler.wit")),
    ("validator.wit", include_str!("../../../wit/validator.wit")),
    ("selector.wit", include_str!("../../../wit/selector.wit")),
];

/// componentize-py version the Python skeleton and example are pinned to.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// componentize-js version the JavaScript skeleton and example are pinned to.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// wit-bindgen version the Rust skeleton uses (the workspace's own).
pub const WIT_BINDGEN: &str = "0.46";

/// The plugin slot a skeleton fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Which pending job runs next.
    Scheduler,
    /// Whether a prompt may be queued, its workflow kind and cost.
    Validator,
    /// Which GPU pool runs a job.
    Selector,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Scheduler => "scheduler",
            Kind::Validator => "validator",
            Kind::Selector => "selector",
        }
    }
}

/// The language of a skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// Arguments of `plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The slot the plugin fills.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The plugin's name: lowercase letters, digits and `-`, starting with a
    /// letter (at most 64 characters). Also the default folder.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the skeleton (default: ./NAME). Must not exist yet.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Everything that can stop `plugin new` before it writes a file.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name would not make a valid package in every language.
    #[error(
        "plugin name {0:?} is not valid: use 1–64 lowercase letters, digits and `-`, starting with a letter"
    )]
    BadName(String),
    /// The target folder is already there.
    #[error("{0} already exists; plugin new never overwrites a folder (choose another --dir)")]
    Exists(PathBuf),
}

/// True for `[a-z][a-z0-9-]{0,63}` not ending in `-`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// The files of a skeleton: (path relative to its folder, contents, executable).
pub fn skeleton(kind: Kind, lang: Lang, name: &str) -> Vec<(PathBuf, String, bool)> {
    let (source, build, gitignore) = match lang {
        Lang::Rust => (
            match kind {
                Kind::Scheduler => include_str!("templates/rust/scheduler.rs"),
                Kind::Validator => include_str!("templates/rust/validator.rs"),
                Kind::Selector => include_str!("templates/rust/selector.rs"),
            },
            include_str!("templates/rust/build.sh"),
            include_str!("templates/rust/gitignore"),
        ),
        Lang::Python => (
            match kind {
                Kind::Scheduler => include_str!("templates/python/scheduler.py"),
                Kind::Validator => include_str!("templates/python/validator.py"),
                Kind::Selector => include_str!("templates/python/selector.py"),
            },
            include_str!("templates/python/build.sh"),
            include_str!("templates/python/gitignore"),
        ),
        Lang::Js => (
            match kind {
                Kind::Scheduler => include_str!("templates/js/scheduler.js"),
                Kind::Validator => include_str!("templates/js/validator.js"),
                Kind::Selector => include_str!("templates/js/selector.js"),
            },
            include_str!("templates/js/build.sh"),
            include_str!("templates/js/gitignore"),
        ),
    };
    let (lang_flag, lang_name, needs, check_flags) = match lang {
        Lang::Rust => (
            "rust",
            "Rust",
            "a Rust toolchain with the `wasm32-wasip2` target \
             (`rustup target add wasm32-wasip2`)"
                .to_string(),
            "",
        ),
        Lang::Python => (
            "python",
            "Python",
            format!(
                "Python 3 and componentize-py (`pip install componentize-py=={COMPONENTIZE_PY}`)"
            ),
            " --deadline-ms 2000 --memory-mib 256",
        ),
        Lang::Js => (
            "js",
            "JavaScript",
            format!(
                "Node.js and npm; `build.sh` installs @bytecodealliance/componentize-js \
                 {COMPONENTIZE_JS} into node_modules"
            ),
            " --deadline-ms 2000 --memory-mib 256",
        ),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{kind}}", kind.name())
            .replace("{{lang}}", lang_flag)
            .replace("{{lang_name}}", lang_name)
            .replace("{{needs}}", &needs)
            .replace("{{check_flags}}", check_flags)
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
            .replace("{{componentize_js}}", COMPONENTIZE_JS)
            .replace("{{wit_bindgen}}", WIT_BINDGEN)
    };
    let mut files: Vec<(PathBuf, String, bool)> = WIT_FILES
        .iter()
        .map(|(file, text)| (Path::new("wit").join(file), (*text).to_string(), false))
        .collect();
    files.push((
        "README.md".into(),
        fill(include_str!("templates/README.md")),
        false,
    ));
    files.push(("build.sh".into(), fill(build), true));
    files.push((".gitignore".into(), fill(gitignore), false));
    match lang {
        Lang::Rust => {
            files.push((
                "Cargo.toml".into(),
                fill(include_str!("templates/rust/Cargo.toml")),
                false,
            ));
            files.push(("src/lib.rs".into(), fill(source), false));
        }
        Lang::Python => files.push(("app.py".into(), fill(source), false)),
        Lang::Js => {
            files.push((
                "package.json".into(),
                fill(include_str!("templates/js/package.json")),
                false,
            ));
            files.push(("app.js".into(), fill(source), false));
        }
    }
    files
}

/// Writes the skeleton and prints the next two commands.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    if !valid_name(&args.name) {
        return Err(NewError::BadName(args.name).into());
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.symlink_metadata().is_ok() {
        return Err(NewError::Exists(dir).into());
    }
    // Created with create_dir (not create_dir_all) for the folder itself, so
    // a folder that appears between the check and here is not reused.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("plugin new: creating {}", parent.display()))?;
    }
    std::fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::from(NewError::Exists(dir.clone()))
        } else {
            anyhow::Error::from(e).context(format!("plugin new: creating {}", dir.display()))
        }
    })?;
    for (path, text, executable) in skeleton(args.kind, args.lang, &args.name) {
        let to = dir.join(&path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("plugin new: creating {}", parent.display()))?;
        }
        std::fs::write(&to, text)
            .with_context(|| format!("plugin new: writing {}", to.display()))?;
        if executable {
            make_executable(&to)?;
        }
    }
    println!(
        "wrote a {} {} plugin to {}; next:\n  cd {} && ./build.sh\n  comfyume plugin check {}",
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        args.kind.name(),
        dir.display(),
        dir.display(),
        dir.join("plugin.wasm").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("plugin new: making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "fifo", "my-plugin-2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "2x", "My", "a_b", "a-", "a b", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_skeleton_has_the_wit_and_no_placeholder_left() {
        for kind in [Kind::Scheduler, Kind::Validator, Kind::Selector] {
            for lang in [Lang::Rust, Lang::Python, Lang::Js] {
                let files = skeleton(kind, lang, "my-plugin");
                assert!(
                    files
                        .iter()
                        .any(|(p, _, _)| p == Path::new("wit/types.wit"))
                );
                for (path, text, _) in &files {
                    assert!(!text.contains("{{"), "{kind:?} {lang:?} {}", path.display());
                }
            }
        }
    }
}
