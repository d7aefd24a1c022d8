//! [`Authenticator`]: turns an `Authorization` header into an [`Identity`].
//!
//! Policy (see the module docs of [`crate::auth`] for the why):
//! 1. parse Basic, else 401 without touching anything else;
//! 2. look the name up in the users file as last loaded (the file is
//!    re-checked at most once per `reload_check`, and always on a cache miss);
//!    a cache hit (these exact credentials verified recently) answers
//!    without argon2 and without asking the failure limiter, so a stranger
//!    failing as this attendee, or behind the same venue address, never
//!    locks out someone already logged in;
//! 3. refuse at once (429) when the client address, or the name from that
//!    address, is over its failure limit, before any hashing, so a flood
//!    cannot burn the CPU;
//! 4. a miss verifies on a blocking
//!    thread, one per core at most (a login storm queues instead of holding
//!    argon2's 19 MiB per login at once, and looks at the cache again once
//!    its turn comes), against a dummy hash for unknown names so every miss
//!    costs the same;
//! 5. the right password on a disabled account is 403, everything wrong 401.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use tracing::Instrument as _;

use super::basic::{self, Credentials};
use super::cache::CredentialCache;
use super::limiter::Limiter;
use super::users::{User, UsersError, UsersFile};
use super::{AuthError, Identity, Role};

/// The knobs. Production uses [`AuthSettings::default`]; tests shorten them.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// argon2 parameters of the dummy hash unknown names are checked against;
    /// keep them equal to the users' (argon2id defaults) so timing matches.
    pub params: argon2::Params,
    /// How long a verified login is remembered.
    pub cache_ttl: Duration,
    /// How often a cache hit re-checks the users file for changes.
    pub reload_check: Duration,
    /// Failed logins per client address within `failure_window`.
    pub max_failures_per_ip: u32,
    /// Failed logins per (client address, user name) within
    /// `failure_window`; a name alone is never locked.
    pub max_failures_per_pair: u32,
    /// The sliding window the failure limits count in.
    pub failure_window: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client; any other
    /// peer is the client itself, whatever its headers say.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            params: argon2::Params::default(),
            cache_ttl: Duration::from_secs(600),
            reload_check: Duration::from_secs(1),
            // A workshop's attendees often share one venue address: the
            // per-address limit is looser than the per-name one.
            max_failures_per_ip: 30,
            max_failures_per_pair: 10,
            failure_window: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Checks logins against `<data>/users.json`. Share it as `Arc<Authenticator>`.
pub struct Authenticator {
    path: PathBuf,
    settings: AuthSettings,
    /// A hash of a random password: what unknown names are verified against.
    dummy_hash: String,
    state: Mutex<State>,
    limiter: Limiter,
    argon2_runs: AtomicU64,
    /// Verifications allowed at once. Each holds argon2's memory cost
    /// (19 MiB by default) while it runs: 200 attendees logging in at the
    /// start of a workshop would otherwise take ~4 GB at once (measured by
    /// `comfyume rehearse`), and glibc keeps most of it afterwards. The
    /// rest wait here, a few milliseconds each.
    argon2_slots: Arc<tokio::sync::Semaphore>,
    /// Bumped whenever the accounts may have changed (the file reloaded,
    /// the cache cleared by an operator's edit): open websockets re-check
    /// their account on it, so a disabled attendee's sockets close at once.
    accounts_changed: tokio::sync::watch::Sender<u64>,
}

/// What the users file said when last read, and what was verified since.
struct State {
    users: Arc<HashMap<String, User>>,
    stamp: Option<Stamp>,
    checked: Instant,
    /// Bumped on every reload, so a verification that raced a reload does
    /// not cache a login checked against the old file.
    generation: u64,
    cache: CredentialCache,
}

/// Enough of a file's metadata to notice a replacement: the rename of a new
/// file changes the inode even when mtime and size happen to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

/// What a cache miss needs to verify: taken under the lock, used outside.
struct Plan {
    hash: String,
    user: Option<(Role, bool)>,
    generation: u64,
}

impl Authenticator {
    /// Reads `<data_dir>/users.json` (missing means no users yet).
    pub fn new(data_dir: &Path) -> Result<Self, UsersError> {
        Self::with_settings(data_dir, AuthSettings::default())
    }

    /// [`Authenticator::new`] with explicit settings.
    pub fn with_settings(data_dir: &Path, settings: AuthSettings) -> Result<Self, UsersError> {
        let path = UsersFile::path(data_dir);
        let (users, stamp) = read(&path)?;
        let dummy_hash =
            super::users::hash_password(&super::generate_password(), &settings.params)?;
        let limiter = Limiter::new(
            settings.max_failures_per_ip,
            settings.max_failures_per_pair,
            settings.failure_window,
        );
        Ok(Authenticator {
            path,
            dummy_hash,
            state: Mutex::new(State {
                users: Arc::new(users),
                stamp,
                checked: Instant::now(),
                generation: 0,
                cache: CredentialCache::new(settings.cache_ttl),
            }),
            limiter,
            settings,
            argon2_runs: AtomicU64::new(0),
            argon2_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8)),
            )),
            accounts_changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The client's address for rate limiting: the TCP peer, or, when the
    /// peer is a trusted proxy, the right-most `X-Forwarded-For` entry that
    /// is not itself a trusted proxy (entries further left are the
    /// client's own claims and could be forged).
    pub fn client_address(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let trusted = &self.settings.trusted_proxies;
        if !trusted.contains(&peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        chain
            .into_iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer)
    }

    /// Checks a request's `Authorization` header; argon2 runs on tokio's
    /// blocking pool, never on an executor thread.
    pub async fn verify(
        &self,
        header: Option<&str>,
        client: IpAddr,
    ) -> Result<Identity, AuthError> {
        let creds = basic::parse(header)?;
        let span = tracing::debug_span!("auth", user = %creds.user, %client);
        async {
            if let Ok(identity) = self.before_argon2(&creds, client)? {
                return Ok(identity);
            }
            let slot = Arc::clone(&self.argon2_slots)
                .acquire_owned()
                .await
                .map_err(|e| AuthError::Unavailable(format!("login verification: {e}")))?;
            // While this login waited for a slot, the same credentials may
            // have been verified (a browser opens several requests at once).
            let plan = match self.before_argon2(&creds, client)? {
                Ok(identity) => return Ok(identity),
                Err(plan) => plan,
            };
            let (hash, password) = (plan.hash.clone(), creds.password.clone());
            // The slot goes with the hashing: a login whose client hung up
            // mid-verification leaves argon2 running, and its memory counts.
            // It comes back with the answer and is released only once the
            // login is cached, so a waiter that gets it next finds the cache
            // filled instead of hashing the same password again.
            let (ok, slot) =
                tokio::task::spawn_blocking(move || (check_hash(&hash, &password), slot))
                    .await
                    .map_err(|e| {
                        AuthError::Unavailable(format!("verification task failed: {e}"))
                    })?;
            let answer = self.after_argon2(&creds, client, plan, ok);
            drop(slot);
            answer
        }
        .instrument(span)
        .await
    }

    /// [`Authenticator::verify`] on the calling thread (command line, benches).
    pub fn verify_blocking(
        &self,
        header: Option<&str>,
        client: IpAddr,
    ) -> Result<Identity, AuthError> {
        let creds = basic::parse(header)?;
        let plan = match self.before_argon2(&creds, client)? {
            Ok(identity) => return Ok(identity),
            Err(plan) => plan,
        };
        let ok = check_hash(&plan.hash, &creds.password);
        self.after_argon2(&creds, client, plan, ok)
    }

    /// Full argon2 verifications so far (cache misses), for tests and metrics.
    pub fn argon2_verifications(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// The argon2 parameters new passwords are hashed with.
    pub fn params(&self) -> argon2::Params {
        self.settings.params.clone()
    }

    /// Forgets every cached login (e.g. after an admin reset a password
    /// through the API rather than the file).
    pub fn clear_cache(&self) {
        self.lock().cache.clear();
        self.accounts_changed.send_modify(|n| *n += 1);
    }

    /// Changes whenever an account may have changed; see [`Self::allows`].
    pub fn watch_accounts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.accounts_changed.subscribe()
    }

    /// True while `name` is an enabled account, as the users file says now
    /// (re-read when it changed; `fresh` looks at once, otherwise at most
    /// once per `reload_check`). Long-lived connections (websockets) ask
    /// this, since they passed the login only once.
    pub fn allows(&self, name: &str, fresh: bool) -> bool {
        if let Err(error) = self.refresh(fresh) {
            // The file cannot be read: keep the accounts as last known.
            tracing::warn!(%error, "cannot re-check accounts");
        }
        self.lock().users.get(name).is_some_and(|u| !u.disabled)
    }

    /// Steps 2–3: `Ok(Ok(identity))` on a cache hit, `Ok(Err(plan))` when
    /// argon2 must run.
    fn before_argon2(
        &self,
        creds: &Credentials,
        client: IpAddr,
    ) -> Result<Result<Identity, Plan>, AuthError> {
        let now = Instant::now();
        self.refresh(false)?;
        {
            let state = self.lock();
            let tag = state.cache.tag(&creds.user, &creds.password);
            if let Some(user) = state.users.get(&creds.user)
                && state.cache.hit(&creds.user, &tag, now)
            {
                return self
                    .admit(user.name.clone(), user.role, user.disabled)
                    .map(Ok);
            }
        }
        self.limiter
            .check(client, &creds.user, now)
            .map_err(|retry_after_secs| AuthError::RateLimited { retry_after_secs })?;
        // A miss may be the first request after `comfyume user passwd`:
        // look at the file now rather than up to `reload_check` later.
        self.refresh(true)?;
        let state = self.lock();
        let plan = match state.users.get(&creds.user) {
            Some(user) => Plan {
                hash: user.hash.clone(),
                user: Some((user.role, user.disabled)),
                generation: state.generation,
            },
            None => Plan {
                hash: self.dummy_hash.clone(),
                user: None,
                generation: state.generation,
            },
        };
        Ok(Err(plan))
    }

    /// Step 5, after argon2 said `ok`.
    fn after_argon2(
        &self,
        creds: &Credentials,
        client: IpAddr,
        plan: Plan,
        ok: bool,
    ) -> Result<Identity, AuthError> {
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        match plan.user {
            Some((role, disabled)) if ok => {
                if !disabled {
                    let mut state = self.lock();
                    if state.generation == plan.generation {
                        let tag = state.cache.tag(&creds.user, &creds.password);
                        state.cache.insert(&creds.user, tag, Instant::now());
                    }
                }
                self.admit(creds.user.clone(), role, disabled)
            }
            _ => {
                self.limiter
                    .record_failure(client, &creds.user, Instant::now());
                tracing::info!(user = %creds.user, %client, "login failed");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    fn admit(&self, name: String, role: Role, disabled: bool) -> Result<Identity, AuthError> {
        if disabled {
            tracing::info!(user = %name, "login refused: account disabled");
            return Err(AuthError::Disabled(name));
        }
        Ok(Identity { name, role })
    }

    /// Reloads the users file if it changed; `force` skips the rate limit on
    /// checking. A file that fails to parse (say, a hand edit in progress)
    /// keeps the previous accounts and is retried on the next check.
    fn refresh(&self, force: bool) -> Result<(), AuthError> {
        {
            let mut state = self.lock();
            if !force && state.checked.elapsed() < self.settings.reload_check {
                return Ok(());
            }
            state.checked = Instant::now();
        }
        // One stat: microseconds, so fine on an executor thread; the read
        // below happens only when the file really changed.
        let current = stamp(&self.path).map_err(|e| {
            AuthError::Unavailable(format!("cannot read {}: {e}", self.path.display()))
        })?;
        if current == self.lock().stamp {
            return Ok(());
        }
        match read(&self.path) {
            Ok((users, stamp)) => {
                let mut state = self.lock();
                state.users = Arc::new(users);
                state.stamp = stamp;
                state.generation += 1;
                state.cache.clear();
                tracing::info!(users = state.users.len(), "users file reloaded");
                drop(state);
                self.accounts_changed.send_modify(|n| *n += 1);
            }
            Err(error) => {
                tracing::warn!(%error, "users file changed but cannot be read; keeping the previous accounts");
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in State can be left half-updated by a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the file and its stamp from the same open handle, so the stamp
/// describes exactly the contents read.
fn read(path: &Path) -> Result<(HashMap<String, User>, Option<Stamp>), UsersError> {
    use std::io::Read as _;
    let io = |source| UsersError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashMap::new(), None)),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let users = UsersFile::parse(path, &bytes)?
        .users
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    Ok((users, Some(stamp_of(&meta))))
}

fn stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(stamp_of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    }
}

/// The one argon2 call. A hash that does not parse (a hand-edited file)
/// simply never matches.
fn check_hash(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    fn auth(trusted: &[&str]) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuthSettings {
            params: argon2::Params::new(8, 1, 1, None).unwrap(),
            trusted_proxies: trusted.iter().map(|ip| ip.parse().unwrap()).collect(),
            ..AuthSettings::default()
        };
        let auth = Authenticator::with_settings(dir.path(), settings).unwrap();
        (dir, auth)
    }

    fn headers(value: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let (_dir, auth) = auth(&["10.0.0.2", "10.0.0.3"]);
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        // A stranger's header is its own claim: the peer counts.
        assert_eq!(
            auth.client_address(stranger, &headers("203.0.113.9")),
            stranger
        );
        // Through two trusted proxies: the right-most untrusted entry.
        assert_eq!(
            auth.client_address(proxy, &headers("1.2.3.4, 203.0.113.9, 10.0.0.3")),
            client
        );
        // A trusted proxy without the header is the client.
        assert_eq!(
            auth.client_address(proxy, &axum::http::HeaderMap::new()),
            proxy
        );
    }
}
