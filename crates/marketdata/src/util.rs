//! Small exact helpers shared by the modules: rounding divisions, float-to-price rounding and
//! calendar arithmetic (no time-zone database, no wall clock).

use tradestack_model::{Amount, Price, Quantity, fixed::SCALE};

/// `num / den` rounded to the nearest integer, halves away from zero; `None` when `den == 0`.
pub(crate) fn div_round_half_away(num: i128, den: i128) -> Option<i128> {
    if den == 0 {
        return None;
    }
    let q = num / den;
    let r = num % den;
    // Compare 2|r| with |den| without overflow worries: |r| < |den| <= i128::MAX / 2 in practice.
    let twice = r.unsigned_abs().saturating_mul(2);
    if twice >= den.unsigned_abs() {
        // The remainder carries the sign of num; move away from zero.
        if (num < 0) != (den < 0) {
            Some(q - 1)
        } else {
            Some(q + 1)
        }
    } else {
        Some(q)
    }
}

/// Volume-weighted average price `quote_volume / volume`, rounded to the nearest 10^-8
/// (halves away from zero). `None` when the volume is zero or the result does not fit a `Price`.
pub(crate) fn vwap(quote_volume: Amount, volume: Quantity) -> Option<Price> {
    let num = quote_volume.raw().checked_mul(i128::from(SCALE))?;
    let raw = div_round_half_away(num, i128::from(volume.raw()))?;
    i64::try_from(raw).ok().map(Price::from_raw)
}

/// Rounds a model value to the nearest 10^-8 (halves away from zero) as a strictly positive
/// price: non-finite or non-positive values become the smallest price, huge ones saturate.
pub(crate) fn f64_to_price(x: f64) -> Price {
    to_tick(x, 1)
}

/// Rounds a model value to the nearest multiple of `tick_raw` (> 0), at least one tick.
pub(crate) fn to_tick(x: f64, tick_raw: i64) -> Price {
    let tick_raw = tick_raw.max(1);
    if !x.is_finite() || x <= 0.0 {
        return Price::from_raw(tick_raw);
    }
    let ticks = libm::round(x * SCALE as f64 / tick_raw as f64);
    // `as` saturates for out-of-range floats, which is the clamping we want.
    let ticks = (ticks as i64).max(1);
    Price::from_raw(ticks.saturating_mul(tick_raw))
}

pub(crate) use tradestack_model::days_from_civil;

/// True when `day` exists in `month` of `year`.
pub(crate) fn valid_date(year: i64, month: u32, day: u32) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    day >= 1 && day <= days
}

/// Parses a decimal string into raw 10^-8 units, rounding digits beyond the 8th half away
/// from zero (exactly, on the digits). `None` if it is not a plain decimal or overflows.
pub(crate) fn parse_decimal_rounded(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty()) || !digits(int_part) || !digits(frac_part) {
        return None;
    }
    let kept = &frac_part[..frac_part.len().min(8)];
    let mut raw: i128 = 0;
    for b in int_part.bytes().chain(kept.bytes()) {
        raw = raw.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    raw = raw.checked_mul(10i128.pow(8 - kept.len() as u32))?;
    // Any 9th digit of 5 or more rounds the magnitude up; later digits cannot change that.
    if frac_part.as_bytes().get(8).is_some_and(|d| *d >= b'5') {
        raw = raw.checked_add(1)?;
    }
    Some(if neg { -raw } else { raw })
}

/// Parses a non-negative decimal number of seconds ("34200.01746") into exact nanoseconds.
/// At most 9 fractional digits; `None` on anything else or on overflow.
pub(crate) fn parse_seconds_to_nanos(s: &str) -> Option<i64> {
    let (int_part, frac_part) = s.split_once('.').unwrap_or((s, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int_part) || !digits(frac_part) || frac_part.len() > 9 {
        return None;
    }
    let secs: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut frac: i64 = 0;
    for b in frac_part.bytes() {
        frac = frac * 10 + i64::from(b - b'0');
    }
    frac *= 10i64.pow(9 - frac_part.len() as u32);
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_division_is_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 2), Some(3));
        assert_eq!(div_round_half_away(-5, 2), Some(-3));
        assert_eq!(div_round_half_away(4, 3), Some(1));
        assert_eq!(div_round_half_away(5, 3), Some(2));
        assert_eq!(div_round_half_away(-5, 3), Some(-2));
        assert_eq!(div_round_half_away(1, 0), None);
    }

    #[test]
    fn vwap_rounds_to_nearest() {
        // (1 * 1 + 2 * 2) / 3 = 1.666666666... -> 1.66666667
        let v = vwap(Amount::from_units(5), Quantity::from_units(3)).unwrap();
        assert_eq!(v.to_string(), "1.66666667");
        assert_eq!(vwap(Amount::from_units(5), Quantity::ZERO), None);
    }

    #[test]
    fn float_to_price_clamps_and_rounds() {
        assert_eq!(f64_to_price(1.000000005).raw(), 100_000_001);
        assert_eq!(f64_to_price(1.000000004).raw(), 100_000_000);
        assert_eq!(f64_to_price(-3.0).raw(), 1);
        assert_eq!(f64_to_price(f64::NAN).raw(), 1);
        assert_eq!(f64_to_price(1e300).raw(), i64::MAX);
        assert_eq!(to_tick(42_000.26, 50_000_000).to_string(), "42000.5");
        assert_eq!(to_tick(42_000.24, 50_000_000).to_string(), "42000");
        assert_eq!(to_tick(0.01, 50_000_000).to_string(), "0.5");
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2021-12-31 is 18992 days after the epoch (1640908800 / 86400).
        assert_eq!(days_from_civil(2021, 12, 31), 18_992);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert!(valid_date(2024, 2, 29));
        assert!(!valid_date(2023, 2, 29));
        assert!(!valid_date(2023, 13, 1));
    }

    #[test]
    fn decimals_round_beyond_eight_places() {
        assert_eq!(
            parse_decimal_rounded("218102.59507500002"),
            Some(21_810_259_507_500)
        );
        assert_eq!(
            parse_decimal_rounded("380591.00179999997"),
            Some(38_059_100_180_000)
        );
        assert_eq!(parse_decimal_rounded("0.000000005"), Some(1));
        assert_eq!(parse_decimal_rounded("-0.000000005"), Some(-1));
        assert_eq!(parse_decimal_rounded("0.000000004999"), Some(0));
        assert_eq!(parse_decimal_rounded("0.99999999999"), Some(100_000_000));
        assert_eq!(parse_decimal_rounded("12"), Some(1_200_000_000));
        assert_eq!(parse_decimal_rounded("1.5"), Some(150_000_000));
        assert_eq!(parse_decimal_rounded("1e5"), None);
        assert_eq!(parse_decimal_rounded("."), None);
        assert_eq!(parse_decimal_rounded(""), None);
    }

    #[test]
    fn seconds_parse_exactly() {
        assert_eq!(
            parse_seconds_to_nanos("34200.01746"),
            Some(34_200_017_460_000)
        );
        assert_eq!(parse_seconds_to_nanos("1"), Some(1_000_000_000));
        assert_eq!(parse_seconds_to_nanos("0.000000001"), Some(1));
        assert_eq!(parse_seconds_to_nanos("0.0000000001"), None);
        assert_eq!(parse_seconds_to_nanos("-1"), None);
        assert_eq!(parse_seconds_to_nanos("."), None);
        assert_eq!(parse_seconds_to_nanos("1e3"), None);
    }
}
