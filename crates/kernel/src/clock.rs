//! Time sources: the wall clock ([`RealClock`]) and a manually driven clock ([`SimClock`]).
//!
//! [`RealClock::now`] is the only place in the kernel that reads the wall clock; everything
//! else asks a [`Clock`], so the same code runs unchanged in simulated time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tradestack_model::{Nanos, UnixNanos};

use crate::error::KernelError;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time in nanoseconds since the Unix epoch.
    fn now(&self) -> UnixNanos;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> UnixNanos {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> UnixNanos {
        (**self).now()
    }
}

/// The wall clock (`SystemTime`). Not monotonic: the OS may step it backwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealClock;

impl RealClock {
    /// Creates a wall-clock handle.
    pub const fn new() -> Self {
        RealClock
    }
}

impl Clock for RealClock {
    fn now(&self) -> UnixNanos {
        // The single wall-clock read of the kernel. Saturates instead of panicking on absurd dates.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => UnixNanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => UnixNanos(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// A simulated clock: a cheaply clonable handle to one shared, monotonic nanosecond counter.
///
/// All clones see the same time. The clock never moves backwards: [`SimClock::set`] with an
/// earlier time returns [`KernelError::ClockBackwards`] and leaves the clock unchanged.
#[derive(Clone, Debug)]
pub struct SimClock {
    nanos: Arc<AtomicI64>,
}

impl SimClock {
    /// Creates a clock reading `start`.
    pub fn new(start: UnixNanos) -> Self {
        SimClock {
            nanos: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// Moves the clock to `t`; setting the current time again is a no-op, an earlier time is an error.
    pub fn set(&self, t: UnixNanos) -> Result<(), KernelError> {
        // fetch_max keeps the clock monotonic even with several writers racing.
        let prev = self.nanos.fetch_max(t.0, Ordering::AcqRel);
        if t.0 < prev {
            return Err(KernelError::ClockBackwards {
                now: UnixNanos(prev),
                requested: t,
            });
        }
        Ok(())
    }

    /// Moves the clock forward by `d` (saturating at the end of time) and returns the new time.
    pub fn advance(&self, d: Nanos) -> Result<UnixNanos, KernelError> {
        if d.0 < 0 {
            return Err(KernelError::NegativeDuration(d));
        }
        let prev = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(d.0))
            })
            // The closure always returns Some, so this arm only exists to satisfy the type.
            .unwrap_or_else(|n| n);
        Ok(UnixNanos(prev.saturating_add(d.0)))
    }

    /// Moves the clock to `t` if `t` is later; used by the scheduler, whose events are already ordered.
    #[inline]
    pub(crate) fn advance_to(&self, t: UnixNanos) {
        // A plain load + store is cheaper than an atomic RMW; the scheduler is the only writer
        // while it runs, and the comparison still refuses to go backwards.
        if self.nanos.load(Ordering::Relaxed) < t.0 {
            self.nanos.store(t.0, Ordering::Release);
        }
    }
}

impl Clock for SimClock {
    #[inline]
    fn now(&self) -> UnixNanos {
        UnixNanos(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_clock_set_and_advance() {
        let c = SimClock::new(UnixNanos(100));
        assert_eq!(c.now(), UnixNanos(100));
        c.set(UnixNanos(150)).expect("forward set");
        assert_eq!(c.now(), UnixNanos(150));
        assert_eq!(c.advance(Nanos(50)).expect("advance"), UnixNanos(200));
        assert_eq!(c.now(), UnixNanos(200));
    }

    #[test]
    fn sim_clock_never_moves_backwards() {
        let c = SimClock::new(UnixNanos(1_000));
        let err = c.set(UnixNanos(999));
        assert!(matches!(err, Err(KernelError::ClockBackwards { .. })));
        assert_eq!(c.now(), UnixNanos(1_000));
        assert!(c.advance(Nanos(-1)).is_err());
        assert_eq!(c.now(), UnixNanos(1_000));
        // Same time is allowed and is a no-op.
        c.set(UnixNanos(1_000)).expect("same time");
        c.advance_to(UnixNanos(10));
        assert_eq!(c.now(), UnixNanos(1_000));
    }

    #[test]
    fn sim_clock_clones_share_time() {
        let a = SimClock::new(UnixNanos::ZERO);
        let b = a.clone();
        a.advance(Nanos::SECOND).expect("advance");
        assert_eq!(b.now(), UnixNanos::from_secs(1));
    }

    #[test]
    fn sim_clock_advance_saturates() {
        let c = SimClock::new(UnixNanos(i64::MAX - 1));
        assert_eq!(c.advance(Nanos(10)).expect("advance"), UnixNanos(i64::MAX));
    }

    #[test]
    fn real_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z; a sanity check that the unit is nanoseconds.
        assert!(RealClock.now() > UnixNanos::from_secs(1_577_836_800));
    }
}
