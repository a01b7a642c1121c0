//! Replay pacing: when, relative to the start of a replay, each recorded event is due.
//!
//! Pure arithmetic on integer nanoseconds: the caller (the bus integration) owns the clock and
//! does the waiting. `delay = (event − first) / speed`, rounded down to the nanosecond, so
//! delays never decrease along a time-ordered stream; events recorded before `first` are due
//! at once.

use serde::{Deserialize, Serialize};
use tradestack_model::{Nanos, Rate, UnixNanos, fixed::SCALE};

/// How fast a replay runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    /// As fast as possible: simulated time, every delay is zero.
    Max,
    /// At the recorded pace.
    Realtime,
    /// At `n` times the recorded pace (a fixed-point factor, e.g. `"10"` or `"0.5"`), > 0.
    Multiple(Rate),
}

impl std::str::FromStr for Speed {
    type Err = PacingError;

    /// `max`, `realtime`, or a multiple such as `10x` or `0.5x`.
    fn from_str(s: &str) -> Result<Speed, PacingError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "max" => Ok(Speed::Max),
            "realtime" | "1x" => Ok(Speed::Realtime),
            _ => {
                let n = t
                    .strip_suffix('x')
                    .and_then(|n| n.parse::<Rate>().ok())
                    .ok_or_else(|| PacingError::Unparsable(s.to_string()))?;
                if n.raw() <= 0 {
                    return Err(PacingError::NonPositiveMultiple(n));
                }
                Ok(Speed::Multiple(n))
            }
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Realtime => f.write_str("realtime"),
            Speed::Multiple(n) => write!(f, "{n}x"),
        }
    }
}

/// Why a pace cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacingError {
    /// Not `max`, `realtime` or a multiple like `10x`.
    #[error("speed {0:?} is not max, realtime or a multiple like 10x")]
    Unparsable(String),
    /// A multiple of zero or less.
    #[error("replay speed multiple must be positive, got {0}")]
    NonPositiveMultiple(Rate),
}

/// The delay from the replay start at which an event at `event` is due, when the first event
/// is at `first` (see the module docs).
pub fn replay_delay(
    first: UnixNanos,
    event: UnixNanos,
    speed: Speed,
) -> Result<Nanos, PacingError> {
    let elapsed = i128::from(event.0.saturating_sub(first.0).max(0));
    match speed {
        Speed::Max => Ok(Nanos::ZERO),
        Speed::Realtime => Ok(Nanos(elapsed as i64)),
        Speed::Multiple(m) if m.raw() <= 0 => Err(PacingError::NonPositiveMultiple(m)),
        Speed::Multiple(m) => {
            // elapsed / (raw / 10^8), in i128 so the product cannot overflow.
            let ns = elapsed * i128::from(SCALE) / i128::from(m.raw());
            Ok(Nanos(i64::try_from(ns).unwrap_or(i64::MAX)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn speeds_parse_and_print() {
        assert_eq!("max".parse(), Ok(Speed::Max));
        assert_eq!("Realtime".parse(), Ok(Speed::Realtime));
        assert_eq!("10x".parse(), Ok(Speed::Multiple(rate("10"))));
        assert_eq!("0.5x".parse::<Speed>().unwrap().to_string(), "0.5x");
        assert!("0x".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
        assert!("10".parse::<Speed>().is_err());
    }

    #[test]
    fn delays_follow_the_speed() {
        let first = UnixNanos::from_secs(1_000);
        let ev = first + Nanos::from_secs(10);
        assert_eq!(replay_delay(first, ev, Speed::Max), Ok(Nanos::ZERO));
        assert_eq!(
            replay_delay(first, ev, Speed::Realtime),
            Ok(Nanos::from_secs(10))
        );
        assert_eq!(
            replay_delay(first, ev, Speed::Multiple(rate("10"))),
            Ok(Nanos::from_secs(1))
        );
        assert_eq!(
            replay_delay(first, ev, Speed::Multiple(rate("0.5"))),
            Ok(Nanos::from_secs(20))
        );
        // 10 s / 3 = 3.333333333 s, rounded down.
        assert_eq!(
            replay_delay(first, ev, Speed::Multiple(rate("3"))),
            Ok(Nanos(3_333_333_333))
        );
        // Before the first event: due at once.
        assert_eq!(
            replay_delay(first, UnixNanos::from_secs(999), Speed::Realtime),
            Ok(Nanos::ZERO)
        );
        assert_eq!(
            replay_delay(first, ev, Speed::Multiple(Rate::ZERO)),
            Err(PacingError::NonPositiveMultiple(Rate::ZERO))
        );
        // Extreme spans and tiny multiples saturate instead of overflowing.
        assert_eq!(
            replay_delay(
                UnixNanos(i64::MIN),
                UnixNanos(i64::MAX),
                Speed::Multiple(Rate::from_raw(1))
            ),
            Ok(Nanos(i64::MAX))
        );
    }

    #[test]
    fn speed_reads_from_config() {
        #[derive(Deserialize)]
        struct C {
            speed: Speed,
        }
        let c: C = toml::from_str("speed = \"realtime\"").unwrap();
        assert_eq!(c.speed, Speed::Realtime);
        let c: C = toml::from_str("speed = { multiple = \"2.5\" }").unwrap();
        assert_eq!(c.speed, Speed::Multiple(rate("2.5")));
    }

    proptest::proptest! {
        #[test]
        fn delays_are_monotone(
            first in -1_000_000_000_000i64..1_000_000_000_000,
            mut a in 0i64..1_000_000_000_000,
            mut b in 0i64..1_000_000_000_000,
            m in 1i64..10_000_000_000,
        ) {
            if a > b { std::mem::swap(&mut a, &mut b); }
            for speed in [Speed::Max, Speed::Realtime, Speed::Multiple(Rate::from_raw(m))] {
                let da = replay_delay(UnixNanos(first), UnixNanos(first + a), speed).unwrap();
                let db = replay_delay(UnixNanos(first), UnixNanos(first + b), speed).unwrap();
                proptest::prop_assert!(da <= db);
            }
        }
    }
}
