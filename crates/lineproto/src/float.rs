//! Float field values: strict decimal parsing and shortest round-trip output.

use std::fmt::Write as _;

use crate::error::ValueType;
use crate::parse::ValueError;

const SYNTAX: ValueError = ValueError::Syntax(ValueType::Float);
const RANGE: ValueError = ValueError::Range(ValueType::Float);

/// Powers of ten that `f64` holds exactly (for the fast path).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses `-?(d+[.d*]|.d+)([eE][+-]?d+)?`; no `inf`, `nan`, hex or `_` separators.
///
/// Finite input that rounds to infinity is a range error, as upstream.
#[inline]
pub(crate) fn parse(token: &[u8]) -> Result<f64, ValueError> {
    let len = token.len();
    let mut i = usize::from(token.first() == Some(&b'-'));
    let negative = i == 1;

    // Mantissa: collect up to 19 digits exactly for the fast path.
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0i64;
    let mut int_len = 0;
    while i < len && token[i].is_ascii_digit() {
        mantissa = mantissa
            .wrapping_mul(10)
            .wrapping_add(u64::from(token[i] - b'0'));
        digits += 1;
        int_len += 1;
        i += 1;
    }
    let mut frac_len = 0;
    if i < len && token[i] == b'.' {
        i += 1;
        while i < len && token[i].is_ascii_digit() {
            mantissa = mantissa
                .wrapping_mul(10)
                .wrapping_add(u64::from(token[i] - b'0'));
            digits += 1;
            frac_len += 1;
            frac_digits += 1;
            i += 1;
        }
    }
    if int_len + frac_len == 0 {
        return Err(SYNTAX);
    }
    let mut exponent: i64 = 0;
    if i < len && (token[i] == b'e' || token[i] == b'E') {
        i += 1;
        let exp_negative = match token.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        while i < len && token[i].is_ascii_digit() {
            // Saturate: anything this large is already zero or infinity.
            exponent = (exponent * 10 + i64::from(token[i] - b'0')).min(1 << 40);
            i += 1;
        }
        if i == exp_start {
            return Err(SYNTAX);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != len {
        return Err(SYNTAX);
    }

    // Clinger's fast path: an exact mantissa times an exact power of ten rounds once.
    let scale = exponent - frac_digits;
    let value = if digits <= 15 && (-22..=22).contains(&scale) {
        let m = mantissa as f64;
        if scale >= 0 {
            m * POW10[scale as usize]
        } else {
            m / POW10[(-scale) as usize]
        }
    } else {
        // The token is validated ASCII; the standard library rounds correctly.
        let text = std::str::from_utf8(token).map_err(|_| SYNTAX)?;
        let v: f64 = text.parse().map_err(|_| SYNTAX)?;
        if v.is_infinite() {
            return Err(RANGE);
        }
        return Ok(v);
    };
    Ok(if negative { -value } else { value })
}

/// Appends `v` the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` does.
///
/// Shortest digits that round-trip; exponent form when the decimal exponent is
/// below -4 or at least 6 (`6.632243e+06`), which is what upstream encoders emit.
pub(crate) fn format(v: f64, out: &mut String) {
    // `{:e}` gives the shortest round-trip digits, e.g. "-6.632243e6"; a stack
    // buffer keeps this allocation-free (the longest form is 24 bytes).
    let mut buf = StackBuf::default();
    let _ = write!(buf, "{v:e}");
    let sci = buf.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    // Digits without the point: first digit, then the fraction digits.
    let (first, rest) = mantissa.split_at(1);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let digit_count = 1 + rest.len();
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        out.push_str(first);
        if digit_count <= int_len {
            out.push_str(rest);
            out.extend(std::iter::repeat_n('0', int_len - digit_count));
        } else {
            out.push_str(&rest[..int_len - 1]);
            out.push('.');
            out.push_str(&rest[int_len - 1..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(first);
        out.push_str(rest);
    }
}

/// Fixed-size `fmt::Write` target for formatting one float.
#[derive(Default)]
struct StackBuf {
    bytes: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dest = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: f64) -> String {
        let mut s = String::new();
        format(v, &mut s);
        s
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(fmt(1.0), "1");
        assert_eq!(fmt(42.0), "42");
        assert_eq!(fmt(-0.64), "-0.64");
        assert_eq!(fmt(12.123), "12.123");
        assert_eq!(fmt(100000.0), "100000");
        assert_eq!(fmt(6632243.0), "6.632243e+06");
        assert_eq!(fmt(1e6), "1e+06");
        assert_eq!(fmt(0.0001), "0.0001");
        assert_eq!(fmt(0.00001), "1e-05");
        assert_eq!(fmt(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(fmt(5e-324), "5e-324");
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(-0.0), "-0");
        assert_eq!(fmt(42000.5), "42000.5");
    }

    #[test]
    fn parses_decimal_syntax() {
        for (s, v) in [
            ("1", 1.0),
            ("-0.5", -0.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("1.0e+2", 100.0),
            ("0.1", 0.1),
            ("42000.5", 42000.5),
            ("12345678901234567890", 12345678901234567890.0),
            ("1e-400", 0.0),
        ] {
            assert_eq!(parse(s.as_bytes()).ok(), Some(v), "{s}");
        }
        for s in [
            "", "-", ".", "1e", "1e+", "1.2.3", "--1", "1x", "inf", "-inf", "nan", "0x10", "1_0",
            "+1",
        ] {
            assert!(
                matches!(parse(s.as_bytes()), Err(ValueError::Syntax(_))),
                "{s}"
            );
        }
        assert!(matches!(parse(b"1e400"), Err(ValueError::Range(_))));
    }

    #[test]
    fn fast_path_matches_std() {
        for s in [
            "0.0123",
            "42000.5",
            "1.7976931348623157",
            "3.14159265358979",
            "-987654.321e-10",
            "9007199254740993",
        ] {
            assert_eq!(parse(s.as_bytes()).ok(), s.parse::<f64>().ok(), "{s}");
        }
    }
}
