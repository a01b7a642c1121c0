//! PostgreSQL and TimescaleDB: tables created and grown on demand, rows
//! bulk-loaded with `COPY`, money as `numeric(38,8)`.
//!
//! With the `timescaledb` extension a table becomes a hypertable with
//! compression and, when configured, a retention policy. Without it the
//! table is natively partitioned by range of `"timestamp"`, one partition
//! per UTC day (`<table>_pYYYYMMDD`), created for the days each batch
//! touches; [`PostgresSink::expire`] drops the days past retention.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::columns::{Cell, Columns, columns, day_of, decimal_text};
use super::{Sink, SinkError, duration_map_text, duration_text};
use crate::schema::{ColumnType, TIMESTAMP, TableSchema};
use tradestack_model::days_from_civil;

const DAY_NS: i64 = 86_400_000_000_000;
/// PostgreSQL cuts identifiers to 63 bytes; longer ones would collide.
const MAX_IDENT: usize = 63;
/// Room left in a table name for the `_pYYYYMMDD` partition suffix.
const MAX_TABLE: usize = MAX_IDENT - 10;
/// `COPY` data is sent in pieces of this size.
const COPY_CHUNK: usize = 1 << 20;

/// `kind = "postgres"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Name in logs; defaults to `postgres`.
    pub name: Option<String>,
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/market`.
    pub url: String,
    /// Schema the tables go in.
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// Per-table retention, e.g. `trades = "30d"`.
    #[serde(with = "duration_map_text")]
    pub retention: BTreeMap<String, Duration>,
    /// TimescaleDB: compress chunks older than this.
    #[serde(with = "duration_text")]
    pub compress_after: Duration,
    /// TimescaleDB: the hypertables' chunk interval.
    #[serde(with = "duration_text")]
    pub chunk_interval: Duration,
}

impl Default for PostgresConfig {
    fn default() -> PostgresConfig {
        PostgresConfig {
            name: None,
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            schema: "market".into(),
            max_connections: 4,
            retention: BTreeMap::new(),
            compress_after: Duration::from_secs(7 * 86_400),
            chunk_interval: Duration::from_secs(86_400),
        }
    }
}

/// What this process already knows about one table in the database.
#[derive(Debug, Default)]
struct TableState {
    columns: HashSet<String>,
    /// Natively partitioned (`relkind = 'p'`): days need partitions.
    partitioned: bool,
    days: BTreeSet<i64>,
}

/// Writes batches to PostgreSQL or TimescaleDB.
pub struct PostgresSink {
    name: String,
    config: PostgresConfig,
    pool: PgPool,
    timescale: tokio::sync::OnceCell<bool>,
    // DDL runs under this lock so one process creates each thing once.
    tables: tokio::sync::Mutex<HashMap<String, TableState>>,
}

impl PostgresSink {
    /// A sink for `config` (inside a tokio runtime). Connects lazily, so a
    /// database that is down at start delays writes (the
    /// [`super::Forwarder`] retries) but not the process.
    pub fn new(config: PostgresConfig) -> Result<PostgresSink, SinkError> {
        let name = config.name.clone().unwrap_or_else(|| "postgres".into());
        check_ident(&config.schema, MAX_IDENT)
            .map_err(|e| SinkError::Config(format!("{name}: schema: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .connect_lazy(&config.url)
            .map_err(|e| SinkError::Config(format!("{name}: url: {e}")))?;
        Ok(PostgresSink {
            name,
            config,
            pool,
            timescale: tokio::sync::OnceCell::new(),
            tables: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The connection pool (for maintenance and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database has the `timescaledb` extension (asked once).
    pub async fn timescale(&self) -> Result<bool, SinkError> {
        self.timescale
            .get_or_try_init(|| async {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT extname::text FROM pg_extension WHERE extname = 'timescaledb'",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(self.pg("detecting timescaledb"))?;
                tracing::info!(sink = %self.name, timescaledb = row.is_some(), "connected");
                Ok(row.is_some())
            })
            .await
            .copied()
    }

    /// Drops the daily partitions that ended before `now` (ns) minus each
    /// table's retention; returns their names. With TimescaleDB the
    /// retention policy does this and nothing is dropped here.
    pub async fn expire(&self, now: i64) -> Result<Vec<String>, SinkError> {
        if self.timescale().await? {
            return Ok(Vec::new());
        }
        let mut dropped = Vec::new();
        let mut tables = self.tables.lock().await;
        for (table, keep) in &self.config.retention {
            let keep = i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
            let cutoff = now.saturating_sub(keep);
            let parts: Vec<(String,)> = sqlx::query_as(
                "SELECT c.relname::text FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent \
                 JOIN pg_namespace n ON n.oid = p.relnamespace \
                 WHERE n.nspname = $1 AND p.relname = $2",
            )
            .bind(&self.config.schema)
            .bind(table)
            .fetch_all(&self.pool)
            .await
            .map_err(self.pg("listing partitions"))?;
            for (part,) in parts {
                let Some(day) = partition_day(table, &part) else {
                    continue;
                };
                // A day goes once all of it is older than the cutoff.
                if (day + 1).saturating_mul(DAY_NS) > cutoff {
                    continue;
                }
                let sql = format!("DROP TABLE IF EXISTS {}", self.qualified(&part));
                sqlx::raw_sql(&sql)
                    .execute(&self.pool)
                    .await
                    .map_err(self.pg(format!("dropping {part}")))?;
                if let Some(state) = tables.get_mut(table) {
                    state.days.remove(&day);
                }
                tracing::info!(sink = %self.name, partition = %part, "expired");
                dropped.push(part);
            }
        }
        Ok(dropped)
    }

    fn pg(&self, context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> SinkError {
        let (sink, context) = (self.name.clone(), context.into());
        move |error| SinkError::Postgres {
            sink,
            context,
            error,
        }
    }

    fn qualified(&self, table: &str) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.config.schema),
            quote_ident(table)
        )
    }

    async fn exec(&self, sql: &str) -> Result<(), SinkError> {
        tracing::debug!(sink = %self.name, %sql, "ddl");
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(self.pg(sql))
    }

    /// Makes sure the table, its columns and the partitions of `days` exist.
    async fn ensure(&self, table: &TableSchema, days: &BTreeSet<i64>) -> Result<(), SinkError> {
        let timescale = self.timescale().await?;
        let mut tables = self.tables.lock().await;
        if !tables.contains_key(&table.name) {
            let state = self.create(table, timescale).await?;
            tables.insert(table.name.clone(), state);
        }
        let state = tables.get_mut(&table.name).expect("inserted above");
        let q = self.qualified(&table.name);
        for c in &table.columns {
            if !state.columns.contains(&c.name) {
                self.exec(&format!(
                    "ALTER TABLE {q} ADD COLUMN IF NOT EXISTS {} {}",
                    quote_ident(&c.name),
                    pg_type(c.ty)
                ))
                .await?;
                state.columns.insert(c.name.clone());
            }
        }
        if state.partitioned {
            let missing: Vec<i64> = days.difference(&state.days).copied().collect();
            for day in missing {
                let part = partition_name(&table.name, day);
                self.exec(&format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {q} FOR VALUES FROM ('{}') TO ('{}')",
                    self.qualified(&part),
                    day_start(day),
                    day_start(day + 1)
                ))
                .await?;
                state.days.insert(day);
            }
        }
        Ok(())
    }

    /// Creates the schema and table if missing and reads back what exists.
    async fn create(&self, table: &TableSchema, timescale: bool) -> Result<TableState, SinkError> {
        let q = self.qualified(&table.name);
        self.exec(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&self.config.schema)
        ))
        .await?;
        let mut cols = format!("{} timestamptz NOT NULL", quote_ident(TIMESTAMP));
        for c in table.columns.iter().filter(|c| c.name != TIMESTAMP) {
            let _ = write!(cols, ", {} {}", quote_ident(&c.name), pg_type(c.ty));
        }
        let partition = if timescale {
            ""
        } else {
            " PARTITION BY RANGE (\"timestamp\")"
        };
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {q} ({cols}){partition}"
        ))
        .await?;
        let kind: Option<(String,)> = sqlx::query_as(
            "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(&self.config.schema)
        .bind(&table.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.pg("reading the table kind"))?;
        let existing: Vec<(String,)> = sqlx::query_as(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
        )
        .bind(&self.config.schema)
        .bind(&table.name)
        .fetch_all(&self.pool)
        .await
        .map_err(self.pg("reading the columns"))?;
        let partitioned = kind.is_some_and(|(k,)| k == "p");
        if partitioned {
            self.exec(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {q} (\"timestamp\")",
                quote_ident(&format!("{}_ts_idx", table.name))
            ))
            .await?;
        } else if timescale {
            self.hypertable(table).await?;
        }
        Ok(TableState {
            columns: existing.into_iter().map(|(c,)| c).collect(),
            partitioned,
            days: BTreeSet::new(),
        })
    }

    /// Hypertable, compression and retention (all idempotent).
    async fn hypertable(&self, table: &TableSchema) -> Result<(), SinkError> {
        let q = self.qualified(&table.name);
        let rel = quote_literal(&q);
        self.exec(&format!(
            "SELECT create_hypertable({rel}, 'timestamp', chunk_time_interval => {}, \
             if_not_exists => true, migrate_data => true)",
            interval(self.config.chunk_interval)
        ))
        .await?;
        let enabled: Option<(bool,)> = sqlx::query_as(
            "SELECT compression_enabled FROM timescaledb_information.hypertables \
             WHERE hypertable_schema = $1 AND hypertable_name = $2",
        )
        .bind(&self.config.schema)
        .bind(&table.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.pg("reading compression settings"))?;
        // Settings cannot change once chunks are compressed: set them once.
        if !enabled.is_some_and(|(e,)| e) {
            // Segment by the instrument, so one symbol's rows compress together.
            let segment = table
                .columns
                .iter()
                .find(|c| c.name == "symbol" && c.ty == ColumnType::Symbol)
                .or_else(|| table.columns.iter().find(|c| c.ty == ColumnType::Symbol));
            let settings = match segment {
                Some(c) => format!(
                    "timescaledb.compress, timescaledb.compress_segmentby = {}",
                    quote_literal(&quote_ident(&c.name))
                ),
                None => "timescaledb.compress".to_string(),
            };
            self.exec(&format!("ALTER TABLE {q} SET ({settings})"))
                .await?;
        }
        self.exec(&format!(
            "SELECT add_compression_policy({rel}, {}, if_not_exists => true)",
            interval(self.config.compress_after)
        ))
        .await?;
        if let Some(keep) = self.config.retention.get(&table.name) {
            self.exec(&format!(
                "SELECT add_retention_policy({rel}, {}, if_not_exists => true)",
                interval(*keep)
            ))
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn maintain(&self, now: i64) -> Result<(), SinkError> {
        self.expire(now).await.map(|_| ())
    }

    async fn write(&self, table: &TableSchema, batch: &RecordBatch) -> Result<u64, SinkError> {
        let bad = |message: String| SinkError::Batch {
            table: table.name.clone(),
            message,
        };
        check_ident(&table.name, MAX_TABLE).map_err(|e| bad(format!("table name: {e}")))?;
        for c in &table.columns {
            check_ident(&c.name, MAX_IDENT).map_err(|e| bad(format!("column name: {e}")))?;
        }
        let cols = columns(table, batch)?;
        let days: BTreeSet<i64> = (0..cols.rows)
            .filter_map(|r| cols.timestamp(r))
            .map(day_of)
            .collect();
        if days.is_empty() {
            return Ok(0);
        }
        self.ensure(table, &days).await?;
        let (data, rows) = csv(&cols).map_err(bad)?;
        let mut names = quote_ident(TIMESTAMP);
        for c in &cols.columns {
            let _ = write!(names, ", {}", quote_ident(c.name));
        }
        let stmt = format!(
            "COPY {} ({names}) FROM STDIN (FORMAT csv)",
            self.qualified(&table.name)
        );
        let mut conn = self.pool.acquire().await.map_err(self.pg("connecting"))?;
        let mut copy = conn
            .copy_in_raw(&stmt)
            .await
            .map_err(self.pg("starting COPY"))?;
        for piece in data.as_bytes().chunks(COPY_CHUNK) {
            copy.send(piece)
                .await
                .map_err(self.pg("sending COPY data"))?;
        }
        let copied = copy.finish().await.map_err(self.pg("finishing COPY"))?;
        tracing::trace!(sink = %self.name, table = %table.name, rows = copied, "copied");
        debug_assert_eq!(copied, rows);
        Ok(copied)
    }
}

/// The batch as `COPY ... (FORMAT csv)` text: an unquoted empty field is
/// NULL, text is always quoted (so `""` is an empty string, and a quoted
/// `\.` is data, not the end marker). Rows with a null timestamp are left out.
fn csv(cols: &Columns<'_>) -> Result<(String, u64), String> {
    let mut out = String::with_capacity(cols.rows * 64);
    let mut rows = 0;
    for row in 0..cols.rows {
        let Some(ts) = cols.timestamp(row) else {
            continue;
        };
        push_timestamp(&mut out, ts);
        for c in &cols.columns {
            out.push(',');
            let Some(cell) = c.get(row) else { continue };
            match cell {
                Cell::Str(s) => {
                    if s.contains('\0') {
                        return Err(format!(
                            "column {}: PostgreSQL text cannot hold NUL",
                            c.name
                        ));
                    }
                    out.push('"');
                    out.push_str(&s.replace('"', "\"\""));
                    out.push('"');
                }
                Cell::Long(v) => {
                    let _ = write!(out, "{v}");
                }
                Cell::ULong(v) => {
                    let _ = write!(out, "{v}");
                }
                Cell::Double(v) if v.is_nan() => out.push_str("NaN"),
                Cell::Double(v) if v.is_infinite() => {
                    out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
                }
                // Display is the shortest text that reads back as the same f64.
                Cell::Double(v) => {
                    let _ = write!(out, "{v}");
                }
                Cell::Bool(v) => out.push(if v { 't' } else { 'f' }),
                Cell::Timestamp(v) => push_timestamp(&mut out, v),
                Cell::Decimal(raw, scale) => out.push_str(&decimal_text(raw, scale)),
            }
        }
        out.push('\n');
        rows += 1;
    }
    Ok((out, rows))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00`. PostgreSQL keeps microseconds, so the
/// nanoseconds are truncated (toward the past).
fn push_timestamp(out: &mut String, ns: i64) {
    let us = ns.div_euclid(1_000);
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let day = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{} {:02}:{:02}:{:02}.{frac:06}+00",
        crate::store::day_name(day),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

fn day_start(day: i64) -> String {
    format!("{} 00:00:00+00", crate::store::day_name(day))
}

fn partition_name(table: &str, day: i64) -> String {
    format!("{table}_p{}", crate::store::day_name(day).replace('-', ""))
}

/// The day of a partition named by [`partition_name`] for `table`.
fn partition_day(table: &str, part: &str) -> Option<i64> {
    let digits = part.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (
        digits[..4].parse().ok()?,
        digits[4..6].parse().ok()?,
        digits[6..].parse().ok()?,
    );
    Some(days_from_civil(y, m, d))
}

fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Symbol | ColumnType::Varchar => "text",
        ColumnType::Long => "bigint",
        ColumnType::ULong => "numeric(20,0)",
        ColumnType::Double => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::Decimal => "numeric(38,8)",
    }
}

/// `"name"` with inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn interval(d: Duration) -> String {
    format!("INTERVAL '{} seconds'", d.as_secs().max(1))
}

fn check_ident(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > max {
        return Err(format!("{name:?} is longer than {max} bytes"));
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_truncate_to_microseconds() {
        let mut s = String::new();
        push_timestamp(&mut s, 1_709_251_200_123_456_789);
        assert_eq!(s, "2024-03-01 00:00:00.123456+00");
        s.clear();
        push_timestamp(&mut s, -1);
        assert_eq!(s, "1969-12-31 23:59:59.999999+00");
    }

    #[test]
    fn partition_names_round_trip() {
        let day = 19_783; // 2024-03-01
        let name = partition_name("trades", day);
        assert_eq!(name, "trades_p20240301");
        assert_eq!(partition_day("trades", &name), Some(day));
        assert_eq!(partition_day("trade", &name), None);
        assert_eq!(partition_day("trades", "trades_pdefault"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
