//! The embedded time-series store and its ingest and query APIs.
//!
//! Layers, bottom up (after InfluxDB 3 and NautilusTrader's catalog):
//! - [`schema`]: typed tables with a designated `timestamp`; money columns
//!   are exact `DECIMAL(38,8)`.
//! - [`rows`]: row-at-a-time Arrow batch building with schema growth.
//! - [`store`]: Arrow batches in memory, a write-ahead log for durability,
//!   Parquet files per table and UTC day, retention and compaction.
//! - [`query`]: SQL through DataFusion over memory and disk, pruning by time.
//!
//! See `DESIGN.md` for the reasoning.

pub mod http;
pub mod import;
pub mod metrics;
pub mod query;
pub mod render;
pub mod rows;
pub mod schema;
pub mod sinks;
pub mod store;
pub mod tcp;

pub use query::{QueryEngine, QueryError, QueryResult};
pub use rows::{BatchBuilder, RowError, Value};
pub use schema::{ColumnType, TIMESTAMP, TableSchema};
pub use store::{CommitObserver, MaintenanceReport, Store, StoreConfig, StoreError, WriteOutcome};
