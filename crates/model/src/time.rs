//! Integer-nanosecond timestamps and durations.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// Nanoseconds since the Unix epoch (UTC). Signed so that differences are cheap.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixNanos(pub i64);

/// A span of simulated or real time in nanoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub i64);

impl UnixNanos {
    /// The epoch itself.
    pub const ZERO: UnixNanos = UnixNanos(0);
    /// The raw nanosecond count.
    pub const fn as_i64(self) -> i64 {
        self.0
    }
    /// Whole milliseconds since the epoch (floor).
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
    /// Builds a timestamp from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        UnixNanos(ms * 1_000_000)
    }
    /// Builds a timestamp from microseconds since the epoch.
    pub const fn from_micros(us: i64) -> Self {
        UnixNanos(us * 1_000)
    }
    /// Builds a timestamp from seconds since the epoch.
    pub const fn from_secs(s: i64) -> Self {
        UnixNanos(s * 1_000_000_000)
    }
    /// Time elapsed since `earlier`, saturating at zero.
    pub fn saturating_since(self, earlier: UnixNanos) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0).max(0))
    }
}

impl Nanos {
    /// Zero length.
    pub const ZERO: Nanos = Nanos(0);
    /// One microsecond.
    pub const MICROSECOND: Nanos = Nanos(1_000);
    /// One millisecond.
    pub const MILLISECOND: Nanos = Nanos(1_000_000);
    /// One second.
    pub const SECOND: Nanos = Nanos(1_000_000_000);
    /// One minute.
    pub const MINUTE: Nanos = Nanos(60 * 1_000_000_000);
    /// One hour.
    pub const HOUR: Nanos = Nanos(3_600 * 1_000_000_000);
    /// One day.
    pub const DAY: Nanos = Nanos(86_400 * 1_000_000_000);

    /// Whole seconds.
    pub const fn from_secs(s: i64) -> Self {
        Nanos(s * 1_000_000_000)
    }
    /// Whole milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Nanos(ms * 1_000_000)
    }
    /// Converts to a std duration (negative spans become zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.max(0) as u64)
    }
    /// Converts from a std duration, saturating at `i64::MAX` nanoseconds.
    pub fn from_std(d: std::time::Duration) -> Self {
        Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl Add<Nanos> for UnixNanos {
    type Output = UnixNanos;
    fn add(self, rhs: Nanos) -> UnixNanos {
        UnixNanos(self.0 + rhs.0)
    }
}

impl AddAssign<Nanos> for UnixNanos {
    fn add_assign(&mut self, rhs: Nanos) {
        self.0 += rhs.0;
    }
}

impl Sub<Nanos> for UnixNanos {
    type Output = UnixNanos;
    fn sub(self, rhs: Nanos) -> UnixNanos {
        UnixNanos(self.0 - rhs.0)
    }
}

impl Sub for UnixNanos {
    type Output = Nanos;
    fn sub(self, rhs: UnixNanos) -> Nanos {
        Nanos(self.0 - rhs.0)
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0 + rhs.0)
    }
}

impl fmt::Display for UnixNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}
