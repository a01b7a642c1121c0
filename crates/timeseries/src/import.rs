//! CSV import: a header row names the columns, types are inferred from the
//! data (or taken from the table when it exists), and the designated
//! timestamp is the column named by the caller or `timestamp`.

use serde::Serialize;
use tradestack_api::ApiError;

use crate::rows::Value;
use crate::schema::ColumnType;
use crate::store::Store;

/// What an import did.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    /// Table imported into.
    pub table: String,
    /// Rows stored.
    pub rows_imported: u64,
    /// Rows refused.
    pub rows_rejected: u64,
    /// The first refused rows: 1-based line number in the file and why.
    pub errors: Vec<ImportError>,
}

/// One refused row.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ImportError {
    /// Line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub message: String,
}

/// Rows per committed batch.
const BATCH: usize = 100_000;
/// Rows looked at to infer types.
const SAMPLE: usize = 1_000;

/// Parses a timestamp: RFC 3339 (with or without `Z`), or an integer
/// whose magnitude picks the unit (s, ms, µs or ns since the epoch).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        let a = n.unsigned_abs();
        return if a >= 100_000_000_000_000_000 {
            Some(n)
        } else if a >= 100_000_000_000_000 {
            n.checked_mul(1_000)
        } else if a >= 100_000_000_000 {
            n.checked_mul(1_000_000)
        } else {
            n.checked_mul(1_000_000_000)
        };
    }
    let t =
        humantime::parse_rfc3339_weak(s.trim_end_matches('Z').replace('T', " ").as_str()).ok()?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

fn infer(samples: &[&str]) -> ColumnType {
    let present: Vec<&&str> = samples.iter().filter(|s| !s.is_empty()).collect();
    if present.is_empty() {
        return ColumnType::Varchar;
    }
    if present.iter().all(|s| s.parse::<i64>().is_ok()) {
        ColumnType::Long
    } else if present.iter().all(|s| s.parse::<f64>().is_ok()) {
        ColumnType::Double
    } else if present
        .iter()
        .all(|s| matches!(s.to_ascii_lowercase().as_str(), "true" | "false"))
    {
        ColumnType::Boolean
    } else {
        ColumnType::Varchar
    }
}

fn value<'a>(s: &'a str, ty: ColumnType) -> Result<Option<Value<'a>>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{s:?} is not a {}", ty.name());
    Ok(Some(match ty {
        ColumnType::Symbol | ColumnType::Varchar => Value::Str(s),
        ColumnType::Long => Value::Long(s.trim().parse().map_err(|_| bad())?),
        ColumnType::ULong => Value::ULong(s.trim().parse().map_err(|_| bad())?),
        ColumnType::Double => Value::Double(s.trim().parse().map_err(|_| bad())?),
        ColumnType::Boolean => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        ColumnType::Timestamp => Value::Timestamp(parse_timestamp(s).ok_or_else(bad)?),
        ColumnType::Decimal => Value::Decimal(
            tradestack_model::fixed::parse_decimal(s).map_err(|e| format!("{s:?}: {e}"))?,
        ),
    }))
}

/// Imports CSV `data` into `table`.
pub fn import_csv(
    store: &Store,
    table: &str,
    timestamp: Option<&str>,
    data: &[u8],
) -> Result<ImportReport, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::bad_request("body", format!("CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let ts_name = timestamp.unwrap_or(crate::schema::TIMESTAMP);
    let Some(ts_idx) = headers.iter().position(|h| h == ts_name) else {
        return Err(ApiError::bad_request(
            "timestamp",
            format!("no column {ts_name:?} in the CSV header to use as the designated timestamp"),
        ));
    };
    let mut records = reader.records();
    // Infer from a sample, then keep going with the same reader.
    let mut sample = Vec::new();
    let mut errors = Vec::new();
    let mut rejected = 0u64;
    for r in records.by_ref().take(SAMPLE) {
        match r {
            Ok(rec) => sample.push(rec),
            Err(e) => {
                rejected += 1;
                errors.push(ImportError {
                    line: e.position().map_or(0, |p| p.line()),
                    message: e.to_string(),
                });
            }
        }
    }
    let mut builder = store
        .builder(table)
        .map_err(|e| ApiError::bad_request("name", e.to_string()))?;
    let types: Vec<ColumnType> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == ts_idx {
                return ColumnType::Timestamp;
            }
            builder.schema().column(h).map_or_else(
                || {
                    let col: Vec<&str> = sample.iter().map(|r| r.get(i).unwrap_or("")).collect();
                    infer(&col)
                },
                |(_, t)| t,
            )
        })
        .collect();
    let mut imported = 0u64;
    let row = |rec: &csv::StringRecord, builder: &mut crate::rows::BatchBuilder| {
        let line = rec.position().map_or(0, |p| p.line());
        let ts = match parse_timestamp(rec.get(ts_idx).unwrap_or("")) {
            Some(ts) => ts,
            None => {
                return Err(ImportError {
                    line,
                    message: format!("{ts_name}: not a timestamp"),
                });
            }
        };
        let mut cells = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            if i == ts_idx {
                continue;
            }
            match value(rec.get(i).unwrap_or(""), types[i]) {
                Ok(Some(v)) => {
                    // A new column takes the inferred type, not the value's.
                    let v = match (v, types[i]) {
                        (Value::Str(s), ColumnType::Symbol) => Value::Str(s),
                        (v, _) => v,
                    };
                    cells.push((h.as_str(), v, false));
                }
                Ok(None) => {}
                Err(message) => {
                    return Err(ImportError {
                        line,
                        message: format!("{h}: {message}"),
                    });
                }
            }
        }
        builder.push_row(ts, cells).map_err(|e| ImportError {
            line,
            message: e.to_string(),
        })
    };
    let commit =
        |builder: crate::rows::BatchBuilder| -> Result<crate::rows::BatchBuilder, ApiError> {
            let next = crate::rows::BatchBuilder::new(builder.schema().clone());
            store
                .commit(vec![builder])
                .map_err(|e| ApiError::bad_request("body", e.to_string()))?;
            Ok(next)
        };
    for rec in &sample {
        match row(rec, &mut builder) {
            Ok(()) => imported += 1,
            Err(e) => {
                rejected += 1;
                errors.push(e);
            }
        }
    }
    for r in records {
        let outcome = match r {
            Ok(rec) => row(&rec, &mut builder),
            Err(e) => Err(ImportError {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            }),
        };
        match outcome {
            Ok(()) => imported += 1,
            Err(e) => {
                rejected += 1;
                errors.push(e);
            }
        }
        if builder.rows() >= BATCH {
            builder = commit(builder)?;
        }
    }
    commit(builder)?;
    errors.truncate(100);
    Ok(ImportReport {
        table: table.to_string(),
        rows_imported: imported,
        rows_rejected: rejected,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_any_unit_or_rfc3339() {
        let ns = 1_582_329_600_000_000_000;
        for s in [
            "1582329600",
            "1582329600000",
            "1582329600000000",
            "1582329600000000000",
            "2020-02-22T00:00:00Z",
            "2020-02-22 00:00:00",
        ] {
            assert_eq!(parse_timestamp(s), Some(ns), "{s}");
        }
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
