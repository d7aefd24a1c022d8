//! The verified-credential cache: logins argon2 already accepted.
//!
//! Policy: a browser re-sends the same Basic credentials on every request,
//! and argon2id costs tens of milliseconds by design; paying that per request
//! would cap the host at a few dozen requests per second per core. So once a
//! password verifies, we keep a *keyed hash* of it (SHA-256 over a random
//! per-process secret, the user name and the password) for a limited time,
//! one entry per user name. The password itself is never stored, and the
//! secret never leaves memory, so a memory dump of the cache is not a list of
//! passwords or an offline-crackable one. Tags are compared in constant time.
//! The owner clears the cache whenever the users file changes, so a password
//! change or a disable takes effect at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A keyed hash of one (name, password) pair.
#[derive(Clone, Copy)]
pub struct Tag([u8; 32]);

/// Logins verified recently, keyed by user name.
pub struct CredentialCache {
    secret: [u8; 32],
    ttl: Duration,
    entries: HashMap<String, (Tag, Instant)>,
}

impl CredentialCache {
    /// An empty cache with a fresh random secret; entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        use argon2::password_hash::rand_core::{OsRng, RngCore as _};
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        CredentialCache {
            secret,
            ttl,
            entries: HashMap::new(),
        }
    }

    /// The tag of `name` with `password` under this process's secret.
    pub fn tag(&self, name: &str, password: &str) -> Tag {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        // Length-prefix the name so ("ab", "c") and ("a", "bc") differ.
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(password.as_bytes());
        Tag(hasher.finalize().into())
    }

    /// True when `name` verified with exactly this `tag` less than `ttl` ago.
    pub fn hit(&self, name: &str, tag: &Tag, now: Instant) -> bool {
        match self.entries.get(name) {
            Some((stored, expires)) => {
                now < *expires && bool::from(stored.0.as_slice().ct_eq(tag.0.as_slice()))
            }
            None => false,
        }
    }

    /// Remembers that `name` verified with `tag`.
    pub fn insert(&mut self, name: &str, tag: Tag, now: Instant) {
        self.entries.insert(name.to_owned(), (tag, now + self.ttl));
    }

    /// Forgets everything (the users file changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many logins are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_same_password_before_expiry() {
        let mut cache = CredentialCache::new(Duration::from_secs(10));
        let now = Instant::now();
        let tag = cache.tag("ada", "right");
        cache.insert("ada", tag, now);
        assert!(cache.hit("ada", &cache.tag("ada", "right"), now));
        assert!(!cache.hit("ada", &cache.tag("ada", "wrong"), now));
        assert!(!cache.hit("bob", &cache.tag("bob", "right"), now));
        assert!(!cache.hit("ada", &tag, now + Duration::from_secs(11)));
        // Another process (another secret) never produces the same tag.
        let other = CredentialCache::new(Duration::from_secs(10));
        assert!(!cache.hit("ada", &other.tag("ada", "right"), now));
        cache.clear();
        assert!(cache.is_empty());
    }
}
