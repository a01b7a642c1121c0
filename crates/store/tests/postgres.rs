//! The state store conformance suite against the real PostgreSQL server, each
//! case in its own freshly created database, plus PostgreSQL-only checks.

use std::future::Future;

use sqlx::Connection;
use tradestack_model::OrderId;
use tradestack_store::conformance::Fixture;
use tradestack_store::{PostgresStore, StateStore, StoreError};

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| format!("?{q}"));
    format!("{scheme}://{authority}/{db}{}", query.unwrap_or_default())
}

/// A database created for one test and dropped afterwards.
struct TempDb {
    admin_url: String,
    name: String,
}

impl TempDb {
    async fn create() -> Option<TempDb> {
        let admin_url = tradestack_testkit::postgres()?;
        // Unquoted identifiers fold to lower case; keep the name plain.
        let name = tradestack_testkit::unique_name("ts_store").to_lowercase();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        Some(TempDb { admin_url, name })
    }

    fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }

    async fn drop_db(self) {
        let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await else {
            eprintln!("could not reconnect to drop {}", self.name);
            return;
        };
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
            eprintln!("could not drop {}: {e}", self.name);
        }
    }
}

/// Runs one case on a fresh database, dropping it afterwards even on failure.
async fn run<F, Fut>(_name: &'static str, case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TempDb::create().await else {
        return;
    };
    let outcome = tokio::spawn(case(Fixture::new(db.url()))).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

tradestack_store::state_store_conformance!(run);

#[tokio::test]
async fn one_schema_per_domain() {
    let Some(db) = TempDb::create().await else {
        return;
    };
    let store = PostgresStore::connect(&db.url()).await.expect("connect");
    store.ping().await.expect("ping");
    let mut raw = sqlx::PgConnection::connect(&db.url()).await.expect("raw");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT schema_name::text FROM information_schema.schemata
         WHERE schema_name IN ('exchange', 'custody', 'risk', 'audit', 'registry', 'state', 'bus')
         ORDER BY 1",
    )
    .fetch_all(&mut raw)
    .await
    .expect("schemas");
    assert_eq!(
        schemas,
        [
            "audit", "bus", "custody", "exchange", "registry", "risk", "state"
        ]
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT (table_schema || '.' || table_name)::text FROM information_schema.tables
         WHERE table_schema IN ('exchange', 'custody', 'risk', 'audit', 'registry', 'state', 'bus')
         ORDER BY 1",
    )
    .fetch_all(&mut raw)
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "audit.records",
            "audit.scenario_runs",
            "bus.outbox",
            "exchange.accounts",
            "exchange.balances",
            "exchange.fills",
            "exchange.orders",
            "registry.entries",
            "risk.alerts",
            "state.snapshots",
        ]
    );
    // Amounts are exact decimals, never floating point.
    let money_types: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT data_type::text FROM information_schema.columns
         WHERE table_schema = 'exchange' AND column_name IN ('free', 'locked', 'fee')",
    )
    .fetch_all(&mut raw)
    .await
    .expect("column types");
    assert_eq!(money_types, ["numeric"]);
    // Snapshot state is JSONB, its version and timestamp BIGINT.
    let snapshot_types: Vec<String> = sqlx::query_scalar(
        "SELECT (column_name || ' ' || data_type)::text FROM information_schema.columns
         WHERE table_schema = 'state' AND table_name = 'snapshots'
         ORDER BY ordinal_position",
    )
    .fetch_all(&mut raw)
    .await
    .expect("column types");
    assert_eq!(
        snapshot_types,
        ["id text", "version bigint", "ts bigint", "data jsonb"]
    );
    drop(raw);
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let Some(db) = TempDb::create().await else {
        return;
    };
    let store = PostgresStore::connect(&db.url()).await.expect("connect");
    let mut raw = sqlx::PgConnection::connect(&db.url()).await.expect("raw");
    sqlx::query(
        "INSERT INTO exchange.orders VALUES
         (1, 'c', 'a', NULL, 'BTC-USDT', 'buy', 'limit', 'gtc', 1, NULL, NULL, 1, 0, 'exploded', true, 0, 0)",
    )
    .execute(&mut raw)
    .await
    .expect("raw insert");
    sqlx::query("INSERT INTO bus.outbox (event_id, topic, headers, payload, created_at) VALUES ('not-hex', 't', '[]', '', 0)")
        .execute(&mut raw)
        .await
        .expect("raw insert");
    let err = store.get_order(OrderId(1)).await.expect_err("bad status");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("orders.status"), "{err}");
    let err = store.outbox_pending(10).await.expect_err("bad event id");
    assert!(err.to_string().contains("outbox.event_id"), "{err}");
    drop(raw);
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn connect_errors_name_the_target_but_not_the_password() {
    if tradestack_testkit::postgres().is_none() {
        return;
    }
    // Nothing listens on port 1.
    let err = PostgresStore::connect("postgres://trader:s3cret-pw@127.0.0.1:1/nowhere")
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(
        text.contains("postgres") && text.contains("127.0.0.1:1/nowhere"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
}
