use super::*;
use std::collections::{BTreeMap, BTreeSet};
use tradestack_model::{InstrumentId, Quantity, Side, TradeId};

const MS: i64 = 1_000_000;

/// `n` trades one millisecond apart with distinct prices 100.00, 100.01, ...
fn trades(n: u64) -> Vec<Trade> {
    (0..n)
        .map(|i| Trade {
            id: TradeId(i),
            instrument: InstrumentId::new("BTC-USDT"),
            price: Price::from_raw(10_000_000_000 + i as i64 * 1_000_000),
            quantity: Quantity::from_raw(1_000 + i as i64),
            aggressor: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            ts: UnixNanos(i as i64 * MS),
        })
        .collect()
}

fn window(start_ms: i64, end_ms: i64) -> Window {
    Window {
        start: UnixNanos(start_ms * MS),
        end: UnixNanos(end_ms * MS),
    }
}

fn run(
    config: DisruptionConfig,
    seed: u64,
    input: &[Trade],
) -> (Vec<Delivered<Trade>>, Vec<DisruptionRecord>) {
    Disruptor::run(config, &DetRng::new(seed), input.iter().cloned()).unwrap()
}

fn everything_on() -> DisruptionConfig {
    DisruptionConfig {
        gaps: WindowFault {
            probability: 0.005,
            duration: Nanos(20 * MS),
            windows: vec![window(100, 110)],
        },
        stale: WindowFault {
            probability: 0.005,
            duration: Nanos(30 * MS),
            windows: vec![],
        },
        corrupt: CorruptFault {
            probability: 0.02,
            kinds: vec![
                CorruptionKind::TimesTen,
                CorruptionKind::Zero,
                CorruptionKind::Negative,
                CorruptionKind::Garbled,
            ],
            shift_bps: 0,
        },
        latency: LatencyFault {
            base: Nanos(2 * MS),
            extra: Nanos(50 * MS),
            spikes: WindowFault {
                probability: 0.003,
                duration: Nanos(40 * MS),
                windows: vec![],
            },
        },
        duplicate_probability: 0.02,
        reorder: ReorderFault {
            probability: 0.03,
            max_distance: 4,
        },
    }
}

/// The invariants every disrupted stream must satisfy, whatever the configuration.
fn check_invariants(input: &[Trade], out: &[Delivered<Trade>], log: &[DisruptionRecord]) {
    // Delivery times never decrease and never precede the tick's own time.
    for w in out.windows(2) {
        assert!(w[0].deliver_at <= w[1].deliver_at);
    }
    for d in out {
        assert!(d.deliver_at >= input[d.seq as usize].ts);
        assert_eq!(d.tick.ts, input[d.seq as usize].ts, "time is never altered");
    }
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for d in out {
        *copies.entry(d.seq).or_default() += 1;
    }
    let actions = |seq: u64| log.iter().filter(move |r| r.seq == seq).map(|r| &r.action);
    for (i, t) in input.iter().enumerate() {
        let seq = i as u64;
        let dropped = actions(seq).any(|a| matches!(a, Action::Dropped { .. }));
        let duplicated = actions(seq).any(|a| matches!(a, Action::Duplicated));
        let n = copies.get(&seq).copied().unwrap_or(0);
        match (dropped, duplicated) {
            (true, _) => {
                assert_eq!(n, 0, "dropped tick {seq} was delivered");
                assert_eq!(
                    actions(seq).count(),
                    1,
                    "a dropped tick has no other action"
                );
            }
            (false, true) => assert_eq!(n, 2, "tick {seq}"),
            (false, false) => assert_eq!(n, 1, "tick {seq}"),
        }
        // An untouched tick arrives exactly as it was sent.
        if actions(seq).all(|a| matches!(a, Action::Delayed { .. } | Action::Reordered { .. }))
            && !dropped
        {
            let d = out.iter().find(|d| d.seq == seq).unwrap();
            assert_eq!(&d.tick, t);
        }
    }
    // Reordering: exactly the logged number of later ticks precede a held tick; none precede
    // any other tick.
    let mut seen_later: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut delivered_so_far: BTreeSet<u64> = BTreeSet::new();
    for d in out {
        if !d.duplicate {
            let later: BTreeSet<u64> = delivered_so_far.range(d.seq + 1..).copied().collect();
            seen_later.insert(d.seq, later);
        }
        delivered_so_far.insert(d.seq);
    }
    for (seq, later) in &seen_later {
        let logged = actions(*seq).find_map(|a| match a {
            Action::Reordered { overtaken_by } => Some(*overtaken_by as usize),
            _ => None,
        });
        assert_eq!(logged.unwrap_or(0), later.len(), "tick {seq}");
    }
    // Log entries refer to real input ticks with their real times.
    for r in log {
        assert_eq!(input[r.seq as usize].ts, r.source_ts);
    }
}

#[test]
fn default_configuration_is_the_identity() {
    let input = trades(500);
    let (out, log) = run(DisruptionConfig::default(), 1, &input);
    assert!(log.is_empty());
    assert_eq!(out.len(), input.len());
    for (d, t) in out.iter().zip(&input) {
        assert_eq!(&d.tick, t);
        assert_eq!(d.deliver_at, t.ts);
        assert!(!d.duplicate);
    }
}

#[test]
fn base_latency_shifts_every_delivery() {
    let input = trades(50);
    let mut cfg = DisruptionConfig::default();
    cfg.latency.base = Nanos(7 * MS);
    let (out, log) = run(cfg, 1, &input);
    assert!(log.is_empty(), "base latency is not a fault");
    for (d, t) in out.iter().zip(&input) {
        assert_eq!(d.deliver_at, t.ts + Nanos(7 * MS));
    }
}

#[test]
fn scheduled_gap_drops_exactly_the_window() {
    let input = trades(300);
    let mut cfg = DisruptionConfig::default();
    cfg.gaps.windows = vec![window(100, 150)];
    let (out, log) = run(cfg, 1, &input);
    let delivered: Vec<u64> = out.iter().map(|d| d.seq).collect();
    let expected: Vec<u64> = (0..300).filter(|s| !(100..150).contains(s)).collect();
    assert_eq!(delivered, expected);
    assert_eq!(log.len(), 50);
    assert!(log.iter().all(|r| r.action
        == Action::Dropped {
            window: window(100, 150)
        }));
    check_invariants(&input, &out, &log);
}

#[test]
fn random_gaps_drop_whole_windows() {
    let input = trades(20_000);
    let mut cfg = DisruptionConfig::default();
    cfg.gaps.probability = 0.001;
    cfg.gaps.duration = Nanos(25 * MS);
    let (out, log) = run(cfg, 9, &input);
    let windows: BTreeSet<(i64, i64)> = log
        .iter()
        .map(|r| match r.action {
            Action::Dropped { window } => (window.start.0, window.end.0),
            _ => panic!("only gaps are configured"),
        })
        .collect();
    // About one window per 1,000 undropped ticks, each dropping 25 ticks.
    assert!((10..=30).contains(&windows.len()), "{}", windows.len());
    for (s, e) in &windows {
        assert_eq!(e - s, 25 * MS);
        let inside = input.iter().filter(|t| (*s..*e).contains(&t.ts.0)).count();
        let dropped = log
            .iter()
            .filter(|r| (*s..*e).contains(&r.source_ts.0))
            .count();
        assert_eq!(inside, dropped, "every tick of a gap is dropped");
    }
    check_invariants(&input, &out, &log);
}

#[test]
fn stale_window_repeats_the_last_fresh_content() {
    let input = trades(200);
    let mut cfg = DisruptionConfig::default();
    cfg.stale.windows = vec![window(50, 80)];
    let (out, log) = run(cfg, 1, &input);
    assert_eq!(out.len(), 200);
    for d in &out {
        let orig = &input[d.seq as usize];
        assert_eq!(d.tick.ts, orig.ts);
        assert_eq!(d.tick.id, orig.id);
        if (50..80).contains(&d.seq) {
            assert_eq!(d.tick.price, input[49].price);
            assert_eq!(d.tick.quantity, input[49].quantity);
        } else {
            assert_eq!(&d.tick, orig);
        }
    }
    assert_eq!(log.len(), 30);
    assert!(
        log.iter()
            .all(|r| r.action == Action::Stale { frozen_seq: 49 })
    );
    check_invariants(&input, &out, &log);
}

#[test]
fn corruption_kinds_do_what_they_say() {
    let input = trades(100);
    for kind in [
        CorruptionKind::TimesTen,
        CorruptionKind::Zero,
        CorruptionKind::Negative,
        CorruptionKind::Garbled,
        CorruptionKind::Shifted,
    ] {
        let cfg = DisruptionConfig {
            corrupt: CorruptFault {
                probability: 1.0,
                kinds: vec![kind],
                shift_bps: 300,
            },
            ..DisruptionConfig::default()
        };
        let (out, log) = run(cfg, 3, &input);
        assert_eq!(log.len(), 100);
        for (d, r) in out.iter().zip(&log) {
            let orig = input[d.seq as usize].price;
            let got = d.tick.price;
            match kind {
                CorruptionKind::TimesTen => assert_eq!(got.raw(), orig.raw() * 10),
                CorruptionKind::Zero => assert_eq!(got, Price::ZERO),
                CorruptionKind::Negative => assert_eq!(got.raw(), -orig.raw()),
                CorruptionKind::Garbled => assert_ne!(got, orig),
                CorruptionKind::Shifted => {
                    let moved = [103, 97].map(|f| i128::from(orig.raw()) * f / 100);
                    assert!(moved.contains(&i128::from(got.raw())), "{orig} -> {got}");
                }
            }
            assert_eq!(
                r.action,
                Action::Corrupted {
                    kind,
                    before: orig,
                    after: got
                }
            );
        }
    }
}

#[test]
fn corruption_probability_is_respected_on_quotes() {
    let input: Vec<Quote> = (0..10_000)
        .map(|i| Quote {
            instrument: InstrumentId::new("ETH-USDT"),
            bid: Price::from_units(2_000),
            bid_size: Quantity::ONE,
            ask: Price::from_units(2_001),
            ask_size: Quantity::ONE,
            ts: UnixNanos(i * MS),
        })
        .collect();
    let cfg = DisruptionConfig {
        corrupt: CorruptFault {
            probability: 0.1,
            kinds: vec![CorruptionKind::TimesTen],
            shift_bps: 0,
        },
        ..DisruptionConfig::default()
    };
    let (out, log) = Disruptor::run(cfg, &DetRng::new(5), input).unwrap();
    let bad = out
        .iter()
        .filter(|d| d.tick.bid.raw() == 20_000 * 100_000_000)
        .count();
    assert_eq!(bad, log.len());
    // Both sides of a quote are corrupted together.
    assert!(out.iter().all(|d| d.tick.bid < d.tick.ask));
    assert!((900..1_100).contains(&bad), "{bad}");
}

#[test]
fn latency_spike_delays_in_order() {
    let input = trades(300);
    let mut cfg = DisruptionConfig::default();
    cfg.latency.extra = Nanos(40 * MS);
    cfg.latency.spikes.windows = vec![window(100, 110)];
    let (out, log) = run(cfg, 1, &input);
    let seqs: Vec<u64> = out.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>(), "spikes never reorder");
    for d in &out {
        let ts = input[d.seq as usize].ts.0;
        let expected = match d.seq {
            100..110 => ts + 40 * MS,
            // Head-of-line blocking: held behind tick 109 until it is delivered at 149 ms.
            110..=149 => 149 * MS,
            _ => ts,
        };
        assert_eq!(d.deliver_at.0, expected, "tick {}", d.seq);
    }
    assert_eq!(log.len(), 10);
    check_invariants(&input, &out, &log);
}

#[test]
fn duplicates_are_delivered_twice() {
    let input = trades(2_000);
    let cfg = DisruptionConfig {
        duplicate_probability: 0.05,
        ..DisruptionConfig::default()
    };
    let (out, log) = run(cfg, 2, &input);
    assert_eq!(out.len(), 2_000 + log.len());
    assert!((60..140).contains(&log.len()), "{}", log.len());
    for r in &log {
        let copies: Vec<_> = out.iter().filter(|d| d.seq == r.seq).collect();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].tick, copies[1].tick);
        assert!(!copies[0].duplicate && copies[1].duplicate);
    }
    check_invariants(&input, &out, &log);
}

#[test]
fn reordering_is_bounded_and_logged() {
    let input = trades(5_000);
    let cfg = DisruptionConfig {
        reorder: ReorderFault {
            probability: 0.05,
            max_distance: 3,
        },
        ..DisruptionConfig::default()
    };
    let (out, log) = run(cfg, 4, &input);
    assert_eq!(out.len(), 5_000);
    let mut seqs: Vec<u64> = out.iter().map(|d| d.seq).collect();
    assert_ne!(
        seqs,
        (0..5_000).collect::<Vec<_>>(),
        "something was reordered"
    );
    // Each tick lands at most a few places from where it was sent.
    for (pos, s) in seqs.iter().enumerate() {
        assert!((pos as i64 - *s as i64).abs() <= 6, "{s} at {pos}");
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..5_000).collect::<Vec<_>>(), "a permutation");
    assert!((180..330).contains(&log.len()), "{}", log.len());
    check_invariants(&input, &out, &log);
}

#[test]
fn same_seed_same_disruption() {
    let input = trades(5_000);
    let a = run(everything_on(), 77, &input);
    let b = run(everything_on(), 77, &input);
    assert_eq!(a, b);
    let c = run(everything_on(), 78, &input);
    assert_ne!(a.1, c.1);
    check_invariants(&input, &a.0, &a.1);
    // Every kind of fault actually fired.
    let kinds: BTreeSet<&str> =
        a.1.iter()
            .map(|r| match r.action {
                Action::Dropped { .. } => "dropped",
                Action::Stale { .. } => "stale",
                Action::Corrupted { .. } => "corrupted",
                Action::Delayed { .. } => "delayed",
                Action::Duplicated => "duplicated",
                Action::Reordered { .. } => "reordered",
            })
            .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
}

#[test]
fn faults_use_independent_streams() {
    // Turning on duplicates does not change which ticks are corrupted.
    let input = trades(3_000);
    let only_corrupt = DisruptionConfig {
        corrupt: everything_on().corrupt,
        ..DisruptionConfig::default()
    };
    let mut both = only_corrupt.clone();
    both.duplicate_probability = 0.3;
    let corrupted = |log: &[DisruptionRecord]| -> Vec<u64> {
        log.iter()
            .filter(|r| matches!(r.action, Action::Corrupted { .. }))
            .map(|r| r.seq)
            .collect()
    };
    let (_, a) = run(only_corrupt, 12, &input);
    let (_, b) = run(both, 12, &input);
    assert!(!corrupted(&a).is_empty());
    assert_eq!(corrupted(&a), corrupted(&b));
}

#[test]
fn invalid_configurations_are_refused() {
    let cfg = DisruptionConfig {
        duplicate_probability: 1.5,
        ..DisruptionConfig::default()
    };
    assert_eq!(
        cfg.validate(),
        Err(DisruptionError::Probability("duplicate_probability"))
    );
    let mut cfg = DisruptionConfig::default();
    cfg.reorder.probability = 0.1;
    assert!(matches!(
        cfg.validate(),
        Err(DisruptionError::Incomplete("reorder", _))
    ));
    let mut cfg = DisruptionConfig::default();
    cfg.corrupt.probability = 0.1;
    assert!(matches!(
        cfg.validate(),
        Err(DisruptionError::Incomplete("corrupt", _))
    ));
    let mut cfg = DisruptionConfig::default();
    cfg.gaps.windows = vec![window(10, 5)];
    assert_eq!(cfg.validate(), Err(DisruptionError::Negative("gaps")));
    assert!(Disruptor::<Trade>::new(cfg, &DetRng::new(1)).is_err());
}

#[test]
fn configuration_reads_from_toml() {
    let cfg: DisruptionConfig = toml::from_str(
        r#"
        duplicate_probability = 0.01
        [gaps]
        probability = 0.001
        duration = 5000000000
        windows = [{ start = 0, end = 1000 }]
        [corrupt]
        probability = 0.0001
        kinds = ["times_ten", "zero", "negative", "garbled"]
        [latency]
        base = 1000000
        extra = 500000000
        [latency.spikes]
        probability = 0.0005
        duration = 2000000000
        [reorder]
        probability = 0.01
        max_distance = 3
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.corrupt.kinds.len(), 4);
    assert_eq!(cfg.gaps.windows[0].end, UnixNanos(1000));
    assert_eq!(cfg.stale, WindowFault::default());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn invariants_hold_for_any_configuration(
        seed in proptest::num::u64::ANY,
        p_gap in 0.0..0.05f64,
        p_stale in 0.0..0.05f64,
        p_corrupt in 0.0..0.3f64,
        p_spike in 0.0..0.05f64,
        p_dup in 0.0..0.3f64,
        p_reorder in 0.0..0.3f64,
        max_distance in 1u32..8,
        dur_ms in 0i64..50,
        n in 1u64..600,
    ) {
        let cfg = DisruptionConfig {
            gaps: WindowFault { probability: p_gap, duration: Nanos(dur_ms * MS), windows: vec![] },
            stale: WindowFault { probability: p_stale, duration: Nanos(dur_ms * MS), windows: vec![] },
            corrupt: CorruptFault {
                probability: p_corrupt,
                kinds: vec![CorruptionKind::Garbled, CorruptionKind::Negative],
                shift_bps: 0,
            },
            latency: LatencyFault {
                base: Nanos(MS),
                extra: Nanos(dur_ms * 2 * MS),
                spikes: WindowFault { probability: p_spike, duration: Nanos(dur_ms * MS), windows: vec![] },
            },
            duplicate_probability: p_dup,
            reorder: ReorderFault { probability: p_reorder, max_distance },
        };
        let input = trades(n);
        let (out, log) = run(cfg, seed, &input);
        check_invariants(&input, &out, &log);
    }
}
