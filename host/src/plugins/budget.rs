//! How long one plugin call may take, and whose time it was.
//!
//! Policy (issue 17 item 1, issue 18 item 2):
//! - **The deadline is the plugin's own time**: the CPU time of the thread
//!   the call runs on (instantiation, guest code, the host imports it calls)
//!   plus the time it spends blocked in `wasi:io/poll` (a sleep, a clock
//!   subscription). A plugin that loops or sleeps past it is stopped and the
//!   overrun is counted against it.
//! - **A busy host is not the plugin's fault.** When other work takes the
//!   CPU, a call's wall time stretches while its own time does not. The call
//!   is still stopped at a wall-clock backstop ([`WALL_BACKSTOP_FACTOR`] ×
//!   the deadline, at least deadline + [`MIN_WALL_SLACK`]), so nothing waits
//!   on a plugin for long, but that stop is reported as
//!   [`Overrun::HostBusy`], which the slot does not count, unless the
//!   plugin had used half its budget or more by then (see
//!   [`CallBudget::at_backstop`]).
//! - Thread CPU time rather than fuel: it needs no per-instruction metering
//!   (fuel costs every call a little and must be calibrated per guest
//!   language: an interpreter burns far more instructions per decision than
//!   a Rust guest), and it measures exactly the work the call caused, on any
//!   prompt size. Where the OS has no per-thread clock, wall time stands in
//!   (the old behaviour).
//!
//! The budget is checked at every epoch tick while guest code runs (an
//! epoch-deadline callback, see `component.rs`) and bounds every wait in
//! `wasi:io/poll` (see `sandbox.rs`), so no call outlives its deadline by
//! more than one [`super::TICK`] of guest code or a timer's slack.

use std::time::{Duration, Instant};

/// The wall-clock backstop, as a multiple of the deadline.
pub const WALL_BACKSTOP_FACTOR: u32 = 4;
/// The smallest gap between the deadline and the wall-clock backstop.
pub const MIN_WALL_SLACK: Duration = Duration::from_millis(250);

/// Why a call was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overrun {
    /// The plugin used its whole own-time budget (CPU plus waits it asked for).
    #[error("the plugin used up its time budget")]
    OwnTime,
    /// The wall-clock backstop passed while the plugin had used less than its
    /// budget: the host was too busy to run it.
    #[error("the host was too busy to finish the plugin call in time")]
    HostBusy,
}

/// The clock of one call.
#[derive(Debug)]
pub struct CallBudget {
    started: Instant,
    cpu_at_start: Option<Duration>,
    waited: Duration,
    own_limit: Duration,
    wall_limit: Duration,
}

impl CallBudget {
    /// Starts the clock of a call with `deadline` of own time.
    pub fn start(deadline: Duration) -> Self {
        let wall_limit = (deadline * WALL_BACKSTOP_FACTOR).max(deadline + MIN_WALL_SLACK);
        CallBudget {
            started: Instant::now(),
            cpu_at_start: thread_cpu_time(),
            waited: Duration::ZERO,
            own_limit: deadline,
            wall_limit,
        }
    }

    /// Wall time since the call started.
    pub fn wall(&self) -> Duration {
        self.started.elapsed()
    }

    /// The call's own time so far: thread CPU time plus time waited in
    /// `poll`. Falls back to wall time where there is no thread clock.
    pub fn own(&self) -> Duration {
        match (self.cpu_at_start, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start) + self.waited,
            _ => self.wall(),
        }
    }

    /// Records time the guest spent blocked in `poll`.
    pub fn add_waited(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// How long the call may still run before one of its limits, and which
    /// limit that is; an error when one has passed already.
    pub fn remaining(&self) -> Result<(Duration, Overrun), Overrun> {
        let own = self.own_limit.checked_sub(self.own());
        let wall = self.wall_limit.checked_sub(self.wall());
        match (own, wall) {
            (None, _) | (Some(Duration::ZERO), _) => Err(Overrun::OwnTime),
            (_, None) | (_, Some(Duration::ZERO)) => Err(self.at_backstop()),
            // Own time never runs faster than the wall clock, so the nearer
            // of the two limits is the one to wait for.
            (Some(own), Some(wall)) if own <= wall => Ok((own, Overrun::OwnTime)),
            (Some(_), Some(wall)) => Ok((wall, Overrun::HostBusy)),
        }
    }

    /// Whose overrun a stop at the wall-clock backstop is: the plugin's if
    /// it had used at least half its own budget by then (it was computing
    /// or sleeping a lot, and only the busy host kept it from running out),
    /// else the host's. So a looping plugin is still counted on a loaded
    /// machine, and a plugin that needed little of its budget never is.
    pub fn at_backstop(&self) -> Overrun {
        if self.own() * 2 >= self.own_limit {
            Overrun::OwnTime
        } else {
            Overrun::HostBusy
        }
    }
}

/// CPU time of the calling thread, where the OS keeps one.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_costs_no_own_time_but_waiting_in_poll_does() {
        let mut budget = CallBudget::start(Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            budget.own() < Duration::from_millis(20),
            "{:?}",
            budget.own()
        );
        budget.add_waited(Duration::from_millis(30));
        assert!(budget.own() >= Duration::from_millis(30));
        let (left, limit) = budget.remaining().unwrap();
        assert_eq!(limit, Overrun::OwnTime);
        assert!(left <= Duration::from_millis(70));
    }

    #[test]
    fn spinning_uses_own_time_and_a_stretched_wall_clock_is_host_busy() {
        let budget = CallBudget::start(Duration::from_millis(20));
        // Spin until this thread has used 25 ms of its own CPU (not 25 ms of
        // wall time: on a loaded machine those differ, which is the point).
        let spin = Instant::now();
        while budget.own() < Duration::from_millis(25) && spin.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(0u64);
        }
        assert_eq!(budget.remaining(), Err(Overrun::OwnTime));

        // Nothing done, but the backstop (deadline + 250 ms here) passed.
        let mut idle = CallBudget::start(Duration::from_millis(20));
        idle.started -= Duration::from_millis(300);
        assert_eq!(idle.remaining(), Err(Overrun::HostBusy));
        // Half the budget used by then: the plugin's overrun after all.
        idle.add_waited(Duration::from_millis(12));
        assert_eq!(idle.remaining(), Err(Overrun::OwnTime));
    }
}
