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

/// The proleptic Gregorian date `(year, month, day)` of a day number
/// (days since 1970-01-01), by Howard Hinnant's civil-from-days.
pub fn civil_from_days(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (days-from-civil).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl UnixNanos {
    /// The UTC time as RFC 3339 to the second, e.g. `2020-02-22T00:00:00Z`.
    pub fn to_rfc3339_secs(self) -> String {
        self.rfc3339(None)
    }

    /// The UTC time as RFC 3339 to the millisecond, e.g. `2020-02-22T00:00:00.250Z`.
    pub fn to_rfc3339_millis(self) -> String {
        self.rfc3339(Some(self.0.div_euclid(1_000_000).rem_euclid(1_000)))
    }

    fn rfc3339(self, millis: Option<i64>) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        let fraction = millis.map_or(String::new(), |ms| format!(".{ms:03}"));
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        )
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

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0 - rhs.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_format() {
        for day in [-719_468, -1, 0, 1, 11_016, 19_782, 47_482] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(UnixNanos(0).to_rfc3339_secs(), "1970-01-01T00:00:00Z");
        assert_eq!(
            UnixNanos(1_709_210_096_000_000_000).to_rfc3339_secs(),
            "2024-02-29T12:34:56Z"
        );
        assert_eq!(UnixNanos(-1).to_rfc3339_secs(), "1969-12-31T23:59:59Z");
    }
}
