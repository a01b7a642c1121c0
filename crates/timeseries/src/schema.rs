//! Tables, their typed columns and designated timestamp, and how they map
//! to Arrow.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Name of the designated timestamp column of every table.
pub const TIMESTAMP: &str = "timestamp";
/// Scale of the fixed-point `DECIMAL` columns (the model's 8 decimals).
pub const DECIMAL_SCALE: i8 = 8;
/// Precision of the `DECIMAL` columns: i128 holds 38 digits.
pub const DECIMAL_PRECISION: u8 = 38;
const KIND_KEY: &str = "tradestack.type";

/// A column's type, in QuestDB's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// A repeated string such as an instrument or a venue (line-protocol tags).
    Symbol,
    /// Free text.
    Varchar,
    /// 64-bit signed integer.
    Long,
    /// 64-bit unsigned integer (line-protocol `u` fields).
    ULong,
    /// 64-bit float, for values that are not money (IV, Greeks, signals).
    Double,
    /// true or false.
    Boolean,
    /// Nanoseconds since the Unix epoch, UTC.
    Timestamp,
    /// Exact fixed point with 8 decimals: prices, quantities, amounts.
    Decimal,
}

impl ColumnType {
    /// The Arrow type the column is stored as.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Symbol | ColumnType::Varchar => DataType::Utf8,
            ColumnType::Long => DataType::Int64,
            ColumnType::ULong => DataType::UInt64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            ColumnType::Decimal => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        }
    }

    /// QuestDB's name for the type, as `/exec` reports it.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Symbol => "SYMBOL",
            ColumnType::Varchar => "VARCHAR",
            ColumnType::Long => "LONG",
            ColumnType::ULong => "ULONG",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Decimal => "DECIMAL",
        }
    }

    fn from_name(name: &str) -> Option<ColumnType> {
        Some(match name {
            "SYMBOL" => ColumnType::Symbol,
            "VARCHAR" => ColumnType::Varchar,
            "LONG" => ColumnType::Long,
            "ULONG" => ColumnType::ULong,
            "DOUBLE" => ColumnType::Double,
            "BOOLEAN" => ColumnType::Boolean,
            "TIMESTAMP" => ColumnType::Timestamp,
            "DECIMAL" => ColumnType::Decimal,
            _ => return None,
        })
    }

    /// The type of an Arrow field, from its metadata or else its data type.
    pub fn of_field(field: &Field) -> Option<ColumnType> {
        if let Some(t) = field
            .metadata()
            .get(KIND_KEY)
            .and_then(|n| Self::from_name(n))
        {
            return Some(t);
        }
        Some(match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Varchar,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                ColumnType::Long
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                ColumnType::ULong
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Double,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => ColumnType::Timestamp,
            DataType::Decimal128(..) | DataType::Decimal256(..) => ColumnType::Decimal,
            _ => return None,
        })
    }
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
}

/// A table's columns; the designated timestamp is the column named
/// [`TIMESTAMP`], always present and never null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<Column>,
}

impl TableSchema {
    /// A table with only its timestamp column.
    pub fn new(name: &str) -> TableSchema {
        TableSchema {
            name: name.to_string(),
            columns: vec![Column {
                name: TIMESTAMP.into(),
                ty: ColumnType::Timestamp,
            }],
        }
    }

    /// Adds a column (builder style).
    pub fn with(mut self, name: &str, ty: ColumnType) -> TableSchema {
        self.columns.push(Column {
            name: name.into(),
            ty,
        });
        self
    }

    /// The index and type of a column.
    pub fn column(&self, name: &str) -> Option<(usize, ColumnType)> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .map(|i| (i, self.columns[i].ty))
    }

    /// The Arrow schema.
    pub fn arrow(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                Field::new(&c.name, c.ty.arrow(), c.name != TIMESTAMP).with_metadata(HashMap::from(
                    [(KIND_KEY.to_string(), c.ty.name().to_string())],
                ))
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// The tables every store has, with the services' column layout.
pub fn builtin_tables() -> Vec<TableSchema> {
    use ColumnType::*;
    vec![
        TableSchema::new("trades")
            .with("symbol", Symbol)
            .with("venue", Symbol)
            .with("side", Symbol)
            .with("price", Decimal)
            .with("quantity", Decimal)
            .with("trade_id", Long),
        TableSchema::new("quotes")
            .with("symbol", Symbol)
            .with("venue", Symbol)
            .with("bid", Decimal)
            .with("bid_size", Decimal)
            .with("ask", Decimal)
            .with("ask_size", Decimal),
        TableSchema::new("bars")
            .with("symbol", Symbol)
            .with("venue", Symbol)
            .with("period", Symbol)
            .with("open", Decimal)
            .with("high", Decimal)
            .with("low", Decimal)
            .with("close", Decimal)
            .with("volume", Decimal)
            .with("quote_volume", Decimal)
            .with("trades", Long)
            .with("vwap", Decimal),
        TableSchema::new("book_snapshots")
            .with("symbol", Symbol)
            .with("venue", Symbol)
            .with("side", Symbol)
            .with("level", Long)
            .with("price", Decimal)
            .with("quantity", Decimal),
        TableSchema::new("options_quotes")
            .with("instrument", Symbol)
            .with("underlying", Symbol)
            .with("bid", Decimal)
            .with("ask", Decimal)
            .with("bid_iv", Double)
            .with("ask_iv", Double)
            .with("mark_iv", Double)
            .with("delta", Double)
            .with("gamma", Double)
            .with("vega", Double)
            .with("theta", Double),
        TableSchema::new("signals")
            .with("source", Symbol)
            .with("symbol", Symbol)
            .with("name", Symbol)
            .with("value", Double),
        TableSchema::new("executions")
            .with("account", Symbol)
            .with("strategy", Symbol)
            .with("symbol", Symbol)
            .with("order_id", Long)
            .with("side", Symbol)
            .with("price", Decimal)
            .with("quantity", Decimal)
            .with("fee", Decimal)
            .with("fee_asset", Symbol)
            .with("liquidity", Symbol),
        TableSchema::new("alerts")
            .with("rule", Symbol)
            .with("severity", Symbol)
            .with("subject", Varchar)
            .with("value", Double)
            .with("threshold", Double)
            .with("message", Varchar)
            .with("resolved", Boolean),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_survive_the_arrow_schema() {
        for t in builtin_tables() {
            let arrow = t.arrow();
            let back: Vec<ColumnType> = arrow
                .fields()
                .iter()
                .map(|f| ColumnType::of_field(f).unwrap())
                .collect();
            let want: Vec<ColumnType> = t.columns.iter().map(|c| c.ty).collect();
            assert_eq!(back, want, "{}", t.name);
            assert_eq!(t.column(TIMESTAMP), Some((0, ColumnType::Timestamp)));
        }
    }
}
