//! The decoder: a byte-level state machine over a whole batch.
//!
//! Lines are not pre-split on `\n` because string field values may contain raw
//! newlines; instead the cursor walks the batch and, after an error, skips to
//! the next newline so the following line is parsed afresh.

use std::borrow::Cow;

use crate::error::{ErrorKind, LineError, Section, ValueType};
use crate::float;
use crate::line::{FieldValue, Line};
use crate::precision::Precision;

// Byte classes, one bit each, looked up in `CLASS`.
const MEASUREMENT: u8 = 1 << 0;
const KEY: u8 = 1 << 1;
const TAG_VALUE: u8 = 1 << 2;
const FIELD_VALUE: u8 = 1 << 3;
const COMMENT: u8 = 1 << 4;
const TIME: u8 = 1 << 5;
const NOT_EOL: u8 = 1 << 6;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let control = c < 0x20 || c == 0x7f;
        let space = c == b' ' || c == b'\r' || c == b'\n';
        // Backslash is left out of the token classes so the scan loop stops
        // on it and handles escapes off the fast path.
        let backslash = c == b'\\';
        let mut bits = 0;
        if !(control || backslash || c == b',' || c == b' ') {
            bits |= MEASUREMENT;
        }
        if !(control || backslash || space || c == b',' || c == b'=') {
            bits |= KEY;
        }
        // Tag values may hold other control bytes (the corpus accepts them).
        if !(backslash || space || c == b',' || c == b'=') {
            bits |= TAG_VALUE;
        }
        if !(space || c == b',') {
            bits |= FIELD_VALUE;
        }
        if !control {
            bits |= COMMENT;
        }
        if c == b'-' || c.is_ascii_digit() {
            bits |= TIME;
        }
        if c != b'\r' && c != b'\n' {
            bits |= NOT_EOL;
        }
        table[i] = bits;
        i += 1;
    }
    table
}

/// Which bytes a backslash may escape in a token.
#[derive(Clone, Copy)]
enum Escapes {
    /// Measurement: `\ ` and `\,`.
    Measurement,
    /// Tag keys, tag values and field keys: `\ `, `\,` and `\=`.
    Key,
}

impl Escapes {
    #[inline]
    fn allows(self, c: u8) -> bool {
        match self {
            Escapes::Measurement => c == b' ' || c == b',',
            Escapes::Key => c == b' ' || c == b',' || c == b'=',
        }
    }
}

/// Internal error type: boxed so the hot path moves small `Result`s.
type Failure = Box<LineError>;

/// Options for one parse: timestamp unit and the default timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Unit of the timestamps in the input.
    pub precision: Precision,
    /// Nanosecond timestamp for lines without one (rounded down to `precision`).
    pub default_timestamp: Option<i64>,
}

impl ParseOptions {
    /// Options with the given precision and no default timestamp.
    pub const fn new(precision: Precision) -> Self {
        ParseOptions {
            precision,
            default_timestamp: None,
        }
    }

    /// Sets the nanosecond timestamp used for lines that have none.
    pub const fn with_default_timestamp(mut self, nanos: i64) -> Self {
        self.default_timestamp = Some(nanos);
        self
    }
}

/// Parses every line of `input`, calling `each` for each good line; returns the bad lines' errors.
///
/// The [`Line`] passed to `each` is reused between calls, so steady-state
/// parsing does not allocate unless a token holds escapes.
pub fn parse_batch<'a>(
    input: &'a [u8],
    options: &ParseOptions,
    mut each: impl FnMut(&Line<'a>),
) -> Vec<LineError> {
    let mut parser = Parser::new(input, options);
    let mut line = Line::default();
    let mut errors = Vec::new();
    while let Some(result) = parser.next_into(&mut line) {
        match result {
            Ok(()) => each(&line),
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// Streaming parser over one batch; also an iterator of per-line results.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    buf: &'a [u8],
    /// The longest valid UTF-8 prefix of `buf`: tokens inside it need no re-validation.
    text: &'a str,
    pos: usize,
    /// 1-based line number of `pos`.
    line: usize,
    /// Line on which the most recent entry started.
    entry_line: usize,
    precision: Precision,
    /// Default timestamp already rounded to the precision; `Err` if that overflowed.
    default_timestamp: Result<Option<i64>, ()>,
}

impl<'a> Parser<'a> {
    /// Starts parsing `input` with the given options.
    pub fn new(input: &'a [u8], options: &ParseOptions) -> Self {
        let default_timestamp = match options.default_timestamp {
            None => Ok(None),
            Some(ns) => options.precision.truncate_nanos(ns).map(Some).ok_or(()),
        };
        // One validation pass for the whole batch beats one per token.
        let text = match std::str::from_utf8(input) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
        };
        Parser {
            buf: input,
            text,
            pos: 0,
            line: 1,
            entry_line: 0,
            precision: options.precision,
            default_timestamp,
        }
    }

    /// Parses the next non-blank line into `out`, reusing its buffers; `None` at end of input.
    ///
    /// On error `out` holds whatever was parsed before the error and must not be used.
    pub fn next_into(&mut self, out: &mut Line<'a>) -> Option<Result<(), LineError>> {
        if !self.skip_blank_lines() {
            return None;
        }
        out.clear();
        self.entry_line = self.line;
        let result = self.entry(out);
        if result.is_err() {
            self.skip_rest_of_line();
        }
        Some(result.map_err(|e| *e))
    }

    /// 1-based line on which the entry last returned by `next_into`/`next` started (0 before any).
    ///
    /// Lets callers that reject a well-formed line (say, a schema clash) report where it was.
    pub fn last_line(&self) -> usize {
        self.entry_line
    }

    /// Skips blank lines, comments and leading spaces; false at end of input.
    fn skip_blank_lines(&mut self) -> bool {
        loop {
            let line_begin = self.pos;
            self.skip_spaces();
            match self.peek() {
                None => return false,
                Some(b'#') => {
                    self.pos += 1;
                    self.take(COMMENT);
                    if !self.take_eol() {
                        // A control byte in the comment: let the entry parser report it.
                        self.pos = line_begin;
                        self.skip_spaces();
                        return true;
                    }
                }
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'\r') => {
                    if !self.take_eol() {
                        return true;
                    }
                }
                Some(_) => return true,
            }
        }
    }

    /// Parses one entry starting at `self.pos` (not blank, not at end of input).
    fn entry(&mut self, out: &mut Line<'a>) -> Result<(), Failure> {
        let start = self.pos;
        out.measurement =
            self.take_escaped(MEASUREMENT, Escapes::Measurement, Section::Measurement)?;
        if out.measurement.is_empty() {
            let c = self.peek().unwrap_or(0);
            return Err(self.error(self.pos, ErrorKind::InvalidMeasurementStart(c)));
        }
        if self.buf[start] == b'#' {
            return Err(self.error(start, ErrorKind::InvalidComment));
        }
        self.tag_comma()?;
        self.tags(out)?;
        if has_duplicate_key(&out.tags) {
            let key = first_duplicate(&out.tags);
            return Err(self.error(start, ErrorKind::DuplicateTag(key)));
        }
        if self.fields(out)? {
            self.timestamp(out)?;
        } else {
            out.timestamp = self.default_timestamp(start)?;
        }
        Ok(())
    }

    /// Parses `,key=value` pairs up to the space before the fields.
    fn tags(&mut self, out: &mut Line<'a>) -> Result<(), Failure> {
        loop {
            if self.peek() == Some(b' ') {
                self.skip_spaces();
                return Ok(());
            }
            let key_start = self.pos;
            let key = self.take_escaped(KEY, Escapes::Key, Section::TagKey)?;
            match self.peek() {
                Some(b'=') if !key.is_empty() => self.pos += 1,
                None => return Err(self.error(key_start, ErrorKind::UnexpectedEnd)),
                Some(c) if key.is_empty() => {
                    return Err(self.error(key_start, ErrorKind::ExpectedTagOrField(c)));
                }
                Some(c) => {
                    let kind = ErrorKind::MissingTagEquals {
                        key: key.into_owned(),
                        found: c,
                    };
                    return Err(self.error(key_start, kind));
                }
            }
            let value_start = self.pos;
            let value = self.take_escaped(TAG_VALUE, Escapes::Key, Section::TagValue)?;
            if value.is_empty() {
                return Err(self.error(value_start, ErrorKind::MissingTagValue(key.into_owned())));
            }
            out.tags.push((key, value));
            if self.pos == self.buf.len() {
                // No fields follow; the field parser reports it.
                return Ok(());
            }
            self.tag_comma()?;
        }
    }

    /// Consumes a comma that introduces a tag, checking a key follows it.
    fn tag_comma(&mut self) -> Result<(), Failure> {
        if self.peek() != Some(b',') {
            return Ok(());
        }
        self.pos += 1;
        match self.peek() {
            None | Some(b' ' | b'\r' | b'\n') => {
                Err(self.error(self.pos, ErrorKind::MissingTagKey))
            }
            Some(_) => Ok(()),
        }
    }

    /// Parses the field set; true if a timestamp follows on the same line.
    fn fields(&mut self, out: &mut Line<'a>) -> Result<bool, Failure> {
        loop {
            let key_start = self.pos;
            let key = self.take_escaped(KEY, Escapes::Key, Section::FieldKey)?;
            if key.is_empty() {
                let kind = match self.peek() {
                    None => ErrorKind::MissingFields,
                    Some(c) => ErrorKind::InvalidFieldKey(c),
                };
                return Err(self.error(key_start, kind));
            }
            match self.peek() {
                Some(b'=') => self.pos += 1,
                found => {
                    let kind = ErrorKind::MissingFieldEquals {
                        key: key.into_owned(),
                        found,
                    };
                    return Err(self.error(self.pos, kind));
                }
            }
            let value = self.field_value(&key)?;
            let next = self.peek();
            out.fields.push((key, value));
            match next {
                None => return Ok(false),
                Some(b',') => self.pos += 1,
                Some(b' ' | b'\r' | b'\n') => {
                    self.skip_spaces();
                    return Ok(!self.take_eol());
                }
                Some(c) => {
                    let key = out
                        .fields
                        .last()
                        .map(|(k, _)| k.to_string())
                        .unwrap_or_default();
                    return Err(
                        self.error(self.pos, ErrorKind::UnexpectedAfterField { key, found: c })
                    );
                }
            }
        }
    }

    /// Parses the value after `key=`.
    #[inline(always)]
    fn field_value(&mut self, key: &str) -> Result<FieldValue<'a>, Failure> {
        let start = self.pos;
        let ty = match self.peek() {
            None => return Err(self.error(start, ErrorKind::MissingFieldValue(key.to_owned()))),
            Some(b'"') => return self.string_value(key),
            Some(b't' | b'T' | b'f' | b'F') => ValueType::Boolean,
            Some(b'-' | b'0'..=b'9' | b'.') => ValueType::Float,
            Some(_) => return Err(self.error(start, ErrorKind::UnknownValueType(key.to_owned()))),
        };
        let token = self.take(FIELD_VALUE);
        let parsed = match (ty, token.last()) {
            (ValueType::Boolean, _) => parse_bool(token)
                .map(FieldValue::Boolean)
                .ok_or(ValueError::Syntax(ty)),
            (_, Some(b'i')) => parse_i64(&token[..token.len() - 1])
                .map(FieldValue::Integer)
                .map_err(|e| e.of(ValueType::Integer)),
            (_, Some(b'u')) => parse_u64(&token[..token.len() - 1])
                .map(FieldValue::UInteger)
                .map_err(|e| e.of(ValueType::UInteger)),
            _ => float::parse(token)
                .map(FieldValue::Float)
                .map_err(|e| e.of(ValueType::Float)),
        };
        parsed.map_err(|e| {
            let key = key.to_owned();
            let kind = match e {
                ValueError::Syntax(ty) => ErrorKind::BadFieldValue { key, ty },
                ValueError::Range(ty) => ErrorKind::FieldValueOutOfRange { key, ty },
            };
            self.error(start, kind)
        })
    }

    /// Parses a double-quoted string value; `self.pos` is at the opening quote.
    fn string_value(&mut self, key: &str) -> Result<FieldValue<'a>, Failure> {
        let quote = self.pos;
        let start = quote + 1;
        let buf = self.buf;
        let mut i = start;
        let mut escaped = false;
        let mut newlines = 0;
        while i < buf.len() {
            match buf[i] {
                b'"' => break,
                b'\\' if matches!(buf.get(i + 1), Some(b'"' | b'\\')) => {
                    escaped = true;
                    i += 2;
                }
                b'\n' => {
                    newlines += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        self.pos = i;
        self.line += newlines;
        let raw = &buf[start..i];
        let text = if escaped {
            let mut bytes = Vec::with_capacity(raw.len());
            let mut j = 0;
            while j < raw.len() {
                if raw[j] == b'\\' && matches!(raw.get(j + 1), Some(b'"' | b'\\')) {
                    j += 1;
                }
                bytes.push(raw[j]);
                j += 1;
            }
            String::from_utf8(bytes).map(Cow::Owned).ok()
        } else {
            self.str_at(start, i).map(Cow::Borrowed)
        };
        let Some(text) = text else {
            return Err(self.error(start, ErrorKind::InvalidUtf8(Section::FieldValue)));
        };
        if i == buf.len() {
            return Err(self.error(quote, ErrorKind::UnterminatedString(key.to_owned())));
        }
        self.pos += 1;
        Ok(FieldValue::String(text))
    }

    /// Parses the timestamp section and the end of the line.
    fn timestamp(&mut self, out: &mut Line<'a>) -> Result<(), Failure> {
        let start = self.pos;
        let digits = self.take(TIME);
        match self.peek() {
            None => {}
            Some(b' ' | b'\r' | b'\n') => {
                self.skip_spaces();
                if !self.at_eol() {
                    let at = self.pos;
                    self.take(NOT_EOL);
                    return Err(self.error(at, ErrorKind::TrailingText));
                }
            }
            Some(_) => {
                self.take(NOT_EOL);
                return Err(self.error(start, ErrorKind::BadTimestamp));
            }
        }
        let value = match parse_i64(digits) {
            Ok(v) => v,
            Err(ValueError::Syntax(_)) => return Err(self.error(start, ErrorKind::BadTimestamp)),
            Err(ValueError::Range(_)) => {
                return Err(self.error(start, ErrorKind::TimestampOverflow));
            }
        };
        let Some(nanos) = self.precision.to_nanos(value) else {
            return Err(self.error(start, ErrorKind::TimestampOverflow));
        };
        out.timestamp = Some(nanos);
        self.take_eol();
        Ok(())
    }

    /// The default timestamp for a line without one.
    fn default_timestamp(&self, start: usize) -> Result<Option<i64>, Failure> {
        self.default_timestamp
            .map_err(|()| self.error(start, ErrorKind::TimestampOverflow))
    }

    /// Takes a token of `class` bytes, unescaping backslash escapes and checking UTF-8.
    #[inline(always)]
    fn take_escaped(
        &mut self,
        class: u8,
        escapes: Escapes,
        section: Section,
    ) -> Result<Cow<'a, str>, Failure> {
        let buf = self.buf;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            while i < buf.len() && CLASS[buf[i] as usize] & class != 0 {
                i += 1;
            }
            if buf.get(i) != Some(&b'\\') {
                break;
            }
            match buf.get(i + 1) {
                Some(&next) if escapes.allows(next) => {
                    escaped = true;
                    i += 2;
                }
                // A backslash before anything else is literal.
                _ => i += 1,
            }
        }
        self.pos = i;
        let raw = &buf[start..i];
        let text = if escaped {
            let mut bytes = Vec::with_capacity(raw.len());
            let mut j = 0;
            while j < raw.len() {
                if raw[j] == b'\\' && raw.get(j + 1).is_some_and(|&n| escapes.allows(n)) {
                    j += 1;
                }
                bytes.push(raw[j]);
                j += 1;
            }
            String::from_utf8(bytes).map(Cow::Owned).ok()
        } else {
            self.str_at(start, i).map(Cow::Borrowed)
        };
        text.ok_or_else(|| self.error(start, ErrorKind::InvalidUtf8(section)))
    }

    /// `buf[start..end]` as text, or `None` if it is not valid UTF-8.
    #[inline]
    fn str_at(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text.get(start..end) {
            Some(text) => Some(text),
            None => std::str::from_utf8(&self.buf[start..end]).ok(),
        }
    }

    /// Takes the longest run of `class` bytes.
    #[inline]
    fn take(&mut self, class: u8) -> &'a [u8] {
        let buf = self.buf;
        let start = self.pos;
        let mut i = start;
        while i < buf.len() && CLASS[buf[i] as usize] & class != 0 {
            i += 1;
        }
        self.pos = i;
        &buf[start..i]
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// True at end of input, `\n`, `\r\n`, or a final `\r`.
    #[inline]
    fn at_eol(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.buf.get(self.pos + 1), None | Some(b'\n')),
            Some(_) => false,
        }
    }

    /// Consumes an end of line if there is one.
    #[inline]
    fn take_eol(&mut self) -> bool {
        if !self.at_eol() {
            return false;
        }
        match self.peek() {
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
            }
            Some(b'\r') => {
                self.pos += 1;
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                    self.line += 1;
                }
            }
            _ => {}
        }
        true
    }

    /// Error recovery: drop everything up to and including the next newline.
    fn skip_rest_of_line(&mut self) {
        match self.buf[self.pos..].iter().position(|&c| c == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                self.line += 1;
            }
            None => self.pos = self.buf.len(),
        }
    }

    /// Builds an error located at byte offset `at` (at or before `self.pos`).
    #[cold]
    fn error(&self, at: usize, kind: ErrorKind) -> Failure {
        let at = at.min(self.pos);
        let newlines_after = self.buf[at..self.pos]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        let line_start = self.buf[..at]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |n| n + 1);
        Box::new(LineError {
            line: self.line.saturating_sub(newlines_after).max(1),
            column: at - line_start + 1,
            kind,
        })
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Line::default();
        self.next_into(&mut line).map(|r| r.map(|()| line))
    }
}

/// A numeric or boolean value that failed to parse.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ValueError {
    /// Not valid syntax for the type.
    Syntax(ValueType),
    /// Valid syntax but does not fit.
    Range(ValueType),
}

impl ValueError {
    /// Re-labels the error with the value's written type.
    fn of(self, ty: ValueType) -> Self {
        match self {
            ValueError::Syntax(_) => ValueError::Syntax(ty),
            ValueError::Range(_) => ValueError::Range(ty),
        }
    }
}

fn parse_bool(token: &[u8]) -> Option<bool> {
    match token {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

/// Decimal digits to `u64`; checks syntax and range digit by digit, like Go's `ParseUint`.
#[inline]
fn parse_u64(digits: &[u8]) -> Result<u64, ValueError> {
    const TY: ValueType = ValueType::UInteger;
    if digits.is_empty() {
        return Err(ValueError::Syntax(TY));
    }
    if digits.len() <= 19 {
        // Up to 19 digits always fit in u64: no overflow checks needed.
        let mut n: u64 = 0;
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Err(ValueError::Syntax(TY));
            }
            n = n * 10 + u64::from(d);
        }
        return Ok(n);
    }
    let mut n: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(ValueError::Syntax(TY));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(ValueError::Range(TY))?;
    }
    Ok(n)
}

/// Optionally negative decimal integer to `i64`.
#[inline]
fn parse_i64(token: &[u8]) -> Result<i64, ValueError> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let magnitude = parse_u64(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
    .ok_or(ValueError::Range(ValueType::Integer))
}

/// True if two tags share a key; quadratic scan is cheapest for the usual handful.
#[inline]
fn has_duplicate_key(tags: &[(Cow<'_, str>, Cow<'_, str>)]) -> bool {
    if tags.len() > 16 {
        let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        return keys.windows(2).any(|w| w[0] == w[1]);
    }
    tags.iter()
        .enumerate()
        .any(|(i, (k, _))| tags[..i].iter().any(|(other, _)| other == k))
}

/// The smallest duplicated key (matches the sorted-order report of the reference).
#[cold]
fn first_duplicate(tags: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| w[0].to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> (Vec<Line<'static>>, Vec<LineError>) {
        let mut lines = Vec::new();
        let errors = parse_batch(input.as_bytes(), &ParseOptions::default(), |l| {
            lines.push(l.clone().into_owned())
        });
        (lines, errors)
    }

    #[test]
    fn trade_line() {
        let (lines, errors) = parse(
            "trades,symbol=BTC-USDT,side=buy price=42000.5,amount=0.0123,id=123456i 1582329600000000000",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let l = &lines[0];
        assert_eq!(l.measurement, "trades");
        assert_eq!(l.tag("symbol"), Some("BTC-USDT"));
        assert_eq!(l.tag("side"), Some("buy"));
        assert_eq!(l.field("price"), Some(&FieldValue::Float(42000.5)));
        assert_eq!(l.field("amount"), Some(&FieldValue::Float(0.0123)));
        assert_eq!(l.field("id"), Some(&FieldValue::Integer(123456)));
        assert_eq!(l.timestamp, Some(1_582_329_600_000_000_000));
    }

    #[test]
    fn unescaped_tokens_borrow_from_input() {
        let mut borrowed = false;
        parse_batch(b"m,t=a f=\"s\" 1", &ParseOptions::default(), |l| {
            borrowed = matches!(l.measurement, Cow::Borrowed(_))
                && matches!(l.tags[0].1, Cow::Borrowed(_))
                && matches!(l.fields[0].1, FieldValue::String(Cow::Borrowed(_)));
        });
        assert!(borrowed);
    }

    #[test]
    fn all_value_types() {
        let (lines, errors) =
            parse(r#"m a=1,b=-2i,c=3u,d=t,e=FALSE,f="x \"y\" \\ z",g=1e3,h=.5,i=1."#);
        assert!(errors.is_empty(), "{errors:?}");
        let f: Vec<_> = lines[0].fields.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            f,
            vec![
                FieldValue::Float(1.0),
                FieldValue::Integer(-2),
                FieldValue::UInteger(3),
                FieldValue::Boolean(true),
                FieldValue::Boolean(false),
                FieldValue::String(r#"x "y" \ z"#.into()),
                FieldValue::Float(1000.0),
                FieldValue::Float(0.5),
                FieldValue::Float(1.0),
            ]
        );
        assert_eq!(lines[0].timestamp, None);
    }

    #[test]
    fn escapes() {
        let (lines, errors) = parse(r"cpu\ load\,x,ta\ g\=1=va\,l\=ue fi\=eld\ 1=1 5");
        assert!(errors.is_empty(), "{errors:?}");
        let l = &lines[0];
        assert_eq!(l.measurement, "cpu load,x");
        assert_eq!(l.tags[0].0, "ta g=1");
        assert_eq!(l.tags[0].1, "va,l=ue");
        assert_eq!(l.fields[0].0, "fi=eld 1");
    }

    #[test]
    fn bad_lines_are_reported_and_good_lines_kept() {
        let input = "# comment\n\
                     a v=1 1\r\n\
                     \n\
                     b v=tru 2\n\
                     c v=3 3\n\
                     d,t=1,t=2 v=1\n\
                     e v=1 99999999999999999999\n\
                     f\n\
                     g v=\"multi\nline\" 7\n\
                     h v=1i 8";
        let (lines, errors) = parse(input);
        let names: Vec<_> = lines.iter().map(|l| l.measurement.to_string()).collect();
        assert_eq!(names, ["a", "c", "g", "h"]);
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.column, e.kind.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    4,
                    5,
                    ErrorKind::BadFieldValue {
                        key: "v".into(),
                        ty: ValueType::Boolean
                    }
                ),
                (6, 1, ErrorKind::DuplicateTag("t".into())),
                (7, 7, ErrorKind::TimestampOverflow),
                (8, 2, ErrorKind::ExpectedTagOrField(b'\n')),
            ]
        );
        assert_eq!(lines[3].timestamp, Some(8));
        assert_eq!(
            lines[2].field("v"),
            Some(&FieldValue::String("multi\nline".into()))
        );
    }

    #[test]
    fn line_endings_comments_and_blank_lines() {
        let (lines, errors) = parse("a v=1\r\n# note\r\n   \r\n  b v=2  \r\n\nc v=3 3  \r");
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = lines.iter().map(|l| l.measurement.to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);

        let (lines, errors) = parse("#bad\u{1}comment\nm\tv=1\nm v=1\r\rx");
        assert_eq!(lines.len(), 0);
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.column, e.kind.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, ErrorKind::InvalidComment),
                (2, 2, ErrorKind::ExpectedTagOrField(b'\t')),
                (3, 6, ErrorKind::TrailingText),
            ]
        );
    }

    #[test]
    fn precision_and_default_timestamp() {
        let opts = ParseOptions::new(Precision::Seconds).with_default_timestamp(1_500_000_000_123);
        let mut ts = Vec::new();
        let errors = parse_batch(b"m v=1 2\nm v=1\nm v=1 9223372037", &opts, |l| {
            ts.push(l.timestamp)
        });
        assert_eq!(ts, vec![Some(2_000_000_000), Some(1_500_000_000_000)]);
        assert_eq!(errors[0].kind, ErrorKind::TimestampOverflow);

        let opts = ParseOptions::new(Precision::Hours);
        let mut ts = Vec::new();
        parse_batch(b"m v=1 -2", &opts, |l| ts.push(l.timestamp));
        assert_eq!(ts, vec![Some(-7_200_000_000_000)]);
    }

    #[test]
    fn numeric_edges() {
        let (lines, errors) = parse(
            "m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u\n\
             m a=9223372036854775808i\nm a=-1u\nm a=1e400\nm a=1.2.3\nm a=-inf",
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].fields[1].1, FieldValue::Integer(i64::MIN));
        let kinds: Vec<_> = errors.into_iter().map(|e| e.kind).collect();
        assert!(matches!(
            kinds[0],
            ErrorKind::FieldValueOutOfRange {
                ty: ValueType::Integer,
                ..
            }
        ));
        assert!(matches!(
            kinds[1],
            ErrorKind::BadFieldValue {
                ty: ValueType::UInteger,
                ..
            }
        ));
        assert!(matches!(
            kinds[2],
            ErrorKind::FieldValueOutOfRange {
                ty: ValueType::Float,
                ..
            }
        ));
        assert!(matches!(
            kinds[3],
            ErrorKind::BadFieldValue {
                ty: ValueType::Float,
                ..
            }
        ));
        assert!(matches!(
            kinds[4],
            ErrorKind::BadFieldValue {
                ty: ValueType::Float,
                ..
            }
        ));
    }

    #[test]
    fn iterator_yields_owned_lines() {
        let opts = ParseOptions::default();
        let results: Vec<_> = Parser::new(b"a x=1\n\nb\nc y=2", &opts).collect();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());

        let mut parser = Parser::new(b"\n# c\na x=\"1\n2\"\nb y=2", &opts);
        assert_eq!(parser.last_line(), 0);
        let starts: Vec<_> =
            std::iter::from_fn(|| parser.next().map(|_| parser.last_line())).collect();
        assert_eq!(starts, [3, 5]);
    }

    #[test]
    fn error_messages_are_readable() {
        let (_, errors) = parse("m,a=1 x=\"unterminated");
        assert_eq!(
            errors[0].to_string(),
            "line 1, column 9: string value of field \"x\" has no closing quote"
        );
    }
}
