//! The exchange core: reservations, settlement, fees, and conservation of
//! money over random command streams.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tradestack_exchange::{
    AccountSeed, Command, Exchange, ExchangeError, ExchangeEvent, ExchangeSettings, OrderRef,
    PlaceOrder, Reply,
};
use tradestack_matching::StpMode;
use tradestack_model::{
    AccountId, Amount, AssetCode, InstrumentId, OrderId, OrderStatus, OrderType, Price, Quantity,
    Side, TimeInForce, UnixNanos,
};

fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

fn settings() -> ExchangeSettings {
    let mut s = ExchangeSettings::default();
    for name in ["alice", "bob", "carol"] {
        let mut balances = BTreeMap::new();
        balances.insert(AssetCode::new("USDT"), a("1000000"));
        balances.insert(AssetCode::new("BTC"), a("10"));
        s.accounts.push(AccountSeed {
            id: AccountId::new(name),
            tier: if name == "carol" { "vip" } else { "default" }.into(),
            stp: StpMode::CancelNewest,
            balances,
            api_key: None,
            api_secret: None,
            api_secret_sealed: None,
        });
    }
    s
}

fn place(
    account: &str,
    side: Side,
    order_type: OrderType,
    price: Option<&str>,
    qty: &str,
) -> Command {
    Command::Place(PlaceOrder {
        account: AccountId::new(account),
        instrument: InstrumentId::new("BTC-USDT"),
        client_order_id: None,
        side,
        order_type,
        time_in_force: TimeInForce::Gtc,
        price: price.map(|p| p.parse().unwrap()),
        stop_price: None,
        quantity: qty.parse().unwrap(),
        expire_at: None,
        stp: None,
    })
}

fn limit(account: &str, side: Side, price: &str, qty: &str) -> Command {
    place(account, side, OrderType::Limit, Some(price), qty)
}

fn bal(ex: &Exchange, account: &str, asset: &str) -> (Amount, Amount) {
    let b = ex
        .ledger()
        .get(&AccountId::new(account), &AssetCode::new(asset));
    (b.free, b.locked)
}

fn run(ex: &mut Exchange, cmd: Command) -> Result<Reply, ExchangeError> {
    ex.apply(&cmd, UnixNanos(1), &mut Vec::new())
}

#[test]
fn a_buy_reserves_notional_plus_fee_and_a_cancel_releases_it() {
    let mut ex = Exchange::new(settings());
    let Reply::Order(o, _) = run(&mut ex, limit("alice", Side::Buy, "50000", "2")).unwrap() else {
        panic!()
    };
    // 100,000 notional + 5 bp taker fee.
    assert_eq!(bal(&ex, "alice", "USDT"), (a("899950"), a("100050")));
    run(
        &mut ex,
        Command::Cancel {
            account: AccountId::new("alice"),
            instrument: InstrumentId::new("BTC-USDT"),
            order: OrderRef::Id(o.id),
        },
    )
    .unwrap();
    assert_eq!(bal(&ex, "alice", "USDT"), (a("1000000"), a("0")));
}

#[test]
fn no_order_without_funds() {
    let mut ex = Exchange::new(settings());
    let err = run(&mut ex, limit("alice", Side::Buy, "50000", "21")).unwrap_err();
    assert_eq!(err.code(), "insufficient_funds");
    let err = run(&mut ex, limit("alice", Side::Sell, "50000", "10.5")).unwrap_err();
    assert_eq!(err.code(), "insufficient_funds");
    assert_eq!(bal(&ex, "alice", "USDT"), (a("1000000"), a("0")));
    let err = run(&mut ex, limit("nobody", Side::Sell, "50000", "1")).unwrap_err();
    assert_eq!(err.code(), "unknown_account");
    let err = run(&mut ex, limit("alice", Side::Sell, "50000.001", "1")).unwrap_err();
    assert_eq!(err.code(), "off_tick");
}

#[test]
fn a_trade_settles_both_sides_with_their_tier_fees() {
    let mut ex = Exchange::new(settings());
    // carol (vip: -0.5 bp maker rebate) sells 1 BTC at 50,000; bob takes it.
    run(&mut ex, limit("carol", Side::Sell, "50000", "1")).unwrap();
    let mut out = Vec::new();
    let Reply::Order(o, fills) = ex
        .apply(
            &limit("bob", Side::Buy, "50100", "1"),
            UnixNanos(2),
            &mut out,
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].price, "50000".parse::<Price>().unwrap());
    assert_eq!(fills[0].fee, a("25")); // 5 bp of 50,000
    // bob: paid 50,000 + 25 fee, got 1 BTC, nothing left locked.
    assert_eq!(bal(&ex, "bob", "USDT"), (a("949975"), a("0")));
    assert_eq!(bal(&ex, "bob", "BTC"), (a("11"), a("0")));
    // carol: got 50,000 + 2.5 rebate.
    assert_eq!(bal(&ex, "carol", "USDT"), (a("1050002.5"), a("0")));
    assert_eq!(bal(&ex, "carol", "BTC"), (a("9"), a("0")));
    assert!(out.iter().any(|e| matches!(e, ExchangeEvent::Trade(_))));
    assert_eq!(
        out.iter()
            .filter(|e| matches!(e, ExchangeEvent::Fill(_)))
            .count(),
        2
    );
}

#[test]
fn market_buy_is_bounded_by_the_band_and_releases_the_rest() {
    let mut ex = Exchange::new(settings());
    run(&mut ex, limit("carol", Side::Sell, "50000", "0.5")).unwrap();
    let Reply::Order(o, fills) = run(
        &mut ex,
        place("bob", Side::Buy, OrderType::Market, None, "1"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(fills.len(), 1);
    assert_eq!(o.status, OrderStatus::Expired, "IOC rest of a market order");
    assert_eq!(o.filled, "0.5".parse::<Quantity>().unwrap());
    // 25,000 + 12.5 fee spent; nothing stays locked.
    assert_eq!(bal(&ex, "bob", "USDT"), (a("974987.5"), a("0")));
}

#[test]
fn client_order_ids_are_unique_among_open_orders() {
    let mut ex = Exchange::new(settings());
    let mut cmd = limit("alice", Side::Buy, "100", "1");
    if let Command::Place(p) = &mut cmd {
        p.client_order_id = Some("mine".into());
    }
    run(&mut ex, cmd.clone()).unwrap();
    assert_eq!(
        run(&mut ex, cmd.clone()).unwrap_err().code(),
        "duplicate_client_order_id"
    );
    run(
        &mut ex,
        Command::Cancel {
            account: AccountId::new("alice"),
            instrument: InstrumentId::new("BTC-USDT"),
            order: OrderRef::Client("mine".into()),
        },
    )
    .unwrap();
    run(&mut ex, cmd).unwrap();
}

// ---------------------------------------------------------------- properties

fn arb_cmd() -> impl Strategy<Value = Command> {
    let account = prop_oneof![Just("alice"), Just("bob"), Just("carol")];
    prop_oneof![
        6 => (account.clone(), any::<bool>(), 0u8..10, -30i64..30, 1i64..300, 0u8..4).prop_map(
            |(acct, buy, kind, ticks, lots, tif)| {
                let side = if buy { Side::Buy } else { Side::Sell };
                let price = Price::from_raw((50_000 * 100 + ticks * 10) * 1_000_000);
                let order_type = match kind {
                    0 => OrderType::Market,
                    1 => OrderType::Stop,
                    2 => OrderType::StopLimit,
                    _ => OrderType::Limit,
                };
                let stop = Price::from_raw(price.raw() + if buy { 5 } else { -5 } * 10_000_000);
                Command::Place(PlaceOrder {
                    account: AccountId::new(acct),
                    instrument: InstrumentId::new("BTC-USDT"),
                    client_order_id: None,
                    side,
                    order_type,
                    time_in_force: match tif {
                        0 => TimeInForce::Ioc,
                        1 => TimeInForce::Fok,
                        2 => TimeInForce::PostOnly,
                        _ => TimeInForce::Gtc,
                    },
                    price: matches!(order_type, OrderType::Limit | OrderType::StopLimit)
                        .then_some(price),
                    stop_price: matches!(order_type, OrderType::Stop | OrderType::StopLimit)
                        .then_some(stop),
                    quantity: Quantity::from_raw(lots * 1_000_000),
                    expire_at: None,
                    stp: None,
                })
            }
        ),
        2 => (account.clone(), 1u64..100).prop_map(|(acct, id)| Command::Cancel {
            account: AccountId::new(acct),
            instrument: InstrumentId::new("BTC-USDT"),
            order: OrderRef::Id(OrderId(id)),
        }),
        2 => (account.clone(), 1u64..100, proptest::option::of(-30i64..30), proptest::option::of(1i64..300))
            .prop_map(|(acct, id, ticks, lots)| Command::Amend {
                account: AccountId::new(acct),
                instrument: InstrumentId::new("BTC-USDT"),
                order: OrderRef::Id(OrderId(id)),
                price: ticks.map(|t| Price::from_raw((50_000 * 100 + t * 10) * 1_000_000)),
                quantity: lots.map(|l| Quantity::from_raw(l * 1_000_000)),
            }),
        1 => account.prop_map(|acct| Command::CancelAll {
            account: AccountId::new(acct),
            instrument: None,
        }),
    ]
}

/// Money is conserved and every lock is backed by an open order.
fn check_books(ex: &Exchange, fees: Amount) -> Result<(), TestCaseError> {
    let usdt = AssetCode::new("USDT");
    let btc = AssetCode::new("BTC");
    let mut total_usdt = Amount::ZERO;
    let mut total_btc = Amount::ZERO;
    for acct in ["alice", "bob", "carol"] {
        let id = AccountId::new(acct);
        let mut locked: BTreeMap<AssetCode, Amount> = BTreeMap::new();
        for o in ex.open_orders(&id, None) {
            let open = ex.open_order(o.id).unwrap();
            *locked.entry(open.reserve_asset.clone()).or_default() += open.reserved;
        }
        for asset in [&usdt, &btc] {
            let b = ex.ledger().get(&id, asset);
            prop_assert!(
                b.free >= Amount::ZERO && b.locked >= Amount::ZERO,
                "{acct} {asset}: {b:?}"
            );
            prop_assert_eq!(
                b.locked,
                locked.get(asset).copied().unwrap_or_default(),
                "{} {} lock",
                acct,
                asset
            );
        }
        total_usdt += ex.ledger().get(&id, &usdt).total();
        total_btc += ex.ledger().get(&id, &btc).total();
    }
    prop_assert_eq!(total_btc, a("30"));
    prop_assert_eq!(total_usdt + fees, a("3000000"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn money_is_conserved_and_locks_match_open_orders(cmds in prop::collection::vec(arb_cmd(), 1..150)) {
        let mut ex = Exchange::new(settings());
        let mut fees = Amount::ZERO;
        for (i, c) in cmds.iter().enumerate() {
            let mut out = Vec::new();
            let _ = ex.apply(c, UnixNanos(i as i64), &mut out);
            for e in &out {
                if let ExchangeEvent::Fill(f) = e {
                    fees += f.fee;
                }
            }
            check_books(&ex, fees)?;
        }
    }

    #[test]
    fn a_snapshot_restores_the_same_exchange(
        cmds in prop::collection::vec(arb_cmd(), 2..120),
        cut in 0.0f64..1.0,
    ) {
        let k = ((cmds.len() as f64) * cut) as usize;
        let mut original = Exchange::new(settings());
        for (i, c) in cmds[..k].iter().enumerate() {
            let _ = original.apply(c, UnixNanos(i as i64), &mut Vec::new());
        }
        let mut copy = Exchange::restore(settings(), original.export());
        prop_assert_eq!(copy.export(), original.export());
        for (i, c) in cmds[k..].iter().enumerate() {
            let t = UnixNanos((k + i) as i64);
            let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
            let ra = original.apply(c, t, &mut a_out);
            let rb = copy.apply(c, t, &mut b_out);
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(a_out, b_out);
        }
        prop_assert_eq!(copy.export(), original.export());
    }
}
