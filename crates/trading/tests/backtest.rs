//! Backtests over the recorded samples in `../shared/data`.

use std::path::PathBuf;

use tradestack_marketdata::replay::SymbolMap;
use tradestack_marketdata::replay::load::load;
use tradestack_model::{Amount, Nanos};
use tradestack_trading::StrategyConfig;
use tradestack_trading::backtest::{BacktestError, BacktestSpec, run};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn strategy(text: &str) -> StrategyConfig {
    toml::from_str(text).unwrap()
}

fn spec(strategy: StrategyConfig) -> BacktestSpec {
    BacktestSpec {
        strategy,
        from: None,
        to: None,
        funding: Amount::from_units(1_000_000),
        sample_every: Nanos::MINUTE,
    }
}

#[test]
fn a_market_maker_over_the_tardis_quotes_and_trades() {
    let timeline = load(
        &[
            data("tardis/binance-futures_BTCUSDT_2020-02-22_quotes.csv"),
            data("tardis/binance-futures_BTCUSDT_2020-02-22_trades.csv"),
        ],
        &SymbolMap::new(),
    )
    .unwrap();
    let mm = strategy(
        r#"
        id = "mm"
        account = "bt"
        kind = "market_maker"
        instrument = "BTC-USDT"
        half_spread_bps = 1
        size = "0.01"
        max_inventory = "0.1"
        refresh = "5s"
        "#,
    );
    let r = run(&spec(mm.clone()), &timeline.events).unwrap();
    assert_eq!(r.events as usize, timeline.events.len());
    assert!(r.orders > 10, "{} orders", r.orders);
    assert!(r.fills > 0 && r.orders_filled > 0, "nothing filled: {r:?}");
    assert!(r.fill_ratio_bps <= 10_000);
    assert_eq!(r.pnl, r.realized + r.unrealized - r.fees);
    assert_eq!(r.equity.last().unwrap().pnl, r.pnl);
    assert!(r.turnover > Amount::ZERO);
    assert!(r.max_drawdown >= Amount::ZERO);
    // Deterministic: the same files give the same report, byte for byte.
    let again = run(&spec(mm), &timeline.events).unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        serde_json::to_string(&again).unwrap()
    );
}

#[test]
fn a_crossover_over_a_month_of_ftx_bars_and_a_window() {
    let timeline = load(
        &[data("binance/FTX_BTC-PERP_2021-12-31_2022-02-01_1m.csv")],
        &SymbolMap::new(),
    )
    .unwrap();
    let instrument = match &timeline.events[0].event {
        tradestack_marketdata::feed::FeedEvent::Bar(b) => b.instrument.clone(),
        other => panic!("expected bars, got {other:?}"),
    };
    let cross = strategy(&format!(
        r#"
        id = "mom"
        account = "bt"
        kind = "ma_crossover"
        instrument = "{instrument}"
        fast = 10
        slow = 60
        size = "0.1"
        "#
    ));
    let full = run(&spec(cross.clone()), &timeline.events).unwrap();
    assert!(full.fills > 20, "{} fills over a month of bars", full.fills);
    assert_eq!(full.pnl, full.realized + full.unrealized - full.fees);
    assert!(full.equity.len() > 40_000, "one point a minute");

    // --from/--to cut the window.
    let from = full.from + Nanos(7 * 86_400_000_000_000);
    let to = from + Nanos(86_400_000_000_000);
    let mut day = spec(cross);
    day.from = Some(from);
    day.to = Some(to);
    let r = run(&day, &timeline.events).unwrap();
    assert!(r.from >= from && r.to < to, "{:?}..{:?}", r.from, r.to);
    assert!(r.events <= 1_440);
}

#[test]
fn an_instrument_missing_from_the_data_is_named() {
    let timeline = load(
        &[data("binance/ADABTC-1m-2021-11-27.csv")],
        &SymbolMap::new(),
    )
    .unwrap();
    let mm = strategy(
        r#"
        id = "mm"
        account = "bt"
        kind = "market_maker"
        instrument = "ETH-USDT"
        size = "1"
        max_inventory = "1"
        "#,
    );
    let err = run(&spec(mm), &timeline.events).unwrap_err();
    assert!(matches!(err, BacktestError::NoData { .. }));
    assert_eq!(err.to_string(), "the data has no ETH-USDT; it has ADA-BTC");
}
