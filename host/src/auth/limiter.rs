//! Failed-login rate limiting, per (address, name) pair and per address,
//! with a lockout that doubles while the failures go on.
//!
//! Policy: every failed password check counts once against the pair of
//! client address and name tried (whether or not that user exists, so the
//! limiter does not reveal which names exist) and once against the
//! address. A key reaching its `max` failures inside the sliding `window`
//! is locked for `window`; each further lockout of the same key, before it
//! has been quiet for a lockout and a window, doubles the time (at most
//! [`MAX_LOCK_FACTOR`] windows). Names are never counted alone: a stranger
//! failing as `bob` from another address locks out that pair, never bob
//! himself. A success resets nothing: it must not wipe an attacker's record.
//! The authenticator looks at its credential cache *before* this limiter,
//! so an attendee whose right password was verified already is never
//! refused because someone behind the same venue address failed. Memory is
//! bounded: stale keys are pruned at least once per window, and past
//! [`MAX_KEYS`] keys per map the least recently failing are evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked per map (addresses, pairs). At ~30 timestamps a key
/// this bounds the limiter to a few tens of MiB even under a flood.
pub const MAX_KEYS: usize = 16_384;

/// The longest lockout, in windows.
pub const MAX_LOCK_FACTOR: u32 = 32;

/// The failure limiter. `Send + Sync`; locks are held for microseconds.
pub struct Limiter {
    per_ip: usize,
    per_pair: usize,
    window: Duration,
    maps: Mutex<Maps>,
}

struct Maps {
    ips: HashMap<IpAddr, Record>,
    pairs: HashMap<(IpAddr, String), Record>,
    pruned: Instant,
}

/// One key's recent failures and lockouts.
#[derive(Default)]
struct Record {
    failures: VecDeque<Instant>,
    /// Lockouts so far (reset once the key is pruned as quiet).
    strikes: u32,
    locked_until: Option<Instant>,
}

impl Record {
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn fail(&mut self, max: usize, window: Duration, now: Instant) {
        // Oldest first: drop what left the window from the front.
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= max {
            self.strikes = self.strikes.saturating_add(1);
            let factor = 1u32
                .checked_shl(self.strikes - 1)
                .unwrap_or(MAX_LOCK_FACTOR)
                .min(MAX_LOCK_FACTOR);
            self.locked_until = Some(now + window * factor);
            self.failures.clear();
        }
    }

    /// Still worth keeping: locked, or failed within the window.
    fn live(&self, window: Duration, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
            || self.last().is_some_and(|t| now.duration_since(t) < window)
    }

    fn last(&self) -> Option<Instant> {
        self.failures.back().copied().or(self.locked_until)
    }
}

impl Limiter {
    /// At most `per_ip` failures per address and `per_pair` per (address,
    /// name) within `window`.
    pub fn new(per_ip: u32, per_pair: u32, window: Duration) -> Self {
        Limiter {
            per_ip: per_ip.max(1) as usize,
            per_pair: per_pair.max(1) as usize,
            window,
            maps: Mutex::new(Maps {
                ips: HashMap::new(),
                pairs: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// `Err(retry_after_secs)` when `ip`, or `user` from `ip`, is locked.
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), u64> {
        let maps = self.lock();
        let wait_ip = maps.ips.get(&ip).and_then(|r| r.wait(now));
        let wait_pair = maps
            .pairs
            .get(&(ip, user.to_owned()))
            .and_then(|r| r.wait(now));
        match wait_ip.max(wait_pair) {
            // Round up: "retry in 0 s" would invite an immediate retry.
            Some(wait) => Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            None => Ok(()),
        }
    }

    /// Counts one failure for `ip` and for `user` from `ip`.
    pub fn record_failure(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut maps = self.lock();
        if now.duration_since(maps.pruned) >= self.window
            || maps.ips.len() >= MAX_KEYS
            || maps.pairs.len() >= MAX_KEYS
        {
            let window = self.window;
            prune(&mut maps.ips, window, now);
            prune(&mut maps.pairs, window, now);
            maps.pruned = now;
        }
        let (per_ip, per_pair, window) = (self.per_ip, self.per_pair, self.window);
        maps.ips.entry(ip).or_default().fail(per_ip, window, now);
        maps.pairs
            .entry((ip, user.to_owned()))
            .or_default()
            .fail(per_pair, window, now);
    }

    /// Keys tracked (addresses + pairs), for tests and metrics.
    pub fn tracked(&self) -> usize {
        let maps = self.lock();
        maps.ips.len() + maps.pairs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // The maps stay consistent even if a holder panicked: keep going.
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn prune<K: Hash + Eq + Clone>(map: &mut HashMap<K, Record>, window: Duration, now: Instant) {
    map.retain(|_, r| r.live(window, now));
    if map.len() >= MAX_KEYS {
        // Still full of live keys (a flood): drop the quietest half so the
        // map stays bounded; the busiest offenders keep their records.
        let mut last: Vec<(Instant, K)> = map
            .iter()
            .filter_map(|(k, r)| r.last().map(|t| (t, k.clone())))
            .collect();
        last.sort_by_key(|(t, _)| *t);
        for (_, key) in last.into_iter().take(MAX_KEYS / 2) {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let limiter = Limiter::new(100, 3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.check(IP, "ada", t0), Ok(()), "failure {i}");
            limiter.record_failure(IP, "ada", t0);
        }
        assert_eq!(limiter.check(IP, "ada", t0), Err(60));
        assert_eq!(
            limiter.check(IP, "ada", t0 + Duration::from_millis(59_500)),
            Err(1)
        );
        assert_eq!(
            limiter.check(IP, "ada", t0 + Duration::from_secs(60)),
            Ok(())
        );
        // Another name from the same address is still fine.
        assert_eq!(limiter.check(IP, "bob", t0), Ok(()));
    }

    #[test]
    fn a_name_locked_from_one_address_is_free_from_another() {
        let limiter = Limiter::new(100, 3, Duration::from_secs(60));
        let t0 = Instant::now();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            limiter.record_failure(stranger, "bob", t0);
        }
        assert_eq!(limiter.check(stranger, "bob", t0), Err(60));
        assert_eq!(limiter.check(IP, "bob", t0), Ok(()), "bob's own address");
    }

    #[test]
    fn an_address_is_limited_across_names() {
        let limiter = Limiter::new(5, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..5 {
            limiter.record_failure(IP, &format!("u{i}"), t0);
        }
        assert_eq!(limiter.check(IP, "anyone", t0), Err(60));
    }

    #[test]
    fn lockouts_double_while_the_failures_go_on_then_reset() {
        let window = Duration::from_secs(60);
        let limiter = Limiter::new(100, 2, window);
        let mut now = Instant::now();
        for expected in [60, 120, 240] {
            limiter.record_failure(IP, "ada", now);
            limiter.record_failure(IP, "ada", now);
            assert_eq!(limiter.check(IP, "ada", now), Err(expected));
            now += Duration::from_secs(expected);
            assert_eq!(limiter.check(IP, "ada", now), Ok(()));
        }
        // Quiet for a window after the lockout: forgotten, back to 60 s.
        now += window;
        limiter.record_failure(IP, "other", now);
        limiter.record_failure(IP, "ada", now);
        limiter.record_failure(IP, "ada", now);
        assert_eq!(limiter.check(IP, "ada", now), Err(60));
    }

    #[test]
    fn stays_bounded_under_a_flood_of_names() {
        let limiter = Limiter::new(1_000_000, 5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS * 2) {
            limiter.record_failure(IP, &format!("u{i}"), t0);
        }
        assert!(limiter.tracked() <= MAX_KEYS + 1, "{}", limiter.tracked());
        // Everything stale is dropped once a window has passed.
        limiter.record_failure(IP, "late", t0 + Duration::from_secs(61));
        assert_eq!(limiter.tracked(), 2);
    }
}
