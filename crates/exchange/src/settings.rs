//! Exchange settings: instruments, fee tiers and seeded accounts, read from
//! the `[exchange]` table of `tradestack.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_matching::{FeeRates, StpMode};
use tradestack_model::{AccountId, Amount, AssetCode, Instrument, Price, Quantity, Rate};

/// A fee tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTier {
    /// Maker rate (negative: rebate).
    pub maker: Rate,
    /// Taker rate.
    pub taker: Rate,
}

impl From<FeeTier> for FeeRates {
    fn from(t: FeeTier) -> Self {
        FeeRates {
            maker: t.maker,
            taker: t.taker,
        }
    }
}

/// An account created at start with balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    /// Account id.
    pub id: AccountId,
    /// Fee tier name.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Self-trade prevention for its orders unless an order says otherwise.
    #[serde(default)]
    pub stp: StpMode,
    /// Opening balances.
    #[serde(default)]
    pub balances: BTreeMap<AssetCode, Amount>,
}

fn default_tier() -> String {
    "default".into()
}

/// Everything the exchange engine needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSettings {
    /// Tradable instruments with their rules.
    pub instruments: Vec<Instrument>,
    /// Fee tiers by name; `default` applies to accounts without one.
    pub fee_tiers: BTreeMap<String, FeeTier>,
    /// Market orders trade at most this far past the best price, in bps.
    pub market_band_bps: u32,
    /// Accounts created at start.
    pub accounts: Vec<AccountSeed>,
}

fn p(s: &str) -> Price {
    s.parse().expect("literal price")
}

fn q(s: &str) -> Quantity {
    s.parse().expect("literal quantity")
}

fn spot(id: &str, tick: &str, lot: &str, min_notional: &str) -> Instrument {
    let (base, quote) = id.split_once('-').expect("BASE-QUOTE");
    let mut i = Instrument::spot(id, base, quote, p(tick), q(lot));
    i.min_notional = min_notional.parse().expect("literal amount");
    i.max_qty = q("9000000");
    i
}

impl Default for ExchangeSettings {
    /// Spot pairs with tick and lot sizes like Binance's (Kraken's for
    /// USDT-USD), a default tier of 2 bp maker and 5 bp taker, and no accounts.
    fn default() -> Self {
        let mut tiers = BTreeMap::new();
        tiers.insert(
            "default".into(),
            FeeTier {
                maker: Rate::from_raw(20_000),
                taker: Rate::from_raw(50_000),
            },
        );
        tiers.insert(
            "vip".into(),
            FeeTier {
                maker: Rate::from_raw(-5_000),
                taker: Rate::from_raw(20_000),
            },
        );
        ExchangeSettings {
            instruments: vec![
                spot("BTC-USDT", "0.01", "0.00001", "5"),
                spot("ETH-USDT", "0.01", "0.0001", "5"),
                spot("SOL-USDT", "0.01", "0.001", "5"),
                spot("USDT-USD", "0.0001", "0.01", "1"),
                spot("USDC-USDT", "0.0001", "1", "5"),
            ],
            fee_tiers: tiers,
            market_band_bps: 500,
            accounts: Vec::new(),
        }
    }
}
