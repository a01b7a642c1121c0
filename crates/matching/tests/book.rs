//! Order-type semantics, one behaviour per test.

use tradestack_matching::{
    BookConfig, BookEvent, CancelReason, FeeRates, L2Book, NewOrder, OrderBook, Owner,
    RejectReason, StpMode,
};
use tradestack_model::{
    Amount, Instrument, OrderId, OrderType, Price, Quantity, Rate, Side, TimeInForce, UnixNanos,
};

fn p(s: &str) -> Price {
    s.parse().unwrap()
}

fn q(s: &str) -> Quantity {
    s.parse().unwrap()
}

fn book() -> OrderBook {
    let mut ins = Instrument::spot("BTC-USDT", "BTC", "USDT", p("0.01"), q("0.001"));
    ins.min_notional = "5".parse().unwrap();
    OrderBook::new(ins, BookConfig::default())
}

const T: UnixNanos = UnixNanos(1_000);

fn limit(id: u64, owner: u32, side: Side, price: &str, qty: &str) -> NewOrder {
    NewOrder::limit(id, owner, side, p(price), q(qty))
}

fn run(b: &mut OrderBook, o: NewOrder) -> Vec<BookEvent> {
    let mut ev = Vec::new();
    b.submit(&o, T, &mut ev);
    ev
}

fn trades(ev: &[BookEvent]) -> Vec<(u64, u64, Price, Quantity)> {
    ev.iter()
        .filter_map(|e| match e {
            BookEvent::Trade(t) => Some((t.maker.0, t.taker.0, t.price, t.quantity)),
            _ => None,
        })
        .collect()
}

fn rejected(ev: &[BookEvent]) -> Option<RejectReason> {
    ev.iter().find_map(|e| match e {
        BookEvent::Rejected { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn cancelled(ev: &[BookEvent], id: u64) -> Option<(Quantity, CancelReason)> {
    ev.iter().find_map(|e| match e {
        BookEvent::Cancelled {
            id: i,
            quantity,
            reason,
            ..
        } if i.0 == id => Some((*quantity, *reason)),
        _ => None,
    })
}

#[test]
fn price_time_priority_and_maker_price() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Sell, "100.00", "1"));
    run(&mut b, limit(2, 2, Side::Sell, "100.00", "1"));
    run(&mut b, limit(3, 3, Side::Sell, "99.50", "1"));
    let ev = run(&mut b, limit(4, 4, Side::Buy, "101.00", "2.5"));
    assert_eq!(
        trades(&ev),
        vec![
            (3, 4, p("99.50"), q("1")),
            (1, 4, p("100.00"), q("1")),
            (2, 4, p("100.00"), q("0.5")),
        ]
    );
    assert_eq!(b.best_ask(), Some((p("100.00"), q("0.5"))));
    assert_eq!(b.best_bid(), None);
    assert_eq!(b.last_trade_price(), Some(p("100.00")));
}

#[test]
fn validation_has_one_reason_per_rule() {
    let mut b = book();
    let cases = [
        (
            limit(1, 1, Side::Buy, "100.005", "1"),
            RejectReason::OffTick,
        ),
        (
            limit(2, 1, Side::Buy, "0", "1"),
            RejectReason::NonPositivePrice,
        ),
        (
            limit(3, 1, Side::Buy, "100", "0"),
            RejectReason::ZeroQuantity,
        ),
        (
            limit(4, 1, Side::Buy, "100", "1.0005"),
            RejectReason::OffLot,
        ),
        (
            limit(5, 1, Side::Buy, "100", "0.01"),
            RejectReason::BelowMinNotional,
        ),
        (
            limit(6, 1, Side::Buy, "100", "2000000"),
            RejectReason::AboveMaxQty,
        ),
    ];
    for (o, want) in cases {
        assert_eq!(rejected(&run(&mut b, o)), Some(want), "{o:?}");
    }
    let mut no_price = limit(7, 1, Side::Buy, "100", "1");
    no_price.price = None;
    assert_eq!(
        rejected(&run(&mut b, no_price)),
        Some(RejectReason::MissingPrice)
    );
    run(&mut b, limit(8, 1, Side::Buy, "100", "1"));
    assert_eq!(
        rejected(&run(&mut b, limit(8, 1, Side::Buy, "100", "1"))),
        Some(RejectReason::DuplicateOrderId)
    );
    assert_eq!(b.len(), 1);
}

#[test]
fn ioc_cancels_the_rest_and_fok_is_all_or_nothing() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Sell, "100", "1"));
    let ev = run(
        &mut b,
        limit(2, 2, Side::Buy, "100", "3").with_tif(TimeInForce::Ioc),
    );
    assert_eq!(trades(&ev).len(), 1);
    assert_eq!(cancelled(&ev, 2), Some((q("2"), CancelReason::Unfilled)));
    assert!(b.is_empty());

    run(&mut b, limit(3, 1, Side::Sell, "100", "1"));
    run(&mut b, limit(4, 1, Side::Sell, "101", "1"));
    let ev = run(
        &mut b,
        limit(5, 2, Side::Buy, "101", "2.5").with_tif(TimeInForce::Fok),
    );
    assert_eq!(rejected(&ev), Some(RejectReason::FokUnfillable));
    assert!(trades(&ev).is_empty());
    let ev = run(
        &mut b,
        limit(6, 2, Side::Buy, "101", "2").with_tif(TimeInForce::Fok),
    );
    assert_eq!(trades(&ev).len(), 2);
    assert!(b.is_empty());
}

#[test]
fn post_only_rejects_rather_than_slides() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Sell, "100", "1"));
    let ev = run(
        &mut b,
        limit(2, 2, Side::Buy, "100", "1").with_tif(TimeInForce::PostOnly),
    );
    assert_eq!(rejected(&ev), Some(RejectReason::PostOnlyWouldTake));
    let ev = run(
        &mut b,
        limit(3, 2, Side::Buy, "99.99", "1").with_tif(TimeInForce::PostOnly),
    );
    assert!(rejected(&ev).is_none());
    assert_eq!(b.best_bid(), Some((p("99.99"), q("1"))));
}

#[test]
fn gtd_expires_and_needs_a_future_expiry() {
    let mut b = book();
    let mut o = limit(1, 1, Side::Buy, "100", "1").with_tif(TimeInForce::Gtd);
    assert_eq!(rejected(&run(&mut b, o)), Some(RejectReason::BadExpiry));
    o.expire_at = Some(UnixNanos(T.0 - 1));
    assert_eq!(rejected(&run(&mut b, o)), Some(RejectReason::BadExpiry));
    o.expire_at = Some(UnixNanos(5_000));
    assert!(rejected(&run(&mut b, o)).is_none());
    let mut ev = Vec::new();
    b.expire(UnixNanos(4_999), &mut ev);
    assert!(ev.is_empty());
    b.expire(UnixNanos(5_000), &mut ev);
    assert!(matches!(ev[0], BookEvent::Delta(_)));
    assert!(matches!(ev[1], BookEvent::Expired { id: OrderId(1), .. }));
    assert!(b.is_empty());
}

#[test]
fn market_orders_stop_at_the_protective_band() {
    let mut b = OrderBook::new(
        Instrument::spot("BTC-USDT", "BTC", "USDT", p("0.01"), q("0.001")),
        BookConfig {
            market_band_bps: 100, // 1%
            ..BookConfig::default()
        },
    );
    run(&mut b, limit(1, 1, Side::Sell, "100", "1"));
    run(&mut b, limit(2, 1, Side::Sell, "100.99", "1"));
    run(&mut b, limit(3, 1, Side::Sell, "101.01", "1"));
    let ev = run(&mut b, NewOrder::market(4, 2, Side::Buy, q("3")));
    assert_eq!(trades(&ev).len(), 2);
    assert_eq!(cancelled(&ev, 4), Some((q("1"), CancelReason::PriceBand)));
    let ev = run(&mut b, NewOrder::market(5, 2, Side::Sell, q("1")));
    assert_eq!(cancelled(&ev, 5), Some((q("1"), CancelReason::Unfilled)));
}

#[test]
fn amend_keeps_priority_only_when_reducing() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Buy, "100", "2"));
    run(&mut b, limit(2, 2, Side::Buy, "100", "2"));
    let mut ev = Vec::new();
    b.amend(OrderId(1), Some(Owner(1)), None, Some(q("1")), &mut ev);
    assert!(ev.iter().any(|e| matches!(
        e,
        BookEvent::Amended {
            kept_priority: true,
            ..
        }
    )));
    let ids: Vec<u64> = b.orders(Side::Buy).map(|o| o.id.0).collect();
    assert_eq!(ids, vec![1, 2]);
    ev.clear();
    b.amend(OrderId(1), Some(Owner(1)), None, Some(q("3")), &mut ev);
    let ids: Vec<u64> = b.orders(Side::Buy).map(|o| o.id.0).collect();
    assert_eq!(ids, vec![2, 1], "a larger quantity goes to the back");
    ev.clear();
    b.amend(OrderId(1), Some(Owner(2)), Some(p("101")), None, &mut ev);
    assert_eq!(rejected(&ev), Some(RejectReason::NotOwner));
    ev.clear();
    b.amend(OrderId(2), None, Some(p("101")), None, &mut ev);
    let ids: Vec<u64> = b.orders(Side::Buy).map(|o| o.id.0).collect();
    assert_eq!(ids, vec![2, 1], "new price: own level");
    assert_eq!(b.best_bid(), Some((p("101"), q("2"))));
    // A new price that crosses trades at once.
    run(&mut b, limit(3, 3, Side::Sell, "102", "1"));
    ev.clear();
    b.amend(OrderId(2), None, Some(p("102")), None, &mut ev);
    assert_eq!(trades(&ev), vec![(3, 2, p("102"), q("1"))]);
}

#[test]
fn self_trade_prevention_modes() {
    let setup = || {
        let mut b = book();
        run(&mut b, limit(1, 7, Side::Sell, "100", "1"));
        run(&mut b, limit(2, 8, Side::Sell, "100", "1"));
        b
    };
    let taker = |stp| limit(10, 7, Side::Buy, "100", "1.5").with_stp(stp);

    let mut b = setup();
    let ev = run(&mut b, taker(StpMode::CancelNewest));
    assert!(trades(&ev).is_empty());
    assert_eq!(
        cancelled(&ev, 10),
        Some((q("1.5"), CancelReason::SelfTrade))
    );
    assert_eq!(b.len(), 2);

    let mut b = setup();
    let ev = run(&mut b, taker(StpMode::CancelOldest));
    assert_eq!(cancelled(&ev, 1), Some((q("1"), CancelReason::SelfTrade)));
    assert_eq!(trades(&ev), vec![(2, 10, p("100"), q("1"))]);
    assert_eq!(b.best_bid(), Some((p("100"), q("0.5"))));

    let mut b = setup();
    let ev = run(&mut b, taker(StpMode::CancelBoth));
    assert_eq!(cancelled(&ev, 1), Some((q("1"), CancelReason::SelfTrade)));
    assert_eq!(
        cancelled(&ev, 10),
        Some((q("1.5"), CancelReason::SelfTrade))
    );
    assert!(trades(&ev).is_empty());
    assert_eq!(b.len(), 1);

    let mut b = setup();
    let ev = run(&mut b, taker(StpMode::Decrement));
    // 1 decremented from both, then 0.5 trades with the other owner.
    assert_eq!(trades(&ev), vec![(2, 10, p("100"), q("0.5"))]);
    assert_eq!(b.best_ask(), Some((p("100"), q("0.5"))));

    let mut b = setup();
    let ev = run(&mut b, taker(StpMode::None));
    assert_eq!(trades(&ev).len(), 2);
}

#[test]
fn stop_orders_trigger_on_the_last_trade() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Sell, "100", "1"));
    run(&mut b, limit(2, 2, Side::Buy, "100", "1"));
    assert_eq!(b.last_trade_price(), Some(p("100")));
    // Resting liquidity for the stops to hit.
    run(&mut b, limit(3, 1, Side::Sell, "105", "2"));
    let stop = NewOrder {
        order_type: OrderType::Stop,
        price: None,
        stop_price: Some(p("104")),
        ..limit(4, 3, Side::Buy, "0.01", "1")
    };
    let ev = run(&mut b, stop);
    assert!(rejected(&ev).is_none(), "{ev:?}");
    let mut too_late = stop;
    too_late.id = OrderId(5);
    too_late.stop_price = Some(p("99"));
    assert_eq!(
        rejected(&run(&mut b, too_late)),
        Some(RejectReason::WouldTriggerImmediately)
    );
    assert_eq!(b.pending_stops().count(), 1);
    // A trade at 104 fires it; it buys at 105.
    run(&mut b, limit(6, 1, Side::Sell, "104", "1"));
    let ev = run(&mut b, limit(7, 2, Side::Buy, "104", "1"));
    assert!(
        ev.iter()
            .any(|e| matches!(e, BookEvent::Triggered { id: OrderId(4), .. }))
    );
    assert!(trades(&ev).contains(&(3, 4, p("105"), q("1"))));
    assert_eq!(b.pending_stops().count(), 0);
}

#[test]
fn cancel_and_cancel_all() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Buy, "99", "1"));
    run(&mut b, limit(2, 2, Side::Buy, "98", "1"));
    run(&mut b, limit(3, 1, Side::Sell, "101", "1"));
    let mut ev = Vec::new();
    b.cancel(OrderId(2), Some(Owner(1)), &mut ev);
    assert_eq!(rejected(&ev), Some(RejectReason::NotOwner));
    ev.clear();
    b.cancel(OrderId(42), None, &mut ev);
    assert_eq!(rejected(&ev), Some(RejectReason::UnknownOrder));
    ev.clear();
    b.cancel_all(Some(Owner(1)), &mut ev);
    assert_eq!(cancelled(&ev, 1), Some((q("1"), CancelReason::CancelAll)));
    assert_eq!(cancelled(&ev, 3), Some((q("1"), CancelReason::CancelAll)));
    assert_eq!(b.len(), 1);
    ev.clear();
    b.cancel_all(None, &mut ev);
    assert!(b.is_empty());
}

#[test]
fn fees_follow_the_rates_of_each_side() {
    let mut b = book();
    let rates = FeeRates {
        maker: Rate::from_raw(-10_000), // -1 bp rebate
        taker: Rate::from_raw(100_000), // 10 bp
    };
    let mut maker = limit(1, 1, Side::Sell, "100", "2");
    maker.fees = rates;
    run(&mut b, maker);
    let mut taker = limit(2, 2, Side::Buy, "100", "2");
    taker.fees = rates;
    let ev = run(&mut b, taker);
    let t = ev
        .iter()
        .find_map(|e| match e {
            BookEvent::Trade(t) => Some(*t),
            _ => None,
        })
        .unwrap();
    assert_eq!(t.maker_fee, "-0.02".parse::<Amount>().unwrap());
    assert_eq!(t.taker_fee, "0.2".parse::<Amount>().unwrap());
}

#[test]
fn l2_snapshot_plus_deltas_rebuilds_the_book() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Buy, "99", "1"));
    let snap = b.l2_snapshot(usize::MAX);
    let mut client = L2Book::from_snapshot(&snap);
    let mut ev = Vec::new();
    b.submit(&limit(2, 2, Side::Buy, "99", "2"), T, &mut ev);
    b.submit(&limit(3, 2, Side::Sell, "101", "2"), T, &mut ev);
    b.submit(&limit(4, 3, Side::Sell, "98", "4"), T, &mut ev);
    b.cancel(OrderId(3), None, &mut ev);
    for e in &ev {
        if let BookEvent::Delta(d) = e {
            client.apply(d).unwrap();
        }
    }
    assert_eq!(client.to_snapshot(), b.l2_snapshot(usize::MAX));
    // A gap is detected.
    let mut stale = L2Book::from_snapshot(&snap);
    let later = ev
        .iter()
        .filter_map(|e| match e {
            BookEvent::Delta(d) => Some(*d),
            _ => None,
        })
        .nth(1)
        .unwrap();
    assert!(stale.apply(&later).is_err());
}

#[test]
fn a_fill_cap_makes_every_fill_partial() {
    let mut b = book();
    run(&mut b, limit(1, 1, Side::Sell, "100", "10"));
    b.set_config(BookConfig {
        fill_cap_bps: 3_000,
        ..BookConfig::default()
    });
    // 30% fills; a rest that would cross the book is cancelled.
    let ev = run(&mut b, limit(2, 2, Side::Buy, "100", "2"));
    assert_eq!(trades(&ev), vec![(1, 2, p("100"), q("0.6"))]);
    assert_eq!(cancelled(&ev, 2), Some((q("1.4"), CancelReason::Unfilled)));
    // IOC: the rest is cancelled; FOK cannot fill in full.
    let ev = run(
        &mut b,
        limit(3, 2, Side::Buy, "100", "1").with_tif(TimeInForce::Ioc),
    );
    assert_eq!(trades(&ev), vec![(1, 3, p("100"), q("0.3"))]);
    assert_eq!(cancelled(&ev, 3), Some((q("0.7"), CancelReason::Unfilled)));
    let ev = run(
        &mut b,
        limit(4, 2, Side::Buy, "100", "1").with_tif(TimeInForce::Fok),
    );
    assert_eq!(rejected(&ev), Some(RejectReason::FokUnfillable));
}
