//! Shares of the instance pool: who may hold how many plugin instances.
//!
//! Policy (issue 17 items 2–3): the pooling allocator has a fixed number of
//! component instances ([`super::RuntimeConfig::max_instances`]). If any
//! caller could take them all, a slow plugin in one slot (or the shadow)
//! would make every other slot's calls fail with "maximum concurrent limit
//! reached", and those failures would be counted against plugins that did
//! nothing wrong. So:
//! - every slot (and the shadow, and direct calls such as `describe()` and
//!   checks) has its own [`Lane`], a semaphore of its share;
//! - every call also takes one permit of the engine-wide pool semaphore,
//!   sized to the pool, so wasmtime itself never runs out;
//! - a call that cannot get both within [`LANE_WAIT`] is not made: the
//!   caller gets [`super::PluginError::Busy`], which no slot counts, and the
//!   built-in default decides (a validator's prompt is refused as busy,
//!   with nothing disabled).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a call waits for a free instance before it is answered by the
/// built-in default instead.
pub const LANE_WAIT: Duration = Duration::from_millis(50);

/// A counting semaphore for blocking threads (plugin calls run on them).
#[derive(Debug)]
pub struct Semaphore {
    free: Mutex<u32>,
    size: u32,
    freed: Condvar,
}

/// One taken permit, given back on drop.
#[derive(Debug)]
pub struct Permit<'a> {
    from: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore of `size` permits (at least one).
    pub fn new(size: u32) -> Self {
        let size = size.max(1);
        Semaphore {
            free: Mutex::new(size),
            size,
            freed: Condvar::new(),
        }
    }

    /// Permits in all.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Permits taken now.
    pub fn in_use(&self) -> u32 {
        self.size - *self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a permit, waiting at most `wait` (until `by`) for one.
    pub fn acquire_by(&self, by: Instant) -> Option<Permit<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *free > 0 {
                *free -= 1;
                return Some(Permit { from: self });
            }
            let left = by.checked_duration_since(Instant::now())?;
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self.from.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        drop(free);
        self.from.freed.notify_one();
    }
}

/// One caller's share of the instance pool.
#[derive(Debug)]
pub struct Lane {
    name: String,
    share: Semaphore,
}

impl Lane {
    /// A lane named `name` (a slot name, `shadow`, `direct`) of `share` instances.
    pub fn new(name: impl Into<String>, share: u32) -> Self {
        Lane {
            name: name.into(),
            share: Semaphore::new(share),
        }
    }

    /// The lane's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its share, and how much of it is in use.
    pub fn usage(&self) -> (u32, u32) {
        (self.share.in_use(), self.share.size())
    }

    /// Takes one instance of this lane's share and one of the `pool`, or
    /// says which was full after [`LANE_WAIT`].
    pub fn enter<'a>(&'a self, pool: &'a Semaphore) -> Result<(Permit<'a>, Permit<'a>), String> {
        let by = Instant::now() + LANE_WAIT;
        let own = self.share.acquire_by(by).ok_or_else(|| {
            format!(
                "all {} plugin instances of {} are busy",
                self.share.size(),
                self.name
            )
        })?;
        let shared = pool
            .acquire_by(by)
            .ok_or_else(|| format!("all {} plugin instances of the host are busy", pool.size()))?;
        Ok((own, shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_lane_refuses_after_a_brief_wait_and_leaves_others_alone() {
        let pool = Semaphore::new(3);
        let slow = Lane::new("validator:a-sleepy", 2);
        let other = Lane::new("scheduler", 1);
        let _a = slow.enter(&pool).unwrap();
        let _b = slow.enter(&pool).unwrap();
        let started = Instant::now();
        let refused = slow.enter(&pool).unwrap_err();
        assert!(refused.contains("validator:a-sleepy"), "{refused}");
        assert!(started.elapsed() >= LANE_WAIT);
        // The slow lane holds its share only: the scheduler still gets in.
        let held = other.enter(&pool).unwrap();
        assert_eq!(pool.in_use(), 3);
        drop(held);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(other.usage(), (0, 1));
    }

    #[test]
    fn a_waiting_call_gets_the_permit_freed_meanwhile() {
        let pool = Semaphore::new(1);
        let lane = Lane::new("selector", 1);
        std::thread::scope(|s| {
            let held = lane.enter(&pool).unwrap();
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                drop(held);
            });
            assert!(lane.enter(&pool).is_ok());
        });
    }
}
