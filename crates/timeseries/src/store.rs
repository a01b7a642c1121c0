//! The store: tables of Arrow batches in memory, Parquet files on disk
//! partitioned by table and UTC day, and a write-ahead log in between.
//!
//! A write is acknowledged once its batches are in the log (per the fsync
//! policy). Flushing moves the in-memory batches to Parquet files, records
//! them in the manifest, and then deletes the log segments they came from;
//! opening the store loads the manifest and replays the log after it, so a
//! crash loses nothing acknowledged and duplicates nothing flushed.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tradestack_lineproto::{Line, ParseOptions, Parser, Precision};
use tradestack_wal::{FsyncPolicy, Log, WalError};

use crate::rows::{BatchBuilder, RowError, Value};
use crate::schema::{ColumnType, TIMESTAMP, TableSchema, builtin_tables};

const DAY: i64 = 86_400_000_000_000;
/// Rows per Parquet row group: the unit that statistics let a query skip.
const ROW_GROUP_ROWS: usize = 65_536;

/// How the store behaves; `[timeseries]` in the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// When the write-ahead log reaches the disk.
    pub fsync: FsyncPolicy,
    /// Flush to Parquet once this many rows are in memory.
    pub flush_rows: usize,
    /// Flush at least this often when anything is in memory.
    #[serde(with = "crate::sinks::duration_text")]
    pub flush_interval: Duration,
    /// Merge a day's files once it has this many.
    pub compact_min_files: usize,
    /// Per-table retention, e.g. `signals = "90d"`: older days are dropped.
    #[serde(with = "crate::sinks::duration_map_text")]
    pub retention: BTreeMap<String, Duration>,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
            flush_rows: 1_000_000,
            flush_interval: Duration::from_secs(10),
            compact_min_files: 8,
            retention: BTreeMap::from([("signals".to_string(), Duration::from_secs(90 * 86_400))]),
        }
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write-ahead log or the manifest failed.
    #[error("{0}")]
    Wal(#[from] WalError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Arrow or Parquet failed.
    #[error("{0}")]
    Arrow(String),
    /// A batch does not fit the table.
    #[error("table {table}: {error}")]
    Row {
        /// Table.
        table: String,
        /// Why.
        error: RowError,
    },
    /// A table name that cannot be stored.
    #[error("bad table name {0:?}: use letters, digits, '_', '-' and '.', not starting with '.'")]
    TableName(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn arrow_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Arrow(e.to_string())
}

/// One Parquet file of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Path relative to the store's directory.
    pub path: String,
    /// UTC day (days since the epoch) its rows fall in.
    pub day: i64,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Row count.
    pub rows: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    /// Log segments numbered below this are in the files.
    wal_from: u64,
    /// Next file number.
    next_file: u64,
    tables: Vec<(TableSchema, Vec<FileMeta>)>,
}

#[derive(Serialize, Deserialize)]
struct WalRecord {
    table: String,
    schema: TableSchema,
    ipc: Vec<u8>,
}

/// In-memory rows with their time range.
#[derive(Clone)]
pub struct Chunk {
    /// The rows.
    pub batch: RecordBatch,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
}

struct TableState {
    schema: TableSchema,
    arrow: SchemaRef,
    mem: Vec<Chunk>,
    flushing: Vec<Chunk>,
    files: Vec<FileMeta>,
}

/// What a query sees of a table at one moment.
pub struct TableSnapshot {
    /// Current schema.
    pub schema: SchemaRef,
    /// Parquet files, absolute paths, within the requested range.
    pub files: Vec<PathBuf>,
    /// In-memory batches within the range, conformed to the schema.
    pub batches: Vec<RecordBatch>,
}

struct Writer {
    log: Log<WalRecord>,
    segment: u64,
}

struct Shared {
    dir: PathBuf,
    config: StoreConfig,
    writer: Mutex<Writer>,
    tables: RwLock<BTreeMap<String, RwLock<TableState>>>,
    maintenance: Mutex<Maintenance>,
    mem_rows: AtomicUsize,
    observers: RwLock<Vec<CommitObserver>>,
}

/// Called with every batch once it is in the write-ahead log.
pub type CommitObserver = Arc<dyn Fn(&TableSchema, &RecordBatch) + Send + Sync>;

struct Maintenance {
    next_file: u64,
    wal_from: u64,
    garbage: Vec<(PathBuf, Instant)>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir()).finish()
    }
}

/// The result of a line-protocol write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Lines stored.
    pub accepted: usize,
    /// Lines refused, with their 1-based line number and reason.
    pub errors: Vec<(usize, String)>,
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Rows written to Parquet.
    pub flushed_rows: u64,
    /// Files written by the flush.
    pub files_written: usize,
    /// Files merged away by compaction.
    pub files_compacted: usize,
    /// Files dropped by retention.
    pub files_expired: usize,
}

/// Accepts table names that are safe as directory names.
pub fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Store {
    /// Opens (creating) the store in `dir`, replaying its log.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let manifest_path = dir.join("manifest.bin");
        let manifest = if manifest_path.exists() {
            tradestack_wal::read_file::<Manifest>(&manifest_path)?.unwrap_or_default()
        } else {
            Manifest::default()
        };
        let mut tables = BTreeMap::new();
        for schema in builtin_tables() {
            tables.insert(schema.name.clone(), new_state(schema, Vec::new()));
        }
        for (schema, files) in manifest.tables {
            tables.insert(schema.name.clone(), new_state(schema, files));
        }
        remove_unlisted_files(dir, &tables)?;
        let wal_from = manifest.wal_from.max(1);
        let (log, opened) = Log::<WalRecord>::open(dir, "wal", config.fsync, wal_from)?;
        let mut segment = wal_from;
        let mut mem_rows = 0;
        for (number, rec) in opened.records {
            segment = segment.max(number);
            if number < wal_from {
                continue;
            }
            let batch = decode_ipc(&rec.ipc)?;
            mem_rows += batch.num_rows();
            let state = tables
                .entry(rec.table.clone())
                .or_insert_with(|| new_state(rec.schema.clone(), Vec::new()));
            apply(state.get_mut(), &rec.schema, batch);
        }
        if opened.truncated_bytes > 0 {
            tracing::warn!(
                bytes = opened.truncated_bytes,
                "time-series log: torn tail cut (never acknowledged)"
            );
        }
        Ok(Store {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                config,
                writer: Mutex::new(Writer { log, segment }),
                tables: RwLock::new(tables),
                maintenance: Mutex::new(Maintenance {
                    next_file: manifest.next_file,
                    wal_from,
                    garbage: Vec::new(),
                }),
                mem_rows: AtomicUsize::new(mem_rows),
                observers: RwLock::new(Vec::new()),
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Table names.
    pub fn tables(&self) -> Vec<String> {
        self.shared.tables.read().keys().cloned().collect()
    }

    /// A table's schema.
    pub fn schema(&self, table: &str) -> Option<TableSchema> {
        self.shared
            .tables
            .read()
            .get(table)
            .map(|t| t.read().schema.clone())
    }

    /// Rows held in memory (not yet in Parquet).
    pub fn mem_rows(&self) -> usize {
        self.shared.mem_rows.load(Ordering::Relaxed)
    }

    /// A builder for rows of `table`, with its current schema.
    pub fn builder(&self, table: &str) -> Result<BatchBuilder, StoreError> {
        if !valid_table_name(table) {
            return Err(StoreError::TableName(table.to_string()));
        }
        Ok(BatchBuilder::new(
            self.schema(table)
                .unwrap_or_else(|| TableSchema::new(table)),
        ))
    }

    /// Calls `observer` with every batch committed from now on, after it is logged (the sinks'
    /// forwarder uses this; it must not block).
    pub fn on_commit(&self, observer: CommitObserver) {
        self.shared.observers.write().push(observer);
    }

    /// Stores the rows of `builders` (one per table): in the log first, then
    /// visible to queries. Fails if a table's schema changed incompatibly
    /// since its builder was made.
    pub fn commit(&self, builders: Vec<BatchBuilder>) -> Result<usize, StoreError> {
        let prepared = prepare(builders)?;
        let mut writer = self.shared.writer.lock();
        self.commit_prepared(&mut writer, prepared)
    }

    /// Logs prepared batches, then makes them visible. Only this runs under
    /// the writer lock, so schema checks and the log order stay serial
    /// while parsing and encoding run in parallel on the callers' threads.
    fn commit_prepared(
        &self,
        writer: &mut Writer,
        prepared: Prepared,
    ) -> Result<usize, StoreError> {
        for (schema, _) in &prepared.batches {
            if let Some(current) = self.schema(&schema.name) {
                check_compatible(&current, schema)?;
            }
        }
        if prepared.records.is_empty() {
            return Ok(0);
        }
        writer.log.append(&prepared.records)?;
        for observe in self.shared.observers.read().iter() {
            for (schema, batch) in &prepared.batches {
                observe(schema, batch);
            }
        }
        let mut rows = 0;
        let mut tables = self.shared.tables.write();
        for (schema, batch) in prepared.batches {
            rows += batch.num_rows();
            let state = tables
                .entry(schema.name.clone())
                .or_insert_with(|| new_state(schema.clone(), Vec::new()));
            apply(state.get_mut(), &schema, batch);
        }
        self.shared.mem_rows.fetch_add(rows, Ordering::Relaxed);
        Ok(rows)
    }

    /// Parses and stores line protocol. Each bad line is refused with its
    /// line number; with `stop_at_error` nothing after the first bad line is
    /// read, otherwise the good lines of the whole batch are kept. Lines
    /// without a timestamp get `now` (nanoseconds).
    ///
    /// Parsing happens outside the writer lock, against the schemas as they
    /// are; if another write changed a column's type in the meantime, the
    /// input is parsed again under the lock, so each line still gets its own
    /// verdict against the schema it is committed under.
    pub fn write_lines(
        &self,
        input: &[u8],
        precision: Precision,
        now: i64,
        stop_at_error: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let (builders, outcome) = self.parse_lines(input, precision, now, stop_at_error);
        let prepared = prepare(builders)?;
        let mut writer = self.shared.writer.lock();
        match self.commit_prepared(&mut writer, prepared) {
            Err(StoreError::Row {
                error: RowError::TypeConflict { .. },
                ..
            }) => {
                let (builders, outcome) = self.parse_lines(input, precision, now, stop_at_error);
                self.commit_prepared(&mut writer, prepare(builders)?)?;
                Ok(outcome)
            }
            other => other.map(|_| outcome),
        }
    }

    fn parse_lines(
        &self,
        input: &[u8],
        precision: Precision,
        now: i64,
        stop_at_error: bool,
    ) -> (Vec<BatchBuilder>, WriteOutcome) {
        let options = ParseOptions::new(precision).with_default_timestamp(now);
        let mut parser = Parser::new(input, &options);
        let mut line = Line::new("");
        let mut builders: HashMap<String, BatchBuilder> = HashMap::new();
        let mut outcome = WriteOutcome::default();
        while let Some(result) = parser.next_into(&mut line) {
            let refused = match result {
                Err(e) => Some((e.line, e.to_string())),
                Ok(()) => self
                    .push_line(&mut builders, &line)
                    .err()
                    .map(|e| (parser.last_line(), e)),
            };
            match refused {
                Some(r) => {
                    outcome.errors.push(r);
                    if stop_at_error {
                        break;
                    }
                }
                None => outcome.accepted += 1,
            }
        }
        (builders.into_values().collect(), outcome)
    }

    fn push_line(
        &self,
        builders: &mut HashMap<String, BatchBuilder>,
        line: &Line<'_>,
    ) -> Result<(), String> {
        let table = line.measurement.as_ref();
        if !builders.contains_key(table) {
            let b = self.builder(table).map_err(|e| e.to_string())?;
            builders.insert(table.to_string(), b);
        }
        let b = builders.get_mut(table).expect("inserted above");
        let ts = line.timestamp.unwrap_or(0);
        let tags = line
            .tags
            .iter()
            .map(|(k, v)| (k.as_ref(), Value::Str(v.as_ref()), true));
        let fields = line.fields.iter().map(|(k, v)| {
            let v = match v {
                tradestack_lineproto::FieldValue::Float(f) => Value::Double(*f),
                tradestack_lineproto::FieldValue::Integer(i) => Value::Long(*i),
                tradestack_lineproto::FieldValue::UInteger(u) => Value::ULong(*u),
                tradestack_lineproto::FieldValue::Boolean(x) => Value::Bool(*x),
                tradestack_lineproto::FieldValue::String(s) => Value::Str(s.as_ref()),
            };
            (k.as_ref(), v, false)
        });
        b.push_row(ts, tags.chain(fields))
            .map_err(|e| e.to_string())
    }

    /// What a query sees of `table` for timestamps in `[from, to]`.
    pub fn snapshot(&self, table: &str, from: i64, to: i64) -> Option<TableSnapshot> {
        let tables = self.shared.tables.read();
        let state = tables.get(table)?.read();
        let files = state
            .files
            .iter()
            .filter(|f| f.max_ts >= from && f.min_ts <= to)
            .map(|f| self.shared.dir.join(&f.path))
            .collect();
        let batches = state
            .flushing
            .iter()
            .chain(&state.mem)
            .filter(|c| c.max_ts >= from && c.min_ts <= to)
            .map(|c| conform(&c.batch, &state.arrow))
            .collect();
        Some(TableSnapshot {
            schema: state.arrow.clone(),
            files,
            batches,
        })
    }

    /// Moves everything in memory to Parquet, then applies retention (at
    /// time `now`) and compaction.
    pub fn maintain(&self, now: i64) -> Result<MaintenanceReport, StoreError> {
        let mut m = self.shared.maintenance.lock();
        let mut report = MaintenanceReport::default();
        self.flush_locked(&mut m, &mut report)?;
        self.expire_locked(&mut m, now, &mut report)?;
        self.compact_locked(&mut m, &mut report)?;
        // Files replaced a while ago are no longer read by any query.
        let grace = Duration::from_secs(60);
        m.garbage.retain(|(p, when)| {
            if when.elapsed() >= grace {
                let _ = fs::remove_file(p);
                false
            } else {
                true
            }
        });
        Ok(report)
    }

    /// Moves everything in memory to Parquet.
    pub fn flush(&self) -> Result<MaintenanceReport, StoreError> {
        let mut m = self.shared.maintenance.lock();
        let mut report = MaintenanceReport::default();
        self.flush_locked(&mut m, &mut report)?;
        Ok(report)
    }

    fn flush_locked(
        &self,
        m: &mut Maintenance,
        report: &mut MaintenanceReport,
    ) -> Result<(), StoreError> {
        // 1. Freeze: what is in memory now goes out; later writes start a
        //    new log segment.
        let (segment, work) = {
            let mut writer = self.shared.writer.lock();
            let tables = self.shared.tables.read();
            let mut work = Vec::new();
            for (name, t) in tables.iter() {
                let mut t = t.write();
                if t.mem.is_empty() {
                    continue;
                }
                let chunks = std::mem::take(&mut t.mem);
                t.flushing = chunks.clone();
                work.push((name.clone(), t.arrow.clone(), sort_key(&t.schema), chunks));
            }
            if work.is_empty() {
                return Ok(());
            }
            writer.segment += 1;
            let segment = writer.segment;
            writer.log.rotate(segment)?;
            (segment, work)
        };
        // 2. Write the files, one per table and day, sorted by symbols then time.
        let mut written: Vec<(String, Vec<FileMeta>, usize)> = Vec::new();
        for (name, schema, key, chunks) in work {
            let batches: Vec<RecordBatch> =
                chunks.iter().map(|c| conform(&c.batch, &schema)).collect();
            let all = concat_batches(&schema, &batches).map_err(arrow_err)?;
            let mut metas = Vec::new();
            for (day, part) in split_by_day(&all)? {
                let meta = self.write_file(m, &name, day, &key, &part)?;
                report.flushed_rows += meta.rows;
                report.files_written += 1;
                metas.push(meta);
            }
            written.push((name, metas, all.num_rows()));
        }
        // 3. Publish the files, record them, then drop the log they replace.
        {
            let tables = self.shared.tables.read();
            for (name, metas, rows) in written {
                if let Some(t) = tables.get(&name) {
                    let mut t = t.write();
                    t.files.extend(metas);
                    t.flushing.clear();
                }
                self.shared.mem_rows.fetch_sub(rows, Ordering::Relaxed);
            }
        }
        m.wal_from = segment;
        self.write_manifest(m)?;
        self.shared.writer.lock().log.remove_before(segment)?;
        Ok(())
    }

    fn write_file(
        &self,
        m: &mut Maintenance,
        table: &str,
        day: i64,
        key: &[String],
        batch: &RecordBatch,
    ) -> Result<FileMeta, StoreError> {
        let sorted = sort_for_file(batch, key)?;
        let (min_ts, max_ts) = time_range(&sorted);
        m.next_file += 1;
        let rel = format!(
            "tables/{table}/{}/{:010}.parquet",
            day_name(day),
            m.next_file
        );
        let path = self.shared.dir.join(&rel);
        let dir = path.parent().expect("has a parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = path.with_extension("tmp");
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        // Row groups small enough that their statistics skip other symbols.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let mut w = ArrowWriter::try_new(file, sorted.schema(), Some(props)).map_err(arrow_err)?;
        w.write(&sorted).map_err(arrow_err)?;
        let file = w.into_inner().map_err(arrow_err)?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        tradestack_wal::sync_dir(dir)?;
        Ok(FileMeta {
            path: rel,
            day,
            min_ts,
            max_ts,
            rows: sorted.num_rows() as u64,
        })
    }

    fn write_manifest(&self, m: &Maintenance) -> Result<(), StoreError> {
        let tables = self.shared.tables.read();
        let manifest = Manifest {
            wal_from: m.wal_from,
            next_file: m.next_file,
            tables: tables
                .values()
                .map(|t| {
                    let t = t.read();
                    (t.schema.clone(), t.files.clone())
                })
                .collect(),
        };
        tradestack_wal::write_file(&self.shared.dir.join("manifest.bin"), &manifest)?;
        Ok(())
    }

    fn expire_locked(
        &self,
        m: &mut Maintenance,
        now: i64,
        report: &mut MaintenanceReport,
    ) -> Result<(), StoreError> {
        let mut changed = false;
        {
            let tables = self.shared.tables.read();
            for (name, keep) in &self.shared.config.retention {
                let Some(t) = tables.get(name) else { continue };
                let cutoff = now.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX));
                let mut t = t.write();
                let (old, kept): (Vec<_>, Vec<_>) =
                    t.files.drain(..).partition(|f| f.max_ts < cutoff);
                t.files = kept;
                for f in old {
                    report.files_expired += 1;
                    changed = true;
                    m.garbage
                        .push((self.shared.dir.join(&f.path), Instant::now()));
                }
            }
        }
        if changed {
            self.write_manifest(m)?;
        }
        Ok(())
    }

    fn compact_locked(
        &self,
        m: &mut Maintenance,
        report: &mut MaintenanceReport,
    ) -> Result<(), StoreError> {
        let min = self.shared.config.compact_min_files.max(2);
        let names = self.tables();
        for name in names {
            let (schema, key, groups) = {
                let tables = self.shared.tables.read();
                let Some(t) = tables.get(&name) else { continue };
                let t = t.read();
                let mut by_day: BTreeMap<i64, Vec<FileMeta>> = BTreeMap::new();
                for f in &t.files {
                    by_day.entry(f.day).or_default().push(f.clone());
                }
                let groups: Vec<(i64, Vec<FileMeta>)> = by_day
                    .into_iter()
                    .filter(|(_, fs)| fs.len() >= min)
                    .collect();
                (t.arrow.clone(), sort_key(&t.schema), groups)
            };
            for (day, olds) in groups {
                let mut batches = Vec::new();
                for f in &olds {
                    for b in read_parquet(&self.shared.dir.join(&f.path))? {
                        batches.push(conform(&b, &schema));
                    }
                }
                let all = concat_batches(&schema, &batches).map_err(arrow_err)?;
                let meta = self.write_file(m, &name, day, &key, &all)?;
                {
                    let tables = self.shared.tables.read();
                    let mut t = tables.get(&name).expect("table exists").write();
                    t.files.retain(|f| !olds.contains(f));
                    t.files.push(meta);
                    t.files.sort_by_key(|f| (f.day, f.min_ts));
                }
                self.write_manifest(m)?;
                report.files_compacted += olds.len();
                for f in olds {
                    m.garbage
                        .push((self.shared.dir.join(&f.path), Instant::now()));
                }
            }
        }
        Ok(())
    }

    /// Files of a table, for tests and tools.
    pub fn files(&self, table: &str) -> Vec<FileMeta> {
        self.shared
            .tables
            .read()
            .get(table)
            .map(|t| t.read().files.clone())
            .unwrap_or_default()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Forces the log to the disk, whatever the fsync policy.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.shared.writer.lock().log.sync()?;
        Ok(())
    }
}

fn new_state(schema: TableSchema, files: Vec<FileMeta>) -> RwLock<TableState> {
    RwLock::new(TableState {
        arrow: schema.arrow(),
        schema,
        mem: Vec::new(),
        flushing: Vec::new(),
        files,
    })
}

/// Adds a batch (with the schema it was built under) to a table.
fn apply(state: &mut TableState, schema: &TableSchema, batch: RecordBatch) {
    let mut grew = false;
    for c in &schema.columns {
        if state.schema.column(&c.name).is_none() {
            state.schema.columns.push(c.clone());
            grew = true;
        }
    }
    if grew {
        state.arrow = state.schema.arrow();
    }
    let (min_ts, max_ts) = time_range(&batch);
    state.mem.push(Chunk {
        batch,
        min_ts,
        max_ts,
    });
}

/// Refuses a builder schema whose columns changed type in the meantime.
fn check_compatible(current: &TableSchema, new: &TableSchema) -> Result<(), StoreError> {
    for c in &new.columns {
        if let Some((_, ty)) = current.column(&c.name)
            && ty != c.ty
            && !(matches!(ty, ColumnType::Symbol | ColumnType::Varchar)
                && matches!(c.ty, ColumnType::Symbol | ColumnType::Varchar))
        {
            return Err(StoreError::Row {
                table: new.name.clone(),
                error: RowError::TypeConflict {
                    column: c.name.clone(),
                    expected: ty.name(),
                    got: c.ty.name(),
                },
            });
        }
    }
    Ok(())
}

/// Finished batches and their log records, built before taking the writer lock.
struct Prepared {
    records: Vec<WalRecord>,
    batches: Vec<(TableSchema, RecordBatch)>,
}

fn prepare(builders: Vec<BatchBuilder>) -> Result<Prepared, StoreError> {
    let mut records = Vec::new();
    let mut batches = Vec::new();
    for mut b in builders {
        if b.rows() == 0 {
            continue;
        }
        let schema = b.schema().clone();
        let batch = b.finish();
        records.push(WalRecord {
            table: schema.name.clone(),
            schema: schema.clone(),
            ipc: encode_ipc(&batch)?,
        });
        batches.push((schema, batch));
    }
    Ok(Prepared { records, batches })
}

/// `batch` with the columns of `schema`, missing ones null.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    if batch.schema().fields() == schema.fields() {
        return batch.clone();
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            _ => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("conformed columns match the schema")
}

/// The smallest and largest designated timestamp of `batch`.
fn time_range(batch: &RecordBatch) -> (i64, i64) {
    batch
        .column_by_name(TIMESTAMP)
        .expect("designated timestamp")
        .as_primitive::<TimestampNanosecondType>()
        .values()
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// What a Parquet file is sorted by: the table's symbol columns in schema
/// order, then the designated timestamp. Like InfluxDB 3's tags-then-time
/// key, it keeps each instrument's rows together, so a query for one symbol
/// skips the row groups of the others.
fn sort_key(schema: &TableSchema) -> Vec<String> {
    schema
        .columns
        .iter()
        .filter(|c| c.ty == ColumnType::Symbol)
        .map(|c| c.name.clone())
        .chain(std::iter::once(TIMESTAMP.to_string()))
        .collect()
}

fn sort_for_file(batch: &RecordBatch, key: &[String]) -> Result<RecordBatch, StoreError> {
    let columns: Vec<SortColumn> = key
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .map(|values| SortColumn {
            values: values.clone(),
            options: None,
        })
        .collect();
    let idx = lexsort_to_indices(&columns, None).map_err(arrow_err)?;
    take_record_batch(batch, &idx).map_err(arrow_err)
}

fn split_by_day(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>, StoreError> {
    let ts = batch
        .column_by_name(TIMESTAMP)
        .expect("designated timestamp")
        .as_primitive::<TimestampNanosecondType>();
    let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (i, v) in ts.values().iter().enumerate() {
        rows.entry(v.div_euclid(DAY)).or_default().push(i as u32);
    }
    if rows.len() == 1 {
        let day = *rows.keys().next().expect("one day");
        return Ok(vec![(day, batch.clone())]);
    }
    rows.into_iter()
        .map(|(day, idx)| {
            let idx = datafusion::arrow::array::UInt32Array::from(idx);
            take_record_batch(batch, &idx)
                .map(|b| (day, b))
                .map_err(arrow_err)
        })
        .collect()
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: i64) -> String {
    let (y, m, d) = tradestack_model::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 512);
    {
        let mut w = StreamWriter::try_new(&mut out, &batch.schema()).map_err(arrow_err)?;
        w.write(batch).map_err(arrow_err)?;
        w.finish().map_err(arrow_err)?;
    }
    Ok(out)
}

fn decode_ipc(bytes: &[u8]) -> Result<RecordBatch, StoreError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(arrow_err)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)?;
    concat_batches(&schema, &batches).map_err(arrow_err)
}

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(arrow_err)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(arrow_err)
}

/// Deletes Parquet files the manifest does not list (a crash between
/// writing a file and recording it), and temporary files.
fn remove_unlisted_files(
    dir: &Path,
    tables: &BTreeMap<String, RwLock<TableState>>,
) -> Result<(), StoreError> {
    let listed: std::collections::HashSet<PathBuf> = tables
        .values()
        .flat_map(|t| {
            t.read()
                .files
                .iter()
                .map(|f| dir.join(&f.path))
                .collect::<Vec<_>>()
        })
        .collect();
    let root = dir.join("tables");
    if !root.exists() {
        return Ok(());
    }
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_err(&d))? {
            let path = entry.map_err(io_err(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if !listed.contains(&path) {
                tracing::info!(path = %path.display(), "removing a file the manifest does not list");
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_are_utc_calendar_days() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(18_314), "2020-02-22");
        assert_eq!(day_name(-1), "1969-12-31");
        assert_eq!(day_name(11_016), "2000-02-29");
    }

    #[test]
    fn table_names_are_safe_paths() {
        assert!(valid_table_name("trades"));
        assert!(valid_table_name("cpu.load-1_m"));
        for bad in ["", ".hidden", "a/b", "..", "a b", "é"] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }
}
