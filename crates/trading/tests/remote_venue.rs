//! The remote venue against a real exchange on a loopback port: deposits and
//! balances, order updates and fills over the WebSocket (each account only
//! its own), refusals with the exchange's codes, an unreachable venue, and
//! a cut stream that reconnects and reports the gap.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tradestack_exchange::{ExchangeService, ExchangeSettings};
use tradestack_kernel::{Clock, RealClock};
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, InstrumentId, OrderStatus, OrderType, Price,
    Quantity, Side, StrategyId, TimeInForce,
};
use tradestack_service::Service;
use tradestack_trading::Outgoing;
use tradestack_trading::strategy::{Action, OrderRequest};
use tradestack_trading::venue::remote::{RemoteSettings, RemoteVenue};
use tradestack_trading::venue::{Venue, VenueError, VenueEvent};

const ADMIN: &str = "admin-token";

/// An exchange served on a loopback port, for one test.
struct Exchange {
    url: String,
    _svc: ExchangeService,
    _dir: tempfile::TempDir,
}

async fn exchange() -> Exchange {
    let table: toml::Table = toml::from_str(&format!(
        r#"
        admin_token = "{ADMIN}"
        allow_plaintext_secrets = true

        [journal]
        fsync = "never"

        [[accounts]]
        id = "alice"
        api_key = "alice-key"
        api_secret = "alice-secret"

        [[accounts]]
        id = "bob"
        api_key = "bob-key"
        api_secret = "bob-secret"
        "#
    ))
    .expect("exchange TOML");
    let settings = ExchangeSettings::from_table(&table).expect("exchange settings");
    let dir = tempfile::tempdir().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(RealClock::new());
    let metrics = tradestack_telemetry::Metrics::new("exchange", "test");
    let store = tradestack_store::connect("sqlite::memory:")
        .await
        .expect("state store");
    let bus = tradestack_bus::Bus::memory(clock.clone(), 1);
    let svc = ExchangeService::start(settings, dir.path(), clock, &metrics, store, bus, 7)
        .expect("exchange starts");
    let app = svc.routes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Exchange {
        url: format!("http://{addr}"),
        _svc: svc,
        _dir: dir,
    }
}

/// Venue settings as the strategy service reads them from TOML: keys for
/// alice and bob (carol has none), and the admin token.
fn settings(url: &str) -> RemoteSettings {
    toml::from_str(&format!(
        r#"
        url = "{url}"
        admin_token = "{ADMIN}"
        timeout = "5s"

        [[credentials]]
        account = "alice"
        api_key = "alice-key"
        api_secret = "alice-secret"

        [[credentials]]
        account = "bob"
        api_key = "bob-key"
        api_secret = "bob-secret"
        "#
    ))
    .expect("venue TOML")
}

fn venue(url: &str) -> RemoteVenue {
    RemoteVenue::new(settings(url)).expect("venue")
}

fn acc(s: &str) -> AccountId {
    AccountId::new(s)
}

fn amount(s: &str) -> Amount {
    s.parse().expect("amount")
}

fn btc_usdt() -> InstrumentId {
    InstrumentId::new("BTC-USDT")
}

fn limit(account: &str, id: &str, side: Side, price: &str, qty: &str) -> Outgoing {
    Outgoing {
        strategy: StrategyId::new("test"),
        account: acc(account),
        action: Action::Submit(OrderRequest {
            client_order_id: ClientOrderId::new(id),
            instrument: btc_usdt(),
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price: Some(price.parse::<Price>().expect("price")),
            quantity: qty.parse::<Quantity>().expect("quantity"),
        }),
    }
}

fn cancel(account: &str, id: &str) -> Outgoing {
    Outgoing {
        strategy: StrategyId::new("test"),
        account: acc(account),
        action: Action::Cancel {
            instrument: btc_usdt(),
            client_order_id: ClientOrderId::new(id),
        },
    }
}

fn accounts(names: &[&str]) -> BTreeSet<AccountId> {
    names.iter().map(|n| acc(n)).collect()
}

/// Reads events until `want` picks one, keeping all seen in `seen`; fails
/// after 10 s.
async fn until<T>(
    rx: &mut mpsc::Receiver<VenueEvent>,
    seen: &mut Vec<VenueEvent>,
    mut want: impl FnMut(&VenueEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no wanted event within 10 s; saw {seen:#?}"))
            .expect("the stream stays open");
        seen.push(event.clone());
        if let Some(t) = want(&event) {
            return t;
        }
    }
}

fn refused_code(r: Result<(), VenueError>) -> String {
    match r {
        Err(VenueError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Injects a chaos fault through the admin API.
async fn inject(url: &str, fault: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/admin/chaos"))
        .bearer_auth(ADMIN)
        .json(&json!({ "fault": fault }))
        .send()
        .await
        .expect("chaos request");
    assert_eq!(resp.status(), 201, "fault injected");
}

async fn clear_faults(url: &str) {
    let resp = reqwest::Client::new()
        .delete(format!("{url}/admin/chaos"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("chaos request");
    assert!(resp.status().is_success(), "faults cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_balances_and_order_updates() {
    let ex = exchange().await;
    let v = venue(&ex.url);
    assert_eq!(v.kind(), "remote");
    let listed = v.instruments().await.expect("instruments");
    assert!(listed.iter().any(|i| i.id == btc_usdt()), "{listed:?}");

    let usdt = AssetCode::new("USDT");
    v.deposit(&acc("alice"), &usdt, amount("100000"))
        .await
        .expect("deposit");
    assert_eq!(
        v.balance(&acc("alice"), &usdt).await.expect("balance"),
        amount("100000")
    );
    // An asset the account never held is zero.
    assert_eq!(
        v.balance(&acc("alice"), &AssetCode::new("BTC"))
            .await
            .expect("balance"),
        Amount::ZERO
    );

    let mut rx = v.events(accounts(&["alice"])).await.expect("events");
    let mut seen = Vec::new();
    v.send(&limit("alice", "a-1", Side::Buy, "50000", "0.01"))
        .await
        .expect("order accepted");
    let opened = until(&mut rx, &mut seen, |e| match e {
        VenueEvent::Order(o) if o.client_order_id.as_str() == "a-1" => Some(o.clone()),
        _ => None,
    })
    .await;
    assert_eq!(opened.status, OrderStatus::New);
    assert_eq!(opened.account, acc("alice"));
    // Locked by the open order, still the account's.
    assert_eq!(
        v.balance(&acc("alice"), &usdt).await.expect("balance"),
        amount("100000")
    );

    v.send(&cancel("alice", "a-1")).await.expect("cancelled");
    until(&mut rx, &mut seen, |e| match e {
        VenueEvent::Order(o)
            if o.client_order_id.as_str() == "a-1" && o.status == OrderStatus::Cancelled =>
        {
            Some(())
        }
        _ => None,
    })
    .await;

    // Cancel-all (nothing left open) is accepted too.
    let all = Outgoing {
        strategy: StrategyId::new("test"),
        account: acc("alice"),
        action: Action::CancelAll {
            instrument: Some(btc_usdt()),
        },
    };
    v.send(&all).await.expect("cancel all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_reach_only_their_own_account() {
    let ex = exchange().await;
    let v = venue(&ex.url);
    v.deposit(&acc("alice"), &AssetCode::new("BTC"), amount("1"))
        .await
        .expect("deposit");
    v.deposit(&acc("bob"), &AssetCode::new("USDT"), amount("100000"))
        .await
        .expect("deposit");

    let mut alice = v.events(accounts(&["alice"])).await.expect("events");
    let mut bob = v.events(accounts(&["bob"])).await.expect("events");
    v.send(&limit("alice", "a-sell", Side::Sell, "50000", "0.1"))
        .await
        .expect("sell rests");
    v.send(&limit("bob", "b-buy", Side::Buy, "50000", "0.1"))
        .await
        .expect("buy crosses");

    let mut seen_a = Vec::new();
    let fill_a = until(&mut alice, &mut seen_a, |e| match e {
        VenueEvent::Fill(f) => Some(f.clone()),
        _ => None,
    })
    .await;
    assert_eq!(fill_a.account, acc("alice"));
    assert_eq!(fill_a.client_order_id.as_str(), "a-sell");
    assert_eq!(fill_a.side, Side::Sell);
    assert_eq!(fill_a.quantity, "0.1".parse::<Quantity>().expect("qty"));

    let mut seen_b = Vec::new();
    let fill_b = until(&mut bob, &mut seen_b, |e| match e {
        VenueEvent::Fill(f) => Some(f.clone()),
        _ => None,
    })
    .await;
    assert_eq!(fill_b.account, acc("bob"));
    assert_eq!(fill_b.client_order_id.as_str(), "b-buy");
    assert_eq!(fill_b.side, Side::Buy);
    assert_eq!(fill_b.trade_id, fill_a.trade_id);

    // Both orders end filled, each on its own stream.
    until(&mut alice, &mut seen_a, |e| match e {
        VenueEvent::Order(o) if o.status == OrderStatus::Filled => Some(()),
        _ => None,
    })
    .await;
    until(&mut bob, &mut seen_b, |e| match e {
        VenueEvent::Order(o) if o.status == OrderStatus::Filled => Some(()),
        _ => None,
    })
    .await;
    while let Ok(e) = alice.try_recv() {
        seen_a.push(e);
    }
    while let Ok(e) = bob.try_recv() {
        seen_b.push(e);
    }
    let owner = |e: &VenueEvent| match e {
        VenueEvent::Order(o) => Some(o.account.clone()),
        VenueEvent::Fill(f) => Some(f.account.clone()),
        VenueEvent::Gap(_) => None,
    };
    assert!(
        seen_a.iter().filter_map(owner).all(|a| a == acc("alice")),
        "{seen_a:#?}"
    );
    assert!(
        seen_b.iter().filter_map(owner).all(|a| a == acc("bob")),
        "{seen_b:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_exchange_code() {
    let ex = exchange().await;
    let v = venue(&ex.url);

    // No funds yet.
    let r = v
        .send(&limit("alice", "a-1", Side::Buy, "50000", "0.01"))
        .await;
    assert_eq!(refused_code(r), "insufficient_funds");

    v.deposit(&acc("alice"), &AssetCode::new("USDT"), amount("100000"))
        .await
        .expect("deposit");
    // BTC-USDT trades in lots of 0.00001.
    let r = v
        .send(&limit("alice", "a-2", Side::Buy, "50000", "0.000001"))
        .await;
    assert_eq!(refused_code(r), "off_lot");
    let r = v.send(&cancel("alice", "never-sent")).await;
    assert_eq!(refused_code(r), "unknown_order");

    // carol has no key, and this exchange wants signed requests.
    let r = v
        .send(&limit("carol", "c-1", Side::Buy, "50000", "0.01"))
        .await;
    assert_eq!(refused_code(r), "unauthorized");

    // Deposits need the admin token.
    let mut no_token = settings(&ex.url);
    no_token.admin_token = None;
    let r = RemoteVenue::new(no_token)
        .expect("venue")
        .deposit(&acc("alice"), &AssetCode::new("USDT"), amount("1"))
        .await;
    assert_eq!(refused_code(r), "no_admin_token");

    // Every 429 is `rate_limited`.
    inject(
        &ex.url,
        json!({"errors": {"endpoint": "/api/v1/orders", "status": 429, "rate_bps": 10000}}),
    )
    .await;
    let r = v
        .send(&limit("alice", "a-3", Side::Buy, "50000", "0.01"))
        .await;
    assert_eq!(refused_code(r), "rate_limited");
    clear_faults(&ex.url).await;

    // A 5xx is the venue being unavailable, not a refusal.
    inject(&ex.url, json!({"outage": {"websocket": false}})).await;
    let r = v
        .send(&limit("alice", "a-4", Side::Buy, "50000", "0.01"))
        .await;
    assert!(matches!(r, Err(VenueError::Unavailable(_))), "{r:?}");
    clear_faults(&ex.url).await;

    v.send(&limit("alice", "a-5", Side::Buy, "50000", "0.01"))
        .await
        .expect("accepted once the faults are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("address").port()
    };
    let v = venue(&format!("http://127.0.0.1:{port}"));
    let unavailable = |r: &Result<(), VenueError>| matches!(r, Err(VenueError::Unavailable(_)));
    let r = v
        .send(&limit("alice", "a-1", Side::Buy, "50000", "0.01"))
        .await;
    assert!(unavailable(&r), "{r:?}");
    let r = v.instruments().await.map(|_| ());
    assert!(unavailable(&r), "{r:?}");
    let r = v
        .balance(&acc("alice"), &AssetCode::new("USDT"))
        .await
        .map(|_| ());
    assert!(unavailable(&r), "{r:?}");
    let r = v
        .deposit(&acc("alice"), &AssetCode::new("USDT"), amount("1"))
        .await;
    assert!(unavailable(&r), "{r:?}");
    let r = v.events(accounts(&["alice"])).await.map(|_| ());
    assert!(unavailable(&r), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_reconnects_and_reports_the_gap() {
    let ex = exchange().await;
    let v = venue(&ex.url);
    v.deposit(&acc("alice"), &AssetCode::new("USDT"), amount("100000"))
        .await
        .expect("deposit");
    let mut rx = v
        .events(accounts(&["alice", "carol"]))
        .await
        .expect("events (carol is only warned about)");

    // An outage cuts every stream (even once cleared: it starts a new
    // stream epoch) and refuses new ones while it lasts.
    inject(&ex.url, json!({"outage": {"websocket": true}})).await;
    clear_faults(&ex.url).await;

    let mut seen = Vec::new();
    let gap = until(&mut rx, &mut seen, |e| match e {
        VenueEvent::Gap(g) => Some(g.clone()),
        _ => None,
    })
    .await;
    assert!(gap.contains("reconnected"), "{gap}");

    // The new connection carries updates again.
    v.send(&limit("alice", "a-1", Side::Buy, "50000", "0.01"))
        .await
        .expect("order accepted");
    until(&mut rx, &mut seen, |e| match e {
        VenueEvent::Order(o) if o.client_order_id.as_str() == "a-1" => Some(()),
        _ => None,
    })
    .await;
}

#[test]
fn settings_refuse_unknown_keys_and_hide_secrets() {
    let s = settings("http://127.0.0.1:1");
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.credentials.len(), 2);
    let shown = format!("{s:?} {:?}", RemoteVenue::new(s.clone()).expect("venue"));
    assert!(!shown.contains("alice-secret"), "{shown}");
    assert!(!shown.contains(ADMIN), "{shown}");
    assert!(shown.contains("alice-key"), "{shown}");

    let unknown = toml::from_str::<RemoteSettings>("url = \"http://x\"\nsecret = \"s\"");
    assert!(unknown.is_err());
    let defaults: RemoteSettings = toml::from_str("url = \"http://x:1\"").expect("defaults");
    assert_eq!(defaults.timeout, Duration::from_secs(10));
    assert!(defaults.credentials.is_empty() && defaults.admin_token.is_none());

    let err = RemoteVenue::new(RemoteSettings::new("https://example.invalid"))
        .expect_err("no TLS in this build");
    assert_eq!(err.key, "url");
    let err = RemoteVenue::new(RemoteSettings::new("http://host:1/prefix")).expect_err("no path");
    assert_eq!(err.key, "url");
    let mut twice = settings("http://127.0.0.1:1");
    twice.credentials.push(twice.credentials[0].clone());
    let err = RemoteVenue::new(twice).expect_err("two keys for alice");
    assert_eq!(err.key, "credentials[2].account");
}

/// Polls the driver until `f` is true, for up to 10 s.
async fn driver_until(
    driver: &tradestack_trading::live::DriverHandle<tradestack_trading::gate::Open>,
    what: &str,
    f: impl Fn(&tradestack_trading::live::Desk<tradestack_trading::gate::Open>) -> bool
    + Send
    + Sync
    + Clone
    + 'static,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let f = f.clone();
        if driver.read(move |d| f(d)).await.expect("driver runs") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The strategy service's live driver, unchanged, on the remote venue: it
/// funds its account through the admin API, quotes over signed REST when
/// the feed moves, and hears its fill on the private WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_driver_trades_through_the_remote_venue() {
    use tradestack_trading::service::{Context, StrategyService, TradingSettings, VenueChoice};

    let ex = exchange().await;
    let clock: Arc<dyn Clock> = Arc::new(RealClock::new());
    // The strategy side's own bus: only market data travels on it here.
    let bus = tradestack_bus::Bus::memory(clock.clone(), 2);
    let strategies = tradestack_trading::strategies::from_tables(&[toml::from_str(
        r#"
        id = "mm"
        account = "alice"
        kind = "market_maker"
        instrument = "BTC-USDT"
        size = "0.01"
        max_inventory = "1"
        half_spread_bps = 5
        refresh = "500ms"
        "#,
    )
    .expect("strategy TOML")])
    .expect("strategy");
    let mut trading = TradingSettings {
        venue: VenueChoice::Remote,
        remote: Some(settings(&ex.url)),
        funding: amount("100000"),
        ..TradingSettings::default()
    };
    trading.bar_intervals = vec![60_000_000_000];
    let venue = tradestack_trading::service::venue_for(&trading, None).expect("remote venue");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let svc = StrategyService::start(
        &trading,
        &strategies,
        tradestack_trading::gate::Open,
        venue.clone(),
        Context {
            bus: bus.clone(),
            clock: clock.clone(),
            metrics: tradestack_telemetry::Metrics::new("strategy", "test"),
            shutdown,
        },
    )
    .await
    .expect("strategy service starts");
    assert_eq!(
        venue.balance(&acc("alice"), &AssetCode::new("USDT")).await,
        Ok(amount("100000")),
        "funded through the admin API"
    );

    // A quote on the feed: the market maker quotes both sides.
    let feed = bus
        .publisher(&tradestack_bus::Topic::new(
            tradestack_marketdata::feed::FEED_TOPIC,
        ))
        .expect("publisher");
    let quote = tradestack_model::Quote {
        instrument: btc_usdt(),
        bid: "42000".parse().unwrap(),
        bid_size: "1".parse().unwrap(),
        ask: "42010".parse().unwrap(),
        ask_size: "1".parse().unwrap(),
        ts: clock.now(),
    };
    feed.publish(
        None,
        tradestack_marketdata::feed::FeedMessage {
            venue: "tradestack".into(),
            event: tradestack_marketdata::feed::FeedEvent::Quote(quote),
        },
    )
    .await
    .expect("quote published");
    let id = StrategyId::new("mm");
    let id2 = id.clone();
    driver_until(svc.driver(), "two resting quotes", move |d| {
        d.engine.open_orders(&id2).len() == 2 && d.stats.sent >= 2
    })
    .await;

    // Bob sells into the bid: the fill reaches the strategy over the WebSocket.
    venue
        .deposit(&acc("bob"), &AssetCode::new("BTC"), amount("1"))
        .await
        .expect("bob funded");
    let hit = Outgoing {
        strategy: StrategyId::new("taker"),
        account: acc("bob"),
        action: Action::Submit(OrderRequest {
            client_order_id: ClientOrderId::new("bob-1"),
            instrument: btc_usdt(),
            side: Side::Sell,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Ioc,
            price: None,
            quantity: "0.01".parse().unwrap(),
        }),
    };
    venue.send(&hit).await.expect("bob's sell accepted");
    let id3 = id.clone();
    driver_until(svc.driver(), "the strategy's fill", move |d| {
        d.engine.stats(&id3).is_some_and(|s| s.fills == 1)
    })
    .await;
    let views = svc
        .driver()
        .read(|d| d.engine.portfolio().views(None))
        .await
        .expect("driver runs");
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].strategy, Some(id));
    assert_eq!(views[0].quantity, amount("0.01"), "long the 0.01 bob sold");
}
