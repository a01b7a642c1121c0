//! Typed, null-aware access to a batch's columns in its table's order.

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, DecimalType, Float64Type, Int64Type, TimeUnit,
    TimestampNanosecondType, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;

use super::SinkError;
use crate::schema::{ColumnType, TIMESTAMP, TableSchema};

/// One column's values, downcast once.
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    Str(&'a StringArray),
    Long(&'a Int64Array),
    ULong(&'a UInt64Array),
    Double(&'a Float64Array),
    Bool(&'a BooleanArray),
    Timestamp(&'a TimestampNanosecondArray),
    Decimal(&'a Decimal128Array, i8),
    /// The batch lacks the column: every value is null.
    Missing,
}

/// One non-null value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cell<'a> {
    Str(&'a str),
    Long(i64),
    ULong(u64),
    Double(f64),
    Bool(bool),
    Timestamp(i64),
    /// Raw fixed point and its scale.
    Decimal(i128, i8),
}

/// A non-timestamp column.
pub(crate) struct Column<'a> {
    pub name: &'a str,
    pub ty: ColumnType,
    pub values: Values<'a>,
}

impl<'a> Column<'a> {
    /// The value at `row`, `None` when null.
    pub fn get(&self, row: usize) -> Option<Cell<'a>> {
        Some(match self.values {
            Values::Str(a) if a.is_valid(row) => Cell::Str(a.value(row)),
            Values::Long(a) if a.is_valid(row) => Cell::Long(a.value(row)),
            Values::ULong(a) if a.is_valid(row) => Cell::ULong(a.value(row)),
            Values::Double(a) if a.is_valid(row) => Cell::Double(a.value(row)),
            Values::Bool(a) if a.is_valid(row) => Cell::Bool(a.value(row)),
            Values::Timestamp(a) if a.is_valid(row) => Cell::Timestamp(a.value(row)),
            Values::Decimal(a, scale) if a.is_valid(row) => Cell::Decimal(a.value(row), scale),
            _ => return None,
        })
    }
}

/// A batch seen through its table schema.
pub(crate) struct Columns<'a> {
    /// The designated timestamp (nanoseconds).
    pub timestamp: &'a TimestampNanosecondArray,
    /// The other columns, in table order.
    pub columns: Vec<Column<'a>>,
    /// Rows in the batch.
    pub rows: usize,
}

impl Columns<'_> {
    /// The designated timestamp of `row`; `None` if it is (wrongly) null.
    pub fn timestamp(&self, row: usize) -> Option<i64> {
        self.timestamp
            .is_valid(row)
            .then(|| self.timestamp.value(row))
    }
}

/// Matches the batch's columns to `table` by name; a column the batch lacks
/// reads as nulls, a column of the wrong Arrow type is an error.
pub(crate) fn columns<'a>(
    table: &'a TableSchema,
    batch: &'a RecordBatch,
) -> Result<Columns<'a>, SinkError> {
    let bad = |message: String| SinkError::Batch {
        table: table.name.clone(),
        message,
    };
    let ts = batch
        .column_by_name(TIMESTAMP)
        .ok_or_else(|| bad("no designated timestamp column".into()))?;
    let timestamp = match ts.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            ts.as_primitive::<TimestampNanosecondType>()
        }
        other => return Err(bad(format!("timestamp is {other}, not Timestamp(ns)"))),
    };
    let mut columns = Vec::with_capacity(table.columns.len());
    for c in table.columns.iter().filter(|c| c.name != TIMESTAMP) {
        let Some(array) = batch.column_by_name(&c.name) else {
            columns.push(Column {
                name: &c.name,
                ty: c.ty,
                values: Values::Missing,
            });
            continue;
        };
        let values = match (c.ty, array.data_type()) {
            (ColumnType::Symbol | ColumnType::Varchar, DataType::Utf8) => {
                Values::Str(array.as_string::<i32>())
            }
            (ColumnType::Long, DataType::Int64) => Values::Long(array.as_primitive::<Int64Type>()),
            (ColumnType::ULong, DataType::UInt64) => {
                Values::ULong(array.as_primitive::<UInt64Type>())
            }
            (ColumnType::Double, DataType::Float64) => {
                Values::Double(array.as_primitive::<Float64Type>())
            }
            (ColumnType::Boolean, DataType::Boolean) => Values::Bool(array.as_boolean()),
            (ColumnType::Timestamp, DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
                Values::Timestamp(array.as_primitive::<TimestampNanosecondType>())
            }
            (ColumnType::Decimal, DataType::Decimal128(_, scale)) => {
                Values::Decimal(array.as_primitive::<Decimal128Type>(), *scale)
            }
            (ty, dt) => {
                return Err(bad(format!(
                    "column {} is {} in the schema but {dt} in the batch",
                    c.name,
                    ty.name()
                )));
            }
        };
        columns.push(Column {
            name: &c.name,
            ty: c.ty,
            values,
        });
    }
    Ok(Columns {
        timestamp,
        columns,
        rows: batch.num_rows(),
    })
}

/// The exact decimal text of a fixed-point value (`"42000.12345678"`, `"-0.5"`, `"3"`).
pub(crate) fn decimal_text(raw: i128, scale: i8) -> String {
    let mut s = Decimal128Type::format_decimal(raw, 38, scale);
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    s
}

/// A decimal as the nearest `f64`, parsed from its exact text (correctly
/// rounded, so up to 15 significant digits print back unchanged).
pub(crate) fn decimal_f64(raw: i128, scale: i8) -> f64 {
    decimal_text(raw, scale).parse().unwrap_or(f64::NAN)
}

/// Days since the epoch of a nanosecond timestamp (UTC).
pub(crate) fn day_of(ns: i64) -> i64 {
    ns.div_euclid(86_400_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_exact_and_minimal() {
        assert_eq!(decimal_text(4_200_012_345_678, 8), "42000.12345678");
        assert_eq!(decimal_text(-50_000_000, 8), "-0.5");
        assert_eq!(decimal_text(300_000_000, 8), "3");
        assert_eq!(decimal_text(1, 8), "0.00000001");
        assert_eq!(decimal_f64(4_200_012_345_678, 8), 42000.12345678);
    }
}
