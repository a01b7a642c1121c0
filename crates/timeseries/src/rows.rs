//! Row-at-a-time building of Arrow batches for one table, with the table's
//! schema growing as new columns arrive and every value checked against its
//! column's type before anything is appended.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::{ColumnType, DECIMAL_PRECISION, DECIMAL_SCALE, TIMESTAMP, TableSchema};

/// One value on its way into a column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// Text (symbols and varchars).
    Str(&'a str),
    /// Signed integer.
    Long(i64),
    /// Unsigned integer.
    ULong(u64),
    /// Float.
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// Nanoseconds since the epoch.
    Timestamp(i64),
    /// Raw fixed point, 10^-8 units.
    Decimal(i128),
}

impl Value<'_> {
    /// The column type a new column for this value gets; `tag` values are symbols.
    pub fn natural_type(&self, tag: bool) -> ColumnType {
        match self {
            Value::Str(_) if tag => ColumnType::Symbol,
            Value::Str(_) => ColumnType::Varchar,
            Value::Long(_) => ColumnType::Long,
            Value::ULong(_) => ColumnType::ULong,
            Value::Double(_) => ColumnType::Double,
            Value::Bool(_) => ColumnType::Boolean,
            Value::Timestamp(_) => ColumnType::Timestamp,
            Value::Decimal(_) => ColumnType::Decimal,
        }
    }
}

/// A value converted to a column's type.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell<'a> {
    Str(&'a str),
    Long(i64),
    ULong(u64),
    Double(f64),
    Bool(bool),
    Timestamp(i64),
    Decimal(i128),
}

/// Converts `v` for a column of type `ty`, widening where no information is
/// lost (integers to floats and decimals); `None` on a type conflict.
fn convert<'a>(v: Value<'a>, ty: ColumnType) -> Option<Cell<'a>> {
    const SCALE: i128 = 100_000_000;
    Some(match (v, ty) {
        (Value::Str(s), ColumnType::Symbol | ColumnType::Varchar) => Cell::Str(s),
        (Value::Long(i), ColumnType::Long) => Cell::Long(i),
        (Value::Long(i), ColumnType::ULong) => Cell::ULong(u64::try_from(i).ok()?),
        (Value::Long(i), ColumnType::Double) => Cell::Double(i as f64),
        (Value::Long(i), ColumnType::Decimal) => Cell::Decimal(i128::from(i) * SCALE),
        (Value::Long(i), ColumnType::Timestamp) => Cell::Timestamp(i),
        (Value::ULong(u), ColumnType::ULong) => Cell::ULong(u),
        (Value::ULong(u), ColumnType::Long) => Cell::Long(i64::try_from(u).ok()?),
        (Value::ULong(u), ColumnType::Double) => Cell::Double(u as f64),
        (Value::ULong(u), ColumnType::Decimal) => Cell::Decimal(i128::from(u) * SCALE),
        (Value::Double(f), ColumnType::Double) => Cell::Double(f),
        (Value::Double(f), ColumnType::Decimal) => Cell::Decimal(float_to_decimal(f)?),
        (Value::Bool(b), ColumnType::Boolean) => Cell::Bool(b),
        (Value::Timestamp(t), ColumnType::Timestamp) => Cell::Timestamp(t),
        (Value::Decimal(d), ColumnType::Decimal) => Cell::Decimal(d),
        _ => return None,
    })
}

/// A float as 10^-8 units, rounded to 8 decimals through its exact decimal
/// expansion (so `0.1` is exactly `0.10000000`); `None` for NaN, infinities
/// and values beyond the column's range.
pub fn float_to_decimal(f: f64) -> Option<i128> {
    if !f.is_finite() || f.abs() >= 1e29 {
        return None;
    }
    tradestack_model::fixed::parse_decimal(&format!("{f:.8}")).ok()
}

enum Builder {
    Str(StringBuilder),
    Long(Int64Builder),
    ULong(UInt64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampNanosecondBuilder),
    Decimal(Decimal128Builder),
}

impl Builder {
    fn new(ty: ColumnType, nulls: usize) -> Builder {
        let mut b = match ty {
            ColumnType::Symbol | ColumnType::Varchar => Builder::Str(StringBuilder::new()),
            ColumnType::Long => Builder::Long(Int64Builder::new()),
            ColumnType::ULong => Builder::ULong(UInt64Builder::new()),
            ColumnType::Double => Builder::Double(Float64Builder::new()),
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => Builder::Timestamp(TimestampNanosecondBuilder::new()),
            ColumnType::Decimal => Builder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
                    .expect("valid decimal type"),
            ),
        };
        for _ in 0..nulls {
            b.null();
        }
        b
    }

    fn null(&mut self) {
        match self {
            Builder::Str(b) => b.append_null(),
            Builder::Long(b) => b.append_null(),
            Builder::ULong(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
        }
    }

    fn push(&mut self, c: Cell<'_>) {
        match (self, c) {
            (Builder::Str(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Long(b), Cell::Long(v)) => b.append_value(v),
            (Builder::ULong(b), Cell::ULong(v)) => b.append_value(v),
            (Builder::Double(b), Cell::Double(v)) => b.append_value(v),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(v),
            (Builder::Decimal(b), Cell::Decimal(v)) => b.append_value(v),
            // `convert` only yields the cell of the column's own type.
            (b, _) => b.null(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Str(b) => b.len(),
            Builder::Long(b) => b.len(),
            Builder::ULong(b) => b.len(),
            Builder::Double(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::Decimal(b) => b.len(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Long(b) => Arc::new(b.finish()),
            Builder::ULong(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
        }
    }
}

/// Why a row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The value does not fit the existing column's type.
    #[error("column {column} is {expected}, got {got}")]
    TypeConflict {
        /// Column.
        column: String,
        /// Its type.
        expected: &'static str,
        /// What the value would need.
        got: &'static str,
    },
    /// A tag or field uses the designated timestamp's name.
    #[error("column name {0:?} is reserved for the designated timestamp")]
    Reserved(String),
    /// An empty column name.
    #[error("empty column name")]
    EmptyName,
}

/// Builds one Arrow batch for one table.
pub struct BatchBuilder {
    schema: TableSchema,
    index: HashMap<String, usize>,
    cols: Vec<Builder>,
    rows: usize,
}

impl BatchBuilder {
    /// A builder for a table whose schema is now `schema`.
    pub fn new(schema: TableSchema) -> BatchBuilder {
        let index = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let cols = schema
            .columns
            .iter()
            .map(|c| Builder::new(c.ty, 0))
            .collect();
        BatchBuilder {
            schema,
            index,
            cols,
            rows: 0,
        }
    }

    /// The schema, including columns added by rows so far.
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// Rows appended.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row: the designated timestamp and `(name, value, is_tag)`
    /// cells. A cell for a column the table lacks adds the column. Either the
    /// whole row is appended or, on an error, nothing is. A column named twice
    /// keeps its first value.
    pub fn push_row<'v>(
        &mut self,
        ts: i64,
        cells: impl IntoIterator<Item = (&'v str, Value<'v>, bool)>,
    ) -> Result<(), RowError> {
        let mut new_cols: Vec<(String, ColumnType)> = Vec::new();
        let mut staged: Vec<(usize, Cell<'v>)> = Vec::new();
        for (name, value, tag) in cells {
            if name.is_empty() {
                return Err(RowError::EmptyName);
            }
            if name == TIMESTAMP {
                return Err(RowError::Reserved(name.to_string()));
            }
            let (idx, ty) = match self.index.get(name) {
                Some(&i) => (i, self.schema.columns[i].ty),
                None => match new_cols.iter().position(|(n, _)| n == name) {
                    Some(j) => (self.cols.len() + j, new_cols[j].1),
                    None => {
                        let ty = value.natural_type(tag);
                        new_cols.push((name.to_string(), ty));
                        (self.cols.len() + new_cols.len() - 1, ty)
                    }
                },
            };
            if staged.iter().any(|(i, _)| *i == idx) {
                continue;
            }
            let cell = convert(value, ty).ok_or_else(|| RowError::TypeConflict {
                column: name.to_string(),
                expected: ty.name(),
                got: value.natural_type(tag).name(),
            })?;
            staged.push((idx, cell));
        }
        for (name, ty) in new_cols {
            self.index.insert(name.clone(), self.cols.len());
            self.cols.push(Builder::new(ty, self.rows));
            self.schema.columns.push(crate::schema::Column { name, ty });
        }
        let ts_idx = self.index[TIMESTAMP];
        self.cols[ts_idx].push(Cell::Timestamp(ts));
        for (idx, cell) in staged {
            self.cols[idx].push(cell);
        }
        self.rows += 1;
        for c in &mut self.cols {
            if c.len() < self.rows {
                c.null();
            }
        }
        Ok(())
    }

    /// The batch so far; the builder starts over empty with the same schema.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.arrow(), arrays).expect("columns match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};

    #[test]
    fn rows_grow_the_schema_and_backfill_nulls() {
        let mut b = BatchBuilder::new(crate::schema::builtin_tables().remove(0));
        b.push_row(
            1,
            [
                ("symbol", Value::Str("BTC-USDT"), true),
                ("price", Value::Double(42000.1), false),
            ],
        )
        .unwrap();
        b.push_row(2, [("extra", Value::Long(7), false)]).unwrap();
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        let price = batch
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert_eq!(price.value(0), 4_200_010_000_000);
        assert!(price.is_null(1));
        let extra = batch
            .column_by_name("extra")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(extra.is_null(0));
        assert_eq!(extra.value(1), 7);
    }

    #[test]
    fn a_type_conflict_appends_nothing() {
        let mut b = BatchBuilder::new(TableSchema::new("t"));
        b.push_row(1, [("v", Value::Long(1), false)]).unwrap();
        let err = b
            .push_row(
                2,
                [
                    ("w", Value::Bool(true), false),
                    ("v", Value::Str("x"), false),
                ],
            )
            .unwrap_err();
        assert!(matches!(err, RowError::TypeConflict { .. }), "{err}");
        assert_eq!(b.rows(), 1);
        assert!(b.schema().column("w").is_none());
        assert_eq!(b.finish().num_columns(), 2);
    }

    #[test]
    fn floats_round_to_eight_decimals_exactly() {
        assert_eq!(float_to_decimal(0.1), Some(10_000_000));
        assert_eq!(float_to_decimal(42000.12345678), Some(4_200_012_345_678));
        assert_eq!(float_to_decimal(f64::NAN), None);
    }
}
