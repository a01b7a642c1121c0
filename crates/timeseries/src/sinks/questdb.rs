//! QuestDB through its official client, `questdb-rs`, over TCP line protocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use questdb::ingress::{Buffer, Sender, SenderBuilder, TimestampNanos};
use serde::{Deserialize, Serialize};

use super::columns::{Cell, columns, decimal_f64};
use super::{Sink, SinkError};
use crate::schema::{ColumnType, TableSchema};

/// `kind = "questdb"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestDbConfig {
    /// Name in logs; defaults to `questdb`.
    #[serde(default)]
    pub name: Option<String>,
    /// The client's configuration string, e.g. `tcp::addr=127.0.0.1:9009;`
    /// (only `tcp` is built in).
    pub conf: String,
}

/// Writes batches to QuestDB, one flush per batch.
///
/// TCP line protocol has no acknowledgement: a flush that returns means the
/// bytes reached the socket, and QuestDB reports bad rows only in its log.
/// A batch retried after a failed flush may arrive twice unless the table
/// has `DEDUP UPSERT KEYS`.
pub struct QuestDbSink {
    name: String,
    conf: String,
    // The client is blocking and not `Sync`: it lives behind a mutex and is
    // used from `spawn_blocking`; `None` after an error, so the next write
    // reconnects.
    sender: Arc<std::sync::Mutex<Option<Sender>>>,
    skipped: Arc<AtomicU64>,
}

impl QuestDbSink {
    /// A sink for `config`: the configuration string is checked now, the
    /// connection made on the first write (and again after an error).
    pub fn new(config: QuestDbConfig) -> Result<QuestDbSink, SinkError> {
        let name = config.name.clone().unwrap_or_else(|| "questdb".into());
        SenderBuilder::from_conf(&config.conf)
            .map_err(|e| SinkError::Config(format!("{name}: conf: {e}")))?;
        Ok(QuestDbSink {
            name,
            conf: config.conf,
            sender: Arc::new(std::sync::Mutex::new(None)),
            skipped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Rows left out so far (no non-null field, or names the client refuses).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Sink for QuestDbSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, table: &TableSchema, batch: &RecordBatch) -> Result<u64, SinkError> {
        // Fail on a malformed batch before taking the connection.
        columns(table, batch)?;
        let (name, conf) = (self.name.clone(), self.conf.clone());
        let (sender, skipped) = (self.sender.clone(), self.skipped.clone());
        let (table, batch) = (table.clone(), batch.clone());
        tokio::task::spawn_blocking(move || {
            let qdb = |error| SinkError::QuestDb {
                sink: name.clone(),
                error,
            };
            let mut slot = sender.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(Sender::from_conf(&conf).map_err(qdb)?);
                tracing::info!(sink = %name, "connected");
            }
            let s = slot.as_mut().expect("connected above");
            let mut buf = s.new_buffer();
            let (rows, skip) = fill(&table, &batch, &mut buf).map_err(qdb)?;
            if skip > 0 {
                skipped.fetch_add(skip, Ordering::Relaxed);
                tracing::debug!(sink = %name, table = %table.name, skipped = skip, "rows skipped");
            }
            if rows > 0
                && let Err(e) = s.flush(&mut buf)
            {
                // The socket state is unknown after a failed flush: start over.
                *slot = None;
                return Err(qdb(e));
            }
            Ok(rows)
        })
        .await
        .map_err(|e| SinkError::Config(format!("questdb write task: {e}")))?
    }
}

/// Appends the batch's rows to `buf`: symbols first (the protocol puts tags
/// before fields), then the other columns, then the designated timestamp.
/// Returns (rows appended, rows skipped).
fn fill(table: &TableSchema, batch: &RecordBatch, buf: &mut Buffer) -> questdb::Result<(u64, u64)> {
    // The caller checked the batch already.
    let Ok(cols) = columns(table, batch) else {
        return Ok((0, batch.num_rows() as u64));
    };
    let (mut rows, mut skipped) = (0, 0);
    let mut first_error = None;
    for row in 0..cols.rows {
        let has_field = cols
            .columns
            .iter()
            .any(|c| c.ty != ColumnType::Symbol && c.get(row).is_some());
        let Some(ts) = cols.timestamp(row).filter(|_| has_field) else {
            skipped += 1;
            continue;
        };
        buf.set_marker()?;
        match row_into(table, &cols, row, ts, buf) {
            Ok(()) => rows += 1,
            Err(e) => {
                // Invalid names or values refuse this row only.
                buf.rewind_to_marker()?;
                skipped += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    buf.clear_marker();
    if let Some(e) = first_error {
        tracing::warn!(table = %table.name, skipped, error = %e, "rows the QuestDB client refused were skipped");
    }
    Ok((rows, skipped))
}

fn row_into(
    table: &TableSchema,
    cols: &super::columns::Columns<'_>,
    row: usize,
    ts: i64,
    buf: &mut Buffer,
) -> questdb::Result<()> {
    buf.table(table.name.as_str())?;
    for c in cols.columns.iter().filter(|c| c.ty == ColumnType::Symbol) {
        // An empty symbol cannot be written as a tag; it reads back as null.
        if let Some(Cell::Str(s)) = c.get(row)
            && !s.is_empty()
        {
            buf.symbol(c.name, s)?;
        }
    }
    for c in cols.columns.iter().filter(|c| c.ty != ColumnType::Symbol) {
        let Some(cell) = c.get(row) else { continue };
        match cell {
            Cell::Str(s) => buf.column_str(c.name, s)?,
            Cell::Long(v) => buf.column_i64(c.name, v)?,
            // QuestDB has no unsigned 64-bit type.
            Cell::ULong(v) => match i64::try_from(v) {
                Ok(v) => buf.column_i64(c.name, v)?,
                Err(_) => buf.column_f64(c.name, v as f64)?,
            },
            Cell::Double(v) => buf.column_f64(c.name, v)?,
            Cell::Bool(v) => buf.column_bool(c.name, v)?,
            Cell::Timestamp(v) => buf.column_ts(c.name, TimestampNanos::new(v))?,
            // Line protocol v1 has no decimal: the float nearest the exact text.
            Cell::Decimal(raw, scale) => buf.column_f64(c.name, decimal_f64(raw, scale))?,
        };
    }
    buf.at(TimestampNanos::new(ts))
}
