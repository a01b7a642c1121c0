//! The state store conformance suite against SQLite files in a temp dir, plus
//! SQLite-only checks (WAL mode, in-memory stores, bad data, URL handling).

use std::future::Future;
use std::sync::Arc;

use sqlx::Connection;
use tradestack_model::OrderId;
use tradestack_store::conformance::{self, Fixture};
use tradestack_store::{SqliteStore, StateStore, StoreError, WriteBatch};

/// Runs one case on a fresh database file (in a not-yet-existing data dir).
async fn run<F, Fut>(_name: &'static str, case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join("state.db");
    let fixture = Fixture::new(format!("sqlite://{}", path.display()));
    let outcome = tokio::spawn(case(fixture)).await;
    drop(dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

tradestack_store::state_store_conformance!(run);

#[tokio::test]
async fn wal_mode_is_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(store.journal_mode().await.expect("pragma"), "wal");
    store
        .commit(WriteBatch::new().put_account(conformance::account("a", "t")))
        .await
        .expect("commit");
    store.close().await;

    // WAL is a property of the file: a plain connection sees it too.
    let url = format!("sqlite://{}", path.display());
    let mut raw = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("raw connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store
        .commit(
            WriteBatch::new()
                .put_order(conformance::order(7, "alice", "BTC-USDT", 1))
                .outbox(conformance::message(7, "orders", 1)),
        )
        .await
        .expect("commit");
    store.close().await;
    drop(store);

    let again = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(again.path(), Some(path.as_path()));
    assert_eq!(
        again.get_order(OrderId(7)).await.expect("get_order"),
        Some(conformance::order(7, "alice", "BTC-USDT", 1))
    );
    assert_eq!(again.outbox_stats().await.expect("stats").pending, 1);
}

#[tokio::test]
async fn in_memory_store_works() {
    let store = tradestack_store::connect("sqlite::memory:")
        .await
        .expect("in-memory store");
    assert_eq!(store.engine(), "sqlite");
    store
        .commit(WriteBatch::new().put_account(conformance::account("m", "t")))
        .await
        .expect("commit");
    assert_eq!(store.accounts().await.expect("accounts").len(), 1);
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let url = format!("sqlite://{}", path.display());
    let mut raw = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("raw connect");
    sqlx::query(
        "INSERT INTO exchange_orders VALUES
         (1, 'c', 'a', NULL, 'BTC-USDT', 'sideways', 'limit', 'gtc', 1, NULL, NULL, 1, 0, 'new', 1, 0, 0)",
    )
    .execute(&mut raw)
    .await
    .expect("raw insert");
    sqlx::query("INSERT INTO exchange_balances VALUES ('a', 'USDT', '1.5', 'x', 0)")
        .execute(&mut raw)
        .await
        .expect("raw insert");

    let err = store.get_order(OrderId(1)).await.expect_err("bad side");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("orders.side"), "{err}");
    let err = store.balances(&"a".into()).await.expect_err("bad amount");
    assert!(err.to_string().contains("balances.free"), "{err}");

    sqlx::query("INSERT INTO state_snapshots VALUES ('custody', 1, 0, '{not json')")
        .execute(&mut raw)
        .await
        .expect("raw insert");
    let err = store.get_snapshot("custody").await.expect_err("bad JSON");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("snapshots.data"), "{err}");
}

#[tokio::test]
async fn unknown_scheme_is_a_clear_error_without_secrets() {
    let err = match tradestack_store::connect("mysql://root:hunter2@db/x").await {
        Ok(_) => panic!("mysql is not supported"),
        Err(e) => e,
    };
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"mysql\"") && text.contains("sqlite://"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    for bad in ["sqlite://", "sqlite://x.db?mode=ro"] {
        match tradestack_store::connect(bad).await {
            Err(StoreError::InvalidUrl { .. }) => {}
            Err(e) => panic!("{bad}: unexpected error {e}"),
            Ok(_) => panic!("{bad}: should be refused"),
        }
    }
}

#[tokio::test]
async fn unwritable_data_dir_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a dir").expect("write");
    let err = SqliteStore::open(blocker.join("sub").join("state.db"))
        .await
        .expect_err("a file is in the way");
    assert!(matches!(err, StoreError::DataDir { .. }), "{err}");
}

#[tokio::test]
async fn store_is_usable_as_a_trait_object() {
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory().await.expect("open"));
    store.ping().await.expect("ping");
}
