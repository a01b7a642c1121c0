//! A batch as line protocol: `SYMBOL` columns are tags, the rest fields.

use std::borrow::Cow;

use datafusion::arrow::record_batch::RecordBatch;
use tradestack_lineproto::{Encoder, FieldValue, Line, Precision};

use super::SinkError;
use super::columns::{Cell, columns, decimal_f64};
use crate::schema::{ColumnType, TableSchema};

/// Line-protocol bodies of at most `chunk` lines each, and what was left out.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    /// Request bodies.
    pub bodies: Vec<String>,
    /// Lines encoded (rows kept).
    pub lines: u64,
    /// Rows left out: no non-null field, a null timestamp, or text line
    /// protocol cannot carry (a control character in a tag).
    pub skipped: u64,
}

/// Encodes `batch` with nanosecond timestamps.
///
/// `unsigned`: whether the server takes `u` integers (InfluxDB 2.x does, 1.x
/// OSS does not); without it a `ULONG` is an `i` integer when it fits and a
/// float beyond `i64::MAX`. Nulls and non-finite floats are left out, as line
/// protocol has no way to write them.
pub(crate) fn encode(
    table: &TableSchema,
    batch: &RecordBatch,
    unsigned: bool,
    chunk: usize,
) -> Result<Encoded, SinkError> {
    let cols = columns(table, batch)?;
    let chunk = chunk.max(1);
    let mut out = Encoded::default();
    let mut enc = Encoder::new(Precision::Nanoseconds);
    let mut in_chunk = 0;
    let mut first_error = None;
    let mut line = Line::new(table.name.as_str());
    for row in 0..cols.rows {
        line.tags.clear();
        line.fields.clear();
        let Some(ts) = cols.timestamp(row) else {
            out.skipped += 1;
            continue;
        };
        line.timestamp = Some(ts);
        for c in &cols.columns {
            let Some(cell) = c.get(row) else { continue };
            let name = Cow::Borrowed(c.name);
            if c.ty == ColumnType::Symbol {
                // Tags cannot be empty: an empty symbol is as good as null.
                if let Cell::Str(s) = cell
                    && !s.is_empty()
                {
                    line.tags.push((name, Cow::Borrowed(s)));
                }
                continue;
            }
            let value = match cell {
                Cell::Str(s) => FieldValue::String(Cow::Borrowed(s)),
                Cell::Long(v) | Cell::Timestamp(v) => FieldValue::Integer(v),
                Cell::ULong(v) if unsigned => FieldValue::UInteger(v),
                Cell::ULong(v) => match i64::try_from(v) {
                    Ok(v) => FieldValue::Integer(v),
                    Err(_) => FieldValue::Float(v as f64),
                },
                Cell::Double(v) if !v.is_finite() => continue,
                Cell::Double(v) => FieldValue::Float(v),
                Cell::Bool(v) => FieldValue::Boolean(v),
                // No decimal type in line protocol: the float nearest the exact text.
                Cell::Decimal(raw, scale) => FieldValue::Float(decimal_f64(raw, scale)),
            };
            line.fields.push((name, value));
        }
        if line.fields.is_empty() {
            out.skipped += 1;
            continue;
        }
        if let Err(e) = enc.push(&line) {
            out.skipped += 1;
            first_error.get_or_insert(e);
            continue;
        }
        out.lines += 1;
        in_chunk += 1;
        if in_chunk == chunk {
            out.bodies.push(enc.as_str().to_owned());
            enc.clear();
            in_chunk = 0;
        }
    }
    if in_chunk > 0 {
        out.bodies.push(enc.into_string());
    }
    if let Some(e) = first_error {
        tracing::warn!(table = %table.name, skipped = out.skipped, error = %e, "rows not expressible as line protocol were skipped");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{BatchBuilder, Value};

    #[test]
    fn symbols_are_tags_and_decimals_are_floats_from_exact_text() {
        let table = crate::schema::builtin_tables().remove(0);
        let mut b = BatchBuilder::new(table.clone());
        b.push_row(
            5,
            [
                ("symbol", Value::Str("BTC-USDT"), true),
                ("side", Value::Str(""), true),
                ("price", Value::Decimal(4_200_012_345_678), false),
                ("trade_id", Value::Long(7), false),
                ("big", Value::ULong(u64::MAX), false),
                ("note", Value::Str("a \"b\", c"), false),
            ],
        )
        .unwrap();
        // Only a symbol: no field, so skipped.
        b.push_row(6, [("symbol", Value::Str("ETH-USDT"), true)])
            .unwrap();
        let batch = b.finish();
        let table = b.schema().clone();
        let e = encode(&table, &batch, false, 10).unwrap();
        assert_eq!((e.lines, e.skipped), (1, 1));
        assert_eq!(
            e.bodies,
            vec![
                "trades,symbol=BTC-USDT price=42000.12345678,trade_id=7i,big=1.8446744073709552e+19,note=\"a \\\"b\\\", c\" 5\n"
            ]
        );
        let e = encode(&table, &batch, true, 10).unwrap();
        assert!(e.bodies[0].contains("big=18446744073709551615u"), "{e:?}");
    }

    #[test]
    fn bodies_are_chunked() {
        let table = TableSchema::new("t").with("v", ColumnType::Long);
        let mut b = BatchBuilder::new(table.clone());
        for i in 0..5 {
            b.push_row(i, [("v", Value::Long(i), false)]).unwrap();
        }
        let e = encode(&table, &b.finish(), true, 2).unwrap();
        let sizes: Vec<usize> = e.bodies.iter().map(|b| b.lines().count()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
