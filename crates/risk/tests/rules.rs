//! Every rule: one test that triggers it, and the normal flow of a
//! simulated session under every rule at realistic limits, which stays quiet.

use tradestack_exchange::ExchangeSettings;
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, Fill, Instrument, InstrumentId, Liquidity, Nanos,
    OrderId, OrderType, Price, Quantity, Quote, Side, StrategyId, TimeInForce, TradeId, UnixNanos,
};
use tradestack_risk::{
    AlertChange, RiskConfig, RiskEvent, RiskMonitor, RiskedSession, SettlementBreak, Subject,
    TradingState,
};
use tradestack_trading::misbehaviour::Misbehaviour;
use tradestack_trading::strategy::OrderRequest;
use tradestack_trading::{
    Action, OrderGate, Outgoing, SessionConfig, StrategyConfig, StrategyEngine,
};

const T0: UnixNanos = UnixNanos(1_767_225_600_000_000_000);
const S: i64 = 1_000_000_000;

fn p(s: &str) -> Price {
    s.parse().unwrap()
}
fn q(s: &str) -> Quantity {
    s.parse().unwrap()
}
fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

fn instruments() -> Vec<Instrument> {
    ExchangeSettings::default().instruments
}

fn config(text: &str) -> RiskConfig {
    toml::from_str(text).unwrap()
}

fn monitor(text: &str) -> RiskMonitor {
    let mut m = RiskMonitor::new(config(text), instruments().iter(), T0);
    m.register(StrategyId::new("s1"), AccountId::new("acct"));
    m.on_reference(&InstrumentId::new("BTC-USD"), p("40000"));
    m.on_reference(&InstrumentId::new("ETH-USD"), p("2000"));
    m.on_reference(&InstrumentId::new("USDT-USD"), p("1"));
    m.on_reference(&InstrumentId::new("USDC-USD"), p("1"));
    m
}

struct Fills {
    trade: u64,
}

impl Fills {
    /// One side of a new trade for `account`/`strategy` (the other side is a stranger).
    fn fill(
        &mut self,
        account: &str,
        strategy: Option<&str>,
        instrument: &str,
        side: Side,
        price: &str,
        qty: &str,
    ) -> Fill {
        self.trade += 1;
        Fill {
            trade_id: TradeId(self.trade),
            order_id: OrderId(self.trade),
            client_order_id: ClientOrderId::new(format!("c{}", self.trade)),
            account: AccountId::new(account),
            strategy: strategy.map(StrategyId::new),
            instrument: InstrumentId::new(instrument),
            side,
            price: p(price),
            quantity: q(qty),
            fee: Amount::ZERO,
            fee_asset: AssetCode::new("USDT"),
            liquidity: Liquidity::Taker,
            ts: T0,
        }
    }
}

fn fired(m: &mut RiskMonitor, at: i64) -> Vec<String> {
    m.evaluate(T0 + Nanos(at * S))
        .alerts
        .into_iter()
        .filter_map(|c| match c {
            AlertChange::Fired(a) => Some(format!("{} {}", a.rule, a.subject)),
            AlertChange::Resolved(_) => None,
        })
        .collect()
}

fn state(m: &RiskMonitor, account: &str, strategy: Option<&str>) -> TradingState {
    m.states().get(&Subject {
        account: AccountId::new(account),
        strategy: strategy.map(StrategyId::new),
    })
}

#[test]
fn position_limit_moves_the_strategy_to_reducing() {
    let mut m = monitor("[rules.position_limit]\nBTC-USDT = \"1\"");
    let mut f = Fills { trade: 0 };
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "1"),
        T0,
    );
    assert!(fired(&mut m, 1).is_empty(), "at the limit is fine");
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "0.5"),
        T0,
    );
    assert_eq!(fired(&mut m, 2), ["position_limit acct/s1 BTC-USDT"]);
    assert_eq!(state(&m, "acct", Some("s1")), TradingState::Reducing);
    let audit = m.states().audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].to, TradingState::Reducing);
}

#[test]
fn gross_net_and_concentration_per_asset() {
    let mut m = monitor(
        "[rules]\ngross_exposure_usd = \"100000\"\nnet_exposure_usd = \"100000\"\nconcentration_bps = 6000",
    );
    let mut f = Fills { trade: 0 };
    // Two strategies long and short 2 BTC: net flat, gross 160k USD.
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "2"),
        T0,
    );
    m.on_fill(
        &f.fill("acct", Some("s2"), "BTC-USDT", Side::Sell, "40000", "2"),
        T0,
    );
    let got = fired(&mut m, 1);
    assert!(
        got.contains(&"gross_exposure acct BTC".to_string()),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|g| g.starts_with("net_exposure acct BTC")),
        "{got:?}"
    );
    assert_eq!(state(&m, "acct", None), TradingState::Reducing);

    // One strategy long 3 BTC: net 120k.
    let mut m = monitor("[rules]\nnet_exposure_usd = \"100000\"\nconcentration_bps = 6000");
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "3"),
        T0,
    );
    let got = fired(&mut m, 1);
    assert!(
        got.contains(&"net_exposure acct BTC".to_string()),
        "{got:?}"
    );
    // BTC +120k and USDT −120k: 50% each, under 60%.
    assert!(
        !got.iter().any(|g| g.starts_with("concentration")),
        "{got:?}"
    );
    m.on_fill(
        &f.fill("acct", Some("s1"), "ETH-USDT", Side::Sell, "2000", "60"),
        T0,
    );
    // BTC 120k, ETH −120k, USDT 0: 50% each.
    let got = fired(&mut m, 2);
    assert_eq!(got, ["net_exposure acct ETH"], "USDT is back to flat");
}

#[test]
fn concentration_warns_when_one_asset_dominates() {
    let mut m = monitor("[rules]\nconcentration_bps = 4000");
    let mut f = Fills { trade: 0 };
    // Long 1 BTC against USDT, and long 0.1 ETH against USDT: BTC is 40k of ~84.4k.
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "1"),
        T0,
    );
    m.on_fill(
        &f.fill("acct", Some("s1"), "ETH-USDT", Side::Buy, "2000", "1"),
        T0,
    );
    // USDT −42k is 50% of gross 84k.
    assert_eq!(fired(&mut m, 1), ["concentration acct USDT"]);
    assert_eq!(
        state(&m, "acct", None),
        TradingState::Active,
        "a warning only"
    );
}

#[test]
fn drawdown_and_daily_loss_halt_the_strategy() {
    let mut m = monitor("[rules]\nmax_drawdown_usd = \"1000\"\ndaily_loss_usd = \"5000\"");
    let mut f = Fills { trade: 0 };
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "1"),
        T0,
    );
    assert!(fired(&mut m, 1).is_empty());
    m.on_reference(&InstrumentId::new("BTC-USD"), p("40500"));
    assert!(fired(&mut m, 2).is_empty(), "a gain");
    m.on_reference(&InstrumentId::new("BTC-USD"), p("39400"));
    // 1,100 below the 40,500 peak.
    assert_eq!(fired(&mut m, 3), ["drawdown acct/s1"]);
    assert_eq!(state(&m, "acct", Some("s1")), TradingState::Halted);

    let mut m = monitor("[rules]\ndaily_loss_usd = \"500\"");
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Buy, "40000", "1"),
        T0,
    );
    assert!(fired(&mut m, 1).is_empty());
    m.on_reference(&InstrumentId::new("BTC-USD"), p("39400"));
    assert_eq!(fired(&mut m, 2), ["daily_loss acct/s1"]);
    assert_eq!(state(&m, "acct", Some("s1")), TradingState::Halted);
}

#[test]
fn exposure_to_a_depegging_stablecoin() {
    let mut m = monitor("[rules]\ndepeg_exposure_usd = \"10000\"\ndepeg_bps = 200");
    let mut f = Fills { trade: 0 };
    // Sold 1 BTC for 40,000 USDT: long USDT.
    m.on_fill(
        &f.fill("acct", Some("s1"), "BTC-USDT", Side::Sell, "40000", "1"),
        T0,
    );
    m.on_reference(&InstrumentId::new("USDT-USD"), p("0.99"));
    assert!(fired(&mut m, 1).is_empty(), "100 bps is inside the band");
    m.on_reference(&InstrumentId::new("USDT-USD"), p("0.95"));
    assert_eq!(fired(&mut m, 2), ["depeg_exposure acct USDT"]);
    assert_eq!(state(&m, "acct", None), TradingState::Reducing);
}

#[test]
fn stale_data_venue_health_and_settlement_breaks() {
    let mut m = monitor(
        "[rules]\nstale_after = \"5s\"\nexchange_error_bps = 1000\nexchange_p99 = \"200ms\"\nhealth_window = \"10s\"",
    );
    let quote = Quote {
        instrument: InstrumentId::new("BTC-USDT"),
        bid: p("39999"),
        bid_size: q("1"),
        ask: p("40001"),
        ask_size: q("1"),
        ts: T0,
    };
    m.on_quote(&quote);
    for k in 0..20 {
        m.on_venue_result(T0 + Nanos(k * 100_000_000), true, Nanos(5_000_000));
    }
    assert!(fired(&mut m, 4).is_empty());
    assert_eq!(fired(&mut m, 6), ["stale_market_data BTC-USDT"]);
    // 3 of 23 fail (13%), and the slowest is 900 ms.
    for _ in 0..3 {
        m.on_venue_result(T0 + Nanos(6 * S), false, Nanos(900_000_000));
    }
    let got = fired(&mut m, 7);
    assert_eq!(
        got,
        ["exchange_errors exchange", "exchange_latency exchange"]
    );
    m.on_settlement_break(SettlementBreak {
        id: "b1".into(),
        account: AccountId::new("acct"),
        asset: AssetCode::new("BTC"),
        expected: a("1"),
        actual: a("0.9"),
    });
    assert_eq!(fired(&mut m, 8), ["settlement_break acct BTC"]);
    m.on_settlement_cleared("b1");
    let resolved: Vec<String> = m
        .evaluate(T0 + Nanos(9 * S))
        .alerts
        .into_iter()
        .filter_map(|c| match c {
            AlertChange::Resolved(a) => Some(a.rule),
            _ => None,
        })
        .collect();
    assert!(
        resolved.contains(&"settlement_break".to_string()),
        "{resolved:?}"
    );
}

#[test]
fn self_trades_and_wash_trades() {
    let mut m = monitor("[rules.owner_groups]\nfund = [\"acct\", \"acct-2\"]");
    let mut f = Fills { trade: 0 };
    let mut pair = |m: &mut RiskMonitor, buyer: &str, seller: &str| {
        let b = f.fill(buyer, None, "BTC-USDT", Side::Buy, "40000", "0.1");
        let mut s = b.clone();
        s.account = AccountId::new(seller);
        s.side = Side::Sell;
        m.on_fill(&b, T0);
        m.on_fill(&s, T0);
    };
    pair(&mut m, "acct", "stranger");
    assert!(fired(&mut m, 1).is_empty(), "an ordinary trade");
    pair(&mut m, "acct", "acct");
    assert_eq!(fired(&mut m, 2), ["self_trade acct"]);
    pair(&mut m, "acct", "acct-2");
    assert_eq!(fired(&mut m, 3), ["wash_trade fund"]);
}

fn submit(engine: &StrategyEngine, qty: &str, price: Option<&str>, side: Side) -> Outgoing {
    let _ = engine;
    Outgoing {
        strategy: StrategyId::new("s1"),
        account: AccountId::new("acct"),
        action: Action::Submit(OrderRequest {
            client_order_id: ClientOrderId::new("s1-x"),
            instrument: InstrumentId::new("BTC-USDT"),
            side,
            order_type: if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            time_in_force: TimeInForce::Gtc,
            price: price.map(p),
            quantity: q(qty),
        }),
    }
}

#[test]
fn pre_trade_checks_refuse_with_the_rule() {
    let mut m = monitor(
        "[pretrade]\nmax_order_qty = \"2\"\nmax_order_notional = \"50000\"\nprice_band_bps = 100\nmax_orders_per_second = 5",
    );
    let instruments = instruments();
    let mut engine = StrategyEngine::new(instruments.iter());
    engine.on_reference(&InstrumentId::new("BTC-USD"), p("40000"));
    engine.on_reference(&InstrumentId::new("USDT-USD"), p("1"));
    let rule = |m: &mut RiskMonitor, o: &Outgoing, at: i64| {
        m.check(o, T0 + Nanos(at * S), &engine)
            .err()
            .map(|r| r.rule)
    };
    assert_eq!(
        rule(&mut m, &submit(&engine, "1", Some("40100"), Side::Buy), 0),
        None
    );
    assert_eq!(
        rule(&mut m, &submit(&engine, "3", Some("40000"), Side::Buy), 10).as_deref(),
        Some("max_order_qty")
    );
    assert_eq!(
        rule(
            &mut m,
            &submit(&engine, "1.5", Some("40000"), Side::Buy),
            20
        )
        .as_deref(),
        Some("max_order_notional")
    );
    assert_eq!(
        rule(&mut m, &submit(&engine, "1.5", None, Side::Buy), 30).as_deref(),
        Some("max_order_notional"),
        "market orders at the reference"
    );
    assert_eq!(
        rule(
            &mut m,
            &submit(&engine, "0.1", Some("40500"), Side::Buy),
            40
        )
        .as_deref(),
        Some("price_band")
    );
    let burst: Vec<Option<String>> = (0..7)
        .map(|_| {
            rule(
                &mut m,
                &submit(&engine, "0.1", Some("40000"), Side::Buy),
                50,
            )
        })
        .collect();
    assert_eq!(burst.iter().filter(|r| r.is_none()).count(), 5);
    assert_eq!(burst[6].as_deref(), Some("order_rate"));

    // States: REDUCING lets only reducing orders through; HALTED nothing.
    let mut m = monitor("");
    let subject = Subject {
        account: AccountId::new("acct"),
        strategy: Some(StrategyId::new("s1")),
    };
    m.set_state(subject.clone(), TradingState::Halted, "ops", "test", T0)
        .unwrap();
    assert_eq!(
        rule(
            &mut m,
            &submit(&engine, "0.1", Some("40000"), Side::Buy),
            60
        )
        .as_deref(),
        Some("halted")
    );
    m.set_state(subject, TradingState::Reducing, "ops", "test", T0)
        .unwrap();
    assert_eq!(
        rule(
            &mut m,
            &submit(&engine, "0.1", Some("40000"), Side::Sell),
            61
        )
        .as_deref(),
        Some("reducing"),
        "flat: a sell opens a short"
    );
    assert_eq!(m.states().audit().len(), 2);
}

fn desk() -> Vec<StrategyConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        strategies: Vec<StrategyConfig>,
    }
    toml::from_str::<File>(
        r#"
        [[strategies]]
        id = "mm-btc"
        account = "desk-mm"
        kind = "market_maker"
        instrument = "BTC-USDT"
        size = "0.05"
        max_inventory = "0.5"

        [[strategies]]
        id = "peg"
        account = "desk-peg"
        kind = "peg_arb"
        legs = [{ instrument = "USDT-USD" }, { instrument = "USDC-USDT" }]
        size = "2000"
        max_position = "20000"
        "#,
    )
    .unwrap()
    .strategies
}

/// Every rule on, at limits a desk would set for this flow.
const DESK_LIMITS: &str = r#"
    [pretrade]
    max_order_qty = "100000"
    max_order_notional = "250000"
    price_band_bps = 300
    max_open_orders = 50
    max_orders_per_second = 20

    [rules]
    gross_exposure_usd = "500000"
    net_exposure_usd = "500000"
    max_drawdown_usd = "20000"
    daily_loss_usd = "20000"
    depeg_exposure_usd = "100000"
    stale_after = "2m"
    feed_deviation_bps = 150
    exchange_error_bps = 500
    exchange_p99 = "1s"
    runaway_orders_per_second = 20
    runaway_for = "3s"

    [rules.position_limit]
    BTC-USDT = "2"
    USDT-USD = "50000"
    USDC-USDT = "50000"
"#;

#[test]
fn normal_flow_stays_quiet_under_every_rule() {
    let config = SessionConfig {
        strategies: desk(),
        ..SessionConfig::default()
    };
    let mut s = RiskedSession::new(&config, config_text(DESK_LIMITS), T0, 21).unwrap();
    let mut alerts = Vec::new();
    let mut fills = 0;
    s.run_until(T0 + Nanos(4 * 3_600 * S), |_, e| match e {
        RiskEvent::Alert(a) => alerts.push(format!("{:?}", a.alert())),
        RiskEvent::Exchange(tradestack_exchange::ExchangeEvent::Fill(f))
            if f.strategy.is_some() =>
        {
            fills += 1
        }
        _ => {}
    });
    assert!(fills > 50, "the desk traded: {fills} fills");
    assert!(alerts.is_empty(), "{alerts:#?}");
    assert_eq!(s.session.stats.gated, 0);
}

fn config_text(t: &str) -> RiskConfig {
    config(t)
}

#[test]
fn a_runaway_strategy_is_halted_and_cancelled_within_the_detection_window() {
    let config = SessionConfig {
        strategies: desk(),
        ..SessionConfig::default()
    };
    let mut s = RiskedSession::new(&config, config_text(DESK_LIMITS), T0, 22).unwrap();
    s.run_until(T0 + Nanos(600 * S), |_, _| {});
    let mm = StrategyId::new("mm-btc");
    s.session
        .set_misbehaviour(
            &mm,
            Some(Misbehaviour::RunawayLoop {
                instrument: InstrumentId::new("BTC-USDT"),
                start_per_second: 10,
                double_every: Nanos(2 * S),
                max_per_second: 5_000,
            }),
        )
        .unwrap();
    let injected = s.session.now();
    let mut halted_at = None;
    s.run_until(T0 + Nanos(700 * S), |t, e| {
        if let RiskEvent::Transition(tr) = e
            && tr.to == TradingState::Halted
        {
            halted_at.get_or_insert(t);
        }
    });
    let halted_at = halted_at.expect("the runaway strategy was halted");
    // Over 20/s from about 4 s in, held 3 s, judged every second.
    let detection = halted_at.saturating_since(injected);
    assert!(
        detection <= Nanos(10 * S),
        "halted {} ms after the injection",
        detection.0 / 1_000_000
    );
    assert_eq!(
        s.monitor()
            .states()
            .effective(&AccountId::new("desk-mm"), Some(&mm)),
        TradingState::Halted
    );
    assert!(
        s.session.engine.open_orders(&mm).is_empty(),
        "every order cancelled"
    );
    assert!(
        s.session
            .sim
            .exchange
            .open_orders(&AccountId::new("desk-mm"), None)
            .is_empty(),
        "and the exchange agrees"
    );
    let tr = s.monitor().states().audit().last().unwrap().clone();
    assert_eq!(serde_json_rule(&tr), "order_rate");
}

fn serde_json_rule(tr: &tradestack_risk::Transition) -> String {
    match &tr.by {
        tradestack_risk::ChangedBy::Rule { rule } => rule.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn quotes_far_from_the_reference_are_suspect() {
    let mut m = monitor("[rules]\nfeed_deviation_bps = 150");
    let quote = |bid: &str, ask: &str| Quote {
        instrument: InstrumentId::new("BTC-USDT"),
        bid: p(bid),
        bid_size: q("1"),
        ask: p(ask),
        ask_size: q("1"),
        ts: T0,
    };
    m.on_reference(&InstrumentId::new("BTC-USD"), p("40000"));
    m.on_reference(&InstrumentId::new("USDT-USD"), p("1"));
    m.on_quote(&quote("39990", "40010"));
    assert!(fired(&mut m, 1).is_empty(), "5 bps off is normal");
    // A corrupted quote, 3% high.
    m.on_quote(&quote("41190", "41210"));
    assert_eq!(fired(&mut m, 2), ["market_data_deviation BTC-USDT"]);
}
