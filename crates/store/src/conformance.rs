//! The adapter conformance suite: one set of cases every [`StateStore`]
//! adapter must pass, run against SQLite and PostgreSQL by the integration
//! tests through [`crate::state_store_conformance!`].
//!
//! Each case gets a [`Fixture`] naming a fresh, empty database and panics on
//! failure, like a test.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tradestack_model::{
    Alert, Amount, ClientOrderId, EventId, Fill, Liquidity, Order, OrderId, OrderStatus, OrderType,
    Price, Quantity, Severity, Side, TimeInForce, TradeId, UnixNanos,
};

use crate::{
    Account, AlertQuery, AuditQuery, AuditRecord, Balance, FillQuery, OrderQuery, OutboxMessage,
    OutboxSeq, OutboxStats, RegistryRecord, ScenarioRun, Snapshot, StateStore, StoreError,
    StoredAlert, WriteBatch,
};

/// Generates one `#[tokio::test]` per conformance case, each calling
/// `$run(name, case)` where `case: fn(Fixture) -> impl Future<Output = ()>`.
#[doc(hidden)]
#[macro_export]
macro_rules! state_store_conformance {
    ($run:path) => {
        $crate::state_store_conformance!(@cases $run;
            ping_and_engine,
            accounts_round_trip_and_upsert,
            balances_upsert_per_account_and_asset,
            orders_round_trip_upsert_and_filters,
            fills_are_idempotent_and_filterable,
            alerts_round_trip_and_filters,
            audit_is_append_only_and_queryable,
            scenario_runs_round_trip,
            registry_put_replace_delete,
            snapshots_round_trip_and_replace,
            snapshot_rolls_back_with_its_batch,
            snapshot_if_version_is_compare_and_set,
            snapshot_if_version_race_has_one_winner,
            outbox_order_mark_requeue_purge,
            outbox_dedupes_event_ids,
            batch_is_atomic_on_conflict,
            batch_is_atomic_on_invalid_input,
            money_is_exact_at_the_extremes,
            reopen_is_idempotent_and_keeps_data,
            concurrent_commits_all_land,
        );
    };
    (@cases $run:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $run(stringify!($case), $crate::conformance::$case).await;
            }
        )*
    };
}

/// A fresh, empty database for one case, named by the URL [`crate::connect`] takes.
#[derive(Clone, Debug)]
pub struct Fixture {
    url: String,
}

impl Fixture {
    /// A fixture for the store at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Fixture { url: url.into() }
    }

    /// The store URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens (and migrates) the store; every call is a new handle.
    pub async fn open(&self) -> Arc<dyn StateStore> {
        match crate::connect(&self.url).await {
            Ok(store) => store,
            Err(e) => panic!("opening the store under test failed: {e}"),
        }
    }
}

// ------------------------------------------------------------------ builders

/// An open limit buy with every optional field set.
pub fn order(id: u64, account: &str, instrument: &str, created: i64) -> Order {
    Order {
        id: OrderId(id),
        client_order_id: ClientOrderId::new(format!("cli-{id}")),
        account: account.into(),
        strategy: Some("mm-1".into()),
        instrument: instrument.into(),
        side: Side::Buy,
        order_type: OrderType::StopLimit,
        time_in_force: TimeInForce::Gtd,
        price: Some("42000.5".parse().expect("price literal")),
        stop_price: Some("41999.25".parse().expect("price literal")),
        expire_at: Some(UnixNanos(created + 1_000_000_000)),
        quantity: "0.25".parse().expect("quantity literal"),
        filled: Quantity::ZERO,
        status: OrderStatus::New,
        created_at: UnixNanos(created),
        updated_at: UnixNanos(created),
    }
}

/// A market sell with every optional field empty.
pub fn bare_order(id: u64, account: &str, instrument: &str, created: i64) -> Order {
    Order {
        strategy: None,
        side: Side::Sell,
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Ioc,
        price: None,
        stop_price: None,
        expire_at: None,
        ..order(id, account, instrument, created)
    }
}

/// A taker fill.
pub fn fill(trade: u64, order: u64, account: &str, instrument: &str, ts: i64) -> Fill {
    Fill {
        trade_id: TradeId(trade),
        order_id: OrderId(order),
        client_order_id: ClientOrderId::new(format!("cli-{order}")),
        account: account.into(),
        strategy: None,
        instrument: instrument.into(),
        side: Side::Buy,
        price: "42000.5".parse().expect("price literal"),
        quantity: "0.1".parse().expect("quantity literal"),
        fee: "4.2".parse().expect("amount literal"),
        fee_asset: "USDT".into(),
        liquidity: Liquidity::Taker,
        ts: UnixNanos(ts),
    }
}

/// An outbox message whose id, key and payload derive from `n`.
pub fn message(n: u128, topic: &str, created: i64) -> OutboxMessage {
    OutboxMessage {
        // High ids exercise all 32 hex digits of the stored form.
        id: EventId(u128::MAX - n),
        topic: topic.to_string(),
        key: Some(format!("key-{n}").into_bytes()),
        headers: vec![
            ("content-type".into(), "application/x-tradestack".into()),
            ("trace".into(), format!("t-{n}")),
        ],
        payload: vec![0, 1, 2, 255, n as u8],
        created_at: UnixNanos(created),
    }
}

/// An account.
pub fn account(id: &str, tier: &str) -> Account {
    Account {
        id: id.into(),
        tier: tier.into(),
        created_at: UnixNanos(1_700_000_000_000_000_000),
    }
}

/// A balance.
pub fn balance(account: &str, asset: &str, free: i128, locked: i128) -> Balance {
    Balance {
        account: account.into(),
        asset: asset.into(),
        free: Amount::from_raw(free),
        locked: Amount::from_raw(locked),
        updated_at: UnixNanos(1_700_000_000_000_000_001),
    }
}

/// An alert.
pub fn alert(id: &str, rule: &str, subject: &str, last_seen: i64, resolved: bool) -> StoredAlert {
    StoredAlert {
        id: id.into(),
        alert: Alert {
            rule: rule.into(),
            severity: Severity::Warning,
            subject: subject.into(),
            message: format!("{rule} on {subject}"),
            value: Amount::from_raw(-150_000_000),
            threshold: Amount::from_raw(-100_000_000),
            first_seen: UnixNanos(1),
            last_seen: UnixNanos(last_seen),
            resolved,
        },
    }
}

/// An audit record.
pub fn audit_record(id: &str, ts: i64, subject: &str) -> AuditRecord {
    AuditRecord {
        id: id.into(),
        ts: UnixNanos(ts),
        actor: "ops@desk".into(),
        action: "order.cancel".into(),
        subject: subject.into(),
        detail: json!({"reason": "risk limit", "orders": [1, 2, 3], "ok": true, "note": null}),
    }
}

/// A registry entry.
pub fn registry_entry(id: &str, name: &str, port: u16) -> RegistryRecord {
    RegistryRecord {
        id: id.into(),
        name: name.into(),
        address: "10.0.0.7".into(),
        port,
        tags: vec!["primary".into(), "zone-a".into()],
        meta: BTreeMap::from([
            ("version".to_string(), "1.2.3".to_string()),
            ("build".to_string(), "abc".to_string()),
        ]),
        registered_at: UnixNanos(1_700_000_000_000_000_000),
    }
}

/// A service snapshot whose data varies with `version`.
pub fn snapshot(id: &str, version: u64, ts: i64) -> Snapshot {
    Snapshot {
        id: id.into(),
        version,
        ts: UnixNanos(ts),
        data: json!({
            "version": version,
            "wallets": {"hot": {"BTC": "1.5", "USDT": "-20.25"}, "cold": {}},
            "pending": [{"id": 1, "amount": 18446744073709551615u64}, {"id": -2, "ratio": 0.5}],
            "label": "größe ✓",
            "paused": false,
            "note": null
        }),
    }
}

async fn commit(store: &Arc<dyn StateStore>, batch: WriteBatch) {
    if let Err(e) = store.commit(batch).await {
        panic!("commit failed: {e}");
    }
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn ids(orders: &[Order]) -> Vec<u64> {
    orders.iter().map(|o| o.id.0).collect()
}

// ------------------------------------------------------------------ cases

/// The store answers pings, names its engine and accepts an empty batch.
pub async fn ping_and_engine(fx: Fixture) {
    let store = fx.open().await;
    ok(store.ping().await, "ping");
    let expected = if fx.url().starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(store.engine(), expected);
    ok(store.commit(WriteBatch::new()).await, "empty commit");
    assert_eq!(ok(store.accounts().await, "accounts"), vec![]);
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );
}

/// Accounts round-trip, upsert by id and list by id.
pub async fn accounts_round_trip_and_upsert(fx: Fixture) {
    let store = fx.open().await;
    commit(
        &store,
        WriteBatch::new()
            .put_account(account("acct-b", "retail"))
            .put_account(account("acct-a", "vip")),
    )
    .await;
    let got = ok(store.get_account(&"acct-a".into()).await, "get_account");
    assert_eq!(got, Some(account("acct-a", "vip")));
    assert_eq!(
        ok(store.get_account(&"nobody".into()).await, "get_account"),
        None
    );

    commit(
        &store,
        WriteBatch::new().put_account(account("acct-b", "institutional")),
    )
    .await;
    let all = ok(store.accounts().await, "accounts");
    assert_eq!(
        all,
        vec![account("acct-a", "vip"), account("acct-b", "institutional")]
    );
}

/// Balances upsert by (account, asset) and list per account by asset.
pub async fn balances_upsert_per_account_and_asset(fx: Fixture) {
    let store = fx.open().await;
    commit(
        &store,
        WriteBatch::new()
            .put_balance(balance("a1", "USDT", 100, 0))
            .put_balance(balance("a1", "BTC", 5, 1))
            .put_balance(balance("a2", "USDT", 7, 7)),
    )
    .await;
    commit(
        &store,
        WriteBatch::new().put_balance(balance("a1", "USDT", 150, 25)),
    )
    .await;
    let a1 = ok(store.balances(&"a1".into()).await, "balances");
    assert_eq!(
        a1,
        vec![balance("a1", "BTC", 5, 1), balance("a1", "USDT", 150, 25)]
    );
    let a2 = ok(store.balances(&"a2".into()).await, "balances");
    assert_eq!(a2, vec![balance("a2", "USDT", 7, 7)]);
    assert!(ok(store.balances(&"a3".into()).await, "balances").is_empty());
}

/// Orders round-trip with and without optional fields, upsert by id, and
/// filter by account, instrument, openness and limit, newest first.
pub async fn orders_round_trip_upsert_and_filters(fx: Fixture) {
    let store = fx.open().await;
    let full = order(1, "alice", "BTC-USDT", 100);
    let bare = bare_order(2, "alice", "ETH-USDT", 200);
    let mut filled = order(3, "bob", "BTC-USDT", 300);
    filled.status = OrderStatus::Filled;
    filled.filled = filled.quantity;
    let mut cancelled = order(4, "alice", "BTC-USDT", 400);
    cancelled.status = OrderStatus::Cancelled;
    let mut partial = order(5, "alice", "BTC-USDT", 500);
    partial.status = OrderStatus::PartiallyFilled;
    partial.filled = Quantity::from_raw(1);
    commit(
        &store,
        WriteBatch::new()
            .put_order(full.clone())
            .put_order(bare.clone())
            .put_order(filled.clone())
            .put_order(cancelled.clone())
            .put_order(partial.clone()),
    )
    .await;

    assert_eq!(
        ok(store.get_order(OrderId(1)).await, "get_order"),
        Some(full.clone())
    );
    assert_eq!(
        ok(store.get_order(OrderId(2)).await, "get_order"),
        Some(bare.clone())
    );
    assert_eq!(ok(store.get_order(OrderId(99)).await, "get_order"), None);
    assert_eq!(
        ok(store.get_order(OrderId(u64::MAX)).await, "get_order"),
        None
    );

    let all = ok(store.orders(OrderQuery::default()).await, "orders");
    assert_eq!(ids(&all), vec![5, 4, 3, 2, 1]);
    let alice = OrderQuery {
        account: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&ok(store.orders(alice.clone()).await, "orders")),
        vec![5, 4, 2, 1]
    );
    let alice_open = OrderQuery {
        open_only: true,
        ..alice.clone()
    };
    assert_eq!(
        ids(&ok(store.orders(alice_open.clone()).await, "orders")),
        vec![5, 2, 1]
    );
    let alice_btc_open = OrderQuery {
        instrument: Some("BTC-USDT".into()),
        ..alice_open.clone()
    };
    assert_eq!(
        ids(&ok(store.orders(alice_btc_open).await, "orders")),
        vec![5, 1]
    );
    let btc_limited = OrderQuery {
        instrument: Some("BTC-USDT".into()),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(&ok(store.orders(btc_limited).await, "orders")),
        vec![5, 4]
    );

    // Upsert: the order fills completely and leaves the open set.
    let mut done = full.clone();
    done.status = OrderStatus::Filled;
    done.filled = done.quantity;
    done.updated_at = UnixNanos(999);
    commit(&store, WriteBatch::new().put_order(done.clone())).await;
    assert_eq!(
        ok(store.get_order(OrderId(1)).await, "get_order"),
        Some(done)
    );
    assert_eq!(
        ids(&ok(store.orders(alice_open).await, "orders")),
        vec![5, 2]
    );
    assert_eq!(
        ok(store.orders(OrderQuery::default()).await, "orders").len(),
        5
    );
}

/// Fills insert once per (trade_id, order_id) and filter by account, order
/// and instrument, newest first.
pub async fn fills_are_idempotent_and_filterable(fx: Fixture) {
    let store = fx.open().await;
    let f1 = fill(10, 1, "alice", "BTC-USDT", 100);
    let f2 = fill(11, 1, "alice", "BTC-USDT", 200);
    let mut f3 = fill(11, 2, "bob", "BTC-USDT", 200);
    f3.side = Side::Sell;
    f3.liquidity = Liquidity::Maker;
    f3.fee = Amount::from_raw(-1_000); // a maker rebate
    f3.strategy = Some("arb-2".into());
    let f4 = fill(1, 3, "alice", "ETH-USDT", 300);
    commit(
        &store,
        WriteBatch::new()
            .put_fill(f1.clone())
            .put_fill(f2.clone())
            .put_fill(f3.clone())
            .put_fill(f4.clone()),
    )
    .await;

    // A redelivered fill (same trade and order) is ignored, even if it differs.
    let mut replay = f1.clone();
    replay.fee = Amount::from_units(1_000);
    commit(&store, WriteBatch::new().put_fill(replay)).await;

    let all = ok(store.fills(FillQuery::default()).await, "fills");
    assert_eq!(all.len(), 4);
    assert_eq!(all[0], f4);
    assert_eq!(all[3], f1, "the first write of a fill wins");

    let alice = ok(
        store
            .fills(FillQuery {
                account: Some("alice".into()),
                ..Default::default()
            })
            .await,
        "fills",
    );
    assert_eq!(alice, vec![f4.clone(), f2.clone(), f1.clone()]);
    let order1 = ok(
        store
            .fills(FillQuery {
                order_id: Some(OrderId(1)),
                ..Default::default()
            })
            .await,
        "fills",
    );
    assert_eq!(order1, vec![f2.clone(), f1.clone()]);
    let btc_limited = ok(
        store
            .fills(FillQuery {
                instrument: Some("BTC-USDT".into()),
                limit: Some(2),
                ..Default::default()
            })
            .await,
        "fills",
    );
    assert_eq!(btc_limited.len(), 2);
    assert!(btc_limited.iter().all(|f| f.ts == UnixNanos(200)));
    assert!(btc_limited.contains(&f3));
    let none = ok(
        store
            .fills(FillQuery {
                order_id: Some(OrderId(u64::MAX)),
                ..Default::default()
            })
            .await,
        "fills",
    );
    assert!(none.is_empty());
}

/// Alerts round-trip, upsert by id and filter by rule and resolution.
pub async fn alerts_round_trip_and_filters(fx: Fixture) {
    let store = fx.open().await;
    let a1 = alert("dd:acct-1", "drawdown", "acct-1", 30, false);
    let a2 = alert("dd:acct-2", "drawdown", "acct-2", 20, true);
    let mut a3 = alert("exp:usdt", "exposure", "USDT", 10, false);
    a3.alert.severity = Severity::Critical;
    commit(
        &store,
        WriteBatch::new()
            .put_alert(a1.clone())
            .put_alert(a2.clone())
            .put_alert(a3.clone()),
    )
    .await;

    let all = ok(store.alerts(AlertQuery::default()).await, "alerts");
    assert_eq!(all, vec![a1.clone(), a2.clone(), a3.clone()]);
    let drawdown = ok(
        store
            .alerts(AlertQuery {
                rule: Some("drawdown".into()),
                ..Default::default()
            })
            .await,
        "alerts",
    );
    assert_eq!(drawdown, vec![a1.clone(), a2.clone()]);
    let open = ok(
        store
            .alerts(AlertQuery {
                unresolved_only: true,
                ..Default::default()
            })
            .await,
        "alerts",
    );
    assert_eq!(open, vec![a1.clone(), a3.clone()]);
    let newest = ok(
        store
            .alerts(AlertQuery {
                limit: Some(1),
                ..Default::default()
            })
            .await,
        "alerts",
    );
    assert_eq!(newest, vec![a1.clone()]);

    // The drawdown clears: same id, resolved, seen later.
    let mut cleared = a1.clone();
    cleared.alert.resolved = true;
    cleared.alert.last_seen = UnixNanos(40);
    commit(&store, WriteBatch::new().put_alert(cleared.clone())).await;
    let open = ok(
        store
            .alerts(AlertQuery {
                unresolved_only: true,
                ..Default::default()
            })
            .await,
        "alerts",
    );
    assert_eq!(open, vec![a3]);
    let all = ok(store.alerts(AlertQuery::default()).await, "alerts");
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], cleared);
}

/// Audit records append, refuse a duplicate id, and query by subject and
/// time, oldest first.
pub async fn audit_is_append_only_and_queryable(fx: Fixture) {
    let store = fx.open().await;
    let r1 = audit_record("au-1", 10, "order:1");
    let r2 = audit_record("au-2", 20, "order:2");
    let mut r3 = audit_record("au-3", 30, "order:1");
    r3.detail = json!({
        "nested": {"deep": [1.5, -2, "x"], "unicode": "größe ✓"},
        "big": 18446744073709551615u64,
        "empty": {}
    });
    commit(
        &store,
        WriteBatch::new()
            .append_audit(r1.clone())
            .append_audit(r2.clone())
            .append_audit(r3.clone()),
    )
    .await;

    let all = ok(store.audit(AuditQuery::default()).await, "audit");
    assert_eq!(all, vec![r1.clone(), r2.clone(), r3.clone()]);
    let order1 = ok(
        store
            .audit(AuditQuery {
                subject: Some("order:1".into()),
                ..Default::default()
            })
            .await,
        "audit",
    );
    assert_eq!(order1, vec![r1.clone(), r3.clone()]);
    let since = ok(
        store
            .audit(AuditQuery {
                since: Some(UnixNanos(20)),
                limit: Some(1),
                ..Default::default()
            })
            .await,
        "audit",
    );
    assert_eq!(since, vec![r2.clone()]);

    let mut rewrite = r1.clone();
    rewrite.action = "order.tamper".into();
    let err = store
        .commit(WriteBatch::new().append_audit(rewrite))
        .await
        .expect_err("a second audit record with the same id must fail");
    assert!(err.is_conflict(), "expected a conflict, got: {err}");
    assert!(
        err.to_string().contains("append_audit"),
        "error should name the write: {err}"
    );
    let all = ok(store.audit(AuditQuery::default()).await, "audit");
    assert_eq!(all, vec![r1, r2, r3], "the trail is unchanged");
}

/// Scenario runs round-trip (including a u64::MAX seed), upsert by id and
/// list newest first.
pub async fn scenario_runs_round_trip(fx: Fixture) {
    let store = fx.open().await;
    let mut run = ScenarioRun {
        id: "run-1".into(),
        name: "flash-crash".into(),
        seed: u64::MAX,
        status: "running".into(),
        started_at: UnixNanos(100),
        finished_at: None,
        report: None,
    };
    let older = ScenarioRun {
        id: "run-0".into(),
        name: "baseline".into(),
        seed: 0,
        status: "passed".into(),
        started_at: UnixNanos(50),
        finished_at: Some(UnixNanos(60)),
        report: Some(json!({"pnl": "12.5", "fills": 3})),
    };
    commit(
        &store,
        WriteBatch::new()
            .put_scenario_run(run.clone())
            .put_scenario_run(older.clone()),
    )
    .await;
    assert_eq!(
        ok(store.get_scenario_run("run-1").await, "get_scenario_run"),
        Some(run.clone())
    );
    assert_eq!(
        ok(store.get_scenario_run("missing").await, "get_scenario_run"),
        None
    );

    run.status = "failed".into();
    run.finished_at = Some(UnixNanos(200));
    run.report = Some(json!({"error": "liquidation cascade", "steps": [1, 2]}));
    commit(&store, WriteBatch::new().put_scenario_run(run.clone())).await;
    assert_eq!(
        ok(store.scenario_runs(None).await, "scenario_runs"),
        vec![run.clone(), older.clone()]
    );
    assert_eq!(
        ok(store.scenario_runs(Some(1)).await, "scenario_runs"),
        vec![run]
    );
}

/// Registry entries round-trip, replace by id and delete (absent ids too).
pub async fn registry_put_replace_delete(fx: Fixture) {
    let store = fx.open().await;
    let gw = registry_entry("gw-1", "gateway", 8080);
    let ex = registry_entry("ex-1", "exchange", 9000);
    let mut bare = registry_entry("ex-2", "exchange", 0);
    bare.tags.clear();
    bare.meta.clear();
    commit(
        &store,
        WriteBatch::new()
            .put_registry_entry(gw.clone())
            .put_registry_entry(ex.clone())
            .put_registry_entry(bare.clone()),
    )
    .await;
    assert_eq!(
        ok(store.registry_entries().await, "registry_entries"),
        vec![ex.clone(), bare.clone(), gw.clone()]
    );

    let mut moved = gw.clone();
    moved.port = u16::MAX;
    moved.address = "gw.internal".into();
    commit(
        &store,
        WriteBatch::new()
            .put_registry_entry(moved.clone())
            .delete_registry_entry("ex-1")
            .delete_registry_entry("never-registered"),
    )
    .await;
    assert_eq!(
        ok(store.registry_entries().await, "registry_entries"),
        vec![bare, moved]
    );
}

/// Snapshots round-trip (JSON equal), are replaced as a whole by id, and a
/// missing id reads as `None`.
pub async fn snapshots_round_trip_and_replace(fx: Fixture) {
    let store = fx.open().await;
    let custody = snapshot("custody", 1, 100);
    let mut risk = snapshot("risk", i64::MAX as u64, i64::MIN);
    risk.data = json!([]);
    commit(
        &store,
        WriteBatch::new()
            .put_snapshot(custody.clone())
            .put_snapshot(risk.clone()),
    )
    .await;
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(custody.clone())
    );
    assert_eq!(
        ok(store.get_snapshot("risk").await, "get_snapshot"),
        Some(risk.clone())
    );
    assert_eq!(
        ok(store.get_snapshot("missing").await, "get_snapshot"),
        None
    );
    assert_eq!(ok(store.get_snapshot("").await, "get_snapshot"), None);

    // A plain put replaces everything, even with a lower version.
    let replaced = Snapshot {
        id: "custody".into(),
        version: 0,
        ts: UnixNanos(200),
        data: json!({"wallets": {}}),
    };
    commit(&store, WriteBatch::new().put_snapshot(replaced.clone())).await;
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(replaced)
    );
    assert_eq!(
        ok(store.get_snapshot("risk").await, "get_snapshot"),
        Some(risk)
    );

    // A version beyond BIGINT cannot be stored and fails its batch.
    let err = store
        .commit(WriteBatch::new().put_snapshot(snapshot("too-new", u64::MAX, 1)))
        .await
        .expect_err("a version above i64::MAX cannot be stored");
    assert!(
        matches!(err, StoreError::InvalidInput { .. }),
        "expected InvalidInput, got: {err}"
    );
    assert!(err.to_string().contains("snapshot version"), "{err}");
    assert_eq!(
        ok(store.get_snapshot("too-new").await, "get_snapshot"),
        None
    );
}

/// A snapshot commits with its batch or not at all: a duplicate audit id
/// later in the batch rolls back both a new snapshot and a replacement.
pub async fn snapshot_rolls_back_with_its_batch(fx: Fixture) {
    let store = fx.open().await;
    let kept = snapshot("custody", 1, 1);
    commit(
        &store,
        WriteBatch::new()
            .put_snapshot(kept.clone())
            .append_audit(audit_record("au-1", 1, "custody")),
    )
    .await;

    let err = store
        .commit(
            WriteBatch::new()
                .put_snapshot(snapshot("custody", 2, 2))
                .put_snapshot(snapshot("risk", 1, 2))
                .outbox(message(1, "custody", 2))
                .append_audit(audit_record("au-1", 2, "custody")),
        )
        .await
        .expect_err("the duplicate audit id must fail the batch");
    assert!(err.is_conflict(), "expected a conflict, got: {err}");
    assert!(err.to_string().contains("append_audit"), "{err}");
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(kept),
        "the replacement rolled back"
    );
    assert_eq!(ok(store.get_snapshot("risk").await, "get_snapshot"), None);
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );
    assert_eq!(
        ok(store.audit(AuditQuery::default()).await, "audit").len(),
        1
    );
}

/// `PutSnapshotIfVersion` writes only over the expected version (or no row
/// for `None`); otherwise the whole batch fails with a version conflict.
pub async fn snapshot_if_version_is_compare_and_set(fx: Fixture) {
    let store = fx.open().await;
    let v1 = snapshot("custody", 1, 10);
    let v2 = snapshot("custody", 2, 20);

    // None: there must be no row yet.
    commit(
        &store,
        WriteBatch::new()
            .put_snapshot_if_version(v1.clone(), None)
            .append_audit(audit_record("au-1", 10, "custody")),
    )
    .await;
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(v1.clone())
    );

    // A second "first" writer loses, and takes its whole batch with it.
    let err = store
        .commit(
            WriteBatch::new()
                .append_audit(audit_record("au-x", 11, "custody"))
                .outbox(message(1, "custody", 11))
                .put_snapshot_if_version(snapshot("custody", 1, 11), None),
        )
        .await
        .expect_err("None expected with a stored row must fail");
    assert!(err.is_conflict(), "expected a conflict, got: {err}");
    match &err {
        StoreError::VersionConflict {
            id,
            expected,
            found,
            ..
        } => {
            assert_eq!(id, "custody");
            assert_eq!(*expected, None);
            assert_eq!(*found, Some(1));
        }
        other => panic!("expected VersionConflict, got: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("write 3 of 3") && text.contains("put_snapshot_if_version"),
        "{text}"
    );
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(v1.clone())
    );
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );
    assert_eq!(
        ok(store.audit(AuditQuery::default()).await, "audit").len(),
        1
    );

    // The right expected version succeeds.
    commit(
        &store,
        WriteBatch::new()
            .put_snapshot_if_version(v2.clone(), Some(1))
            .outbox(message(2, "custody", 20)),
    )
    .await;
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(v2.clone())
    );
    assert_eq!(ok(store.outbox_stats().await, "stats").pending, 1);

    // A stale expected version fails the whole batch.
    let err = store
        .commit(
            WriteBatch::new()
                .put_account(account("acct-stale", "vip"))
                .put_snapshot_if_version(snapshot("custody", 2, 30), Some(1))
                .outbox(message(3, "custody", 30)),
        )
        .await
        .expect_err("a stale expected version must fail");
    assert!(
        matches!(
            err,
            StoreError::VersionConflict {
                expected: Some(1),
                found: Some(2),
                ..
            }
        ),
        "expected a version conflict, got: {err}"
    );
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(v2.clone())
    );
    assert_eq!(
        ok(store.get_account(&"acct-stale".into()).await, "get_account"),
        None
    );
    assert_eq!(ok(store.outbox_stats().await, "stats").pending, 1);

    // Expecting a version of a snapshot that does not exist fails too.
    let err = store
        .commit(WriteBatch::new().put_snapshot_if_version(snapshot("risk", 5, 1), Some(4)))
        .await
        .expect_err("an expected version of a missing snapshot must fail");
    assert!(
        matches!(
            err,
            StoreError::VersionConflict {
                expected: Some(4),
                found: None,
                ..
            }
        ),
        "expected a version conflict, got: {err}"
    );
    assert_eq!(ok(store.get_snapshot("risk").await, "get_snapshot"), None);

    // An expected version beyond BIGINT is invalid input, not a conflict.
    let err = store
        .commit(
            WriteBatch::new().put_snapshot_if_version(snapshot("custody", 3, 1), Some(u64::MAX)),
        )
        .await
        .expect_err("an expected version above i64::MAX cannot be stored");
    assert!(
        matches!(err, StoreError::InvalidInput { .. }),
        "expected InvalidInput, got: {err}"
    );
    assert_eq!(
        ok(store.get_snapshot("custody").await, "get_snapshot"),
        Some(v2)
    );
}

/// Writers racing from the same expected version: exactly one wins, and the
/// losers' batches leave nothing behind.
pub async fn snapshot_if_version_race_has_one_winner(fx: Fixture) {
    let store = fx.open().await;
    commit(
        &store,
        WriteBatch::new().put_snapshot(snapshot("custody", 1, 1)),
    )
    .await;
    let writers = 8u64;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut next = snapshot("custody", 2, 2);
            next.data = json!({"writer": i});
            let batch = WriteBatch::new()
                .put_snapshot_if_version(next, Some(1))
                .outbox(message(u128::from(i), "custody", 2));
            store.commit(batch).await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(())) => winners.push(i as u64),
            Ok(Err(e)) => assert!(
                matches!(
                    e,
                    StoreError::VersionConflict {
                        expected: Some(1),
                        found: Some(2),
                        ..
                    }
                ),
                "a losing writer must see a version conflict, got: {e}"
            ),
            Err(e) => panic!("writer task failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let stored = ok(store.get_snapshot("custody").await, "get_snapshot");
    let stored = stored.expect("the winner's snapshot");
    assert_eq!(stored.version, 2);
    assert_eq!(stored.data, json!({"writer": winners[0]}));
    let pending = ok(store.outbox_pending(100).await, "outbox_pending");
    assert_eq!(pending.len(), 1, "only the winner's message is queued");
    assert_eq!(
        pending[0].message,
        message(u128::from(winners[0]), "custody", 2)
    );
}

/// The outbox hands out messages in sequence order, marks, requeues and
/// purges them, and never reuses a sequence number.
pub async fn outbox_order_mark_requeue_purge(fx: Fixture) {
    let store = fx.open().await;
    let m1 = message(1, "orders", 10);
    let m2 = message(2, "fills", 20);
    let m3 = message(3, "orders", 30);
    for (i, m) in [&m1, &m2, &m3].into_iter().enumerate() {
        // Each message rides with the state change it announces.
        let o = order(i as u64 + 1, "alice", "BTC-USDT", 10);
        commit(&store, WriteBatch::new().put_order(o).outbox(m.clone())).await;
    }

    let pending = ok(store.outbox_pending(10).await, "outbox_pending");
    let messages: Vec<_> = pending.iter().map(|r| r.message.clone()).collect();
    assert_eq!(messages, vec![m1.clone(), m2.clone(), m3.clone()]);
    let seqs: Vec<OutboxSeq> = pending.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ascending: {seqs:?}");
    let first_two = ok(store.outbox_pending(2).await, "outbox_pending");
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two[0].seq, seqs[0]);

    // Deliver the first two; marking again changes nothing.
    let n = ok(
        store
            .outbox_mark_delivered(&seqs[..2], UnixNanos(100))
            .await,
        "mark",
    );
    assert_eq!(n, 2);
    let n = ok(
        store
            .outbox_mark_delivered(&[seqs[0], seqs[0]], UnixNanos(150))
            .await,
        "mark",
    );
    assert_eq!(n, 0);
    let pending = ok(store.outbox_pending(10).await, "outbox_pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].seq, seqs[2]);
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats {
            pending: 1,
            delivered: 2
        }
    );

    // The broker lost the fills topic: requeue only that topic.
    let n = ok(
        store
            .outbox_requeue_delivered_since(Some("fills"), UnixNanos(100))
            .await,
        "requeue",
    );
    assert_eq!(n, 1);
    let pending = ok(store.outbox_pending(10).await, "outbox_pending");
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![seqs[1], seqs[2]]
    );
    assert_eq!(pending[0].message, m2);

    // Deliver the rest at 200; a requeue since 150 catches exactly those.
    let n = ok(
        store
            .outbox_mark_delivered(&[seqs[1], seqs[2]], UnixNanos(200))
            .await,
        "mark",
    );
    assert_eq!(n, 2);
    let n = ok(
        store
            .outbox_requeue_delivered_since(None, UnixNanos(150))
            .await,
        "requeue",
    );
    assert_eq!(n, 2);
    let n = ok(
        store
            .outbox_mark_delivered(&[seqs[1], seqs[2]], UnixNanos(300))
            .await,
        "mark",
    );
    assert_eq!(n, 2);

    // Purge what was delivered before 250: only the first message.
    assert_eq!(
        ok(store.outbox_purge_delivered(UnixNanos(250)).await, "purge"),
        1
    );
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats {
            pending: 0,
            delivered: 2
        }
    );
    assert_eq!(
        ok(
            store.outbox_purge_delivered(UnixNanos(1_000)).await,
            "purge"
        ),
        2
    );
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );

    // Sequence numbers are never reused, even after the newest were purged.
    commit(&store, WriteBatch::new().outbox(message(4, "orders", 40))).await;
    let pending = ok(store.outbox_pending(10).await, "outbox_pending");
    assert_eq!(pending.len(), 1);
    assert!(pending[0].seq > seqs[2], "{:?} reused", pending[0].seq);
}

/// Queueing the same event id twice keeps one message (the first).
pub async fn outbox_dedupes_event_ids(fx: Fixture) {
    let store = fx.open().await;
    let mut first = message(7, "orders", 1);
    first.key = None;
    first.headers.clear();
    first.payload.clear();
    let mut again = first.clone();
    again.payload = b"different".to_vec();
    commit(&store, WriteBatch::new().outbox(first.clone())).await;
    commit(&store, WriteBatch::new().outbox(again)).await;
    let pending = ok(store.outbox_pending(10).await, "outbox_pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message, first);
}

/// A batch whose last write hits a database constraint leaves nothing behind,
/// and the store keeps working afterwards.
pub async fn batch_is_atomic_on_conflict(fx: Fixture) {
    let store = fx.open().await;
    let original = audit_record("au-dup", 1, "acct-x");
    commit(&store, WriteBatch::new().append_audit(original.clone())).await;

    let build = |with_duplicate: bool| {
        let batch = WriteBatch::new()
            .put_account(account("acct-x", "vip"))
            .put_balance(balance("acct-x", "USDT", 1_000, 0))
            .put_order(order(900, "acct-x", "BTC-USDT", 5))
            .put_fill(fill(1, 900, "acct-x", "BTC-USDT", 6))
            .put_alert(alert("al-x", "drawdown", "acct-x", 7, false))
            .put_registry_entry(registry_entry("svc-x", "svc", 1))
            .outbox(message(900, "orders", 8));
        if with_duplicate {
            batch.append_audit(audit_record("au-dup", 2, "acct-x"))
        } else {
            batch.append_audit(audit_record("au-new", 2, "acct-x"))
        }
    };
    let err = store
        .commit(build(true))
        .await
        .expect_err("the duplicate audit id must fail the batch");
    assert!(err.is_conflict(), "expected a conflict, got: {err}");

    assert_eq!(
        ok(store.get_account(&"acct-x".into()).await, "get_account"),
        None
    );
    assert!(ok(store.balances(&"acct-x".into()).await, "balances").is_empty());
    assert_eq!(ok(store.get_order(OrderId(900)).await, "get_order"), None);
    assert!(ok(store.fills(FillQuery::default()).await, "fills").is_empty());
    assert!(ok(store.alerts(AlertQuery::default()).await, "alerts").is_empty());
    assert!(ok(store.registry_entries().await, "registry").is_empty());
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );
    assert_eq!(
        ok(store.audit(AuditQuery::default()).await, "audit"),
        vec![original]
    );

    commit(&store, build(false)).await;
    assert!(
        ok(store.get_order(OrderId(900)).await, "get_order").is_some(),
        "the store still commits after a failed batch"
    );
    assert_eq!(ok(store.outbox_stats().await, "stats").pending, 1);
    assert_eq!(
        ok(store.audit(AuditQuery::default()).await, "audit").len(),
        2
    );
}

/// A batch whose later write cannot be encoded (an id beyond BIGINT) fails
/// as a whole, with a clear error, after earlier writes already ran.
pub async fn batch_is_atomic_on_invalid_input(fx: Fixture) {
    let store = fx.open().await;
    let batch = WriteBatch::new()
        .put_order(order(1, "alice", "BTC-USDT", 1))
        .outbox(message(1, "orders", 1))
        .put_order(order(u64::MAX, "alice", "BTC-USDT", 2));
    let err = store
        .commit(batch)
        .await
        .expect_err("an order id above i64::MAX cannot be stored");
    assert!(
        matches!(err, StoreError::InvalidInput { .. }),
        "expected InvalidInput, got: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("write 3 of 3") && text.contains("order id"),
        "{text}"
    );
    assert_eq!(ok(store.get_order(OrderId(1)).await, "get_order"), None);
    assert_eq!(
        ok(store.outbox_stats().await, "stats"),
        OutboxStats::default()
    );

    let err = store
        .commit(WriteBatch::new().put_fill(fill(u64::MAX, 1, "alice", "BTC-USDT", 1)))
        .await
        .expect_err("a trade id above i64::MAX cannot be stored");
    assert!(err.to_string().contains("trade id"), "{err}");
}

/// Fixed-point values survive exactly at the limits of their types,
/// negative values included.
pub async fn money_is_exact_at_the_extremes(fx: Fixture) {
    let store = fx.open().await;
    let max: Amount = "1701411834604692317316873037158.84105727"
        .parse()
        .expect("i128::MAX as a decimal");
    assert_eq!(
        max.raw(),
        170_141_183_460_469_231_731_687_303_715_884_105_727
    );
    let wide = balance("whale", "BTC", max.raw(), i128::MIN);
    let negative = balance("whale", "USDT", -1, -12_345_678_901_234_567_890_123);
    let zero = balance("whale", "ETH", 0, 0);

    let mut f = fill(1, 1, "whale", "BTC-USDT", 1);
    f.fee = Amount::from_raw(i128::MIN);
    f.price = Price::from_raw(i64::MAX);
    f.quantity = Quantity::from_raw(i64::MAX);
    let mut f2 = fill(2, 1, "whale", "BTC-USDT", 2);
    f2.fee = Amount::from_raw(-1);
    f2.price = Price::from_raw(i64::MIN);

    let mut a = alert("al-max", "notional", "whale", 1, false);
    a.alert.value = Amount::from_raw(i128::MAX);
    a.alert.threshold = Amount::from_raw(i128::MIN + 1);

    let mut o = order(1, "whale", "BTC-USDT", 1);
    o.price = Some(Price::from_raw(i64::MIN));
    o.stop_price = Some(Price::from_raw(-1));
    o.quantity = Quantity::from_raw(i64::MAX);
    o.filled = Quantity::from_raw(i64::MAX - 1);
    o.created_at = UnixNanos(i64::MIN);
    o.updated_at = UnixNanos(i64::MAX);
    o.expire_at = Some(UnixNanos(-1));

    commit(
        &store,
        WriteBatch::new()
            .put_balance(wide.clone())
            .put_balance(negative.clone())
            .put_balance(zero.clone())
            .put_fill(f.clone())
            .put_fill(f2.clone())
            .put_alert(a.clone())
            .put_order(o.clone()),
    )
    .await;

    assert_eq!(
        ok(store.balances(&"whale".into()).await, "balances"),
        vec![wide, zero, negative]
    );
    assert_eq!(
        ok(store.fills(FillQuery::default()).await, "fills"),
        vec![f2, f]
    );
    assert_eq!(
        ok(store.alerts(AlertQuery::default()).await, "alerts"),
        vec![a]
    );
    assert_eq!(ok(store.get_order(OrderId(1)).await, "get_order"), Some(o));
}

/// Opening the same database again re-runs migrations harmlessly and sees
/// everything committed before.
pub async fn reopen_is_idempotent_and_keeps_data(fx: Fixture) {
    {
        let first = fx.open().await;
        commit(
            &first,
            WriteBatch::new()
                .put_account(account("kept", "vip"))
                .put_balance(balance("kept", "USDT", i128::MAX, -5))
                .outbox(message(1, "accounts", 1)),
        )
        .await;
    }
    let second = fx.open().await;
    let third = fx.open().await;
    for store in [&second, &third] {
        assert_eq!(
            ok(store.get_account(&"kept".into()).await, "get_account"),
            Some(account("kept", "vip"))
        );
        assert_eq!(
            ok(store.balances(&"kept".into()).await, "balances"),
            vec![balance("kept", "USDT", i128::MAX, -5)]
        );
        assert_eq!(ok(store.outbox_stats().await, "stats").pending, 1);
    }
    commit(
        &third,
        WriteBatch::new().put_account(account("later", "retail")),
    )
    .await;
    assert_eq!(ok(second.accounts().await, "accounts").len(), 2);
}

/// Many writers committing at once all succeed, each outbox message with its
/// own sequence number.
pub async fn concurrent_commits_all_land(fx: Fixture) {
    let store = fx.open().await;
    let writers = 16u64;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch = WriteBatch::new()
                .put_order(order(i + 1, "alice", "BTC-USDT", i as i64))
                .put_balance(balance("alice", &format!("A{i}"), i128::from(i), 0))
                .outbox(message(u128::from(i), "orders", i as i64));
            store.commit(batch).await
        }));
    }
    for task in tasks {
        match task.await {
            Ok(result) => ok(result, "concurrent commit"),
            Err(e) => panic!("writer task failed: {e}"),
        }
    }
    let pending = ok(store.outbox_pending(100).await, "outbox_pending");
    assert_eq!(pending.len() as u64, writers);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        ok(store.orders(OrderQuery::default()).await, "orders").len() as u64,
        writers
    );
    assert_eq!(
        ok(store.balances(&"alice".into()).await, "balances").len() as u64,
        writers
    );
}
