//! Fixed-point price, quantity and amount types.
//!
//! Every value is an integer count of 10^-8 units (the "satoshi" scale), so
//! arithmetic is exact and hashing/ordering are trivial. JSON carries them as
//! decimal strings ("42000.5"), the way exchanges do, so no client ever sees a
//! binary float; the binary encoding carries the raw integer.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Decimal places carried by every fixed-point value.
pub const SCALE_DIGITS: u32 = 8;
/// `10^SCALE_DIGITS`: the raw value of one whole unit.
pub const SCALE: i64 = 100_000_000;

/// Why a decimal string could not become a fixed-point value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    /// The text is not a plain decimal number.
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    /// More fractional digits than the 8 the scale holds.
    #[error("more than 8 decimal places: {0:?}")]
    TooPrecise(String),
    /// The value does not fit in the integer range.
    #[error("out of range: {0:?}")]
    Overflow(String),
    /// A negative value where only zero or more is allowed.
    #[error("must not be negative: {0:?}")]
    Negative(String),
}

/// Parses a decimal string into raw units of 10^-8 (no floats involved).
pub fn parse_decimal(s: &str) -> Result<i128, FixedError> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
    {
        return Err(FixedError::Syntax(s.to_string()));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > SCALE_DIGITS as usize {
        return Err(FixedError::TooPrecise(s.to_string()));
    }
    let overflow = || FixedError::Overflow(s.to_string());
    let mut raw: i128 = 0;
    for b in int_part.bytes() {
        raw = raw
            .checked_mul(10)
            .and_then(|r| r.checked_add(i128::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    raw = raw.checked_mul(i128::from(SCALE)).ok_or_else(overflow)?;
    let mut frac: i128 = 0;
    for b in frac_trimmed.bytes() {
        frac = frac * 10 + i128::from(b - b'0');
    }
    frac *= 10i128.pow(SCALE_DIGITS - frac_trimmed.len() as u32);
    raw = raw.checked_add(frac).ok_or_else(overflow)?;
    Ok(if neg { -raw } else { raw })
}

/// Formats raw 10^-8 units as a minimal decimal string ("1.5", "-0.00000001", "3").
pub fn format_decimal(raw: i128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let scale = i128::from(SCALE);
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    let int = abs / scale as u128;
    let frac = abs % scale as u128;
    if frac == 0 {
        write!(f, "{sign}{int}")
    } else {
        let digits = format!("{frac:08}");
        write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
    }
}

macro_rules! fixed_type {
    ($(#[$doc:meta])* $name:ident, $repr:ty, signed = $signed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $repr);

        impl $name {
            /// Zero.
            pub const ZERO: $name = $name(0);
            /// Exactly one whole unit.
            pub const ONE: $name = $name(SCALE as $repr);

            /// Builds a value from its raw count of 10^-8 units.
            pub const fn from_raw(raw: $repr) -> Self {
                $name(raw)
            }
            /// The raw count of 10^-8 units.
            pub const fn raw(self) -> $repr {
                self.0
            }
            /// A whole number of units.
            pub const fn from_units(units: $repr) -> Self {
                $name(units * SCALE as $repr)
            }
            /// True when exactly zero.
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
            /// Checked addition.
            pub fn checked_add(self, rhs: Self) -> Option<Self> {
                self.0.checked_add(rhs.0).map($name)
            }
            /// Checked subtraction.
            pub fn checked_sub(self, rhs: Self) -> Option<Self> {
                self.0.checked_sub(rhs.0).map($name)
            }
            /// True when this value is a whole multiple of `step` (a tick or lot size).
            pub fn is_multiple_of(self, step: Self) -> bool {
                step.0 > 0 && self.0 % step.0 == 0
            }
            /// Rounds toward zero to a multiple of `step`.
            pub fn round_down_to(self, step: Self) -> Self {
                if step.0 <= 0 { self } else { $name(self.0 - self.0 % step.0) }
            }
        }

        impl FromStr for $name {
            type Err = FixedError;
            fn from_str(s: &str) -> Result<Self, FixedError> {
                let raw = parse_decimal(s)?;
                if !$signed && raw < 0 {
                    return Err(FixedError::Negative(s.to_string()));
                }
                <$repr>::try_from(raw)
                    .map($name)
                    .map_err(|_| FixedError::Overflow(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_decimal(i128::from(self.0), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl std::ops::Add for $name {
            type Output = $name;
            fn add(self, rhs: $name) -> $name {
                $name(self.0 + rhs.0)
            }
        }

        impl std::ops::Sub for $name {
            type Output = $name;
            fn sub(self, rhs: $name) -> $name {
                $name(self.0 - rhs.0)
            }
        }

        impl std::ops::AddAssign for $name {
            fn add_assign(&mut self, rhs: $name) {
                self.0 += rhs.0;
            }
        }

        impl std::ops::SubAssign for $name {
            fn sub_assign(&mut self, rhs: $name) {
                self.0 -= rhs.0;
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    struct V;
                    impl Visitor<'_> for V {
                        type Value = $name;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            f.write_str("a decimal number as a string, e.g. \"42000.5\"")
                        }
                        fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                            v.parse().map_err(E::custom)
                        }
                        fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                            v.to_string().parse().map_err(E::custom)
                        }
                        fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                            v.to_string().parse().map_err(E::custom)
                        }
                    }
                    d.deserialize_any(V)
                } else {
                    <$repr>::deserialize(d).map($name)
                }
            }
        }
    };
}

fixed_type!(
    /// A price in quote-asset units per base unit, 8 decimals. May be negative
    /// (spreads, some futures), so validation against an instrument rejects <= 0.
    Price, i64, signed = true
);
fixed_type!(
    /// An order or position size in base-asset units (or contracts), 8 decimals, never negative.
    Quantity, i64, signed = false
);
fixed_type!(
    /// An amount of money of one asset (balances, P&L, fees, notionals), 8 decimals.
    /// i128 so that notionals of large prices times large sizes cannot overflow.
    Amount, i128, signed = true
);

impl Price {
    /// The notional value of `qty` at this price, exact: `price * qty / 10^8`.
    /// Truncates the sub-10^-8 remainder toward zero, which only arises when
    /// both operands carry more than 8 decimals in total.
    pub fn notional(self, qty: Quantity) -> Amount {
        Amount(i128::from(self.0) * i128::from(qty.0) / i128::from(SCALE))
    }
}

impl Quantity {
    /// The smaller of two quantities.
    pub fn min(self, other: Quantity) -> Quantity {
        if self <= other { self } else { other }
    }
}

impl Amount {
    /// Applies a rate in basis points-of-a-basis-point (1e-8 units), rounding toward zero.
    /// `rate` is itself a fixed-point fraction: `Amount::from_raw(10_000)` = 0.0001 = 1 bp.
    pub fn mul_rate(self, rate: Rate) -> Amount {
        Amount(self.0 * i128::from(rate.0) / i128::from(SCALE))
    }
}

impl std::ops::Neg for Amount {
    type Output = Amount;
    fn neg(self) -> Amount {
        Amount(-self.0)
    }
}

fixed_type!(
    /// A dimensionless fraction, 8 decimals: fee rates (0.001 = 10 bp), ratios, pegs.
    Rate, i64, signed = true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        let p: Price = "42000.5".parse().unwrap();
        assert_eq!(p.raw(), 4_200_050_000_000);
        assert_eq!(p.to_string(), "42000.5");
        assert_eq!("0.00000001".parse::<Quantity>().unwrap().raw(), 1);
        assert_eq!("-1.25".parse::<Amount>().unwrap().to_string(), "-1.25");
        assert_eq!("3".parse::<Price>().unwrap().to_string(), "3");
        assert_eq!("1.100000000".parse::<Price>().unwrap().raw(), 110_000_000);
    }

    #[test]
    fn rejects_bad_decimals() {
        assert!(matches!("1e5".parse::<Price>(), Err(FixedError::Syntax(_))));
        assert!(matches!("".parse::<Price>(), Err(FixedError::Syntax(_))));
        assert!(matches!(".".parse::<Price>(), Err(FixedError::Syntax(_))));
        assert!(matches!(
            "0.000000001".parse::<Price>(),
            Err(FixedError::TooPrecise(_))
        ));
        assert!(matches!(
            "-1".parse::<Quantity>(),
            Err(FixedError::Negative(_))
        ));
        assert!(matches!(
            "99999999999999".parse::<Price>(),
            Err(FixedError::Overflow(_))
        ));
    }

    #[test]
    fn notional_is_exact() {
        let p: Price = "42000.12345678".parse().unwrap();
        let q: Quantity = "0.5".parse().unwrap();
        assert_eq!(p.notional(q).to_string(), "21000.06172839");
        let fee = p.notional(q).mul_rate("0.001".parse().unwrap());
        assert_eq!(fee.to_string(), "21.00006172");
    }

    #[test]
    fn json_is_string_binary_is_integer() {
        let p: Price = "101.25".parse().unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"101.25\"");
        assert_eq!(serde_json::from_str::<Price>("\"101.25\"").unwrap(), p);
        assert_eq!(
            serde_json::from_str::<Price>("7").unwrap(),
            Price::from_units(7)
        );
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<Price>(&bytes).unwrap(), p);
    }

    proptest::proptest! {
        #[test]
        fn display_parse_roundtrip(raw in proptest::num::i64::ANY) {
            let p = Price::from_raw(raw);
            proptest::prop_assert_eq!(p.to_string().parse::<Price>().unwrap(), p);
        }
    }
}
