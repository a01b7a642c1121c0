//! The built-in strategies and their TOML configuration.
//!
//! ```toml
//! [[strategies]]
//! id = "mm-btc"
//! account = "desk-mm"
//! kind = "market_maker"
//! instrument = "BTC-USDT"
//! half_spread_bps = 5
//! size = "0.05"
//! max_inventory = "1"
//! ```
//!
//! Each kind's parameters are documented on its struct, with defaults
//! where a sensible one exists; unknown keys are refused.

mod ma_crossover;
mod market_maker;
mod mean_reversion;
mod peg_arb;

pub use ma_crossover::{MaCrossover, MaCrossoverParams};
pub use market_maker::{MarketMaker, MarketMakerParams};
pub use mean_reversion::{MeanReversion, MeanReversionParams};
pub use peg_arb::{PegArb, PegArbParams, PegLeg};

use serde::{Deserialize, Serialize};
use tradestack_model::{AccountId, InstrumentId, Price, StrategyId};

use crate::strategy::{MarketState, Strategy};

/// One configured strategy: `[[strategies]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyConfig {
    /// Unique id; it prefixes the strategy's client order ids.
    pub id: StrategyId,
    /// The account it trades for.
    pub account: AccountId,
    /// The kind and its parameters.
    #[serde(flatten)]
    pub params: StrategyParams,
}

/// A built-in strategy kind with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StrategyParams {
    /// Inventory-skewed market maker.
    MarketMaker(MarketMakerParams),
    /// Moving-average crossover (momentum).
    MaCrossover(MaCrossoverParams),
    /// Mean reversion on the z-score of a two-leg spread.
    MeanReversion(MeanReversionParams),
    /// Stablecoin peg arbitrage.
    PegArb(PegArbParams),
}

impl StrategyParams {
    /// The strategy these parameters describe.
    pub fn build(&self) -> Box<dyn Strategy> {
        match self {
            StrategyParams::MarketMaker(p) => Box::new(MarketMaker::new(p.clone())),
            StrategyParams::MaCrossover(p) => Box::new(MaCrossover::new(p.clone())),
            StrategyParams::MeanReversion(p) => Box::new(MeanReversion::new(p.clone())),
            StrategyParams::PegArb(p) => Box::new(PegArb::new(p.clone())),
        }
    }

    /// The instruments the strategy trades.
    pub fn instruments(&self) -> Vec<InstrumentId> {
        match self {
            StrategyParams::MarketMaker(p) => vec![p.instrument.clone()],
            StrategyParams::MaCrossover(p) => vec![p.instrument.clone()],
            StrategyParams::MeanReversion(p) => vec![p.leg_a.clone(), p.leg_b.clone()],
            StrategyParams::PegArb(p) => p.legs.iter().map(|l| l.instrument.clone()).collect(),
        }
    }

    /// The kind's name as written in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            StrategyParams::MarketMaker(_) => "market_maker",
            StrategyParams::MaCrossover(_) => "ma_crossover",
            StrategyParams::MeanReversion(_) => "mean_reversion",
            StrategyParams::PegArb(_) => "peg_arb",
        }
    }
}

/// Parses `[[strategies]]` entries. Errors name the entry and the problem;
/// two entries with one id are refused.
pub fn from_tables(tables: &[toml::Table]) -> Result<Vec<StrategyConfig>, String> {
    let mut out: Vec<StrategyConfig> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let name = t.get("id").and_then(|v| v.as_str()).map_or_else(
            || format!("strategies[{i}]"),
            |id| format!("strategies[{i}] ({id})"),
        );
        let s: StrategyConfig = toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| format!("{name}: {}", e.message()))?;
        if out.iter().any(|o| o.id == s.id) {
            return Err(format!("{name}: the id {} is used twice", s.id));
        }
        out.push(s);
    }
    Ok(out)
}

/// Fair value of `instrument` (`BASE-QUOTE`) from the reference prices
/// (`BASE-USD` / `QUOTE-USD`, USD itself being 1), else the exchange mid.
pub fn fair_value(market: &MarketState, instrument: &InstrumentId) -> Option<Price> {
    let reference = |asset: &str| -> Option<i128> {
        if asset == "USD" {
            return Some(100_000_000);
        }
        market
            .reference
            .get(&InstrumentId::new(format!("{asset}-USD")))
            .map(|p| i128::from(p.raw()))
    };
    let from_reference = instrument.as_str().split_once('-').and_then(|(b, q)| {
        let (b, q) = (reference(b)?, reference(q)?);
        (q > 0).then(|| b * 100_000_000 / q)
    });
    match from_reference.and_then(|r| i64::try_from(r).ok()) {
        Some(raw) => Some(Price::from_raw(raw)),
        None => market.mid(instrument),
    }
}

/// `price` moved by `bps` basis points (negative: down), on `tick`,
/// rounded away from the touch (bids down, asks up) so a quote never
/// crosses by rounding.
pub fn offset(price: Price, bps: i64, tick: Price, round_up: bool) -> Price {
    let tick = i128::from(tick.raw().max(1));
    let raw = i128::from(price.raw()) * (10_000 + i128::from(bps)) / 10_000;
    let snapped = if round_up {
        (raw + tick - 1).div_euclid(tick) * tick
    } else {
        raw.div_euclid(tick) * tick
    };
    Price::from_raw(i64::try_from(snapped.max(tick)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        strategies: Vec<StrategyConfig>,
    }

    #[test]
    fn every_kind_parses_from_toml_and_typos_are_refused() {
        let text = r#"
            [[strategies]]
            id = "mm"
            account = "a"
            kind = "market_maker"
            instrument = "BTC-USDT"
            size = "0.05"
            max_inventory = "1"

            [[strategies]]
            id = "mom"
            account = "a"
            kind = "ma_crossover"
            instrument = "ETH-USDT"
            fast = 5
            slow = 20
            size = "1"

            [[strategies]]
            id = "mr"
            account = "a"
            kind = "mean_reversion"
            leg_a = "BTC-USDT"
            leg_b = "ETH-USDT"
            hedge_ratio = "18"
            size = "0.01"

            [[strategies]]
            id = "peg"
            account = "a"
            kind = "peg_arb"
            legs = [{ instrument = "USDT-USD" }, { instrument = "USDC-USDT" }]
            size = "1000"
            max_position = "10000"
        "#;
        let f: File = toml::from_str(text).unwrap();
        let kinds: Vec<&str> = f.strategies.iter().map(|s| s.params.kind()).collect();
        assert_eq!(
            kinds,
            ["market_maker", "ma_crossover", "mean_reversion", "peg_arb"]
        );
        let bad = text
            .replace("half_spread_bps", "x")
            .replace("size = \"0.05\"", "sise = \"0.05\"");
        let err = toml::from_str::<File>(&bad)
            .err()
            .expect("typo refused")
            .to_string();
        assert!(err.contains("sise"), "{err}");
    }

    #[test]
    fn offsets_round_away_from_the_touch() {
        let p: Price = "100".parse().unwrap();
        let tick: Price = "0.01".parse().unwrap();
        assert_eq!(offset(p, -5, tick, false).to_string(), "99.95");
        assert_eq!(offset(p, 5, tick, true).to_string(), "100.05");
        let odd: Price = "100.003".parse().unwrap();
        assert_eq!(offset(odd, 0, tick, false).to_string(), "100");
        assert_eq!(offset(odd, 0, tick, true).to_string(), "100.01");
    }
}
