//! The PostgreSQL adapter: a connection pool, one schema per domain.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use crate::error::StoreError;
use crate::sql::{Dialect, Statements, impl_exec, impl_row_ext, impl_state_store};

const ENGINE: &str = "postgres";

/// The versioned PostgreSQL migrations, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Pool size used by [`PostgresStore::connect`].
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static DIALECT: Dialect = Dialect {
    engine: ENGINE,
    orders: "exchange.orders",
    fills: "exchange.fills",
    accounts: "exchange.accounts",
    balances: "exchange.balances",
    alerts: "risk.alerts",
    audit: "audit.records",
    scenario_runs: "audit.scenario_runs",
    registry: "registry.entries",
    snapshots: "state.snapshots",
    outbox: "bus.outbox",
    // Exact decimals and JSON travel as text and are cast at the server, so
    // no float or driver-specific decimal type ever touches an amount.
    numeric_param: "::numeric",
    json_param: "::jsonb",
    to_text: "::text",
};

impl_row_ext!(PgRow);
impl_exec!(Postgres, PgRow);

/// A [`crate::StateStore`] on PostgreSQL. Tables live in the `exchange`,
/// `risk`, `audit`, `registry`, `state` (service snapshots) and `bus` schemas
/// (`custody` is created empty), so each domain can be granted and moved on
/// its own.
pub struct PostgresStore {
    pool: PgPool,
    stmts: Statements,
    target: String,
}

impl PostgresStore {
    /// Connects a pool to `url` (`postgres://user:pass@host:port/db`) and
    /// applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`PostgresStore::connect`] with a pool of at most `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                engine: ENGINE,
                reason: e.to_string(),
            })?
            .application_name("tradestack");
        // Host, port and database only: the URL may carry a password.
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                engine: ENGINE,
                target: target.clone(),
                source,
            })?;
        // Runs under a PostgreSQL advisory lock, so services starting together
        // do not race each other through the migrations.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                engine: ENGINE,
                source,
            })?;
        tracing::info!(engine = ENGINE, target = %target, "state store connected");
        Ok(PostgresStore {
            pool,
            stmts: Statements::new(&DIALECT),
            target,
        })
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl_state_store!(PostgresStore);
