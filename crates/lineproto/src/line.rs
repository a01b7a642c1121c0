//! The parsed form of one line-protocol entry.

use std::borrow::Cow;

/// A field value: the five line-protocol value types.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A float such as `1.5`, `-2`, `1e3` (a bare number is a float).
    Float(f64),
    /// A signed integer, written with an `i` suffix (`12i`).
    Integer(i64),
    /// An unsigned integer, written with a `u` suffix (`12u`).
    UInteger(u64),
    /// A boolean: `t`, `T`, `true`, `True`, `TRUE` and the `f` forms.
    Boolean(bool),
    /// A double-quoted string with `\"` and `\\` unescaped.
    String(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// Copies any borrowed string so the value outlives the input buffer.
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::Float(v) => FieldValue::Float(v),
            FieldValue::Integer(v) => FieldValue::Integer(v),
            FieldValue::UInteger(v) => FieldValue::UInteger(v),
            FieldValue::Boolean(v) => FieldValue::Boolean(v),
            FieldValue::String(s) => FieldValue::String(Cow::Owned(s.into_owned())),
        }
    }
}

/// One parsed entry; strings borrow from the input unless they held escapes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line<'a> {
    /// Measurement (table) name, unescaped.
    pub measurement: Cow<'a, str>,
    /// Tags in input order; keys are unique within a line.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields in input order (at least one); repeated keys are kept as written.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// Timestamp in Unix nanoseconds; `None` when the line had none and no default was given.
    pub timestamp: Option<i64>,
}

impl<'a> Line<'a> {
    /// Creates a line with the given measurement and nothing else.
    pub fn new(measurement: impl Into<Cow<'a, str>>) -> Self {
        Line {
            measurement: measurement.into(),
            ..Line::default()
        }
    }

    /// Adds a tag (builder style, for encoding).
    pub fn with_tag(
        mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Adds a field (builder style, for encoding).
    pub fn with_field(mut self, key: impl Into<Cow<'a, str>>, value: FieldValue<'a>) -> Self {
        self.fields.push((key.into(), value));
        self
    }

    /// Sets the timestamp in nanoseconds (builder style, for encoding).
    pub fn with_timestamp(mut self, nanos: i64) -> Self {
        self.timestamp = Some(nanos);
        self
    }

    /// Value of the tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Value of the first field named `key`, if present.
    pub fn field(&self, key: &str) -> Option<&FieldValue<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Empties the line but keeps its buffers, so reuse does not allocate.
    pub fn clear(&mut self) {
        self.measurement = Cow::Borrowed("");
        self.tags.clear();
        self.fields.clear();
        self.timestamp = None;
    }

    /// Copies every borrowed string so the line outlives the input buffer.
    pub fn into_owned(self) -> Line<'static> {
        Line {
            measurement: Cow::Owned(self.measurement.into_owned()),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            timestamp: self.timestamp,
        }
    }
}
