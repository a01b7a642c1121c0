//! The SQLite adapter: one database file in a data directory.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::error::StoreError;
use crate::sql::{Dialect, Statements, impl_exec, impl_row_ext, impl_state_store};

const ENGINE: &str = "sqlite";

/// The versioned SQLite migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per file: WAL lets readers run beside the single writer.
const MAX_CONNECTIONS: u32 = 8;

static DIALECT: Dialect = Dialect {
    engine: ENGINE,
    orders: "exchange_orders",
    fills: "exchange_fills",
    accounts: "exchange_accounts",
    balances: "exchange_balances",
    alerts: "risk_alerts",
    audit: "audit_records",
    scenario_runs: "audit_scenario_runs",
    registry: "registry_entries",
    snapshots: "state_snapshots",
    outbox: "bus_outbox",
    // TEXT columns hold exact decimals and JSON as they are.
    numeric_param: "",
    json_param: "",
    to_text: "",
};

impl_row_ext!(SqliteRow);
impl_exec!(Sqlite, SqliteRow);

/// A [`crate::StateStore`] on a SQLite database file.
///
/// The file is opened with `journal_mode=WAL` (readers never block the
/// writer) and `synchronous=FULL`: every commit is fsynced. NORMAL would be
/// faster but can lose the last commits on power loss, after the outbox relay
/// may already have published their messages; FULL keeps the store at least
/// as far ahead as the bus.
pub struct SqliteStore {
    pool: SqlitePool,
    stmts: Statements,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, creating its
    /// directory, and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::DataDir {
                    engine: ENGINE,
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                engine: ENGINE,
                target: path.display().to_string(),
                source,
            })?;
        let store = Self::migrate(pool, Some(path)).await?;
        tracing::info!(engine = ENGINE, path = ?store.path, "state store opened");
        Ok(store)
    }

    /// Opens a private in-memory database, for tests and throwaway runs.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| StoreError::Connect {
                engine: ENGINE,
                target: ":memory:".into(),
                source,
            })?
            .foreign_keys(true);
        // Each connection to ":memory:" is its own database, so the pool must
        // hold exactly one connection and never recycle it.
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                engine: ENGINE,
                target: ":memory:".into(),
                source,
            })?;
        Self::migrate(pool, None).await
    }

    async fn migrate(pool: SqlitePool, path: Option<PathBuf>) -> Result<Self, StoreError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                engine: ENGINE,
                source,
            })?;
        Ok(SqliteStore {
            pool,
            stmts: Statements::new(&DIALECT),
            path,
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The journal mode in effect (`wal` for a file store), for diagnostics.
    pub async fn journal_mode(&self) -> Result<String, StoreError> {
        sqlx::query_scalar::<_, String>("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db(ENGINE, "read journal_mode", e))
    }

    /// Closes every connection, checkpointing the WAL into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl_state_store!(SqliteStore);
