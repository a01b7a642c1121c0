//! Timestamp precision.

use std::fmt;
use std::str::FromStr;

/// Unit of the timestamps written in the input (or to write on output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Nanoseconds (`n`, `ns`), the line-protocol default.
    #[default]
    Nanoseconds,
    /// Microseconds (`u`, `us`, `µs`).
    Microseconds,
    /// Milliseconds (`ms`).
    Milliseconds,
    /// Seconds (`s`).
    Seconds,
    /// Minutes (`m`).
    Minutes,
    /// Hours (`h`).
    Hours,
}

impl Precision {
    /// Number of nanoseconds in one unit of this precision.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// Converts a timestamp in this unit to nanoseconds; `None` on overflow.
    pub const fn to_nanos(self, value: i64) -> Option<i64> {
        value.checked_mul(self.nanos_per_unit())
    }

    /// Rounds nanoseconds down to a whole unit (towards minus infinity); `None` on overflow.
    pub const fn truncate_nanos(self, nanos: i64) -> Option<i64> {
        nanos.checked_sub(nanos.rem_euclid(self.nanos_per_unit()))
    }

    /// Converts nanoseconds to whole units of this precision, rounding down.
    pub const fn from_nanos(self, nanos: i64) -> i64 {
        nanos.div_euclid(self.nanos_per_unit())
    }

    /// The short name used by InfluxDB's `precision=` parameter.
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?} (expected n, ns, u, us, µs, ms, s, m or h)")]
pub struct ParsePrecisionError(pub String);

impl FromStr for Precision {
    type Err = ParsePrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return Err(ParsePrecisionError(s.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
            Precision::Minutes,
            Precision::Hours,
        ] {
            assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        }
        assert_eq!("n".parse(), Ok(Precision::Nanoseconds));
        assert_eq!("u".parse(), Ok(Precision::Microseconds));
        assert_eq!("µs".parse(), Ok(Precision::Microseconds));
        assert!("sec".parse::<Precision>().is_err());
    }

    #[test]
    fn scaling_is_checked() {
        assert_eq!(Precision::Hours.to_nanos(1), Some(3_600_000_000_000));
        assert_eq!(Precision::Seconds.to_nanos(i64::MAX / 10), None);
        assert_eq!(Precision::Seconds.truncate_nanos(-1), Some(-1_000_000_000));
        assert_eq!(Precision::Hours.truncate_nanos(i64::MIN), None);
        assert_eq!(Precision::Seconds.from_nanos(1_999_999_999), 1);
    }
}
