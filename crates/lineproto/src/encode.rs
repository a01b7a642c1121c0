//! The encoder: [`Line`] to line-protocol text with correct escaping.

use std::fmt;

use crate::float;
use crate::line::{FieldValue, Line};
use crate::precision::Precision;

/// Which name of a line failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The measurement.
    Measurement,
    /// A tag key.
    TagKey,
    /// A tag value.
    TagValue,
    /// A field key.
    FieldKey,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Measurement => "measurement",
            NameKind::TagKey => "tag key",
            NameKind::TagValue => "tag value",
            NameKind::FieldKey => "field key",
        })
    }
}

/// Why a [`Line`] cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A name or tag value cannot be represented (see `reason`).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which part of the line.
        what: NameKind,
        /// The offending text.
        value: String,
        /// Why it cannot be encoded.
        reason: &'static str,
    },
    /// Two tags share a key, which parsers reject.
    #[error("duplicate tag key {0:?}")]
    DuplicateTag(String),
    /// The line has no fields; line protocol requires at least one.
    #[error("line has no fields")]
    NoFields,
    /// A float field is NaN or infinite, which line protocol cannot express.
    #[error("field {0:?} has a non-finite float value")]
    NonFiniteFloat(String),
}

/// Appends `line` plus a trailing `\n` to `out`; on error `out` is left unchanged.
///
/// Tags and fields are written in the order given. The timestamp, if any, is
/// written in `precision` units (rounded down).
pub fn encode_line(
    line: &Line<'_>,
    precision: Precision,
    out: &mut String,
) -> Result<(), EncodeError> {
    validate(line)?;
    out.reserve(64);
    write_escaped(out, &line.measurement, |c| c == b' ' || c == b',');
    for (key, value) in &line.tags {
        out.push(',');
        write_escaped(out, key, is_key_escape);
        out.push('=');
        write_escaped(out, value, is_key_escape);
    }
    for (i, (key, value)) in line.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        write_escaped(out, key, is_key_escape);
        out.push('=');
        match value {
            FieldValue::Float(v) => float::format(*v, out),
            FieldValue::Integer(v) => {
                push_i64(out, *v);
                out.push('i');
            }
            FieldValue::UInteger(v) => {
                push_u64(out, *v);
                out.push('u');
            }
            FieldValue::Boolean(v) => out.push_str(if *v { "true" } else { "false" }),
            FieldValue::String(s) => {
                out.push('"');
                write_escaped(out, s, |c| c == b'"' || c == b'\\');
                out.push('"');
            }
        }
    }
    if let Some(ns) = line.timestamp {
        out.push(' ');
        push_i64(out, precision.from_nanos(ns));
    }
    out.push('\n');
    Ok(())
}

/// Reusable buffer that encodes a batch of lines.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    buf: String,
    precision: Precision,
}

impl Encoder {
    /// Creates an empty encoder writing timestamps in `precision` units.
    pub fn new(precision: Precision) -> Self {
        Encoder {
            buf: String::new(),
            precision,
        }
    }

    /// Appends one line; a line that cannot be encoded is skipped and reported.
    pub fn push(&mut self, line: &Line<'_>) -> Result<(), EncodeError> {
        encode_line(line, self.precision, &mut self.buf)
    }

    /// The text encoded so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// Empties the buffer, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Takes the encoded text.
    pub fn into_string(self) -> String {
        self.buf
    }
}

/// Appends a decimal integer without going through `fmt`.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

fn is_key_escape(c: u8) -> bool {
    c == b' ' || c == b',' || c == b'='
}

/// Writes `s`, prefixing each byte matching `escape` with a backslash.
#[inline]
fn write_escaped(out: &mut String, s: &str, escape: impl Fn(u8) -> bool) {
    let mut from = 0;
    for (i, c) in s.bytes().enumerate() {
        if escape(c) {
            out.push_str(&s[from..i]);
            out.push('\\');
            from = i;
        }
    }
    out.push_str(&s[from..]);
}

/// Checks that every part can be written so that it parses back unchanged.
fn validate(line: &Line<'_>) -> Result<(), EncodeError> {
    check_name(NameKind::Measurement, &line.measurement)?;
    if line.measurement.starts_with('#') {
        return Err(invalid(
            NameKind::Measurement,
            &line.measurement,
            "would read back as a comment",
        ));
    }
    for (i, (key, value)) in line.tags.iter().enumerate() {
        check_name(NameKind::TagKey, key)?;
        check_name(NameKind::TagValue, value)?;
        if line.tags[..i].iter().any(|(other, _)| other == key) {
            return Err(EncodeError::DuplicateTag(key.to_string()));
        }
    }
    if line.fields.is_empty() {
        return Err(EncodeError::NoFields);
    }
    for (key, value) in &line.fields {
        check_name(NameKind::FieldKey, key)?;
        if let FieldValue::Float(v) = value
            && !v.is_finite()
        {
            return Err(EncodeError::NonFiniteFloat(key.to_string()));
        }
    }
    Ok(())
}

fn check_name(what: NameKind, s: &str) -> Result<(), EncodeError> {
    if s.is_empty() {
        return Err(invalid(what, s, "empty"));
    }
    if s.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err(invalid(what, s, "contains a control character"));
    }
    // `\` before the following separator would read back as an escape.
    if s.ends_with('\\') {
        return Err(invalid(what, s, "ends with a backslash"));
    }
    Ok(())
}

#[cold]
fn invalid(what: NameKind, value: &str, reason: &'static str) -> EncodeError {
    EncodeError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(line: &Line<'_>) -> Result<String, EncodeError> {
        let mut out = String::new();
        encode_line(line, Precision::Nanoseconds, &mut out).map(|()| out)
    }

    #[test]
    fn escapes_every_part() {
        let line = Line::new("cpu load,x=y")
            .with_tag("ta g,=", "v a,l=")
            .with_field("f i,=", FieldValue::String(r#"say "hi" \o/"#.into()))
            .with_field("n", FieldValue::Integer(-3))
            .with_field("u", FieldValue::UInteger(u64::MAX))
            .with_field("m", FieldValue::Integer(i64::MIN))
            .with_field("b", FieldValue::Boolean(true))
            .with_field("x", FieldValue::Float(1.5))
            .with_timestamp(7);
        assert_eq!(
            enc(&line).unwrap(),
            "cpu\\ load\\,x=y,ta\\ g\\,\\==v\\ a\\,l\\= f\\ i\\,\\==\"say \\\"hi\\\" \\\\o/\",n=-3i,u=18446744073709551615u,m=-9223372036854775808i,b=true,x=1.5 7\n"
        );
    }

    #[test]
    fn rejects_what_cannot_round_trip() {
        let ok = |l: Line<'static>| l.with_field("v", FieldValue::Float(1.0));
        assert!(matches!(enc(&Line::new("m")), Err(EncodeError::NoFields)));
        assert!(enc(&ok(Line::new(""))).is_err());
        assert!(enc(&ok(Line::new("#m"))).is_err());
        assert!(enc(&ok(Line::new("m\\"))).is_err());
        assert!(enc(&ok(Line::new("m\n"))).is_err());
        assert!(enc(&ok(Line::new("m").with_tag("k", ""))).is_err());
        assert!(matches!(
            enc(&ok(Line::new("m").with_tag("k", "a").with_tag("k", "b"))),
            Err(EncodeError::DuplicateTag(_))
        ));
        let nan = Line::new("m").with_field("v", FieldValue::Float(f64::NAN));
        assert_eq!(enc(&nan), Err(EncodeError::NonFiniteFloat("v".into())));
    }

    #[test]
    fn encoder_keeps_good_lines_and_scales_timestamps() {
        let mut e = Encoder::new(Precision::Milliseconds);
        e.push(
            &Line::new("a")
                .with_field("v", FieldValue::Boolean(false))
                .with_timestamp(1_999_999),
        )
        .unwrap();
        assert!(e.push(&Line::new("b")).is_err());
        e.push(&Line::new("c").with_field("v", FieldValue::Float(1e6)))
            .unwrap();
        assert_eq!(e.as_str(), "a v=false 1\nc v=1e+06\n");
    }
}
