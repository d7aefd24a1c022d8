//! The workshop session switch the operator turns during the day.
//!
//! Policy:
//! - `open`: attendees' prompts are accepted and dispatched.
//! - `drain`: no new prompts (the editor shows why); what is queued still
//!   runs, so the last demo's jobs finish before the break.
//! - `closed`: no new prompts and nothing is dispatched; queued jobs wait
//!   (nothing is lost) until the session opens again.
//!
//! The state is kept in `<data>/session.json` so a restart keeps it. Each
//! host reads its own file: hosts sharing a Redis share a data folder, and
//! the operator switches them through each host's admin API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Prompts accepted and dispatched.
    Open,
    /// No new prompts; the queue still runs.
    Drain,
    /// No new prompts; nothing dispatched.
    Closed,
}

impl SessionState {
    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(value: u8) -> SessionState {
        match value {
            0 => SessionState::Open,
            1 => SessionState::Drain,
            _ => SessionState::Closed,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    state: SessionState,
}

/// The switch, shared by the front (accepting), the dispatcher (running)
/// and the admin API (turning it).
#[derive(Debug)]
pub struct Session {
    state: AtomicU8,
    file: Option<PathBuf>,
}

impl Session {
    /// An open session that is not persisted (tests).
    pub fn open() -> Session {
        Session {
            state: AtomicU8::new(SessionState::Open.to_u8()),
            file: None,
        }
    }

    /// The session as last set under `data_dir` (open when never set).
    pub fn load(data_dir: &Path) -> Session {
        let file = data_dir.join("session.json");
        let state = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .map_or(SessionState::Open, |s| s.state);
        if state != SessionState::Open {
            tracing::warn!(?state, file = %file.display(), "the workshop session is not open");
        }
        Session {
            state: AtomicU8::new(state.to_u8()),
            file: Some(file),
        }
    }

    /// The state now.
    pub fn get(&self) -> SessionState {
        SessionState::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// Changes the state and persists it.
    pub fn set(&self, state: SessionState) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            let bytes = serde_json::to_vec(&Stored { state }).map_err(std::io::Error::other)?;
            crate::paths::write_atomic(file, &bytes)?;
        }
        self.state.store(state.to_u8(), Ordering::SeqCst);
        tracing::info!(?state, "workshop session switched");
        Ok(())
    }

    /// True while attendees' prompts are accepted.
    pub fn accepting(&self) -> bool {
        self.get() == SessionState::Open
    }

    /// True while queued jobs are dispatched.
    pub fn dispatching(&self) -> bool {
        self.get() != SessionState::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_restart_and_says_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::load(dir.path());
        assert_eq!(session.get(), SessionState::Open);
        assert!(session.accepting() && session.dispatching());
        session.set(SessionState::Drain).unwrap();
        assert!(!session.accepting() && session.dispatching());
        let again = Session::load(dir.path());
        assert_eq!(again.get(), SessionState::Drain);
        again.set(SessionState::Closed).unwrap();
        assert!(!again.accepting() && !again.dispatching());
    }
}
