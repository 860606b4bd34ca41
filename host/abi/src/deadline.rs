//! The per-callback CPU deadline, on top of wasmtime's epoch interruption.
//!
//! The epoch ticker measures wall time, and wall time alone would also kill a healthy callback
//! whose thread merely waited for a core (a loaded or CPU-throttled machine). So the deadline
//! is checked in half-deadline windows: when the first window expires the runtime samples the
//! thread's CPU time; when a later window expires it traps only if the thread actually ran for
//! at least a quarter of that window (a spinning guest always does when scheduled), and in any
//! case after [`MAX_WINDOWS`] windows. An endless loop on an idle machine therefore stops after
//! about one `callback_deadline`; on a starved one, after at most five.
//!
//! Nothing here runs on the fast path: a callback that returns in time never reaches the epoch
//! deadline, and arming it is two stores.

use std::time::Duration;

use wasmtime::{StoreContextMut, Trap, UpdateDeadline};

use crate::state::HostState;

/// Hard cap on windows per callback: 10 half-deadlines = 5 x `callback_deadline`.
pub(crate) const MAX_WINDOWS: u32 = 10;

/// Deadline bookkeeping of the running callback.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// Epoch ticks per window (half the deadline, at least one).
    pub(crate) window_ticks: u64,
    /// Wall length of a window.
    pub(crate) window: Duration,
    /// Windows that expired during the running callback.
    pub(crate) windows: u32,
    /// Thread CPU time when the previous window expired.
    pub(crate) last_cpu: Option<Duration>,
}

impl Deadline {
    pub(crate) fn new(window_ticks: u64, window: Duration) -> Self {
        Self {
            window_ticks,
            window,
            windows: 0,
            last_cpu: None,
        }
    }

    /// Resets the bookkeeping for a new callback.
    #[inline]
    pub(crate) fn arm(&mut self) {
        self.windows = 0;
        self.last_cpu = None;
    }

    /// Decides at a window's end whether the callback is out of time.
    fn expired(&mut self, cpu_now: Option<Duration>) -> bool {
        self.windows += 1;
        if self.windows >= MAX_WINDOWS {
            return true;
        }
        let Some(now) = cpu_now else {
            // No CPU clock: plain wall-time deadline (two windows).
            return self.windows >= 2;
        };
        let ran_enough = self
            .last_cpu
            .is_some_and(|prev| now.saturating_sub(prev) * 4 >= self.window);
        self.last_cpu = Some(now);
        ran_enough
    }
}

/// The store's epoch-deadline callback.
pub(crate) fn on_epoch_deadline(
    mut ctx: StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let deadline = &mut ctx.data_mut().deadline;
    if deadline.expired(thread_cpu_time()) {
        return Err(Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Continue(deadline.window_ticks))
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(10);

    #[test]
    fn a_spinning_callback_expires_after_two_windows() {
        let mut d = Deadline::new(2, W);
        assert!(!d.expired(Some(Duration::from_millis(100))));
        assert!(d.expired(Some(Duration::from_millis(109))));
    }

    #[test]
    fn a_starved_callback_gets_more_windows_up_to_the_cap() {
        let mut d = Deadline::new(2, W);
        let mut cpu = Duration::from_millis(100);
        for _ in 0..MAX_WINDOWS - 1 {
            assert!(!d.expired(Some(cpu)));
            cpu += Duration::from_millis(1); // 10% of a window: waiting for a core
        }
        assert!(d.expired(Some(cpu)));
    }

    #[test]
    fn without_a_cpu_clock_it_is_a_wall_deadline() {
        let mut d = Deadline::new(2, W);
        assert!(!d.expired(None));
        assert!(d.expired(None));
        d.arm();
        assert!(!d.expired(None));
    }

    #[test]
    fn the_cpu_clock_is_readable_here() {
        assert!(thread_cpu_time().is_some());
    }
}
