//! Failed-login rate limiting, per client address and per user name.
//!
//! Policy: every failed password check counts once against the client's IP
//! address and once against the user name tried, whether or not that user
//! exists (otherwise the limiter itself would reveal which names exist). A
//! key with `max` failures inside the sliding `window` is refused, with the
//! time until its oldest counted failure leaves the window. A success resets
//! nothing: it must not wipe an attacker's record for another client or
//! name. Memory is bounded: stale keys are pruned at least once per window,
//! and past [`MAX_KEYS`] keys per map the least recently failing are evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked per map (addresses, names). At ~30 timestamps a key
/// this bounds the limiter to a few tens of MiB even under a flood.
pub const MAX_KEYS: usize = 16_384;

/// The failure limiter. `Send + Sync`; locks are held for microseconds.
pub struct Limiter {
    per_ip: usize,
    per_user: usize,
    window: Duration,
    maps: Mutex<Maps>,
}

struct Maps {
    ips: HashMap<IpAddr, VecDeque<Instant>>,
    users: HashMap<String, VecDeque<Instant>>,
    pruned: Instant,
}

impl Limiter {
    /// At most `per_ip` failures per address and `per_user` per name within
    /// `window`.
    pub fn new(per_ip: u32, per_user: u32, window: Duration) -> Self {
        Limiter {
            per_ip: per_ip.max(1) as usize,
            per_user: per_user.max(1) as usize,
            window,
            maps: Mutex::new(Maps {
                ips: HashMap::new(),
                users: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// `Err(retry_after_secs)` when `ip` or `user` is over its limit.
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), u64> {
        let maps = self.lock();
        let wait_ip = maps
            .ips
            .get(&ip)
            .and_then(|f| blocked(f, self.per_ip, self.window, now));
        let wait_user = maps
            .users
            .get(user)
            .and_then(|f| blocked(f, self.per_user, self.window, now));
        match wait_ip.max(wait_user) {
            // Round up: "retry in 0 s" would invite an immediate retry.
            Some(wait) => Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            None => Ok(()),
        }
    }

    /// Counts one failure for `ip` and for `user`.
    pub fn record_failure(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut maps = self.lock();
        if now.duration_since(maps.pruned) >= self.window
            || maps.ips.len() >= MAX_KEYS
            || maps.users.len() >= MAX_KEYS
        {
            let window = self.window;
            prune(&mut maps.ips, window, now);
            prune(&mut maps.users, window, now);
            maps.pruned = now;
        }
        push(maps.ips.entry(ip).or_default(), self.per_ip, now);
        push(
            maps.users.entry(user.to_owned()).or_default(),
            self.per_user,
            now,
        );
    }

    /// Keys tracked (addresses + names), for tests and metrics.
    pub fn tracked(&self) -> usize {
        let maps = self.lock();
        maps.ips.len() + maps.users.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // The maps stay consistent even if a holder panicked: keep going.
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long until `failures` drops below `max`, if it is at `max` now.
fn blocked(
    failures: &VecDeque<Instant>,
    max: usize,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    let recent: Vec<&Instant> = failures
        .iter()
        .filter(|t| now.duration_since(**t) < window)
        .collect();
    if recent.len() < max {
        return None;
    }
    // The failure that must expire for the count to drop below `max`.
    let oldest = recent[recent.len() - max];
    Some((*oldest + window).saturating_duration_since(now))
}

fn push(failures: &mut VecDeque<Instant>, max: usize, now: Instant) {
    failures.push_back(now);
    // Only the newest `max` matter for the decision.
    while failures.len() > max {
        failures.pop_front();
    }
}

fn prune<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    window: Duration,
    now: Instant,
) {
    map.retain(|_, f| f.back().is_some_and(|t| now.duration_since(*t) < window));
    if map.len() >= MAX_KEYS {
        // Still full of live keys (a flood): drop the quietest half so the
        // map stays bounded; the busiest offenders keep their records.
        let mut last: Vec<(Instant, K)> = map
            .iter()
            .filter_map(|(k, f)| f.back().map(|t| (*t, k.clone())))
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
