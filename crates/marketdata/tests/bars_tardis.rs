//! Builds 1s and 1m bars from the real Tardis trade sample and compares every field with bars
//! computed here by a deliberately naive, independent method: the CSV is split by hand,
//! decimals are parsed by string padding, and rows are grouped in a `BTreeMap` by bucket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tradestack_marketdata::bars::{BarBuilder, BarConfig, BarEvent, LatePolicy};
use tradestack_marketdata::replay::{SymbolMap, tardis};
use tradestack_model::{Amount, Bar, InstrumentId, Nanos, Price, Quantity, UnixNanos};

fn sample() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tardis");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_trades.csv"))
        .expect("a *_trades.csv sample")
}

/// "9682.5" -> 968_250_000_000: integer digits, then the fraction right-padded to 8 digits.
fn naive_decimal(s: &str) -> i128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 8, "{s}");
    let padded = format!("{frac:0<8}");
    int.parse::<i128>().unwrap() * 100_000_000 + padded.parse::<i128>().unwrap()
}

#[derive(Default)]
struct NaiveBar {
    open: i128,
    high: i128,
    low: i128,
    close: i128,
    volume: i128,
    quote: i128,
    /// Σ price × qty at 10^-16, for the VWAP.
    pq: i128,
    count: u64,
}

/// Groups the rows by `bucket_us` and aggregates them in file order.
fn naive_bars(text: &str, bucket_us: i64) -> BTreeMap<i64, NaiveBar> {
    let mut map: BTreeMap<i64, NaiveBar> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        let ts_us: i64 = cols[2].parse().unwrap();
        let price = naive_decimal(cols[6]);
        let qty = naive_decimal(cols[7]);
        let key = ts_us.div_euclid(bucket_us);
        let first = !map.contains_key(&key);
        let b = map.entry(key).or_default();
        if first {
            b.open = price;
            b.high = price;
            b.low = price;
        }
        b.high = b.high.max(price);
        b.low = b.low.min(price);
        b.close = price;
        b.volume += qty;
        // These prices and sizes have few decimals: every notional is exact at 10^-8.
        assert_eq!(price * qty % 100_000_000, 0);
        b.quote += price * qty / 100_000_000;
        b.pq += price * qty;
        b.count += 1;
    }
    map
}

fn to_model(map: &BTreeMap<i64, NaiveBar>, bucket_us: i64, instrument: &InstrumentId) -> Vec<Bar> {
    map.iter()
        .map(|(key, b)| Bar {
            instrument: instrument.clone(),
            interval: Nanos(bucket_us * 1_000),
            open_time: UnixNanos::from_micros(key * bucket_us),
            open: Price::from_raw(b.open as i64),
            high: Price::from_raw(b.high as i64),
            low: Price::from_raw(b.low as i64),
            close: Price::from_raw(b.close as i64),
            volume: Quantity::from_raw(b.volume as i64),
            quote_volume: Amount::from_raw(b.quote),
            trades: b.count,
            // Round half up (all positive): floor((2·pq + vol) / (2·vol)).
            vwap: Price::from_raw(((2 * b.pq + b.volume) / (2 * b.volume)) as i64),
        })
        .collect()
}

#[test]
fn builder_bars_match_naive_bars_on_real_trades() {
    let path = sample();
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = tardis::read_trades(&path, SymbolMap::new()).unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    assert_eq!(parsed.events.len(), 9_999);

    let mut builder = BarBuilder::new(&BarConfig {
        intervals: vec![Nanos::SECOND, Nanos::MINUTE],
        late: LatePolicy::Drop,
    })
    .unwrap();
    let mut events = Vec::new();
    for t in &parsed.events {
        events.extend(builder.on_trade(t).unwrap());
    }
    let last = parsed.events.last().unwrap().ts;
    // Nothing may be left open once time has passed the last minute.
    events.extend(builder.advance_to(last + Nanos::MINUTE));
    assert!(builder.flush().is_empty());
    assert_eq!(builder.stats().late_dropped, 0);
    assert!(events.iter().all(|e| matches!(e, BarEvent::Closed(_))));

    let instrument = InstrumentId::new("BTC-USDT");
    for (interval, bucket_us) in [(Nanos::MINUTE, 60_000_000), (Nanos::SECOND, 1_000_000)] {
        let built: Vec<Bar> = events
            .iter()
            .map(|e| e.bar().clone())
            .filter(|b| b.interval == interval)
            .collect();
        // Emission order is already time order; sorting would hide a mistake there.
        assert!(built.windows(2).all(|w| w[0].open_time < w[1].open_time));
        let naive = to_model(&naive_bars(&text, bucket_us), bucket_us, &instrument);
        assert_eq!(built.len(), naive.len(), "{interval:?} bar count");
        for (b, n) in built.iter().zip(&naive) {
            assert_eq!(b, n, "{interval:?} bar at {}", n.open_time);
        }
        assert_eq!(built.iter().map(|b| b.trades).sum::<u64>(), 9_999);
    }
}
