//! Resolving names that come from outside (a browser, a prompt, a backend)
//! inside one folder, and nowhere else.
//!
//! Policy: a name is accepted only as a plain relative path of visible
//! components: no root, no `..` or `.`, no backslash, no NUL, no hidden
//! component (`.ssh`, `.git`). Percent-decoding is the HTTP layer's job and
//! happens once, before this check, so `%2e%2e` arrives here as `..` and is
//! refused. A path that passes is then resolved with symlinks followed and
//! must still be inside the folder: a symlink an attendee could not have
//! made, but an operator might, never leads out.
//!
//! Files written here ([`write_atomic`]) appear whole or not at all, and
//! only the host's own account can read them: [`write_atomic`] creates
//! files `0600`, and [`restrict`] makes the data folder `0700` (and what
//! is already in it `0600`/`0700`) at every start, so the queue journal,
//! the users file and every attendee's files are the host's alone even
//! when another program created them with a looser umask.

use std::path::{Component, Path, PathBuf};

/// `a/b.png` if `path` is a plain relative path of visible components, with
/// single `/` separators; `None` otherwise.
pub fn plain_relative(path: &str) -> Option<String> {
    if path.is_empty() || path.contains('\\') || path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => {
                let part = part.to_str()?;
                if part.starts_with('.') {
                    return None;
                }
                parts.push(part);
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `root/subfolder/name` when both parts are plain (an empty `subfolder`
/// means none); `None` for anything that could leave `root`.
pub fn join_plain(root: &Path, subfolder: &str, name: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    if !subfolder.is_empty() {
        path.push(plain_relative(subfolder)?);
    }
    let name = plain_relative(name)?;
    if name.contains('/') {
        return None;
    }
    path.push(name);
    Some(path)
}

/// The real path of `path` if it exists, is a regular file and stays inside
/// `root` once symlinks are resolved.
pub async fn existing_file_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let real = tokio::fs::canonicalize(path).await.ok()?;
    let meta = tokio::fs::metadata(&real).await.ok()?;
    (real.starts_with(&root) && meta.is_file()).then_some(real)
}

/// True if the deepest existing ancestor of `path` (the folder a new file
/// would be created in) resolves inside `root`: a symlinked sub folder
/// pointing elsewhere is refused before anything is written.
pub async fn parent_stays_inside(root: &Path, path: &Path) -> bool {
    let Ok(root) = tokio::fs::canonicalize(root).await else {
        return false;
    };
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if let Ok(real) = tokio::fs::canonicalize(dir).await {
            return real.starts_with(&root);
        }
        ancestor = dir.parent();
    }
    false
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never half of it: a temporary file in the same folder (created if
/// missing), then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Makes `dir` `0700`, and its entries and those of `dir/users` `0700`
/// (folders) or `0600` (files); symlinks are left alone. Deeper entries
/// are behind these folders. A no-op off Unix.
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |path: &Path, meta: &std::fs::Metadata| {
            let mode = if meta.is_dir() { 0o700 } else { 0o600 };
            if meta.permissions().mode() & 0o777 != mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            std::io::Result::Ok(())
        };
        set(dir, &std::fs::symlink_metadata(dir)?)?;
        // Made here, private, rather than by the first upload with the umask.
        if !dir.join("users").exists() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join("users"))?;
        }
        for folder in [dir.to_path_buf(), dir.join("users")] {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let meta = entry.metadata()?;
                if !meta.file_type().is_symlink() {
                    set(&entry.path(), &meta)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_everything_else_is_refused() {
        assert_eq!(plain_relative("a.png").as_deref(), Some("a.png"));
        assert_eq!(plain_relative("x/y/a.png").as_deref(), Some("x/y/a.png"));
        assert_eq!(plain_relative("x//a.png").as_deref(), Some("x/a.png"));
        for bad in [
            "",
            "../a",
            "x/../../a",
            "/etc/passwd",
            ".hidden",
            "x/.git/config",
            "a\\b",
            "a\0b",
            ".",
            "./a",
        ] {
            assert_eq!(plain_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn join_plain_keeps_the_name_a_single_component() {
        let root = Path::new("/data/u");
        assert_eq!(
            join_plain(root, "", "a.png"),
            Some(PathBuf::from("/data/u/a.png"))
        );
        assert_eq!(
            join_plain(root, "clips/day1", "a.png"),
            Some(PathBuf::from("/data/u/clips/day1/a.png"))
        );
        assert_eq!(join_plain(root, "..", "a.png"), None);
        assert_eq!(join_plain(root, "", "x/a.png"), None);
        assert_eq!(join_plain(root, "/tmp", "a.png"), None);
    }

    /// Names built from the pieces attacks are made of (issue 8's fuzzing
    /// of the resolver behind `/api/view` and `/api/userdata`).
    fn hostile_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("/".to_string()),
            Just("//".to_string()),
            Just("\\".to_string()),
            Just("\0".to_string()),
            Just("%2e%2e".to_string()),
            Just("~".to_string()),
            Just(".git".to_string()),
            Just("a".to_string()),
            Just("é.png".to_string()),
            Just(" ".to_string()),
            "[a-z0-9._-]{1,6}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, .. proptest::prelude::ProptestConfig::default() })]

        #[test]
        fn no_name_leaves_the_root(sub in hostile_name(), name in hostile_name()) {
            let root = Path::new("/data/users/ann/output");
            if let Some(path) = join_plain(root, &sub, &name) {
                proptest::prop_assert!(path.starts_with(root), "{path:?}");
                let below = path.strip_prefix(root).unwrap_or(Path::new("/"));
                for part in below.components() {
                    let Component::Normal(part) = part else {
                        return Err(proptest::test_runner::TestCaseError::fail(format!("{part:?} in {path:?}")));
                    };
                    let part = part.to_string_lossy();
                    proptest::prop_assert!(!part.starts_with('.'), "hidden {part:?} in {path:?}");
                    proptest::prop_assert!(!part.contains('\\') && !part.contains('\0'), "{path:?}");
                }
                // The name stays one component: never a folder of its own.
                proptest::prop_assert_eq!(path.file_name().map(|n| n.to_string_lossy().into_owned()), plain_relative(&name));
            }
        }
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("secret.txt");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&outside, b"no").unwrap();
        std::fs::write(root.join("mine.txt"), b"yes").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        assert!(
            existing_file_inside(&root, &root.join("mine.txt"))
                .await
                .is_some()
        );
        assert!(
            existing_file_inside(&root, &root.join("link.txt"))
                .await
                .is_none()
        );
        assert!(parent_stays_inside(&root, &root.join("new/a.txt")).await);
        assert!(!parent_stays_inside(&root, &root.join("up/a.txt")).await);
    }
}
