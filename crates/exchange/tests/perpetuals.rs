//! Linear perpetuals: margin, realized P&L, funding, liquidation, and money
//! conserved over random command streams.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tradestack_exchange::{
    AccountSeed, Command, Exchange, ExchangeEvent, ExchangeSettings, OrderRef, PlaceOrder,
};
use tradestack_matching::StpMode;
use tradestack_model::{
    AccountId, Amount, AssetCode, InstrumentId, OrderId, OrderType, Price, Quantity, Side,
    TimeInForce, UnixNanos,
};

const PERP: &str = "BTC-USDT-PERP";

fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

fn settings(usdt: &[(&str, &str)]) -> ExchangeSettings {
    let mut s = ExchangeSettings::default();
    for (name, amount) in usdt {
        let mut balances = BTreeMap::new();
        balances.insert(AssetCode::new("USDT"), a(amount));
        s.accounts.push(AccountSeed {
            id: AccountId::new(*name),
            tier: "default".into(),
            stp: StpMode::CancelNewest,
            balances,
            api_key: None,
            api_secret: None,
            api_secret_sealed: None,
        });
    }
    s
}

fn order(account: &str, side: Side, kind: OrderType, price: Option<&str>, qty: &str) -> Command {
    Command::Place(PlaceOrder {
        account: AccountId::new(account),
        instrument: InstrumentId::new(PERP),
        client_order_id: None,
        side,
        order_type: kind,
        time_in_force: if kind == OrderType::Market {
            TimeInForce::Ioc
        } else {
            TimeInForce::Gtc
        },
        price: price.map(|p| p.parse().unwrap()),
        stop_price: None,
        quantity: qty.parse().unwrap(),
        expire_at: None,
        stp: None,
    })
}

fn limit(account: &str, side: Side, price: &str, qty: &str) -> Command {
    order(account, side, OrderType::Limit, Some(price), qty)
}

fn run(ex: &mut Exchange, c: Command) -> Vec<ExchangeEvent> {
    let mut out = Vec::new();
    ex.apply(&c, UnixNanos(1), &mut out).unwrap();
    out
}

fn free(ex: &Exchange, account: &str) -> Amount {
    ex.ledger()
        .get(&AccountId::new(account), &AssetCode::new("USDT"))
        .free
}

fn position(ex: &Exchange, account: &str) -> Option<tradestack_exchange::margin::Position> {
    ex.positions(&AccountId::new(account))
        .into_iter()
        .find(|(i, _)| i.as_str() == PERP)
        .map(|(_, p)| p)
}

#[test]
fn a_round_trip_realizes_pnl_and_returns_margin() {
    let mut ex = Exchange::new(settings(&[
        ("alice", "100000"),
        ("bob", "100000"),
        ("carol", "100000"),
    ]));
    run(&mut ex, limit("bob", Side::Sell, "50000", "1"));
    run(&mut ex, limit("alice", Side::Buy, "50000", "1"));
    let p = position(&ex, "alice").unwrap();
    assert_eq!(p.qty, Quantity::ONE.raw());
    assert_eq!(p.entry, "50000".parse().unwrap());
    assert_eq!(p.margin, a("5000"), "10% initial margin");
    assert_eq!(position(&ex, "bob").unwrap().qty, -Quantity::ONE.raw());
    // alice: 100,000 - 5,000 margin - 25 taker fee.
    assert_eq!(free(&ex, "alice"), a("94975"));

    // alice sells at 51,000 to carol: +1,000 realized, margin back, fees paid.
    run(&mut ex, limit("carol", Side::Buy, "51000", "1"));
    run(&mut ex, limit("alice", Side::Sell, "51000", "1"));
    assert!(position(&ex, "alice").is_none());
    // 94,975 + 5,000 margin + 1,000 pnl - 25.5 taker fee.
    assert_eq!(free(&ex, "alice"), a("100949.5"));
    assert_eq!(
        position(&ex, "carol").unwrap().entry,
        "51000".parse().unwrap()
    );
}

#[test]
fn funding_moves_money_from_longs_to_shorts_when_the_mark_is_above_the_index() {
    let mut ex = Exchange::new(settings(&[
        ("long", "100000"),
        ("short", "100000"),
        ("mm", "100000"),
    ]));
    run(&mut ex, limit("short", Side::Sell, "50000", "1"));
    run(&mut ex, limit("long", Side::Buy, "50000", "1"));
    // A book around 50,100 puts the mark 0.2% above an index of 50,000.
    run(&mut ex, limit("mm", Side::Buy, "50090", "0.1"));
    run(&mut ex, limit("mm", Side::Sell, "50110", "0.1"));
    let (long_before, short_before) = (free(&ex, "long"), free(&ex, "short"));
    let out = run(
        &mut ex,
        Command::Funding {
            instrument: InstrumentId::new(PERP),
            index: "50000".parse().unwrap(),
        },
    );
    // rate = (50,100 - 50,000) / 50,000 = 0.2%; payment = 50,100 x 0.2% = 100.2.
    let paid: Vec<Amount> = out
        .iter()
        .filter_map(|e| match e {
            ExchangeEvent::Funding { amount, .. } => Some(*amount),
            _ => None,
        })
        .collect();
    assert_eq!(paid.len(), 2);
    assert_eq!(free(&ex, "long"), long_before - a("100.2"));
    assert_eq!(free(&ex, "short"), short_before + a("100.2"));
    let err = ex
        .apply(
            &Command::Funding {
                instrument: InstrumentId::new("BTC-USDT"),
                index: "50000".parse().unwrap(),
            },
            UnixNanos(2),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "not_perpetual");
}

#[test]
fn a_position_under_maintenance_is_liquidated_against_the_book() {
    // The long has only its initial margin: a 6% drop is below maintenance.
    let mut ex = Exchange::new(settings(&[
        ("long", "5100"),
        ("short", "100000"),
        ("mm", "1000000"),
    ]));
    run(&mut ex, limit("short", Side::Sell, "50000", "1"));
    run(&mut ex, limit("long", Side::Buy, "50000", "1"));
    run(&mut ex, limit("mm", Side::Buy, "47000", "2"));
    run(&mut ex, limit("mm", Side::Sell, "47100", "2"));
    let mark = |ex: &mut Exchange, index: &str| {
        run(
            ex,
            Command::Mark {
                instrument: InstrumentId::new(PERP),
                index: index.parse().unwrap(),
            },
        )
    };
    // At an index of 49,000 the mark is clamped to 48,510: margin 5,000 - 1,490
    // loss = 3,510, above 5% of 48,510. Nothing happens.
    let out = mark(&mut ex, "49000");
    assert!(
        !out.iter()
            .any(|e| matches!(e, ExchangeEvent::Liquidated { .. }))
    );
    // At 47,050: equity 5,000 - 2,950 = 2,050 < 2,352.5: liquidated.
    let out = mark(&mut ex, "47050");
    assert!(
        out.iter()
            .any(|e| matches!(e, ExchangeEvent::Liquidated { .. })),
        "{out:?}"
    );
    assert!(
        position(&ex, "long").is_none(),
        "closed against the 47,000 bid"
    );
    // 5,100 - 25 fee - 5,000 margin, then 5,000 back - 3,000 loss - 23.5 fee.
    assert_eq!(free(&ex, "long"), a("2051.5"));
    assert_eq!(ex.insurance(), Amount::ZERO);
}

#[test]
fn a_gap_past_the_margin_is_covered_by_the_insurance_fund() {
    let mut ex = Exchange::new(settings(&[
        ("long", "5100"),
        ("short", "100000"),
        ("mm", "1000000"),
    ]));
    run(&mut ex, limit("short", Side::Sell, "50000", "1"));
    run(&mut ex, limit("long", Side::Buy, "50000", "1"));
    // The only bid is 12% lower.
    run(&mut ex, limit("mm", Side::Buy, "44000", "2"));
    run(&mut ex, limit("mm", Side::Sell, "44100", "2"));
    run(
        &mut ex,
        Command::Mark {
            instrument: InstrumentId::new(PERP),
            index: "44050".parse().unwrap(),
        },
    );
    assert!(position(&ex, "long").is_none());
    // 75 + 5,000 - 6,000 - 22 fee = -947: the account stops at zero.
    assert_eq!(free(&ex, "long"), Amount::ZERO);
    assert_eq!(ex.insurance(), a("-947"));
}

// ---------------------------------------------------------------- property

fn arb() -> impl Strategy<Value = Command> {
    let acct = prop_oneof![Just("a"), Just("b"), Just("c")];
    prop_oneof![
        6 => (acct.clone(), any::<bool>(), -30i64..30, 1i64..40, any::<bool>()).prop_map(|(who, buy, ticks, lots, market)| {
            let price = format!("{}", 50_000 + ticks * 10);
            let qty = format!("{}", lots as f64 / 100.0);
            let side = if buy { Side::Buy } else { Side::Sell };
            if market {
                order(who, side, OrderType::Market, None, &qty)
            } else {
                limit(who, side, &price, &qty)
            }
        }),
        1 => (acct.clone(), 1u64..80).prop_map(|(who, id)| Command::Cancel {
            account: AccountId::new(who),
            instrument: InstrumentId::new(PERP),
            order: OrderRef::Id(OrderId(id)),
        }),
        1 => (-500i64..500).prop_map(|d| Command::Funding {
            instrument: InstrumentId::new(PERP),
            index: Price::from_raw((50_000 + d) * 100_000_000),
        }),
        1 => (-3000i64..3000).prop_map(|d| Command::Mark {
            instrument: InstrumentId::new(PERP),
            index: Price::from_raw((50_000 + d) * 100_000_000),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// balances + position margins + fees + insurance + unrealized P&L =
    /// deposits (within rounding dust: entry prices are averaged), no
    /// balance negative, positions net to zero, and a snapshot restores the
    /// same exchange.
    #[test]
    fn money_is_conserved_with_perpetuals(cmds in prop::collection::vec(arb(), 1..120)) {
        let deposits = a("30000");
        let mut ex = Exchange::new(settings(&[("a", "10000"), ("b", "10000"), ("c", "10000")]));
        let mut fees = Amount::ZERO;
        let mut fills = 0i128;
        for (i, c) in cmds.iter().enumerate() {
            let mut out = Vec::new();
            let _ = ex.apply(c, UnixNanos(i as i64), &mut out);
            for e in &out {
                if let ExchangeEvent::Fill(f) = e {
                    fees += f.fee;
                    fills += 1;
                }
            }
            let mut total = fees + ex.insurance();
            let mut net = 0i64;
            for who in ["a", "b", "c"] {
                let b = ex.ledger().get(&AccountId::new(who), &AssetCode::new("USDT"));
                prop_assert!(b.free >= Amount::ZERO && b.locked >= Amount::ZERO);
                total += b.total();
            }
            // Unrealized at any common price sums the same (positions net to zero).
            let mark = Price::from_raw(50_000 * 100_000_000);
            for ((_, _), p) in ex.all_positions() {
                net += p.qty;
                total += p.margin + p.unrealized(mark, Quantity::ONE);
            }
            prop_assert_eq!(net, 0);
            let dust = (total - deposits).raw().abs();
            prop_assert!(dust <= 2 * (fills + 1), "off by {} units after {} fills", dust, fills);
        }
        let copy = Exchange::restore(settings(&[("a", "10000"), ("b", "10000"), ("c", "10000")]), ex.export());
        prop_assert_eq!(copy.export(), ex.export());
    }
}
