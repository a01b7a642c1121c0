use super::*;
use tradestack_model::{Side, TradeId};

const S: i64 = 1_000_000_000;
const M: i64 = 60 * S;

fn trade(inst: &str, ts: i64, price: &str, qty: &str) -> Trade {
    Trade {
        id: TradeId(ts.unsigned_abs()),
        instrument: InstrumentId::new(inst),
        price: price.parse().unwrap(),
        quantity: qty.parse().unwrap(),
        aggressor: Side::Buy,
        ts: UnixNanos(ts),
    }
}

fn builder(intervals: &[i64], late: LatePolicy) -> BarBuilder {
    BarBuilder::new(&BarConfig {
        intervals: intervals.iter().map(|&i| Nanos(i)).collect(),
        late,
    })
    .unwrap()
}

fn closed(events: &[BarEvent]) -> Vec<&Bar> {
    events
        .iter()
        .filter_map(|e| match e {
            BarEvent::Closed(b) => Some(b),
            BarEvent::Revised(_) => None,
        })
        .collect()
}

#[test]
fn a_bar_has_exact_fields() {
    let mut b = builder(&[M], LatePolicy::Drop);
    for t in [
        trade("BTC-USDT", 10 * S, "100", "1"),
        trade("BTC-USDT", 20 * S, "102.5", "0.5"),
        trade("BTC-USDT", 30 * S, "99", "2"),
        trade("BTC-USDT", 59 * S, "101", "0.25"),
    ] {
        assert!(b.on_trade(&t).unwrap().is_empty());
    }
    let ev = b.on_trade(&trade("BTC-USDT", 60 * S, "1", "1")).unwrap();
    assert_eq!(ev.len(), 1);
    let bar = ev[0].bar();
    assert_eq!(bar.open_time, UnixNanos(0));
    assert_eq!(bar.interval, Nanos(M));
    assert_eq!(bar.open.to_string(), "100");
    assert_eq!(bar.high.to_string(), "102.5");
    assert_eq!(bar.low.to_string(), "99");
    assert_eq!(bar.close.to_string(), "101");
    assert_eq!(bar.volume.to_string(), "3.75");
    // 100 + 51.25 + 198 + 25.25 = 374.5
    assert_eq!(bar.quote_volume.to_string(), "374.5");
    assert_eq!(bar.trades, 4);
    // 374.5 / 3.75 = 99.866666... -> 99.86666667
    assert_eq!(bar.vwap.to_string(), "99.86666667");
}

#[test]
fn buckets_are_utc_aligned_including_before_the_epoch() {
    let mut b = builder(&[M], LatePolicy::Drop);
    b.on_trade(&trade("X", -1, "5", "1")).unwrap();
    let ev = b.on_trade(&trade("X", 0, "6", "1")).unwrap();
    assert_eq!(ev[0].bar().open_time, UnixNanos(-M));
    // The trade at exactly 0 opened [0, 60 s); one at 60 s is already the next bucket.
    let ev = b.on_trade(&trade("X", M - 1, "7", "1")).unwrap();
    assert!(ev.is_empty());
    let ev = b.on_trade(&trade("X", M, "8", "1")).unwrap();
    assert_eq!(ev[0].bar().open_time, UnixNanos(0));
    assert_eq!(ev[0].bar().close.to_string(), "7");
    // A real timestamp: 2020-02-22T00:00:02.111Z falls in the 00:00 minute.
    let ts = 1_582_329_602_111_000_000;
    let mut b = builder(&[M, Nanos::DAY.0], LatePolicy::Drop);
    b.on_trade(&trade("X", ts, "1", "1")).unwrap();
    let ev = b.flush();
    assert_eq!(ev[0].bar().open_time, UnixNanos(1_582_329_600_000_000_000));
    assert_eq!(ev[1].bar().open_time, UnixNanos(1_582_329_600_000_000_000));
}

#[test]
fn empty_buckets_produce_no_bar() {
    let mut b = builder(&[M], LatePolicy::Drop);
    b.on_trade(&trade("X", 5 * S, "1", "1")).unwrap();
    let ev = b.on_trade(&trade("X", 5 * M + S, "2", "1")).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].bar().open_time, UnixNanos(0));
    let ev = b.advance_to(UnixNanos(100 * M));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].bar().open_time, UnixNanos(5 * M));
    assert!(b.advance_to(UnixNanos(200 * M)).is_empty());
}

#[test]
fn advance_to_closes_exactly_at_the_bucket_end() {
    let mut b = builder(&[M], LatePolicy::Drop);
    b.on_trade(&trade("X", 30 * S, "1", "1")).unwrap();
    assert!(b.advance_to(UnixNanos(M - 1)).is_empty());
    assert!(b.partial(&InstrumentId::new("X"), Nanos(M)).is_some());
    let ev = b.advance_to(UnixNanos(M));
    assert_eq!(ev.len(), 1);
    assert!(b.advance_to(UnixNanos(M)).is_empty(), "emitted once");
    assert!(b.partial(&InstrumentId::new("X"), Nanos(M)).is_none());
    // A trade at `now` itself is in the next bucket, not late.
    assert!(b.on_trade(&trade("X", M, "1", "1")).unwrap().is_empty());
    assert_eq!(b.stats().late_dropped, 0);
    assert_eq!(b.stats().closed, 1);
}

#[test]
fn several_intervals_close_shortest_first() {
    let mut b = builder(&[M, S, 5 * M], LatePolicy::Drop);
    assert_eq!(
        b.intervals().collect::<Vec<_>>(),
        vec![Nanos(S), Nanos(M), Nanos(5 * M)]
    );
    b.on_trade(&trade("X", 10, "1", "1")).unwrap();
    let ev = b.on_trade(&trade("X", 5 * M, "2", "1")).unwrap();
    let intervals: Vec<i64> = ev.iter().map(|e| e.bar().interval.0).collect();
    assert_eq!(intervals, vec![S, M, 5 * M]);
}

#[test]
fn instruments_are_independent_but_advance_together() {
    let mut b = builder(&[M], LatePolicy::Drop);
    b.on_trade(&trade("A", 0, "1", "1")).unwrap();
    b.on_trade(&trade("B", 0, "2", "1")).unwrap();
    // A trade of A in the next minute closes only A's bar.
    let ev = b.on_trade(&trade("A", M, "3", "1")).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].bar().instrument.as_str(), "A");
    let ev = b.advance_to(UnixNanos(2 * M));
    let names: Vec<&str> = ev.iter().map(|e| e.bar().instrument.as_str()).collect();
    assert_eq!(names, vec!["A", "B"]);
}

#[test]
fn late_trades_are_dropped_and_counted_under_drop() {
    let mut b = builder(&[S, M], LatePolicy::Drop);
    b.on_trade(&trade("X", 10 * S, "1", "1")).unwrap();
    b.on_trade(&trade("X", 12 * S, "1", "1")).unwrap();
    // 11 s: late for the 1 s bars (the 12 s bucket is open), on time for the minute.
    let ev = b.on_trade(&trade("X", 11 * S, "5", "1")).unwrap();
    assert!(ev.is_empty());
    assert_eq!(b.stats().late_dropped, 1);
    let ev = b.flush();
    let minute = ev.iter().find(|e| e.bar().interval.0 == M).unwrap().bar();
    assert_eq!(minute.trades, 3);
    assert_eq!(minute.high.to_string(), "5");
    // The close is the latest by time, not the last to arrive.
    assert_eq!(minute.close.to_string(), "1");
}

#[test]
fn late_trades_revise_recent_bars_under_revise() {
    let mut b = builder(&[M], LatePolicy::Revise { retain: 2 });
    b.on_trade(&trade("X", 10 * S, "10", "1")).unwrap();
    b.on_trade(&trade("X", 50 * S, "11", "1")).unwrap();
    let ev = b.on_trade(&trade("X", M + S, "12", "1")).unwrap();
    assert_eq!(closed(&ev)[0].trades, 2);
    // A trade earlier than the bar's first trade: the revision changes open, low, volume.
    let ev = b.on_trade(&trade("X", 5 * S, "9", "2")).unwrap();
    assert_eq!(ev.len(), 1);
    let BarEvent::Revised(bar) = &ev[0] else {
        panic!("expected a revision: {ev:?}")
    };
    assert_eq!(bar.open_time, UnixNanos(0));
    assert_eq!(bar.open.to_string(), "9");
    assert_eq!(bar.low.to_string(), "9");
    assert_eq!(bar.close.to_string(), "11");
    assert_eq!(bar.trades, 3);
    assert_eq!(bar.volume.to_string(), "4");
    assert_eq!(bar.quote_volume.to_string(), "39");
    assert_eq!(bar.vwap.to_string(), "9.75");
    // Move on four minutes: the 0 bucket is now older than `retain` intervals.
    b.on_trade(&trade("X", 4 * M, "12", "1")).unwrap();
    let ev = b.on_trade(&trade("X", 6 * S, "1", "1")).unwrap();
    assert!(ev.is_empty());
    // A late trade for an empty, recent bucket creates its first bar as a revision.
    let ev = b.on_trade(&trade("X", 3 * M, "13", "1")).unwrap();
    assert!(matches!(&ev[..], [BarEvent::Revised(b)] if b.open_time == UnixNanos(3 * M)));
    let st = b.stats();
    assert_eq!((st.late_revised, st.late_dropped, st.trades), (2, 1, 7));
}

#[test]
fn overflow_is_refused_without_side_effects() {
    let mut b = builder(&[S, M], LatePolicy::Drop);
    let big = Quantity::from_raw(i64::MAX - 10);
    let mut t = trade("X", 0, "0.00000001", "1");
    t.quantity = big;
    b.on_trade(&t).unwrap();
    let before = b.partial(&InstrumentId::new("X"), Nanos(M)).unwrap();
    let err = b.on_trade(&trade("X", S / 2, "1", "1")).unwrap_err();
    assert!(matches!(err, BarError::Overflow { .. }), "{err}");
    assert_eq!(
        b.partial(&InstrumentId::new("X"), Nanos(M)).unwrap(),
        before
    );
    assert_eq!(b.stats().trades, 1);
}

#[test]
fn invalid_configurations_are_refused() {
    let cfg = BarConfig {
        intervals: vec![],
        late: LatePolicy::Drop,
    };
    assert_eq!(BarBuilder::new(&cfg).unwrap_err(), BarError::NoIntervals);
    let cfg = BarConfig {
        intervals: vec![Nanos(0)],
        late: LatePolicy::Drop,
    };
    assert_eq!(
        BarBuilder::new(&cfg).unwrap_err(),
        BarError::InvalidInterval(Nanos(0))
    );
    let default = BarConfig::default();
    assert_eq!(default.intervals.len(), 6);
    let cfg: BarConfig =
        toml::from_str("intervals = [1000000000, 60000000000]\nlate = { policy = \"drop\" }")
            .unwrap();
    assert_eq!(cfg.late, LatePolicy::Drop);
}

proptest::proptest! {
    /// A 5-minute bar must equal the combination of the 1-minute bars inside it, and the
    /// bars together must account for every trade exactly once.
    #[test]
    fn longer_bars_aggregate_shorter_ones(
        raw in proptest::collection::vec((0i64..3_600, 1i64..1_000_000, 1i64..10_000_000), 1..300)
    ) {
        let mut trades: Vec<Trade> = raw
            .iter()
            .map(|&(sec, px, qty)| Trade {
                id: TradeId(0),
                instrument: InstrumentId::new("X"),
                price: Price::from_raw(px * 1_000),
                quantity: Quantity::from_raw(qty),
                aggressor: Side::Sell,
                ts: UnixNanos(sec * S),
            })
            .collect();
        trades.sort_by_key(|t| t.ts);
        let mut b = builder(&[M, 5 * M], LatePolicy::Drop);
        let mut bars = Vec::new();
        for t in &trades {
            bars.extend(b.on_trade(t).unwrap());
        }
        bars.extend(b.flush());
        let ones: Vec<&Bar> = bars.iter().map(BarEvent::bar).filter(|b| b.interval.0 == M).collect();
        let fives: Vec<&Bar> = bars.iter().map(BarEvent::bar).filter(|b| b.interval.0 == 5 * M).collect();
        proptest::prop_assert_eq!(ones.iter().map(|b| b.trades).sum::<u64>(), trades.len() as u64);
        for f in &fives {
            let inside: Vec<&&Bar> = ones
                .iter()
                .filter(|o| o.open_time >= f.open_time && o.open_time < f.open_time + f.interval)
                .collect();
            proptest::prop_assert!(!inside.is_empty());
            proptest::prop_assert_eq!(f.open, inside[0].open);
            proptest::prop_assert_eq!(f.close, inside[inside.len() - 1].close);
            proptest::prop_assert_eq!(f.high, inside.iter().map(|o| o.high).max().unwrap());
            proptest::prop_assert_eq!(f.low, inside.iter().map(|o| o.low).min().unwrap());
            proptest::prop_assert_eq!(f.trades, inside.iter().map(|o| o.trades).sum::<u64>());
            proptest::prop_assert_eq!(
                f.volume.raw(),
                inside.iter().map(|o| o.volume.raw()).sum::<i64>()
            );
            proptest::prop_assert_eq!(
                f.quote_volume.raw(),
                inside.iter().map(|o| o.quote_volume.raw()).sum::<i128>()
            );
            proptest::prop_assert!(f.low <= f.vwap && f.vwap <= f.high);
        }
    }
}
