//! The users file, `<data>/users.json`: accounts, roles, password hashes.
//!
//! Policy: the file is the only source of truth, shared by `comfyume serve`
//! (which reads it) and `comfyume user …` (which edits it, possibly while
//! serve runs). Every write replaces the whole file atomically (a temporary
//! file in the same folder, then a rename) with mode 0600, so a reader sees
//! the old file or the new one, never half of one. Editors take an exclusive
//! lock on `<data>/users.lock` around read-modify-write so two operators'
//! commands cannot lose each other's changes. Hashes are argon2id PHC strings;
//! they never appear in `Debug` output or logs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::{OsRng, RngCore as _};
use argon2::password_hash::{PasswordHasher as _, SaltString};
use serde::{Deserialize, Serialize};

use super::{Role, valid_user_name};

/// The file name under the data folder.
pub const FILE_NAME: &str = "users.json";
const LOCK_NAME: &str = "users.lock";
const VERSION: u32 = 1;

/// A problem with the users file or one of its accounts.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading, writing or locking the file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid users file.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. the JSON error or the bad entry.
        reason: String,
    },
    /// The name cannot be a user name (it becomes a folder).
    #[error("invalid user name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ . - and do not start with '.'")]
    InvalidName(String),
    /// `user add` for a name that exists.
    #[error("user {0:?} already exists")]
    Exists(String),
    /// No such user.
    #[error("no user {0:?}")]
    NotFound(String),
    /// argon2 refused to hash (bad parameters).
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// One account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name; also the folder `<data>/users/<name>/`.
    pub name: String,
    /// What the account may do.
    pub role: Role,
    /// argon2id PHC string of the password.
    pub hash: String,
    /// A disabled account cannot log in (403), its data stays.
    #[serde(default)]
    pub disabled: bool,
    /// When the account was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl std::fmt::Debug for User {
    // Hand-written so the hash never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Format version, 1.
    #[serde(default = "version")]
    pub version: u32,
    /// The accounts, in creation order.
    #[serde(default)]
    pub users: Vec<User>,
}

fn version() -> u32 {
    VERSION
}

impl Default for UsersFile {
    // Not derived: a new file is the current version, not version 0.
    fn default() -> Self {
        UsersFile {
            version: VERSION,
            users: Vec::new(),
        }
    }
}

impl UsersFile {
    /// `<data>/users.json`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Reads the file; a missing file is an empty one.
    pub fn load(data_dir: &Path) -> Result<UsersFile, UsersError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(source) => Err(UsersError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Parses and checks file contents read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<UsersFile, UsersError> {
        let invalid = |reason: String| UsersError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: UsersFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if file.version != VERSION {
            return Err(invalid(format!("unsupported version {}", file.version)));
        }
        let mut seen = std::collections::HashSet::new();
        for user in &file.users {
            // A hand-edited file must obey the same rule as the command.
            if !valid_user_name(&user.name) {
                return Err(invalid(format!("invalid user name {:?}", user.name)));
            }
            if !seen.insert(user.name.as_str()) {
                return Err(invalid(format!("user {:?} appears twice", user.name)));
            }
        }
        Ok(file)
    }

    /// Writes the file atomically, mode 0600.
    pub fn save(&self, data_dir: &Path) -> Result<(), UsersError> {
        let path = Self::path(data_dir);
        let io = |action, source| UsersError::Io {
            action,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| io("creating the folder of", e))?;
        // tempfile creates the file 0600 on unix already; the rename keeps it.
        let mut tmp = tempfile::Builder::new()
            .prefix(".users.")
            .suffix(".tmp")
            .tempfile_in(data_dir)
            .map_err(|e| io("creating a temporary file for", e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| UsersError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        tmp.write_all(&json)
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io("writing", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io("restricting", e))?;
        }
        tmp.persist(&path).map_err(|e| io("replacing", e.error))?;
        Ok(())
    }

    /// Runs `change` on the current file under the editors' lock and saves
    /// the result if `change` succeeds.
    pub fn update<T>(
        data_dir: &Path,
        change: impl FnOnce(&mut UsersFile) -> Result<T, UsersError>,
    ) -> Result<T, UsersError> {
        let lock_path = data_dir.join(LOCK_NAME);
        let io = |action, source| UsersError::Io {
            action,
            path: lock_path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| io("creating the folder of", e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", e))?;
        // Released when `lock` drops, also if `change` fails.
        lock.lock().map_err(|e| io("locking", e))?;
        let mut file = Self::load(data_dir)?;
        let result = change(&mut file)?;
        file.save(data_dir)?;
        Ok(result)
    }

    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The account called `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut User, UsersError> {
        self.users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| UsersError::NotFound(name.to_owned()))
    }

    /// Adds an account with an already-hashed password.
    pub fn add(&mut self, name: &str, role: Role, hash: String) -> Result<(), UsersError> {
        if !valid_user_name(name) {
            return Err(UsersError::InvalidName(name.to_owned()));
        }
        if self.get(name).is_some() {
            return Err(UsersError::Exists(name.to_owned()));
        }
        self.users.push(User {
            name: name.to_owned(),
            role,
            hash,
            disabled: false,
            created_ms: now_ms(),
        });
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hashes `password` with argon2id and `params` (production: `Params::default()`).
pub fn hash_password(password: &str, params: &argon2::Params) -> Result<String, UsersError> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    );
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// A fresh password: 16 characters of `[A-Za-z0-9]` from the OS random
/// source, about 95 bits; easy to read out loud and to type, hard to guess.
pub fn generate_password() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(16);
    let mut buf = [0u8; 32];
    while out.len() < 16 {
        OsRng.fill_bytes(&mut buf);
        // 248 = 4 × 62: rejecting the top bytes keeps every character
        // equally likely (a plain `% 62` would favour the first eight).
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == 16 {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    out
}

/// First start: when the users file is missing or empty, creates `admin`
/// (admin) and `attendee01` (attendee) with generated passwords and returns
/// `(name, role, password)` so the caller shows them once. `None` when
/// accounts already exist.
pub fn bootstrap(data_dir: &Path) -> anyhow::Result<Option<Vec<(String, Role, String)>>> {
    use anyhow::Context as _;
    let created = UsersFile::update(data_dir, |file| {
        if !file.users.is_empty() {
            return Ok(None);
        }
        let mut created = Vec::new();
        for (name, role) in [("admin", Role::Admin), ("attendee01", Role::Attendee)] {
            let password = generate_password();
            file.add(
                name,
                role,
                hash_password(&password, &argon2::Params::default())?,
            )?;
            created.push((name.to_owned(), role, password));
        }
        Ok(Some(created))
    })
    .with_context(|| format!("creating the first users in {}", data_dir.display()))?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_16_plain_characters_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
    }

    #[test]
    fn saves_atomically_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        UsersFile::update(dir.path(), |f| {
            f.add("ada", Role::Admin, hash_password("pw", &params)?)
        })
        .unwrap();
        let file = UsersFile::load(dir.path()).unwrap();
        assert_eq!(file.get("ada").unwrap().role, Role::Admin);
        assert!(!format!("{file:?}").contains("argon2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(UsersFile::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = UsersFile::update(dir.path(), |f| f.add("ada", Role::Attendee, String::new()));
        assert!(matches!(err, Err(UsersError::Exists(_))));
    }
}
