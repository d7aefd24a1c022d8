//! `<dest>/.comfyume-models.json`: which files were hashed to which sha256.
//!
//! Policy: an entry is trusted only while the file keeps the size and
//! modification time it had when hashed; anything else (a file replaced by
//! hand, a copy from elsewhere) is hashed again. A missing or unreadable
//! state file means nothing was verified, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

const FILE: &str = ".comfyume-models.json";

/// What was true of a file when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Its size.
    pub size: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub modified_ns: u128,
    /// The sha256 it hashed to.
    pub sha256: String,
}

impl Verified {
    /// The stamp `meta` would carry if it hashed to `sha256`.
    pub fn of(meta: &std::fs::Metadata, sha256: &str) -> Verified {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Verified {
            size: meta.len(),
            modified_ns,
            sha256: sha256.to_string(),
        }
    }
}

/// `<folder>/<file>` → its stamp.
pub type State = BTreeMap<String, Verified>;

/// The state of `dest` (empty when none).
pub fn load(dest: &Path) -> State {
    std::fs::read(dest.join(FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Writes the state of `dest` (a temporary file renamed into place).
pub fn save(dest: &Path, state: &State) -> std::io::Result<()> {
    let tmp = dest.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, dest.join(FILE))
}
