//! Query results as QuestDB's `/exec` JSON and as CSV.

use std::fmt::Write;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, DecimalType, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::schema::ColumnType;

/// QuestDB's name for a result column's type.
pub fn type_name(field: &datafusion::arrow::datatypes::Field) -> &'static str {
    match field.data_type() {
        DataType::Int8 => "BYTE",
        DataType::Int16 => "SHORT",
        DataType::Int32 => "INT",
        DataType::Float32 => "FLOAT",
        DataType::Date32 | DataType::Date64 => "DATE",
        _ => ColumnType::of_field(field).map_or("VARCHAR", ColumnType::name),
    }
}

/// How a cell is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON values: numbers bare, text quoted, null.
    Json,
    /// CSV fields: text quoted only when needed, null empty.
    Csv,
}

/// Nanoseconds since the epoch as ISO 8601 UTC, with microseconds (or
/// nanoseconds when there are any).
pub fn iso(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let date = crate::store::day_name(days);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    if sub % 1000 == 0 {
        format!("{date}T{h:02}:{m:02}:{s:02}.{:06}Z", sub / 1000)
    } else {
        format!("{date}T{h:02}:{m:02}:{s:02}.{sub:09}Z")
    }
}

fn decimal_text(raw: i128, scale: i8) -> String {
    let mut s = Decimal128Type::format_decimal(raw, 38, scale);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

fn quote_json(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

fn quote_csv(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Appends cell `row` of `col` to `out`.
pub fn write_cell(out: &mut String, col: &ArrayRef, row: usize, fmt: Format) {
    if col.is_null(row) {
        if fmt == Format::Json {
            out.push_str("null");
        }
        return;
    }
    let text = |out: &mut String, s: &str| match fmt {
        Format::Json => quote_json(out, s),
        Format::Csv => quote_csv(out, s),
    };
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", col.as_primitive::<$t>().value(row));
        }};
    }
    match col.data_type() {
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 | DataType::Float64 => {
            let v = if *col.data_type() == DataType::Float32 {
                f64::from(col.as_primitive::<Float32Type>().value(row))
            } else {
                col.as_primitive::<Float64Type>().value(row)
            };
            if v.is_finite() {
                let _ = write!(out, "{v}");
            } else if fmt == Format::Json {
                out.push_str("null");
            } else {
                let _ = write!(out, "{v}");
            }
        }
        DataType::Boolean => {
            out.push_str(if col.as_boolean().value(row) {
                "true"
            } else {
                "false"
            });
        }
        DataType::Utf8 => text(out, col.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => text(out, col.as_string::<i64>().value(row)),
        DataType::Utf8View => text(out, col.as_string_view().value(row)),
        DataType::Decimal128(_, scale) => {
            out.push_str(&decimal_text(
                col.as_primitive::<Decimal128Type>().value(row),
                *scale,
            ));
        }
        DataType::Timestamp(unit, _) => {
            let ns = match unit {
                TimeUnit::Nanosecond => col.as_primitive::<TimestampNanosecondType>().value(row),
                TimeUnit::Microsecond => col
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Millisecond => col
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000_000),
            };
            text(out, &iso(ns));
        }
        _ => {
            let opts = FormatOptions::default();
            let s = ArrayFormatter::try_new(col.as_ref(), &opts)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default();
            text(out, &s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_questdb_does() {
        assert_eq!(
            iso(1_582_329_600_123_456_000),
            "2020-02-22T00:00:00.123456Z"
        );
        assert_eq!(iso(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(iso(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn decimals_drop_trailing_zeros() {
        assert_eq!(decimal_text(4_200_050_000_000, 8), "42000.5");
        assert_eq!(decimal_text(-100_000_000, 8), "-1");
        assert_eq!(decimal_text(1, 8), "0.00000001");
    }
}
