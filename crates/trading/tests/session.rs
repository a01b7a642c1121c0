//! Strategies beside the agent population on the exchange core, in
//! simulated time: a whole day reconciled against the fills, determinism,
//! and each misbehaviour mode.

use std::collections::BTreeMap;

use tradestack_exchange::ExchangeEvent;
use tradestack_model::{
    AccountId, Amount, AssetCode, Fill, InstrumentId, Nanos, Price, Side, StrategyId, UnixNanos,
};
use tradestack_trading::misbehaviour::Misbehaviour;
use tradestack_trading::{Session, SessionConfig, StrategyConfig};

const START: UnixNanos = UnixNanos(1_767_225_600_000_000_000); // 2026-01-01T00:00:00Z
const HOUR: i64 = 3_600_000_000_000;

fn strategies() -> Vec<StrategyConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        strategies: Vec<StrategyConfig>,
    }
    let text = r#"
        [[strategies]]
        id = "mm-btc"
        account = "desk-mm"
        kind = "market_maker"
        instrument = "BTC-USDT"
        half_spread_bps = 3
        size = "0.05"
        max_inventory = "0.5"

        [[strategies]]
        id = "mom-eth"
        account = "desk-mom"
        kind = "ma_crossover"
        instrument = "ETH-USDT"
        fast = 3
        slow = 10
        size = "2"

        [[strategies]]
        id = "mr-btc-eth"
        account = "desk-mr"
        kind = "mean_reversion"
        leg_a = "BTC-USDT"
        leg_b = "ETH-USDT"
        hedge_ratio = "18"
        size = "0.01"
        window = 30
        sample_every = "20s"
        entry_z = "1.5"

        [[strategies]]
        id = "peg"
        account = "desk-peg"
        kind = "peg_arb"
        legs = [{ instrument = "USDT-USD" }, { instrument = "USDC-USDT" }]
        threshold_bps = 5
        size = "2000"
        max_position = "20000"
    "#;
    toml::from_str::<File>(text).unwrap().strategies
}

fn session(seed: u64) -> Session {
    let config = SessionConfig {
        strategies: strategies(),
        ..SessionConfig::default()
    };
    Session::new(&config, START, seed).unwrap()
}

/// Independent per-(account, instrument) sums over the fills.
#[derive(Default, Debug)]
struct FromFills {
    qty: i64,
    /// Σ sells p·q − Σ buys p·q, raw price × raw quantity.
    cash: i128,
    fees: BTreeMap<AssetCode, Amount>,
    fills: u64,
}

#[test]
fn a_simulated_day_reconciles_positions_and_pnl_exactly_with_the_fills() {
    let mut s = session(11);
    let accounts: Vec<AccountId> = s.engine.strategies().map(|(_, a)| a.clone()).collect();
    let mut fills: Vec<Fill> = Vec::new();
    s.run_until(UnixNanos(START.0 + 24 * HOUR), |_, e| {
        if let ExchangeEvent::Fill(f) = e
            && accounts.contains(&f.account)
        {
            fills.push(f.clone());
        }
    });
    s.stop(|_, _| {});

    let mut expected: BTreeMap<(AccountId, InstrumentId), FromFills> = BTreeMap::new();
    for f in &fills {
        let e = expected
            .entry((f.account.clone(), f.instrument.clone()))
            .or_default();
        let value = i128::from(f.price.raw()) * i128::from(f.quantity.raw());
        match f.side {
            Side::Buy => {
                e.qty += f.quantity.raw();
                e.cash -= value;
            }
            Side::Sell => {
                e.qty -= f.quantity.raw();
                e.cash += value;
            }
        }
        *e.fees.entry(f.fee_asset.clone()).or_default() += f.fee;
        e.fills += 1;
    }
    // Every strategy traded.
    for (id, _) in s.engine.strategies() {
        let stats = s.engine.stats(id).unwrap();
        assert!(stats.fills > 0, "{id} never filled: {stats:?}");
    }
    assert!(
        fills.len() > 200,
        "only {} strategy fills in a day",
        fills.len()
    );

    let portfolio = s.engine.portfolio();
    let mut seen: BTreeMap<(AccountId, InstrumentId), FromFills> = BTreeMap::new();
    for (k, p) in portfolio.positions() {
        let e = seen
            .entry((k.account.clone(), k.instrument.clone()))
            .or_default();
        e.qty += p.qty();
        e.fills += p.fills();
        for (asset, fee) in p.fees() {
            *e.fees.entry(asset.clone()).or_default() += *fee;
        }
        // realized + unrealized(m) = cash + qty·m, exactly, at any mark.
        for mark in ["1", "0.99", "43210.12345678"] {
            let m: Price = mark.parse().unwrap();
            assert_eq!(
                p.realized_e16() + p.unrealized_e16(m),
                p.cash_flow_e16() + i128::from(p.qty()) * i128::from(m.raw()),
                "{k:?} at {mark}"
            );
        }
        e.cash += p.cash_flow_e16();
    }
    assert_eq!(seen.len(), expected.len());
    for (k, e) in &expected {
        let got = &seen[k];
        assert_eq!(
            (got.qty, got.cash, &got.fees, got.fills),
            (e.qty, e.cash, &e.fees, e.fills),
            "{k:?}"
        );
    }

    // The exchange's balances say the same: funding + what the fills moved − fees.
    let funding = SessionConfig::default().funding;
    let mut per_asset: BTreeMap<(AccountId, AssetCode), i128> = BTreeMap::new();
    for ((account, instrument), e) in &expected {
        let inst = s
            .sim
            .exchange
            .instruments()
            .find(|i| &i.id == instrument)
            .unwrap()
            .clone();
        *per_asset.entry((account.clone(), inst.base)).or_default() += i128::from(e.qty);
        *per_asset.entry((account.clone(), inst.quote)).or_default() += e.cash / 100_000_000;
        for (asset, fee) in &e.fees {
            *per_asset
                .entry((account.clone(), asset.clone()))
                .or_default() -= fee.raw();
        }
    }
    for ((account, asset), moved) in per_asset {
        let balance = s.sim.exchange.ledger().get(&account, &asset).total();
        assert_eq!(balance.raw(), funding.raw() + moved, "{account} {asset}");
    }
}

#[test]
fn the_same_seed_gives_the_same_strategy_fills() {
    let run = |seed| {
        let mut s = session(seed);
        let mut out = Vec::new();
        s.run_until(UnixNanos(START.0 + HOUR), |t, e| {
            if let ExchangeEvent::Fill(f) = e
                && f.account.as_str().starts_with("desk-")
            {
                out.push(format!(
                    "{t:?} {} {} {:?} {} {}",
                    f.account, f.instrument, f.side, f.price, f.quantity
                ));
            }
        });
        out
    };
    let a = run(5);
    assert!(!a.is_empty());
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

fn mm(s: &Session) -> StrategyId {
    s.engine.strategies().next().unwrap().0.clone()
}

#[test]
fn a_runaway_loop_ramps_its_order_rate() {
    let mut s = session(3);
    let id = mm(&s);
    s.run_until(UnixNanos(START.0 + 60_000_000_000), |_, _| {});
    let before = s.engine.stats(&id).unwrap().submitted;
    s.set_misbehaviour(
        &id,
        Some(Misbehaviour::RunawayLoop {
            instrument: InstrumentId::new("ETH-USDT"),
            start_per_second: 10,
            double_every: Nanos(10_000_000_000),
            max_per_second: 1_000,
        }),
    )
    .unwrap();
    let mut per_10s = Vec::new();
    let mut last = before;
    for k in 1..=4 {
        s.run_until(
            UnixNanos(START.0 + 60_000_000_000 + k * 10_000_000_000),
            |_, _| {},
        );
        let now = s.engine.stats(&id).unwrap().submitted;
        per_10s.push(now - last);
        last = now;
    }
    // 10/s, 20/s, 40/s, 80/s: 99 ticks of 100 ms at the window's rate and
    // the last at the doubled one, plus the maker's own quotes (2 every 2 s).
    for (k, n) in per_10s.iter().enumerate() {
        let runaway = 101u64 << k;
        assert!(
            (runaway..=runaway + 12).contains(n),
            "window {k}: {n} orders, expected {runaway} runaway + ~10 quotes: {per_10s:?}"
        );
    }
    let resting = s
        .engine
        .open_orders(&id)
        .iter()
        .filter(|o| o.instrument.as_str() == "ETH-USDT")
        .count();
    assert!(resting > 1_000, "runaway orders rest: {resting}");
}

#[test]
fn a_stuck_strategy_stops_and_a_fill_ignoring_one_drifts() {
    let mut s = session(4);
    let id = mm(&s);
    let btc = InstrumentId::new("BTC-USDT");
    s.run_until(UnixNanos(START.0 + HOUR), |_, _| {});
    assert_eq!(
        s.engine.believed_position(&id, &btc),
        position(&s, &id, &btc),
        "a well-behaved strategy knows its position"
    );

    s.set_misbehaviour(&id, Some(Misbehaviour::IgnoreFills))
        .unwrap();
    let believed = s.engine.believed_position(&id, &btc);
    s.run_until(UnixNanos(START.0 + 3 * HOUR), |_, _| {});
    assert_eq!(s.engine.believed_position(&id, &btc), believed);
    assert_ne!(
        position(&s, &id, &btc),
        believed,
        "the real position drifted"
    );

    s.set_misbehaviour(&id, Some(Misbehaviour::Stuck)).unwrap();
    let submitted = s.engine.stats(&id).unwrap().submitted;
    s.run_until(UnixNanos(START.0 + 4 * HOUR), |_, _| {});
    assert_eq!(
        s.engine.stats(&id).unwrap().submitted,
        submitted,
        "stuck: no orders"
    );
}

fn position(s: &Session, id: &StrategyId, instrument: &InstrumentId) -> i64 {
    s.engine
        .portfolio()
        .positions()
        .filter(|(k, _)| k.strategy.as_ref() == Some(id) && &k.instrument == instrument)
        .map(|(_, p)| p.qty())
        .sum()
}

#[test]
fn fat_fingers_and_cancel_storms_show_in_the_orders() {
    let mut s = session(8);
    let id = mm(&s);
    s.run_until(UnixNanos(START.0 + 60_000_000_000), |_, _| {});
    s.set_misbehaviour(
        &id,
        Some(Misbehaviour::FatFinger {
            size_factor: 100,
            price_bps: 0,
            orders: 2,
        }),
    )
    .unwrap();
    let mut sizes = Vec::new();
    s.run_until(UnixNanos(START.0 + 70_000_000_000), |_, e| {
        if let ExchangeEvent::Order(o) = e
            && o.client_order_id.as_str().starts_with("mm-btc-")
            && o.status == tradestack_model::OrderStatus::New
        {
            sizes.push(o.quantity.to_string());
        }
    });
    assert_eq!(
        &sizes[..2],
        ["5", "5"],
        "the next two orders are 100x: {sizes:?}"
    );
    assert!(sizes[2..].iter().all(|q| q == "0.05"), "{sizes:?}");

    s.set_misbehaviour(&id, Some(Misbehaviour::CancelStorm { per_second: 200 }))
        .unwrap();
    let cancels = s.engine.stats(&id).unwrap().cancels;
    s.run_until(UnixNanos(START.0 + 80_000_000_000), |_, _| {});
    let storm = s.engine.stats(&id).unwrap().cancels - cancels;
    assert!(
        (2_000..=2_010).contains(&storm),
        "{storm} cancels in 10 s at 200/s"
    );
}
