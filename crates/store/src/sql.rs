//! The engine-neutral SQL layer shared by the SQLite and PostgreSQL adapters.
//!
//! Every statement is written once here. The engines differ only in table
//! names (schemas vs prefixes) and in how exact decimals and JSON are bound and
//! read (PostgreSQL casts text to `NUMERIC`/`JSONB` and back; SQLite keeps
//! TEXT), which a [`Dialect`] describes. Both drivers accept `$N` placeholders.
//! Values cross the driver boundary as a small closed set of primitive types
//! ([`Arg`], [`RowExt`]), so the generic code needs no driver trait bounds.

use std::collections::BTreeSet;
use std::fmt::Display;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Database, Encode, Type};
use tradestack_model::{
    AccountId, Alert, Amount, AssetCode, ClientOrderId, EventId, Fill, InstrumentId, Order,
    OrderId, Price, Quantity, StrategyId, TradeId, UnixNanos,
};

use crate::error::StoreError;
use crate::records::{
    Account, AlertQuery, AuditQuery, AuditRecord, Balance, FillQuery, OrderQuery, OutboxMessage,
    OutboxRow, OutboxSeq, OutboxStats, RegistryRecord, ScenarioRun, Snapshot, StoredAlert, Write,
    WriteBatch,
};

/// A bind parameter.
pub(crate) enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Blob(Vec<u8>),
    OptBlob(Option<Vec<u8>>),
    Bool(bool),
}

/// Binds `args` to `query` in order.
pub(crate) fn bind_all<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    Vec<u8>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB>,
    Option<String>: Encode<'q, DB>,
    Option<Vec<u8>>: Encode<'q, DB>,
{
    for arg in args {
        query = match arg {
            Arg::I64(v) => query.bind(v),
            Arg::OptI64(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
            Arg::OptBlob(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
        };
    }
    query
}

/// Typed column access on a driver row.
pub(crate) trait RowExt {
    fn i64(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn blob(&self, col: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn bool(&self, col: &str) -> Result<bool, sqlx::Error>;
}

/// Implements [`RowExt`] for a driver's row type.
macro_rules! impl_row_ext {
    ($row:ty) => {
        impl $crate::sql::RowExt for $row {
            fn i64(&self, col: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn blob(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn bool(&self, col: &str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
        }
    };
}
pub(crate) use impl_row_ext;

/// Something statements can run on: a pool (autocommit) or an open transaction.
#[async_trait]
pub(crate) trait Exec: Send {
    type Row: RowExt + Send + Sync + 'static;
    /// Runs a statement and returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error>;
    /// Runs a query and returns all its rows.
    async fn fetch(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, sqlx::Error>;
}

/// Implements [`Exec`] for a driver's pool and transaction types.
macro_rules! impl_exec {
    ($db:ty, $row:ty) => {
        #[async_trait::async_trait]
        impl $crate::sql::Exec for sqlx::Pool<$db> {
            type Row = $row;
            async fn execute(
                &mut self,
                sql: &str,
                args: Vec<$crate::sql::Arg>,
            ) -> Result<u64, sqlx::Error> {
                let done = $crate::sql::bind_all(sqlx::query(sql), args)
                    .execute(&*self)
                    .await?;
                Ok(done.rows_affected())
            }
            async fn fetch(
                &mut self,
                sql: &str,
                args: Vec<$crate::sql::Arg>,
            ) -> Result<Vec<$row>, sqlx::Error> {
                $crate::sql::bind_all(sqlx::query(sql), args)
                    .fetch_all(&*self)
                    .await
            }
        }

        // For every lifetime, not just `'static`: `commit`'s future must be
        // `Send`, and proving that for rows fetched inside the transaction
        // needs the impl to hold for any (erased) transaction lifetime.
        #[async_trait::async_trait]
        impl<'c> $crate::sql::Exec for sqlx::Transaction<'c, $db> {
            type Row = $row;
            async fn execute(
                &mut self,
                sql: &str,
                args: Vec<$crate::sql::Arg>,
            ) -> Result<u64, sqlx::Error> {
                let done = $crate::sql::bind_all(sqlx::query(sql), args)
                    .execute(&mut **self)
                    .await?;
                Ok(done.rows_affected())
            }
            async fn fetch(
                &mut self,
                sql: &str,
                args: Vec<$crate::sql::Arg>,
            ) -> Result<Vec<$row>, sqlx::Error> {
                $crate::sql::bind_all(sqlx::query(sql), args)
                    .fetch_all(&mut **self)
                    .await
            }
        }
    };
}
pub(crate) use impl_exec;

/// Implements [`crate::StateStore`] for an adapter struct with `pool: Pool<DB>`
/// and `stmts: Statements` fields, by delegating to the generic operations.
macro_rules! impl_state_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::StateStore for $store {
            fn engine(&self) -> &'static str {
                self.stmts.engine()
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                $crate::sql::ping(&mut self.pool.clone(), &self.stmts).await
            }

            async fn commit(&self, batch: $crate::WriteBatch) -> Result<(), $crate::StoreError> {
                if batch.is_empty() {
                    return Ok(());
                }
                let engine = self.stmts.engine();
                let mut tx = self.pool.begin().await.map_err(|e| {
                    $crate::StoreError::db(engine, "commit: begin transaction", e)
                })?;
                match $crate::sql::apply_batch(&mut tx, &self.stmts, &batch).await {
                    Ok(()) => {
                        tx.commit().await.map_err(|e| {
                            $crate::StoreError::db(engine, "commit: commit transaction", e)
                        })?;
                        tracing::debug!(engine, writes = batch.len(), "batch committed");
                        Ok(())
                    }
                    Err(err) => {
                        // Roll back explicitly so the connection returns to the
                        // pool clean; dropping the transaction would also do it.
                        if let Err(rollback) = tx.rollback().await {
                            tracing::warn!(engine, error = %rollback, "rollback of a failed batch failed");
                        }
                        tracing::debug!(engine, error = %err, "batch rolled back");
                        Err(err)
                    }
                }
            }

            async fn get_order(
                &self,
                id: tradestack_model::OrderId,
            ) -> Result<Option<tradestack_model::Order>, $crate::StoreError> {
                $crate::sql::get_order(&mut self.pool.clone(), &self.stmts, id).await
            }

            async fn orders(
                &self,
                query: $crate::OrderQuery,
            ) -> Result<Vec<tradestack_model::Order>, $crate::StoreError> {
                $crate::sql::orders(&mut self.pool.clone(), &self.stmts, &query).await
            }

            async fn fills(
                &self,
                query: $crate::FillQuery,
            ) -> Result<Vec<tradestack_model::Fill>, $crate::StoreError> {
                $crate::sql::fills(&mut self.pool.clone(), &self.stmts, &query).await
            }

            async fn get_account(
                &self,
                id: &tradestack_model::AccountId,
            ) -> Result<Option<$crate::Account>, $crate::StoreError> {
                $crate::sql::get_account(&mut self.pool.clone(), &self.stmts, id).await
            }

            async fn accounts(&self) -> Result<Vec<$crate::Account>, $crate::StoreError> {
                $crate::sql::accounts(&mut self.pool.clone(), &self.stmts).await
            }

            async fn balances(
                &self,
                account: &tradestack_model::AccountId,
            ) -> Result<Vec<$crate::Balance>, $crate::StoreError> {
                $crate::sql::balances(&mut self.pool.clone(), &self.stmts, account).await
            }

            async fn alerts(
                &self,
                query: $crate::AlertQuery,
            ) -> Result<Vec<$crate::StoredAlert>, $crate::StoreError> {
                $crate::sql::alerts(&mut self.pool.clone(), &self.stmts, &query).await
            }

            async fn audit(
                &self,
                query: $crate::AuditQuery,
            ) -> Result<Vec<$crate::AuditRecord>, $crate::StoreError> {
                $crate::sql::audit(&mut self.pool.clone(), &self.stmts, &query).await
            }

            async fn get_scenario_run(
                &self,
                id: &str,
            ) -> Result<Option<$crate::ScenarioRun>, $crate::StoreError> {
                $crate::sql::get_scenario_run(&mut self.pool.clone(), &self.stmts, id).await
            }

            async fn scenario_runs(
                &self,
                limit: Option<u32>,
            ) -> Result<Vec<$crate::ScenarioRun>, $crate::StoreError> {
                $crate::sql::scenario_runs(&mut self.pool.clone(), &self.stmts, limit).await
            }

            async fn registry_entries(
                &self,
            ) -> Result<Vec<$crate::RegistryRecord>, $crate::StoreError> {
                $crate::sql::registry_entries(&mut self.pool.clone(), &self.stmts).await
            }

            async fn get_snapshot(
                &self,
                id: &str,
            ) -> Result<Option<$crate::Snapshot>, $crate::StoreError> {
                $crate::sql::get_snapshot(&mut self.pool.clone(), &self.stmts, id).await
            }

            async fn outbox_pending(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::OutboxRow>, $crate::StoreError> {
                $crate::sql::outbox_pending(&mut self.pool.clone(), &self.stmts, limit).await
            }

            async fn outbox_mark_delivered(
                &self,
                seqs: &[$crate::OutboxSeq],
                at: tradestack_model::UnixNanos,
            ) -> Result<u64, $crate::StoreError> {
                $crate::sql::outbox_mark_delivered(&mut self.pool.clone(), &self.stmts, seqs, at)
                    .await
            }

            async fn outbox_requeue_delivered_since(
                &self,
                topic: Option<&str>,
                since: tradestack_model::UnixNanos,
            ) -> Result<u64, $crate::StoreError> {
                $crate::sql::outbox_requeue(&mut self.pool.clone(), &self.stmts, topic, since).await
            }

            async fn outbox_purge_delivered(
                &self,
                before: tradestack_model::UnixNanos,
            ) -> Result<u64, $crate::StoreError> {
                $crate::sql::outbox_purge(&mut self.pool.clone(), &self.stmts, before).await
            }

            async fn outbox_stats(&self) -> Result<$crate::OutboxStats, $crate::StoreError> {
                $crate::sql::outbox_stats(&mut self.pool.clone(), &self.stmts).await
            }
        }
    };
}
pub(crate) use impl_state_store;

/// What differs between engines in the SQL text.
pub(crate) struct Dialect {
    pub engine: &'static str,
    pub orders: &'static str,
    pub fills: &'static str,
    pub accounts: &'static str,
    pub balances: &'static str,
    pub alerts: &'static str,
    pub audit: &'static str,
    pub scenario_runs: &'static str,
    pub registry: &'static str,
    pub snapshots: &'static str,
    pub outbox: &'static str,
    /// Appended to a placeholder bound with an exact decimal string.
    pub numeric_param: &'static str,
    /// Appended to a placeholder bound with JSON text.
    pub json_param: &'static str,
    /// Appended to a decimal or JSON column so it reads back as text.
    pub to_text: &'static str,
}

/// How a column is bound and read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// Integer, text, blob or boolean: bound and read as is.
    Plain,
    /// An exact integer wider than i64, carried as decimal text.
    Numeric,
    /// JSON, carried as text.
    Json,
}

use Ty::{Json, Numeric, Plain};

const ORDER_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("client_order_id", Plain),
    ("account", Plain),
    ("strategy", Plain),
    ("instrument", Plain),
    ("side", Plain),
    ("order_type", Plain),
    ("time_in_force", Plain),
    ("price", Plain),
    ("stop_price", Plain),
    ("expire_at", Plain),
    ("quantity", Plain),
    ("filled", Plain),
    ("status", Plain),
    ("is_open", Plain),
    ("created_at", Plain),
    ("updated_at", Plain),
];
const FILL_COLS: &[(&str, Ty)] = &[
    ("trade_id", Plain),
    ("order_id", Plain),
    ("client_order_id", Plain),
    ("account", Plain),
    ("strategy", Plain),
    ("instrument", Plain),
    ("side", Plain),
    ("price", Plain),
    ("quantity", Plain),
    ("fee", Numeric),
    ("fee_asset", Plain),
    ("liquidity", Plain),
    ("ts", Plain),
];
const ACCOUNT_COLS: &[(&str, Ty)] = &[("id", Plain), ("tier", Plain), ("created_at", Plain)];
const BALANCE_COLS: &[(&str, Ty)] = &[
    ("account", Plain),
    ("asset", Plain),
    ("free", Numeric),
    ("locked", Numeric),
    ("updated_at", Plain),
];
const ALERT_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("rule", Plain),
    ("severity", Plain),
    ("subject", Plain),
    ("message", Plain),
    ("value", Numeric),
    ("threshold", Numeric),
    ("first_seen", Plain),
    ("last_seen", Plain),
    ("resolved", Plain),
];
const AUDIT_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("ts", Plain),
    ("actor", Plain),
    ("action", Plain),
    ("subject", Plain),
    ("detail", Json),
];
const RUN_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("name", Plain),
    ("seed", Numeric),
    ("status", Plain),
    ("started_at", Plain),
    ("finished_at", Plain),
    ("report", Json),
];
const REGISTRY_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("name", Plain),
    ("address", Plain),
    ("port", Plain),
    ("tags", Json),
    ("meta", Json),
    ("registered_at", Plain),
];
const SNAPSHOT_COLS: &[(&str, Ty)] = &[
    ("id", Plain),
    ("version", Plain),
    ("ts", Plain),
    ("data", Json),
];
/// Insert columns of the outbox; `seq` is assigned by the database.
const OUTBOX_COLS: &[(&str, Ty)] = &[
    ("event_id", Plain),
    ("topic", Plain),
    ("msg_key", Plain),
    ("headers", Json),
    ("payload", Plain),
    ("created_at", Plain),
];

/// What an insert does when the key already exists.
enum OnConflict {
    /// Replace the non-key columns (upsert).
    Update,
    /// Keep the existing row (idempotent insert).
    Ignore,
    /// Fail with a unique violation (append-only).
    Fail,
}

/// Every fixed statement of one engine, rendered once when the store opens.
pub(crate) struct Statements {
    d: &'static Dialect,
    order_cols: String,
    fill_cols: String,
    account_cols: String,
    balance_cols: String,
    alert_cols: String,
    audit_cols: String,
    run_cols: String,
    registry_cols: String,
    snapshot_cols: String,
    outbox_cols: String,
    put_order: String,
    put_fill: String,
    put_account: String,
    put_balance: String,
    put_alert: String,
    append_audit: String,
    put_run: String,
    put_registry: String,
    delete_registry: String,
    put_snapshot: String,
    /// Inserts a snapshot only if none is stored under its id (changes 0 rows otherwise).
    insert_snapshot: String,
    /// Replaces a snapshot only if its stored version is `$5` (changes 0 rows otherwise).
    update_snapshot_if: String,
    put_outbox: String,
}

impl Statements {
    /// Renders the statements for `d`.
    pub(crate) fn new(d: &'static Dialect) -> Self {
        let select = |cols: &[(&str, Ty)]| {
            cols.iter()
                .map(|(c, ty)| match ty {
                    Plain => (*c).to_string(),
                    Numeric | Json => format!("{c}{} AS {c}", d.to_text),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let insert = |table: &str, cols: &[(&str, Ty)], key: &[&str], on: OnConflict| {
            let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
            let params: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| match ty {
                    Plain => format!("${}", i + 1),
                    Numeric => format!("${}{}", i + 1, d.numeric_param),
                    Json => format!("${}{}", i + 1, d.json_param),
                })
                .collect();
            let mut sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                params.join(", ")
            );
            match on {
                OnConflict::Update => {
                    let sets: Vec<String> = names
                        .iter()
                        .filter(|c| !key.contains(c))
                        .map(|c| format!("{c} = excluded.{c}"))
                        .collect();
                    sql.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        key.join(", "),
                        sets.join(", ")
                    ));
                }
                OnConflict::Ignore => {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", key.join(", ")));
                }
                OnConflict::Fail => {}
            }
            sql
        };
        Statements {
            d,
            order_cols: select(ORDER_COLS),
            fill_cols: select(FILL_COLS),
            account_cols: select(ACCOUNT_COLS),
            balance_cols: select(BALANCE_COLS),
            alert_cols: select(ALERT_COLS),
            audit_cols: select(AUDIT_COLS),
            run_cols: select(RUN_COLS),
            registry_cols: select(REGISTRY_COLS),
            snapshot_cols: select(SNAPSHOT_COLS),
            outbox_cols: format!("seq, {}", select(OUTBOX_COLS)),
            put_order: insert(d.orders, ORDER_COLS, &["id"], OnConflict::Update),
            put_fill: insert(
                d.fills,
                FILL_COLS,
                &["trade_id", "order_id"],
                OnConflict::Ignore,
            ),
            put_account: insert(d.accounts, ACCOUNT_COLS, &["id"], OnConflict::Update),
            put_balance: insert(
                d.balances,
                BALANCE_COLS,
                &["account", "asset"],
                OnConflict::Update,
            ),
            put_alert: insert(d.alerts, ALERT_COLS, &["id"], OnConflict::Update),
            append_audit: insert(d.audit, AUDIT_COLS, &["id"], OnConflict::Fail),
            put_run: insert(d.scenario_runs, RUN_COLS, &["id"], OnConflict::Update),
            put_registry: insert(d.registry, REGISTRY_COLS, &["id"], OnConflict::Update),
            delete_registry: format!("DELETE FROM {} WHERE id = $1", d.registry),
            put_snapshot: insert(d.snapshots, SNAPSHOT_COLS, &["id"], OnConflict::Update),
            insert_snapshot: insert(d.snapshots, SNAPSHOT_COLS, &["id"], OnConflict::Ignore),
            // Same parameter order as the inserts, plus the expected version.
            // Under concurrency PostgreSQL re-checks the WHERE clause against
            // the row a competing transaction committed, and SQLite serializes
            // writers, so exactly one of two racing writers changes the row.
            update_snapshot_if: format!(
                "UPDATE {} SET version = $2, ts = $3, data = $4{} WHERE id = $1 AND version = $5",
                d.snapshots, d.json_param
            ),
            put_outbox: insert(d.outbox, OUTBOX_COLS, &["event_id"], OnConflict::Ignore),
        }
    }

    /// The engine name.
    pub(crate) fn engine(&self) -> &'static str {
        self.d.engine
    }
}

// ---------------------------------------------------------------- encoding

/// An unsigned id as BIGINT; ids above `i64::MAX` cannot be stored.
fn id_arg(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| {
        format!(
            "{what} {value} is above the largest storable id {}",
            i64::MAX
        )
    })
}

/// A unit-like enum as its serde (snake_case) name.
fn enum_text<T: Serialize + std::fmt::Debug>(value: &T) -> Result<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(format!("{value:?} does not encode as a name: {other}")),
        Err(e) => Err(format!("cannot encode {value:?}: {e}")),
    }
}

fn json_text<T: Serialize>(value: &T, what: &str) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("cannot encode {what} as JSON: {e}"))
}

fn amount_text(amount: Amount) -> String {
    amount.raw().to_string()
}

/// A snapshot version as BIGINT; versions above `i64::MAX` cannot be stored.
fn version_arg(version: u64) -> Result<i64, String> {
    i64::try_from(version).map_err(|_| {
        format!(
            "snapshot version {version} is above the largest storable version {}",
            i64::MAX
        )
    })
}

/// The id, version, ts and data parameters of a snapshot write.
fn snapshot_args(s: &Snapshot) -> Result<Vec<Arg>, String> {
    Ok(vec![
        Arg::Text(s.id.clone()),
        Arg::I64(version_arg(s.version)?),
        Arg::I64(s.ts.0),
        Arg::Text(json_text(&s.data, "snapshot data")?),
    ])
}

/// The statement and parameters for one write.
fn write_sql<'s>(st: &'s Statements, write: &Write) -> Result<(&'s str, Vec<Arg>), String> {
    Ok(match write {
        Write::PutOrder(o) => (
            &st.put_order,
            vec![
                Arg::I64(id_arg(o.id.0, "order id")?),
                Arg::Text(o.client_order_id.as_str().to_owned()),
                Arg::Text(o.account.as_str().to_owned()),
                Arg::OptText(o.strategy.as_ref().map(|s| s.as_str().to_owned())),
                Arg::Text(o.instrument.as_str().to_owned()),
                Arg::Text(enum_text(&o.side)?),
                Arg::Text(enum_text(&o.order_type)?),
                Arg::Text(enum_text(&o.time_in_force)?),
                Arg::OptI64(o.price.map(Price::raw)),
                Arg::OptI64(o.stop_price.map(Price::raw)),
                Arg::OptI64(o.expire_at.map(UnixNanos::as_i64)),
                Arg::I64(o.quantity.raw()),
                Arg::I64(o.filled.raw()),
                Arg::Text(enum_text(&o.status)?),
                Arg::Bool(!o.status.is_terminal()),
                Arg::I64(o.created_at.0),
                Arg::I64(o.updated_at.0),
            ],
        ),
        Write::PutFill(f) => (
            &st.put_fill,
            vec![
                Arg::I64(id_arg(f.trade_id.0, "trade id")?),
                Arg::I64(id_arg(f.order_id.0, "order id")?),
                Arg::Text(f.client_order_id.as_str().to_owned()),
                Arg::Text(f.account.as_str().to_owned()),
                Arg::OptText(f.strategy.as_ref().map(|s| s.as_str().to_owned())),
                Arg::Text(f.instrument.as_str().to_owned()),
                Arg::Text(enum_text(&f.side)?),
                Arg::I64(f.price.raw()),
                Arg::I64(f.quantity.raw()),
                Arg::Text(amount_text(f.fee)),
                Arg::Text(f.fee_asset.as_str().to_owned()),
                Arg::Text(enum_text(&f.liquidity)?),
                Arg::I64(f.ts.0),
            ],
        ),
        Write::PutAccount(a) => (
            &st.put_account,
            vec![
                Arg::Text(a.id.as_str().to_owned()),
                Arg::Text(a.tier.clone()),
                Arg::I64(a.created_at.0),
            ],
        ),
        Write::PutBalance(b) => (
            &st.put_balance,
            vec![
                Arg::Text(b.account.as_str().to_owned()),
                Arg::Text(b.asset.as_str().to_owned()),
                Arg::Text(amount_text(b.free)),
                Arg::Text(amount_text(b.locked)),
                Arg::I64(b.updated_at.0),
            ],
        ),
        Write::PutAlert(s) => {
            let a = &s.alert;
            (
                &st.put_alert,
                vec![
                    Arg::Text(s.id.clone()),
                    Arg::Text(a.rule.clone()),
                    Arg::Text(enum_text(&a.severity)?),
                    Arg::Text(a.subject.clone()),
                    Arg::Text(a.message.clone()),
                    Arg::Text(amount_text(a.value)),
                    Arg::Text(amount_text(a.threshold)),
                    Arg::I64(a.first_seen.0),
                    Arg::I64(a.last_seen.0),
                    Arg::Bool(a.resolved),
                ],
            )
        }
        Write::AppendAudit(r) => (
            &st.append_audit,
            vec![
                Arg::Text(r.id.clone()),
                Arg::I64(r.ts.0),
                Arg::Text(r.actor.clone()),
                Arg::Text(r.action.clone()),
                Arg::Text(r.subject.clone()),
                Arg::Text(json_text(&r.detail, "audit detail")?),
            ],
        ),
        Write::PutScenarioRun(r) => (
            &st.put_run,
            vec![
                Arg::Text(r.id.clone()),
                Arg::Text(r.name.clone()),
                Arg::Text(r.seed.to_string()),
                Arg::Text(r.status.clone()),
                Arg::I64(r.started_at.0),
                Arg::OptI64(r.finished_at.map(UnixNanos::as_i64)),
                Arg::OptText(
                    r.report
                        .as_ref()
                        .map(|v| json_text(v, "scenario report"))
                        .transpose()?,
                ),
            ],
        ),
        Write::PutRegistryEntry(e) => (
            &st.put_registry,
            vec![
                Arg::Text(e.id.clone()),
                Arg::Text(e.name.clone()),
                Arg::Text(e.address.clone()),
                Arg::I64(i64::from(e.port)),
                Arg::Text(json_text(&e.tags, "registry tags")?),
                Arg::Text(json_text(&e.meta, "registry meta")?),
                Arg::I64(e.registered_at.0),
            ],
        ),
        Write::DeleteRegistryEntry(id) => (&st.delete_registry, vec![Arg::Text(id.clone())]),
        Write::PutSnapshot(s) => (&st.put_snapshot, snapshot_args(s)?),
        Write::PutSnapshotIfVersion { snapshot, expected } => match expected {
            None => (&st.insert_snapshot, snapshot_args(snapshot)?),
            Some(v) => {
                let mut args = snapshot_args(snapshot)?;
                args.push(Arg::I64(version_arg(*v)?));
                (&st.update_snapshot_if, args)
            }
        },
        Write::Outbox(m) => (
            &st.put_outbox,
            vec![
                Arg::Text(m.id.to_string()),
                Arg::Text(m.topic.clone()),
                Arg::OptBlob(m.key.clone()),
                Arg::Text(json_text(&m.headers, "outbox headers")?),
                Arg::Blob(m.payload.clone()),
                Arg::I64(m.created_at.0),
            ],
        ),
    })
}

// ---------------------------------------------------------------- decoding

/// Reads typed domain values from one row, naming table and column on failure.
struct Reader<'r, R> {
    row: &'r R,
    engine: &'static str,
    table: &'static str,
}

impl<'r, R: RowExt> Reader<'r, R> {
    fn new(row: &'r R, engine: &'static str, table: &'static str) -> Self {
        Reader { row, engine, table }
    }

    fn bad(&self, col: &str, detail: impl Display) -> StoreError {
        StoreError::Corrupt {
            engine: self.engine,
            what: format!("{}.{col}", self.table),
            detail: detail.to_string(),
        }
    }

    fn i64(&self, col: &str) -> Result<i64, StoreError> {
        self.row.i64(col).map_err(|e| self.bad(col, e))
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.row.opt_i64(col).map_err(|e| self.bad(col, e))
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.row.text(col).map_err(|e| self.bad(col, e))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.row.opt_text(col).map_err(|e| self.bad(col, e))
    }
    fn blob(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.row.blob(col).map_err(|e| self.bad(col, e))
    }
    fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.row.opt_blob(col).map_err(|e| self.bad(col, e))
    }
    fn bool(&self, col: &str) -> Result<bool, StoreError> {
        self.row.bool(col).map_err(|e| self.bad(col, e))
    }
    fn ts(&self, col: &str) -> Result<UnixNanos, StoreError> {
        self.i64(col).map(UnixNanos)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<UnixNanos>, StoreError> {
        Ok(self.opt_i64(col)?.map(UnixNanos))
    }
    fn id(&self, col: &str) -> Result<u64, StoreError> {
        let v = self.i64(col)?;
        u64::try_from(v).map_err(|_| self.bad(col, format!("negative id {v}")))
    }
    fn version(&self, col: &str) -> Result<u64, StoreError> {
        let v = self.i64(col)?;
        u64::try_from(v).map_err(|_| self.bad(col, format!("negative version {v}")))
    }
    fn amount(&self, col: &str) -> Result<Amount, StoreError> {
        let s = self.text(col)?;
        s.parse::<i128>()
            .map(Amount::from_raw)
            .map_err(|e| self.bad(col, format!("{s:?} is not an i128 amount: {e}")))
    }
    fn name<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|e| self.bad(col, format!("unknown value {s:?}: {e}")))
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        serde_json::from_str(&s).map_err(|e| self.bad(col, format!("invalid JSON: {e}")))
    }
    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, StoreError> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| self.bad(col, format!("invalid JSON: {e}"))),
        }
    }
}

fn order_from<R: RowExt>(r: &Reader<'_, R>) -> Result<Order, StoreError> {
    Ok(Order {
        id: OrderId(r.id("id")?),
        client_order_id: ClientOrderId::new(r.text("client_order_id")?),
        account: AccountId::new(r.text("account")?),
        strategy: r.opt_text("strategy")?.map(StrategyId::new),
        instrument: InstrumentId::new(r.text("instrument")?),
        side: r.name("side")?,
        order_type: r.name("order_type")?,
        time_in_force: r.name("time_in_force")?,
        price: r.opt_i64("price")?.map(Price::from_raw),
        stop_price: r.opt_i64("stop_price")?.map(Price::from_raw),
        expire_at: r.opt_ts("expire_at")?,
        quantity: Quantity::from_raw(r.i64("quantity")?),
        filled: Quantity::from_raw(r.i64("filled")?),
        status: r.name("status")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn fill_from<R: RowExt>(r: &Reader<'_, R>) -> Result<Fill, StoreError> {
    Ok(Fill {
        trade_id: TradeId(r.id("trade_id")?),
        order_id: OrderId(r.id("order_id")?),
        client_order_id: ClientOrderId::new(r.text("client_order_id")?),
        account: AccountId::new(r.text("account")?),
        strategy: r.opt_text("strategy")?.map(StrategyId::new),
        instrument: InstrumentId::new(r.text("instrument")?),
        side: r.name("side")?,
        price: Price::from_raw(r.i64("price")?),
        quantity: Quantity::from_raw(r.i64("quantity")?),
        fee: r.amount("fee")?,
        fee_asset: AssetCode::new(r.text("fee_asset")?),
        liquidity: r.name("liquidity")?,
        ts: r.ts("ts")?,
    })
}

fn account_from<R: RowExt>(r: &Reader<'_, R>) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::new(r.text("id")?),
        tier: r.text("tier")?,
        created_at: r.ts("created_at")?,
    })
}

fn balance_from<R: RowExt>(r: &Reader<'_, R>) -> Result<Balance, StoreError> {
    Ok(Balance {
        account: AccountId::new(r.text("account")?),
        asset: AssetCode::new(r.text("asset")?),
        free: r.amount("free")?,
        locked: r.amount("locked")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn alert_from<R: RowExt>(r: &Reader<'_, R>) -> Result<StoredAlert, StoreError> {
    Ok(StoredAlert {
        id: r.text("id")?,
        alert: Alert {
            rule: r.text("rule")?,
            severity: r.name("severity")?,
            subject: r.text("subject")?,
            message: r.text("message")?,
            value: r.amount("value")?,
            threshold: r.amount("threshold")?,
            first_seen: r.ts("first_seen")?,
            last_seen: r.ts("last_seen")?,
            resolved: r.bool("resolved")?,
        },
    })
}

fn audit_from<R: RowExt>(r: &Reader<'_, R>) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: r.text("id")?,
        ts: r.ts("ts")?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        subject: r.text("subject")?,
        detail: r.json("detail")?,
    })
}

fn run_from<R: RowExt>(r: &Reader<'_, R>) -> Result<ScenarioRun, StoreError> {
    let seed = r.text("seed")?;
    Ok(ScenarioRun {
        id: r.text("id")?,
        name: r.text("name")?,
        seed: seed
            .parse()
            .map_err(|e| r.bad("seed", format!("{seed:?} is not a u64: {e}")))?,
        status: r.text("status")?,
        started_at: r.ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        report: r.opt_json("report")?,
    })
}

fn registry_from<R: RowExt>(r: &Reader<'_, R>) -> Result<RegistryRecord, StoreError> {
    let port = r.i64("port")?;
    Ok(RegistryRecord {
        id: r.text("id")?,
        name: r.text("name")?,
        address: r.text("address")?,
        port: u16::try_from(port).map_err(|_| r.bad("port", format!("{port} is not a port")))?,
        tags: r.json("tags")?,
        meta: r.json("meta")?,
        registered_at: r.ts("registered_at")?,
    })
}

fn snapshot_from<R: RowExt>(r: &Reader<'_, R>) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        id: r.text("id")?,
        version: r.version("version")?,
        ts: r.ts("ts")?,
        data: r.json("data")?,
    })
}

fn version_from<R: RowExt>(r: &Reader<'_, R>) -> Result<u64, StoreError> {
    r.version("version")
}

fn outbox_from<R: RowExt>(r: &Reader<'_, R>) -> Result<OutboxRow, StoreError> {
    let id = r.text("event_id")?;
    let id = u128::from_str_radix(&id, 16)
        .map_err(|e| r.bad("event_id", format!("{id:?} is not a hex event id: {e}")))?;
    Ok(OutboxRow {
        seq: OutboxSeq(r.i64("seq")?),
        message: OutboxMessage {
            id: EventId(id),
            topic: r.text("topic")?,
            key: r.opt_blob("msg_key")?,
            headers: r.json("headers")?,
            payload: r.blob("payload")?,
            created_at: r.ts("created_at")?,
        },
    })
}

// ---------------------------------------------------------------- queries

/// A SELECT with optional filters, numbering placeholders as they are added.
struct Select {
    sql: String,
    args: Vec<Arg>,
    filters: usize,
}

impl Select {
    fn new(cols: &str, table: &str) -> Self {
        Select {
            sql: format!("SELECT {cols} FROM {table}"),
            args: Vec::new(),
            filters: 0,
        }
    }
    fn keyword(&mut self) {
        self.sql.push_str(if self.filters == 0 {
            " WHERE "
        } else {
            " AND "
        });
        self.filters += 1;
    }
    /// Adds `col <op> $n` bound to `arg`.
    fn filter(&mut self, col: &str, op: &str, arg: Arg) {
        self.keyword();
        self.args.push(arg);
        self.sql
            .push_str(&format!("{col} {op} ${}", self.args.len()));
    }
    /// Adds a condition without a parameter.
    fn raw(&mut self, cond: &str) {
        self.keyword();
        self.sql.push_str(cond);
    }
    fn finish(mut self, order_by: &str, limit: Option<u32>) -> (String, Vec<Arg>) {
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(order_by);
        if let Some(limit) = limit {
            self.args.push(Arg::I64(i64::from(limit)));
            self.sql.push_str(&format!(" LIMIT ${}", self.args.len()));
        }
        (self.sql, self.args)
    }
}

/// Runs a query and decodes every row with `decode`.
async fn query_all<E, T>(
    ex: &mut E,
    st: &Statements,
    op: &str,
    table: &'static str,
    (sql, args): (String, Vec<Arg>),
    decode: fn(&Reader<'_, E::Row>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    E: Exec,
{
    let engine = st.engine();
    let rows = ex
        .fetch(&sql, args)
        .await
        .map_err(|e| StoreError::db(engine, op, e))?;
    rows.iter()
        .map(|row| decode(&Reader::new(row, engine, table)))
        .collect()
}

/// Applies every write of `batch` in order on `ex` (an open transaction).
pub(crate) async fn apply_batch<E: Exec>(
    ex: &mut E,
    st: &Statements,
    batch: &WriteBatch,
) -> Result<(), StoreError> {
    let engine = st.engine();
    let n = batch.len();
    for (i, write) in batch.writes().iter().enumerate() {
        let op = || format!("commit: write {} of {n} ({})", i + 1, write.kind());
        let (sql, args) = write_sql(st, write).map_err(|detail| StoreError::InvalidInput {
            engine,
            op: op(),
            detail,
        })?;
        let changed = ex
            .execute(sql, args)
            .await
            .map_err(|e| StoreError::db(engine, op(), e))?;
        if let Write::PutSnapshotIfVersion { snapshot, expected } = write
            && changed != 1
        {
            // Not the expected version: report what is there instead. The
            // transaction rolls back, so nothing of the batch is kept.
            let found = snapshot_version(ex, st, &snapshot.id).await?;
            return Err(StoreError::VersionConflict {
                engine,
                op: op(),
                id: snapshot.id.clone(),
                expected: *expected,
                found,
            });
        }
    }
    Ok(())
}

pub(crate) async fn ping<E: Exec>(ex: &mut E, st: &Statements) -> Result<(), StoreError> {
    ex.execute("SELECT 1", Vec::new())
        .await
        .map(|_| ())
        .map_err(|e| StoreError::db(st.engine(), "ping", e))
}

pub(crate) async fn get_order<E: Exec>(
    ex: &mut E,
    st: &Statements,
    id: OrderId,
) -> Result<Option<Order>, StoreError> {
    // An id that cannot be stored cannot have been stored.
    let Ok(id) = i64::try_from(id.0) else {
        return Ok(None);
    };
    let mut q = Select::new(&st.order_cols, st.d.orders);
    q.filter("id", "=", Arg::I64(id));
    let rows = query_all(
        ex,
        st,
        "get_order",
        "orders",
        q.finish("id", None),
        order_from,
    )
    .await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn orders<E: Exec>(
    ex: &mut E,
    st: &Statements,
    query: &OrderQuery,
) -> Result<Vec<Order>, StoreError> {
    let mut q = Select::new(&st.order_cols, st.d.orders);
    if let Some(a) = &query.account {
        q.filter("account", "=", Arg::Text(a.as_str().to_owned()));
    }
    if let Some(i) = &query.instrument {
        q.filter("instrument", "=", Arg::Text(i.as_str().to_owned()));
    }
    if query.open_only {
        q.raw("is_open");
    }
    let sql = q.finish("id DESC", query.limit);
    query_all(ex, st, "orders", "orders", sql, order_from).await
}

pub(crate) async fn fills<E: Exec>(
    ex: &mut E,
    st: &Statements,
    query: &FillQuery,
) -> Result<Vec<Fill>, StoreError> {
    let mut q = Select::new(&st.fill_cols, st.d.fills);
    if let Some(a) = &query.account {
        q.filter("account", "=", Arg::Text(a.as_str().to_owned()));
    }
    if let Some(id) = query.order_id {
        let Ok(id) = i64::try_from(id.0) else {
            return Ok(Vec::new());
        };
        q.filter("order_id", "=", Arg::I64(id));
    }
    if let Some(i) = &query.instrument {
        q.filter("instrument", "=", Arg::Text(i.as_str().to_owned()));
    }
    let sql = q.finish("ts DESC, trade_id DESC, order_id DESC", query.limit);
    query_all(ex, st, "fills", "fills", sql, fill_from).await
}

pub(crate) async fn get_account<E: Exec>(
    ex: &mut E,
    st: &Statements,
    id: &AccountId,
) -> Result<Option<Account>, StoreError> {
    let mut q = Select::new(&st.account_cols, st.d.accounts);
    q.filter("id", "=", Arg::Text(id.as_str().to_owned()));
    let sql = q.finish("id", None);
    let rows = query_all(ex, st, "get_account", "accounts", sql, account_from).await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn accounts<E: Exec>(
    ex: &mut E,
    st: &Statements,
) -> Result<Vec<Account>, StoreError> {
    let sql = Select::new(&st.account_cols, st.d.accounts).finish("id", None);
    query_all(ex, st, "accounts", "accounts", sql, account_from).await
}

pub(crate) async fn balances<E: Exec>(
    ex: &mut E,
    st: &Statements,
    account: &AccountId,
) -> Result<Vec<Balance>, StoreError> {
    let mut q = Select::new(&st.balance_cols, st.d.balances);
    q.filter("account", "=", Arg::Text(account.as_str().to_owned()));
    let sql = q.finish("asset", None);
    query_all(ex, st, "balances", "balances", sql, balance_from).await
}

pub(crate) async fn alerts<E: Exec>(
    ex: &mut E,
    st: &Statements,
    query: &AlertQuery,
) -> Result<Vec<StoredAlert>, StoreError> {
    let mut q = Select::new(&st.alert_cols, st.d.alerts);
    if let Some(rule) = &query.rule {
        q.filter("rule", "=", Arg::Text(rule.clone()));
    }
    if query.unresolved_only {
        q.raw("NOT resolved");
    }
    let sql = q.finish("last_seen DESC, id", query.limit);
    query_all(ex, st, "alerts", "alerts", sql, alert_from).await
}

pub(crate) async fn audit<E: Exec>(
    ex: &mut E,
    st: &Statements,
    query: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut q = Select::new(&st.audit_cols, st.d.audit);
    if let Some(subject) = &query.subject {
        q.filter("subject", "=", Arg::Text(subject.clone()));
    }
    if let Some(since) = query.since {
        q.filter("ts", ">=", Arg::I64(since.0));
    }
    let sql = q.finish("ts, id", query.limit);
    query_all(ex, st, "audit", "audit", sql, audit_from).await
}

pub(crate) async fn get_scenario_run<E: Exec>(
    ex: &mut E,
    st: &Statements,
    id: &str,
) -> Result<Option<ScenarioRun>, StoreError> {
    let mut q = Select::new(&st.run_cols, st.d.scenario_runs);
    q.filter("id", "=", Arg::Text(id.to_owned()));
    let sql = q.finish("id", None);
    let rows = query_all(ex, st, "get_scenario_run", "scenario_runs", sql, run_from).await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn scenario_runs<E: Exec>(
    ex: &mut E,
    st: &Statements,
    limit: Option<u32>,
) -> Result<Vec<ScenarioRun>, StoreError> {
    let sql = Select::new(&st.run_cols, st.d.scenario_runs).finish("started_at DESC, id", limit);
    query_all(ex, st, "scenario_runs", "scenario_runs", sql, run_from).await
}

pub(crate) async fn registry_entries<E: Exec>(
    ex: &mut E,
    st: &Statements,
) -> Result<Vec<RegistryRecord>, StoreError> {
    let sql = Select::new(&st.registry_cols, st.d.registry).finish("name, id", None);
    query_all(ex, st, "registry_entries", "registry", sql, registry_from).await
}

pub(crate) async fn get_snapshot<E: Exec>(
    ex: &mut E,
    st: &Statements,
    id: &str,
) -> Result<Option<Snapshot>, StoreError> {
    let mut q = Select::new(&st.snapshot_cols, st.d.snapshots);
    q.filter("id", "=", Arg::Text(id.to_owned()));
    let sql = q.finish("id", None);
    let rows = query_all(ex, st, "get_snapshot", "snapshots", sql, snapshot_from).await?;
    Ok(rows.into_iter().next())
}

/// The stored version of snapshot `id`, if there is one.
async fn snapshot_version<E: Exec>(
    ex: &mut E,
    st: &Statements,
    id: &str,
) -> Result<Option<u64>, StoreError> {
    let mut q = Select::new("version", st.d.snapshots);
    q.filter("id", "=", Arg::Text(id.to_owned()));
    let sql = q.finish("id", None);
    let versions = query_all(ex, st, "snapshot_version", "snapshots", sql, version_from).await?;
    Ok(versions.into_iter().next())
}

pub(crate) async fn outbox_pending<E: Exec>(
    ex: &mut E,
    st: &Statements,
    limit: u32,
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut q = Select::new(&st.outbox_cols, st.d.outbox);
    q.raw("delivered_at IS NULL");
    let sql = q.finish("seq", Some(limit));
    query_all(ex, st, "outbox_pending", "outbox", sql, outbox_from).await
}

/// Most parameters per `IN (...)` list: well under both engines' limits.
const IN_CHUNK: usize = 500;

pub(crate) async fn outbox_mark_delivered<E: Exec>(
    ex: &mut E,
    st: &Statements,
    seqs: &[OutboxSeq],
    at: UnixNanos,
) -> Result<u64, StoreError> {
    let unique: Vec<i64> = seqs
        .iter()
        .map(|s| s.0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut marked = 0;
    for chunk in unique.chunks(IN_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        // Only pending rows: a repeated mark keeps the first delivery time.
        let sql = format!(
            "UPDATE {} SET delivered_at = $1 WHERE delivered_at IS NULL AND seq IN ({})",
            st.d.outbox,
            placeholders.join(", ")
        );
        let mut args = vec![Arg::I64(at.0)];
        args.extend(chunk.iter().map(|s| Arg::I64(*s)));
        marked += ex
            .execute(&sql, args)
            .await
            .map_err(|e| StoreError::db(st.engine(), "outbox_mark_delivered", e))?;
    }
    Ok(marked)
}

pub(crate) async fn outbox_requeue<E: Exec>(
    ex: &mut E,
    st: &Statements,
    topic: Option<&str>,
    since: UnixNanos,
) -> Result<u64, StoreError> {
    let mut sql = format!(
        "UPDATE {} SET delivered_at = NULL WHERE delivered_at >= $1",
        st.d.outbox
    );
    let mut args = vec![Arg::I64(since.0)];
    if let Some(topic) = topic {
        sql.push_str(" AND topic = $2");
        args.push(Arg::Text(topic.to_owned()));
    }
    ex.execute(&sql, args)
        .await
        .map_err(|e| StoreError::db(st.engine(), "outbox_requeue_delivered_since", e))
}

pub(crate) async fn outbox_purge<E: Exec>(
    ex: &mut E,
    st: &Statements,
    before: UnixNanos,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM {} WHERE delivered_at IS NOT NULL AND delivered_at < $1",
        st.d.outbox
    );
    ex.execute(&sql, vec![Arg::I64(before.0)])
        .await
        .map_err(|e| StoreError::db(st.engine(), "outbox_purge_delivered", e))
}

pub(crate) async fn outbox_stats<E: Exec>(
    ex: &mut E,
    st: &Statements,
) -> Result<OutboxStats, StoreError> {
    let engine = st.engine();
    let sql = format!(
        "SELECT COUNT(*) AS total, COUNT(delivered_at) AS delivered FROM {}",
        st.d.outbox
    );
    let rows = ex
        .fetch(&sql, Vec::new())
        .await
        .map_err(|e| StoreError::db(engine, "outbox_stats", e))?;
    let Some(row) = rows.first() else {
        return Ok(OutboxStats::default());
    };
    let r = Reader::new(row, engine, "outbox");
    let total = r.i64("total")?;
    let delivered = r.i64("delivered")?;
    let count = |n: i64| u64::try_from(n).map_err(|_| r.bad("count", format!("negative {n}")));
    Ok(OutboxStats {
        pending: count(total - delivered)?,
        delivered: count(delivered)?,
    })
}
