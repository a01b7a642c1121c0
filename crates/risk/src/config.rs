//! Risk limits: `[risk]` in the configuration file. Every limit is
//! optional; an absent one is not checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_config::ConfigDuration;
use tradestack_model::{AccountId, Amount, AssetCode, InstrumentId, Quantity};

/// `[risk]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Pre-trade checks, in the order path.
    pub pretrade: PreTradeLimits,
    /// Post-trade rules.
    pub rules: RuleLimits,
    /// Where alerts are sent.
    pub delivery: crate::delivery::DeliveryConfig,
}

impl RiskConfig {
    /// Parses the `[risk]` table; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<RiskConfig, String> {
        serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| format!("risk.{}: {}", e.path(), e.inner().message()))
    }
}

/// `[risk.pretrade]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreTradeLimits {
    /// Largest order quantity, for every instrument not in `max_order_qty_per`.
    pub max_order_qty: Option<Quantity>,
    /// Largest order quantity per instrument.
    pub max_order_qty_per: BTreeMap<InstrumentId, Quantity>,
    /// Largest order value, in the quote asset.
    pub max_order_notional: Option<Amount>,
    /// Limit prices at most this far from the reference price (else the mid), basis points.
    pub price_band_bps: Option<i64>,
    /// Most open orders per strategy.
    pub max_open_orders: Option<u32>,
    /// Most orders a strategy may send in any one second.
    pub max_orders_per_second: Option<u32>,
}

/// `[risk.rules]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleLimits {
    /// Largest position per instrument (absolute), per strategy: above it, REDUCING.
    pub position_limit: BTreeMap<InstrumentId, Quantity>,
    /// Largest gross exposure (Σ |USD value| over strategies) per asset: above it, REDUCING.
    pub gross_exposure_usd: Option<Amount>,
    /// Largest net exposure (|Σ USD value|) per asset and account: above it, REDUCING.
    pub net_exposure_usd: Option<Amount>,
    /// Largest share of one asset in an account's gross exposure, basis points (warning).
    pub concentration_bps: Option<i64>,
    /// Largest fall of a strategy's P&L from its peak, in USD: above it, HALTED.
    pub max_drawdown_usd: Option<Amount>,
    /// Largest loss of a strategy since the UTC day began, in USD: above it, HALTED.
    pub daily_loss_usd: Option<Amount>,
    /// The stablecoins watched for a depeg.
    pub stablecoins: Vec<AssetCode>,
    /// A stablecoin this far from 1 USD (reference) is depegging, basis points.
    pub depeg_bps: i64,
    /// Largest exposure to a depegging stablecoin, USD: above it, REDUCING.
    pub depeg_exposure_usd: Option<Amount>,
    /// An instrument with no quote for this long is stale (warning).
    pub stale_after: Option<ConfigDuration>,
    /// A quote whose mid is this far from the reference price is suspect
    /// (corrupted or off-market data), basis points (warning).
    pub feed_deviation_bps: Option<i64>,
    /// Largest share of refused orders over `health_window`, basis points.
    pub exchange_error_bps: Option<i64>,
    /// Largest p99 order round trip over `health_window`.
    pub exchange_p99: Option<ConfigDuration>,
    /// The window exchange health is judged over.
    pub health_window: ConfigDuration,
    /// Orders a second that, held for `runaway_for`, halt a strategy.
    pub runaway_orders_per_second: Option<u32>,
    /// How long the runaway rate must last.
    pub runaway_for: ConfigDuration,
    /// Accounts with one beneficial owner: trades between them are wash trades.
    pub owner_groups: BTreeMap<String, Vec<AccountId>>,
    /// How often the rules run.
    pub evaluate_every: ConfigDuration,
}

impl Default for RuleLimits {
    fn default() -> Self {
        RuleLimits {
            position_limit: BTreeMap::new(),
            gross_exposure_usd: None,
            net_exposure_usd: None,
            concentration_bps: None,
            max_drawdown_usd: None,
            daily_loss_usd: None,
            stablecoins: ["USDT", "USDC"].into_iter().map(AssetCode::new).collect(),
            depeg_bps: 200,
            depeg_exposure_usd: None,
            stale_after: None,
            feed_deviation_bps: None,
            exchange_error_bps: None,
            exchange_p99: None,
            health_window: ConfigDuration::from_secs(60),
            runaway_orders_per_second: None,
            runaway_for: ConfigDuration::from_secs(3),
            owner_groups: BTreeMap::new(),
            evaluate_every: ConfigDuration::from_secs(1),
        }
    }
}
