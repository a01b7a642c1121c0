//! Settlement of a simulated day into custody, reconciled three ways, and
//! the chaos hooks.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use tradestack_custody::{
    Custodian, CustodyChaos, CustodyConfig, Selector, SettlementCycle, Status, WalletKind,
};
use tradestack_exchange::ExchangeEvent;

use tradestack_model::{AccountId, Amount, AssetCode, Fill, Instrument, Nanos, UnixNanos};
use tradestack_trading::{Session, SessionConfig, StrategyConfig};

const START: UnixNanos = UnixNanos(1_767_225_600_000_000_000); // 2026-01-01T00:00:00Z
const HOUR: i64 = 3_600_000_000_000;

fn desk() -> Vec<StrategyConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        strategies: Vec<StrategyConfig>,
    }
    toml::from_str::<File>(
        r#"
        [[strategies]]
        id = "mm-btc"
        account = "desk-mm"
        kind = "market_maker"
        instrument = "BTC-USDT"
        size = "0.05"
        max_inventory = "0.5"

        [[strategies]]
        id = "peg"
        account = "desk-peg"
        kind = "peg_arb"
        legs = [{ instrument = "USDT-USD" }, { instrument = "USDC-USDT" }]
        threshold_bps = 5
        size = "2000"
        max_position = "20000"
        "#,
    )
    .unwrap()
    .strategies
}

/// A day of the desk trading, run once for all the tests: its fills and
/// the exchange's balances at the end.
struct Day {
    fills: Vec<Fill>,
    balances: BTreeMap<(AccountId, AssetCode), Amount>,
    instruments: Vec<Instrument>,
    accounts: Vec<AccountId>,
    funding: Amount,
}

fn day() -> &'static Day {
    static DAY: OnceLock<Day> = OnceLock::new();
    DAY.get_or_init(|| {
        let config = SessionConfig {
            strategies: desk(),
            ..SessionConfig::default()
        };
        let mut s = Session::new(&config, START, 17).unwrap();
        let instruments: Vec<Instrument> = s.sim.exchange.instruments().cloned().collect();
        let accounts: Vec<AccountId> = s.engine.strategies().map(|(_, a)| a.clone()).collect();
        let mut fills = Vec::new();
        s.run_until(UnixNanos(START.0 + 24 * HOUR), |_, e| {
            if let ExchangeEvent::Fill(f) = e
                && accounts.contains(&f.account)
            {
                fills.push(f.clone());
            }
        });
        let mut balances = BTreeMap::new();
        for a in &accounts {
            for asset in assets(&instruments) {
                let b = s.sim.exchange.ledger().get(a, &asset).total();
                balances.insert((a.clone(), asset), b);
            }
        }
        Day {
            fills,
            balances,
            instruments,
            accounts,
            funding: config.funding,
        }
    })
}

fn assets(instruments: &[Instrument]) -> Vec<AssetCode> {
    tradestack_model::assets_of(instruments)
}

/// A custodian holding the opening balances of the day's accounts.
fn custodian(d: &Day, cycle: SettlementCycle) -> Custodian {
    let mut c = Custodian::new(
        CustodyConfig {
            cycle,
            ..CustodyConfig::default()
        },
        d.instruments.iter(),
        5,
    );
    for a in &d.accounts {
        for asset in assets(&d.instruments) {
            c.open_balance(a, &asset, d.funding, START);
        }
    }
    c
}

fn exchange(d: &Day) -> impl Fn(&AccountId, &AssetCode) -> Amount + '_ {
    |a, asset| {
        d.balances
            .get(&(a.clone(), asset.clone()))
            .copied()
            .unwrap_or_default()
    }
}

#[test]
fn after_settlement_custody_reconciles_with_the_exchange() {
    let d = day();
    let mut c = custodian(d, SettlementCycle::Days(1));
    assert!(d.fills.len() > 100, "{} fills", d.fills.len());
    for f in &d.fills {
        c.on_fill(f).unwrap();
        // A fill seen twice (a redelivery) counts once.
        c.on_fill(f).unwrap();
    }
    let exchange = exchange(d);
    // Before the cycle: nothing instructed, everything in flight, but consistent.
    c.step(UnixNanos(START.0 + 23 * HOUR));
    assert_eq!(
        c.instructions().count(),
        0,
        "T+1: the trade date is still open"
    );
    assert!(
        c.reconcile(&exchange).is_empty(),
        "{:#?}",
        c.reconcile(&exchange)
    );
    // The day closes: instructions netted per account and asset, due a day later.
    c.step(UnixNanos(START.0 + 25 * HOUR));
    let n = c.instructions().count();
    assert!(n > 0 && n <= 2 * 6, "one per account and asset: {n}");
    assert!(c.instructions().all(|i| i.status == Status::Pending));
    // Settled at T+1: custody equals the exchange exactly.
    c.step(UnixNanos(START.0 + 48 * HOUR));
    assert!(c.instructions().all(|i| i.status == Status::Settled));
    assert!(c.reconcile(&exchange).is_empty());
    for a in &d.accounts {
        for asset in assets(&d.instruments) {
            assert_eq!(c.total(a, &asset), exchange(a, &asset), "{a} {asset}");
        }
    }
    // Settling again changes nothing: nothing is settled twice.
    let audit = c.audit().len();
    c.step(UnixNanos(START.0 + 72 * HOUR));
    assert_eq!(c.audit().len(), audit);
}

#[test]
fn failed_and_delayed_settlements_show_as_breaks_until_retried() {
    let d = day();
    let mut c = custodian(d, SettlementCycle::Immediate);
    c.set_chaos(CustodyChaos {
        fail: vec![Selector {
            asset: Some(AssetCode::new("BTC")),
            ..Selector::default()
        }],
        delay: vec![(
            Selector {
                asset: Some(AssetCode::new("USDT")),
                ..Selector::default()
            },
            Nanos(HOUR),
        )],
        freeze_withdrawals: true,
    });
    for f in &d.fills {
        c.on_fill(f).unwrap();
    }
    let now = UnixNanos(START.0 + 24 * HOUR);
    c.step(now);
    let exchange = exchange(d);
    let breaks = c.reconcile(&exchange);
    let broken: Vec<String> = breaks
        .iter()
        .map(|b| format!("{} {}", b.account, b.asset))
        .collect();
    assert_eq!(broken, ["desk-mm BTC"], "{breaks:#?}");
    assert_eq!(breaks[0].kind, ["custody"]);
    assert!(
        c.instructions()
            .any(|i| i.asset.as_str() == "USDT" && matches!(i.status, Status::Delayed { .. })),
        "USDT delayed"
    );
    // Withdrawals are frozen.
    let mm = AccountId::new("desk-mm");
    assert!(
        c.withdraw(&mm, &AssetCode::new("USDT"), Amount::from_units(1), now)
            .is_err()
    );
    // Clear the chaos, retry: settled, reconciled.
    c.set_chaos(CustodyChaos::default());
    let failed: Vec<u64> = c
        .instructions()
        .filter(|i| matches!(i.status, Status::Failed { .. }))
        .map(|i| i.id)
        .collect();
    for id in failed {
        assert!(c.retry(id, now));
    }
    c.step(now + Nanos(2 * HOUR));
    assert!(
        c.reconcile(&exchange).is_empty(),
        "{:#?}",
        c.reconcile(&exchange)
    );
    assert!(c.balance(&mm, &AssetCode::new("BTC"), WalletKind::Hot) > Amount::ZERO);
}

#[test]
fn deposits_and_withdrawals_wait_for_their_confirmations() {
    let mut c = Custodian::new(CustodyConfig::default(), std::iter::empty(), 1);
    let a = AccountId::new("a");
    let btc = AssetCode::new("BTC");
    let t0 = START;
    c.deposit(&a, &btc, Amount::from_units(2), t0).unwrap();
    c.step(t0 + Nanos::from_secs(29));
    assert_eq!(
        c.balance(&a, &btc, WalletKind::Hot),
        Amount::ZERO,
        "3 confirmations of 10 s"
    );
    c.step(t0 + Nanos::from_secs(30));
    assert_eq!(c.balance(&a, &btc, WalletKind::Hot), Amount::from_units(2));
    c.transfer(
        (&a, WalletKind::Hot),
        (&a, WalletKind::Cold),
        &btc,
        Amount::from_units(1),
        t0,
    )
    .unwrap();
    assert!(
        c.withdraw(&a, &btc, Amount::from_units(2), t0).is_err(),
        "only 1 is hot"
    );
    c.withdraw(&a, &btc, Amount::from_units(1), t0).unwrap();
    assert_eq!(c.total(&a, &btc), Amount::from_units(1));
    assert_eq!(c.next_due(), Some(t0 + Nanos::from_secs(30)));
}
