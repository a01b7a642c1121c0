//! The state store port: durable orders, fills, accounts, balances, alerts,
//! audit records, scenario runs, registry entries and service snapshots, plus
//! a transactional outbox for the message bus.
//!
//! Services depend on the object-safe [`StateStore`] trait (`Arc<dyn
//! StateStore>`) and pick an adapter by URL with [`connect`]:
//! [`SqliteStore`] (one WAL-mode file; single node, development, simulation)
//! or [`PostgresStore`] (a pool, one schema per domain). Both run the same
//! versioned migrations and pass the same conformance suite.
//!
//! All changes go through [`StateStore::commit`], which applies a
//! [`WriteBatch`] in one transaction. A batch may carry [`Write::Outbox`]
//! messages: they commit or roll back together with the state they describe,
//! so the bus can never announce a change the store does not have, nor miss
//! one it does. A relay drains [`StateStore::outbox_pending`] to the broker.
//! Likewise a service keeps its own state as a [`Snapshot`] in the batch that
//! carries its audit records and messages; [`Write::PutSnapshotIfVersion`]
//! refuses to overwrite a snapshot another instance has moved on.
//!
//! Money is stored exactly: prices and quantities as their raw `i64`, amounts
//! as the exact decimal of their raw `i128` (PostgreSQL `NUMERIC(39,0)`,
//! SQLite `TEXT`); timestamps as `i64` nanoseconds. Never a float.

#![warn(missing_docs)]

mod error;
mod postgres;
mod records;
mod sql;
mod sqlite;

#[doc(hidden)]
pub mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use tradestack_model::{AccountId, Fill, Order, OrderId, UnixNanos};

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::{
    Account, AlertQuery, AuditQuery, AuditRecord, Balance, FillQuery, OrderQuery, OutboxMessage,
    OutboxRow, OutboxSeq, OutboxStats, RegistryRecord, ScenarioRun, Snapshot, StoredAlert, Write,
    WriteBatch,
};
pub use sqlite::SqliteStore;

/// Durable state for the trading services, behind one transactional interface.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The adapter's engine: `"sqlite"` or `"postgres"`.
    fn engine(&self) -> &'static str;

    /// Checks that the database answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Applies every write of `batch` in one transaction: all or nothing.
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// One order by id.
    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// Orders matching `query`, newest first.
    async fn orders(&self, query: OrderQuery) -> Result<Vec<Order>, StoreError>;

    /// Fills matching `query`, newest first.
    async fn fills(&self, query: FillQuery) -> Result<Vec<Fill>, StoreError>;

    /// One account by id.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Every account, by id.
    async fn accounts(&self) -> Result<Vec<Account>, StoreError>;

    /// One account's balances, by asset.
    async fn balances(&self, account: &AccountId) -> Result<Vec<Balance>, StoreError>;

    /// Alerts matching `query`, most recently seen first.
    async fn alerts(&self, query: AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;

    /// Audit records matching `query`, oldest first.
    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// One scenario run by id.
    async fn get_scenario_run(&self, id: &str) -> Result<Option<ScenarioRun>, StoreError>;

    /// Scenario runs, most recently started first.
    async fn scenario_runs(&self, limit: Option<u32>) -> Result<Vec<ScenarioRun>, StoreError>;

    /// Every registry entry, by name then id.
    async fn registry_entries(&self) -> Result<Vec<RegistryRecord>, StoreError>;

    /// One service snapshot by id.
    async fn get_snapshot(&self, id: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Up to `limit` undelivered outbox messages, lowest sequence first.
    ///
    /// With concurrent writers a lower sequence can become visible after a
    /// higher one, so relays must poll pending rows rather than remember the
    /// highest sequence seen.
    async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError>;

    /// Marks pending rows delivered at `at`; returns how many changed
    /// (already-delivered rows keep their first delivery time).
    async fn outbox_mark_delivered(
        &self,
        seqs: &[OutboxSeq],
        at: UnixNanos,
    ) -> Result<u64, StoreError>;

    /// Makes rows delivered at or after `since` (optionally only on `topic`)
    /// pending again, for when the broker lost data; returns how many.
    async fn outbox_requeue_delivered_since(
        &self,
        topic: Option<&str>,
        since: UnixNanos,
    ) -> Result<u64, StoreError>;

    /// Deletes rows delivered before `before`; returns how many.
    async fn outbox_purge_delivered(&self, before: UnixNanos) -> Result<u64, StoreError>;

    /// Counts of pending and delivered rows.
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
}

/// Opens the store named by `url`: `sqlite://PATH` (or `sqlite:PATH`),
/// `sqlite::memory:`, `postgres://...` or `postgresql://...`.
pub async fn connect(url: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(Arc::new(SqliteStore::open_in_memory().await?));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(StoreError::InvalidUrl {
                engine: "sqlite",
                reason: "no file path after the scheme".into(),
            });
        }
        if path.contains('?') {
            // Pragmas are the store's decision (WAL, synchronous, busy timeout).
            return Err(StoreError::InvalidUrl {
                engine: "sqlite",
                reason: "URL options are not supported; the store sets its own pragmas".into(),
            });
        }
        return Ok(Arc::new(SqliteStore::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(url).await?));
    }
    Err(StoreError::UnsupportedUrl {
        scheme: url.split_once(':').map_or(url, |(s, _)| s).to_string(),
    })
}
