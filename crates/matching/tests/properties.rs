//! Properties of the book over random command streams (proptest).

use std::collections::HashMap;

use proptest::prelude::*;
use tradestack_matching::{BookConfig, BookEvent, NewOrder, OrderBook, StpMode};
use tradestack_model::{
    Instrument, OrderId, OrderType, Price, Quantity, Side, TimeInForce, UnixNanos,
};

#[derive(Clone, Debug)]
enum Cmd {
    Submit {
        owner: u32,
        side: Side,
        market: bool,
        tif: TimeInForce,
        /// Ticks above 100.00.
        ticks: i64,
        lots: i64,
        stp: StpMode,
    },
    /// A stop (market once triggered) or stop-limit order.
    Stop {
        owner: u32,
        side: Side,
        stop_ticks: i64,
        limit_ticks: Option<i64>,
        lots: i64,
    },
    Cancel(u64),
    Amend {
        target: u64,
        ticks: Option<i64>,
        lots: Option<i64>,
    },
    /// Expire GTD orders due this many steps from now.
    Expire(i64),
    /// Set the fill cap (bps; 10,000 = off).
    Cap(u32),
}

impl Cmd {
    /// The order a submit or stop command enters, with venue id `id`.
    fn new_order(&self, id: u64, now: UnixNanos) -> Option<NewOrder> {
        match self {
            Cmd::Submit {
                owner,
                side,
                market,
                tif,
                ticks,
                lots,
                stp,
            } => {
                let qty = Quantity::from_raw(lots * LOT);
                let mut o = if *market {
                    NewOrder::market(id, *owner, *side, qty)
                } else {
                    NewOrder::limit(id, *owner, *side, price(*ticks), qty).with_tif(*tif)
                }
                .with_stp(*stp);
                if o.time_in_force == TimeInForce::Gtd {
                    o.expire_at = Some(UnixNanos(now.0 + 3));
                }
                Some(o)
            }
            Cmd::Stop {
                owner,
                side,
                stop_ticks,
                limit_ticks,
                lots,
            } => Some(NewOrder {
                order_type: if limit_ticks.is_some() {
                    OrderType::StopLimit
                } else {
                    OrderType::Stop
                },
                price: limit_ticks.map(price),
                stop_price: Some(price(*stop_ticks)),
                ..NewOrder::limit(id, *owner, *side, price(0), Quantity::from_raw(lots * LOT))
                    .with_stp(StpMode::None)
            }),
            _ => None,
        }
    }

    /// Runs the command; submits and stops use id `id`.
    fn run(&self, book: &mut OrderBook, id: u64, now: UnixNanos, ev: &mut Vec<BookEvent>) {
        if let Some(o) = self.new_order(id, now) {
            book.submit(&o, now, ev);
            return;
        }
        match self {
            Cmd::Cancel(id) => book.cancel(OrderId(*id), None, ev),
            Cmd::Amend {
                target,
                ticks,
                lots,
            } => book.amend(
                OrderId(*target),
                None,
                ticks.map(price),
                lots.map(|l| Quantity::from_raw(l * LOT)),
                ev,
            ),
            Cmd::Expire(ahead) => book.expire(UnixNanos(now.0 + ahead), ev),
            Cmd::Cap(bps) => book.set_config(BookConfig {
                fill_cap_bps: *bps,
                ..BookConfig::default()
            }),
            Cmd::Submit { .. } | Cmd::Stop { .. } => {}
        }
    }
}

const TICK: i64 = 1_000_000; // 0.01
const LOT: i64 = 100_000; // 0.001

fn price(ticks: i64) -> Price {
    Price::from_raw(100 * 100_000_000 + ticks * TICK)
}

fn cmd(stp: bool) -> impl Strategy<Value = Cmd> {
    let tif = prop_oneof![
        6 => Just(TimeInForce::Gtc),
        2 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok),
        1 => Just(TimeInForce::PostOnly),
        1 => Just(TimeInForce::Gtd),
    ];
    let stp_mode = if stp {
        prop_oneof![
            Just(StpMode::None),
            Just(StpMode::CancelNewest),
            Just(StpMode::CancelOldest),
            Just(StpMode::CancelBoth),
            Just(StpMode::Decrement),
        ]
        .boxed()
    } else {
        Just(StpMode::None).boxed()
    };
    prop_oneof![
        8 => (0u32..4, any::<bool>(), prop::bool::weighted(0.1), tif, -20i64..20, 1i64..50, stp_mode)
            .prop_map(|(owner, buy, market, tif, ticks, lots, stp)| Cmd::Submit {
                owner,
                side: if buy { Side::Buy } else { Side::Sell },
                market,
                tif,
                ticks,
                lots,
                stp,
            }),
        1 => (0u32..4, any::<bool>(), -20i64..20, proptest::option::of(-20i64..20), 1i64..50)
            .prop_map(|(owner, buy, stop_ticks, limit_ticks, lots)| Cmd::Stop {
                owner,
                side: if buy { Side::Buy } else { Side::Sell },
                stop_ticks,
                limit_ticks,
                lots,
            }),
        1 => (0i64..6).prop_map(Cmd::Expire),
        1 => prop_oneof![Just(10_000u32), Just(10_000), Just(5_000), Just(2_500)].prop_map(Cmd::Cap),
        2 => (1u64..200).prop_map(Cmd::Cancel),
        2 => (1u64..200, proptest::option::of(-20i64..20), proptest::option::of(1i64..50))
            .prop_map(|(target, ticks, lots)| Cmd::Amend { target, ticks, lots }),
    ]
}

/// Per-order accounting from the event stream.
#[derive(Default, Debug)]
struct Acct {
    submitted: i64,
    filled: i64,
    cancelled: i64,
}

fn new_book() -> OrderBook {
    OrderBook::new(
        Instrument::spot(
            "BTC-USDT",
            "BTC",
            "USDT",
            Price::from_raw(TICK),
            Quantity::from_raw(LOT),
        ),
        BookConfig::default(),
    )
}

/// Runs `cmds`, checking every property after each command. Returns the events.
fn check(cmds: &[Cmd], check_priority: bool) -> Result<Vec<BookEvent>, TestCaseError> {
    let mut book = new_book();
    let mut all = Vec::new();
    let mut acct: HashMap<u64, Acct> = HashMap::new();
    let mut next_id = 1u64;
    for (step, c) in cmds.iter().enumerate() {
        let mut ev = Vec::new();
        let now = UnixNanos(step as i64);
        // The queue a taker should meet, in priority order, before the command.
        let before: [Vec<(u64, Price, Quantity)>; 2] = [Side::Buy, Side::Sell].map(|s| {
            book.orders(s)
                .map(|o| (o.id.0, o.price, o.remaining))
                .collect()
        });
        let mut taker_info = None;
        let old = match c {
            Cmd::Amend { target, .. } => book.order(OrderId(*target)).map(|o| o.remaining.raw()),
            _ => None,
        };
        let entered = c.new_order(next_id, now);
        c.run(&mut book, next_id, now, &mut ev);
        if let Some(o) = entered {
            next_id += 1;
            if matches!(c, Cmd::Submit { .. }) {
                let market = o.order_type == OrderType::Market;
                taker_info = Some((o.id.0, o.side, o.time_in_force, market, o.quantity));
            }
            if matches!(ev.first(), Some(BookEvent::Accepted { .. })) {
                acct.entry(o.id.0).or_default().submitted += o.quantity.raw();
            }
        }
        for e in &ev {
            if let BookEvent::Amended { id, quantity, .. } = e {
                let a = acct.entry(id.0).or_default();
                a.submitted += quantity.raw() - old.unwrap_or(0);
            }
        }
        // Accounting and the per-trade properties.
        let mut taker_filled = 0i64;
        let mut makers_hit: Vec<(u64, Price, Quantity)> = Vec::new();
        for e in &ev {
            match e {
                BookEvent::Trade(t) => {
                    acct.entry(t.maker.0).or_default().filled += t.quantity.raw();
                    acct.entry(t.taker.0).or_default().filled += t.quantity.raw();
                    prop_assert_ne!(t.maker, t.taker);
                    if let Some((id, ..)) = taker_info
                        && t.taker.0 == id
                    {
                        taker_filled += t.quantity.raw();
                        makers_hit.push((t.maker.0, t.price, t.quantity));
                    }
                }
                BookEvent::Cancelled { id, quantity, .. }
                | BookEvent::Expired { id, quantity, .. } => {
                    acct.entry(id.0).or_default().cancelled += quantity.raw();
                }
                _ => {}
            }
        }
        if let Some((id, side, tif, market, qty)) = taker_info {
            let accepted = matches!(ev.first(), Some(BookEvent::Accepted { .. }));
            if !market && tif == TimeInForce::Fok && accepted {
                prop_assert_eq!(taker_filled, qty.raw(), "FOK {} filled in part", id);
            }
            if !market && tif == TimeInForce::PostOnly {
                prop_assert_eq!(taker_filled, 0, "post-only {} took liquidity", id);
            }
            // Fills at the maker's price, in queue order.
            let queue = &before[match side.opposite() {
                Side::Buy => 0,
                Side::Sell => 1,
            }];
            for (maker, px, _) in &makers_hit {
                let resting = queue.iter().find(|(m, ..)| m == maker);
                prop_assert!(resting.is_some(), "maker {} was not resting", maker);
                prop_assert_eq!(
                    resting.map(|r| r.1),
                    Some(*px),
                    "fill away from maker price"
                );
            }
            if check_priority {
                for (i, (maker, _, q)) in makers_hit.iter().enumerate() {
                    prop_assert_eq!(queue[i].0, *maker, "priority broken at fill {}", i);
                    if i + 1 < makers_hit.len() {
                        prop_assert_eq!(queue[i].2, *q, "an earlier maker was not filled in full");
                    }
                }
            }
        }
        // Never crossed.
        if let (Some((bid, _)), Some((ask, _))) = (book.best_bid(), book.best_ask()) {
            prop_assert!(
                bid < ask,
                "crossed book after step {}: {} >= {}",
                step,
                bid,
                ask
            );
        }
        // Levels agree with their orders.
        for side in [Side::Buy, Side::Sell] {
            let mut sums: HashMap<Price, (i64, u32)> = HashMap::new();
            for o in book.orders(side) {
                let e = sums.entry(o.price).or_default();
                e.0 += o.remaining.raw();
                e.1 += 1;
            }
            for l in book.levels(side) {
                prop_assert_eq!(
                    sums.get(&l.price).copied(),
                    Some((l.quantity.raw(), l.orders))
                );
            }
        }
        all.extend(ev);
    }
    // Conservation: submitted = filled + resting + cancelled, per order.
    for (id, a) in &acct {
        let resting = book.order(OrderId(*id)).map_or(0, |o| o.remaining.raw())
            + book
                .pending_stops()
                .find(|o| o.id.0 == *id)
                .map_or(0, |o| o.quantity.raw());
        prop_assert_eq!(
            a.submitted,
            a.filled + resting + a.cancelled,
            "order {} does not add up: {:?}, resting {}",
            id,
            a,
            resting
        );
    }
    Ok(all)
}

/// Applies commands with no checks; returns the events.
fn apply(book: &mut OrderBook, cmds: &[Cmd], first_id: u64) -> Vec<BookEvent> {
    let mut ev = Vec::new();
    let mut next_id = first_id;
    for (step, c) in cmds.iter().enumerate() {
        let now = UnixNanos(step as i64);
        c.run(book, next_id, now, &mut ev);
        if c.new_order(next_id, now).is_some() {
            next_id += 1;
        }
    }
    ev
}

fn submits(cmds: &[Cmd]) -> u64 {
    cmds.iter()
        .filter(|c| matches!(c, Cmd::Submit { .. }))
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn export_then_import_behaves_the_same(
        cmds in prop::collection::vec(cmd(true), 2..200),
        cut in 0.0f64..1.0,
    ) {
        let k = ((cmds.len() as f64) * cut) as usize;
        let (head, tail) = cmds.split_at(k);
        let mut original = new_book();
        apply(&mut original, head, 1);
        let state = original.export();
        let mut copy = OrderBook::import(original.instrument().clone(), &state);
        prop_assert_eq!(copy.export(), state);
        let next = 1 + submits(head);
        prop_assert_eq!(apply(&mut original, tail, next), apply(&mut copy, tail, next));
        prop_assert_eq!(original.export(), copy.export());
    }

    #[test]
    fn invariants_hold_without_stp(cmds in prop::collection::vec(cmd(false), 1..300)) {
        check(&cmds, true)?;
    }

    #[test]
    fn invariants_hold_with_every_stp_mode(cmds in prop::collection::vec(cmd(true), 1..300)) {
        check(&cmds, false)?;
    }

    #[test]
    fn same_commands_same_events(cmds in prop::collection::vec(cmd(true), 1..200)) {
        prop_assert_eq!(check(&cmds, false)?, check(&cmds, false)?);
    }
}
