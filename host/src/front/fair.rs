//! Each attendee's fair share of the prompt path: how often they may
//! submit, and how many of their prompts the validators check at once.
//!
//! Policy: submits are counted per attendee in a token bucket
//! (`attendees.submit_burst` at once, refilled at
//! `attendees.submits_per_minute`), before the body is read, so a flood of
//! prompts, valid or not, costs the host one map lookup each. Validator
//! calls are limited per attendee (`attendees.max_concurrent_checks`): a
//! prompt over that is refused at once (429 with `Retry-After`) rather than
//! queued, so one attendee's sixteen concurrent 2 MB prompts occupy at most
//! that many blocking threads while everybody else's prompts go through.
//! State is per account name (a bounded set: the users file), so it needs
//! no eviction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The per-attendee limits of the prompt path.
pub struct Fairness {
    per_minute: f64,
    burst: f64,
    checks: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Fairness {
    /// `per_minute` submits with bursts of `burst`; `checks` validator
    /// calls at once per attendee. Zeros mean one.
    pub fn new(per_minute: u32, burst: u32, checks: u32) -> Self {
        Fairness {
            per_minute: f64::from(per_minute.max(1)),
            burst: f64::from(burst.max(1)),
            checks: checks.max(1) as usize,
            buckets: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one submit of `user`, or says how long until one is allowed.
    pub fn submit(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let rate = self.per_minute / 60.0;
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// One of `user`'s validator slots, held until the permit drops; `None`
    /// when all are in use.
    pub fn check_slot(&self, user: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry(user.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.checks)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

/// Whole seconds to wait, rounded up and at least one.
pub fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submits_refill_at_the_configured_rate_per_attendee() {
        let fair = Fairness::new(60, 3, 1);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(fair.submit("ann", t0), Ok(()));
        }
        let wait = fair.submit("ann", t0).unwrap_err();
        assert_eq!(retry_secs(wait), 1);
        assert_eq!(fair.submit("bob", t0), Ok(()), "bob has his own bucket");
        assert_eq!(fair.submit("ann", t0 + Duration::from_secs(1)), Ok(()));
        assert!(fair.submit("ann", t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn validator_slots_are_per_attendee_and_come_back() {
        let fair = Fairness::new(60, 10, 2);
        let a = fair.check_slot("ann").expect("first");
        let _b = fair.check_slot("ann").expect("second");
        assert!(fair.check_slot("ann").is_none());
        assert!(fair.check_slot("bob").is_some());
        drop(a);
        assert!(fair.check_slot("ann").is_some());
    }
}
