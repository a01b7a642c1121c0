use super::*;

fn px(s: &str) -> Price {
    s.parse().unwrap()
}

fn qty(s: &str) -> Quantity {
    s.parse().unwrap()
}

fn snapshot(id: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> DepthSnapshot {
    DepthSnapshot {
        symbol: "BTCUSDT".into(),
        ts: UnixNanos::from_millis(1_000),
        last_update_id: id,
        bids: bids.iter().map(|(p, q)| (px(p), qty(q))).collect(),
        asks: asks.iter().map(|(p, q)| (px(p), qty(q))).collect(),
    }
}

fn event(first: u64, last: u64, pu: Option<u64>, changes: &[(Side, &str, &str)]) -> DepthEvent {
    DepthEvent {
        line: last,
        ts: UnixNanos::from_millis(last as i64),
        first_update_id: first,
        last_update_id: last,
        prev_last_update_id: pu,
        changes: changes
            .iter()
            .map(|(side, p, q)| LevelChange {
                side: *side,
                price: px(p),
                qty: qty(q),
            })
            .collect(),
    }
}

fn book() -> DepthBook {
    DepthBook::new(
        &snapshot(
            100,
            &[("99", "1"), ("98", "2")],
            &[("101", "1"), ("102", "3")],
        ),
        DepthProtocol::Futures,
        GapPolicy::Fail,
    )
}

#[test]
fn futures_sequence_applies_and_removes_levels() {
    let mut b = book();
    assert_eq!(b.top().bid, Some((px("99"), qty("1"))));
    // Older than the snapshot: dropped.
    assert_eq!(
        b.apply(&event(90, 99, Some(89), &[])).unwrap(),
        Applied::Stale
    );
    // First event straddles lastUpdateId = 100.
    let out = b
        .apply(&event(
            95,
            105,
            Some(94),
            &[
                (Side::Buy, "99", "0"),
                (Side::Sell, "100.5", "2"),
                (Side::Buy, "97", "0"),
            ],
        ))
        .unwrap();
    assert_eq!(
        out,
        Applied::Updated {
            levels: 3,
            removed_absent: 1,
            gap: None
        }
    );
    assert_eq!(b.top().bid, Some((px("98"), qty("2"))));
    assert_eq!(b.top().ask, Some((px("100.5"), qty("2"))));
    // Continuity through pu.
    b.apply(&event(106, 110, Some(105), &[(Side::Sell, "100.5", "0.5")]))
        .unwrap();
    assert_eq!(b.top().ask, Some((px("100.5"), qty("0.5"))));
    // A redelivered event is dropped.
    assert_eq!(
        b.apply(&event(106, 110, Some(105), &[])).unwrap(),
        Applied::Stale
    );
    assert_eq!(b.update_id(), 110);
    assert_eq!(b.ts(), UnixNanos::from_millis(110));
    let st = b.stats();
    assert_eq!(
        (
            st.applied,
            st.stale,
            st.gaps,
            st.levels_changed,
            st.removed_absent
        ),
        (2, 2, 0, 4, 1)
    );
    assert_eq!(b.bids().collect::<Vec<_>>(), vec![(px("98"), qty("2"))]);
    assert_eq!(
        b.asks().map(|l| l.0).collect::<Vec<_>>(),
        vec![px("100.5"), px("101"), px("102")]
    );
}

#[test]
fn a_gap_is_refused_until_a_new_snapshot() {
    let mut b = book();
    b.apply(&event(95, 105, Some(94), &[])).unwrap();
    let err = b
        .apply(&event(108, 110, Some(107), &[(Side::Buy, "99.5", "1")]))
        .unwrap_err();
    assert_eq!(
        err,
        DepthError::Gap {
            line: 110,
            expected_after: 105,
            first_update_id: 108,
            last_update_id: 110,
            prev: Some(107)
        }
    );
    assert!(b.needs_snapshot());
    // The refused event changed nothing, and nothing else is accepted.
    assert_eq!(b.top().bid, Some((px("99"), qty("1"))));
    assert!(matches!(
        b.apply(&event(111, 112, Some(110), &[])),
        Err(DepthError::NeedsSnapshot { .. })
    ));
    b.reset(&snapshot(111, &[("50", "1")], &[("51", "1")]));
    assert!(!b.needs_snapshot());
    b.apply(&event(111, 112, Some(110), &[(Side::Buy, "50.5", "1")]))
        .unwrap();
    assert_eq!(b.top().bid, Some((px("50.5"), qty("1"))));
}

#[test]
fn first_event_must_straddle_the_snapshot() {
    let mut b = book();
    let err = b.apply(&event(101, 105, Some(100), &[])).unwrap_err();
    assert!(matches!(
        err,
        DepthError::Gap {
            expected_after: 100,
            ..
        }
    ));
}

#[test]
fn continue_policy_applies_across_gaps_and_reports_them() {
    let mut b = DepthBook::new(
        &snapshot(100, &[("99", "1")], &[("101", "1")]),
        DepthProtocol::Futures,
        GapPolicy::Continue,
    );
    let out = b
        .apply(&event(500, 510, Some(499), &[(Side::Buy, "100", "1")]))
        .unwrap();
    assert!(matches!(
        out,
        Applied::Updated {
            gap: Some(DepthError::Gap { .. }),
            ..
        }
    ));
    assert_eq!(b.top().bid, Some((px("100"), qty("1"))));
    assert_eq!(b.stats().gaps, 1);
    assert!(!b.needs_snapshot());
}

#[test]
fn spot_rules() {
    let mut b = DepthBook::new(
        &snapshot(100, &[("99", "1")], &[("101", "1")]),
        DepthProtocol::Spot,
        GapPolicy::Fail,
    );
    // u <= lastUpdateId is stale on spot.
    assert_eq!(b.apply(&event(95, 100, None, &[])).unwrap(), Applied::Stale);
    b.apply(&event(101, 103, None, &[])).unwrap();
    b.apply(&event(104, 104, None, &[])).unwrap();
    assert!(matches!(
        b.apply(&event(106, 107, None, &[])),
        Err(DepthError::Gap {
            expected_after: 104,
            ..
        })
    ));
}

#[test]
fn crossing_is_detected() {
    let mut b = book();
    assert!(!b.top().is_crossed());
    b.apply(&event(95, 105, Some(94), &[(Side::Buy, "101", "1")]))
        .unwrap();
    assert!(b.top().is_crossed());
    let q = b
        .top()
        .to_quote(InstrumentId::new("BTC-USDT"), b.ts())
        .unwrap();
    assert_eq!((q.bid, q.ask), (px("101"), px("101")));
}

const HEADER: &str =
    "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n";

#[test]
fn rows_parse_group_and_report_errors() {
    let text = format!(
        "{HEADER}\
         BTCUSDT,1667347199939,20,25,a,set,20472.80,0.000,19\n\
         BTCUSDT,1667347199900,10,15,b,set,20400.00,1.5,9\n\
         BTCUSDT,1667347199939,20,25,b,set,20470.00,2,19\n\
         BTCUSDT,1667347199939,20,25,x,set,20470.00,2,19\n\
         BTCUSDT,1667347199939,20,25,b,set,20470.00,-2,19\n\
         BTCUSDT,1667347199939,20,25,b,add,20470.00,2,19\n\
         BTCUSDT,1667347199939,20,25,b,set,20470.00,2,-7\n\
         BTCUSDT,1667347199939,30,25,b,set,20470.00,2,19\n"
    );
    let rows: Vec<_> = DepthRows::new(text.as_bytes(), "u.csv").unwrap().collect();
    let errs: Vec<(u64, &str)> = rows
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        errs,
        vec![
            (5, "side"),
            (6, "qty"),
            (7, "update_type"),
            (8, "pu"),
            (9, "last_update_id")
        ]
    );
    let ok: Vec<DepthRow> = rows.into_iter().filter_map(Result::ok).collect();
    let events = group_events(ok);
    // Ordered by update id although the file had them the other way round.
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].first_update_id, events[0].last_update_id),
        (10, 15)
    );
    assert_eq!(events[1].changes.len(), 2);
    assert_eq!(events[1].prev_last_update_id, Some(19));
    assert_eq!(events[1].line, 2);
}

#[test]
fn snapshot_rows_must_agree() {
    let text = format!(
        "{HEADER}\
         BTCUSDT,1,100,100,b,snap,10,1,-1\n\
         BTCUSDT,1,100,100,a,snap,11,1,-1\n"
    );
    let rows: Vec<DepthRow> = DepthRows::new(text.as_bytes(), "s")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let snap = DepthSnapshot::from_rows(rows.clone()).unwrap();
    assert_eq!(
        (snap.bids.len(), snap.asks.len(), snap.last_update_id),
        (1, 1, 100)
    );
    let mut mixed = rows.clone();
    mixed[1].last_update_id = 101;
    assert!(matches!(
        DepthSnapshot::from_rows(mixed),
        Err(DepthError::BadSnapshot { line: 3, .. })
    ));
    let mut diff = rows;
    diff[0].kind = RowKind::Set;
    assert!(DepthSnapshot::from_rows(diff).is_err());
    assert_eq!(
        DepthSnapshot::from_rows(Vec::new()),
        Err(DepthError::NoSnapshot)
    );
}

#[test]
fn replay_yields_the_top_after_each_event() {
    let snap = snapshot(100, &[("99", "1")], &[("101", "1")]);
    let events = vec![
        event(95, 105, Some(94), &[(Side::Buy, "99.5", "2")]),
        event(106, 107, Some(105), &[(Side::Sell, "100", "1")]),
        event(200, 201, Some(199), &[(Side::Sell, "99.9", "1")]),
        event(202, 203, Some(201), &[]),
    ];
    let mut replay = DepthReplay::new(&snap, &events, DepthProtocol::Futures, GapPolicy::Fail);
    let steps: Vec<DepthStep> = replay.by_ref().collect();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0].top.bid, Some((px("99.5"), qty("2"))));
    assert_eq!(steps[1].top.ask, Some((px("100"), qty("1"))));
    assert!(matches!(steps[2].outcome, Err(DepthError::Gap { .. })));
    assert!(matches!(
        steps[3].outcome,
        Err(DepthError::NeedsSnapshot { .. })
    ));
    // Refused events leave the top as it was.
    assert_eq!(steps[3].top, steps[1].top);
    assert_eq!(replay.book().update_id(), 107);
}
