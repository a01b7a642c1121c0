//! Parse errors: one [`LineError`] per malformed line.

use std::fmt;

/// A malformed line: where it went wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct LineError {
    /// 1-based line number in the batch (a string value may span lines).
    pub line: usize,
    /// 1-based byte column within that line.
    pub column: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// The part of a line a token belongs to (for [`ErrorKind::InvalidUtf8`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The measurement name.
    Measurement,
    /// A tag key.
    TagKey,
    /// A tag value.
    TagValue,
    /// A field key.
    FieldKey,
    /// A string field value.
    FieldValue,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Measurement => "measurement",
            Section::TagKey => "tag key",
            Section::TagValue => "tag value",
            Section::FieldKey => "field key",
            Section::FieldValue => "string field value",
        })
    }
}

/// The type a field value was written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Plain number.
    Float,
    /// Number with an `i` suffix.
    Integer,
    /// Number with a `u` suffix.
    UInteger,
    /// Word starting with `t`/`T`/`f`/`F`.
    Boolean,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Float => "float",
            ValueType::Integer => "integer",
            ValueType::UInteger => "unsigned integer",
            ValueType::Boolean => "boolean",
        })
    }
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The line starts with a byte that cannot begin a measurement name.
    #[error("invalid character {} at start of measurement name", show(*.0))]
    InvalidMeasurementStart(u8),
    /// A `#` comment line contains a control character.
    #[error("invalid character in comment line")]
    InvalidComment,
    /// A token is not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(Section),
    /// A comma after the measurement or a tag is not followed by a tag key.
    #[error("expected tag key after comma")]
    MissingTagKey,
    /// The input ended inside the measurement/tag part, before any field.
    #[error("unexpected end of input before fields")]
    UnexpectedEnd,
    /// Something other than a tag key or the field separator follows the measurement or a tag.
    #[error("expected tag key or field but found {}", show(*.0))]
    ExpectedTagOrField(u8),
    /// A tag key is not followed by `=`.
    #[error("expected '=' after tag key {key:?}, found {}", show(*.found))]
    MissingTagEquals {
        /// The tag key.
        key: String,
        /// The byte found instead of `=`.
        found: u8,
    },
    /// A tag has an empty value.
    #[error("tag {0:?} has no value")]
    MissingTagValue(String),
    /// A tag key appears twice in one line.
    #[error("duplicate tag key {0:?}")]
    DuplicateTag(String),
    /// The line has no field set.
    #[error("line has no fields")]
    MissingFields,
    /// A field key is empty or starts with an invalid byte.
    #[error("invalid character {} at start of field key", show(*.0))]
    InvalidFieldKey(u8),
    /// A field key is not followed by `=`.
    #[error("expected '=' after field key {key:?}, found {}", found.map_or_else(|| "end of input".to_owned(), show))]
    MissingFieldEquals {
        /// The field key.
        key: String,
        /// The byte found instead of `=`; `None` at end of input.
        found: Option<u8>,
    },
    /// The input ends right after `field=`.
    #[error("field {0:?} has no value")]
    MissingFieldValue(String),
    /// A string field value has no closing quote.
    #[error("string value of field {0:?} has no closing quote")]
    UnterminatedString(String),
    /// A field value starts with a byte no value type starts with.
    #[error("value of field {0:?} has an unrecognised type")]
    UnknownValueType(String),
    /// A string field value is followed by something other than `,`, space or end of line.
    #[error("unexpected character {} after field {key:?}", show(*.found))]
    UnexpectedAfterField {
        /// The field key.
        key: String,
        /// The offending byte.
        found: u8,
    },
    /// A field value is not valid syntax for its type.
    #[error("invalid {ty} value for field {key:?}")]
    BadFieldValue {
        /// The field key.
        key: String,
        /// The type the value was written as.
        ty: ValueType,
    },
    /// A numeric field value does not fit its type.
    #[error("{ty} value for field {key:?} is out of range")]
    FieldValueOutOfRange {
        /// The field key.
        key: String,
        /// The type the value was written as.
        ty: ValueType,
    },
    /// The timestamp is not an optionally negative decimal integer.
    #[error("invalid timestamp")]
    BadTimestamp,
    /// The timestamp does not fit in `i64` nanoseconds after scaling.
    #[error("timestamp out of range")]
    TimestampOverflow,
    /// Text follows the timestamp.
    #[error("unexpected text after timestamp")]
    TrailingText,
}

/// Renders a byte for a message: printable ASCII quoted, others escaped.
fn show(b: u8) -> String {
    format!("'{}'", b.escape_ascii())
}
