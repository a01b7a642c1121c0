//! An inventory-skewed market maker.

use serde::{Deserialize, Serialize};
use tradestack_config::ConfigDuration;
use tradestack_model::{InstrumentId, Nanos, Quantity, Side, TimeInForce};

use super::{fair_value, offset};
use crate::strategy::{Strategy, StrategyContext, Timer};

/// Parameters of `kind = "market_maker"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketMakerParams {
    /// The instrument quoted.
    pub instrument: InstrumentId,
    /// Distance of each quote from fair value, basis points (default 5).
    #[serde(default = "default_half_spread")]
    pub half_spread_bps: i64,
    /// Size of each quote.
    pub size: Quantity,
    /// No bid at or above this long position, no ask at or below its negative.
    pub max_inventory: Quantity,
    /// How far both quotes shift against the inventory at `max_inventory`,
    /// basis points (default 10): long, they move down to sell more.
    #[serde(default = "default_skew")]
    pub skew_bps: i64,
    /// How often quotes are replaced (default "2s").
    #[serde(default = "default_refresh")]
    pub refresh: ConfigDuration,
}

fn default_half_spread() -> i64 {
    5
}
fn default_skew() -> i64 {
    10
}
fn default_refresh() -> ConfigDuration {
    ConfigDuration::from_secs(2)
}

/// Quotes a bid and an ask around fair value (the reference price, else
/// the mid), skewed against its inventory, replacing them every `refresh`.
pub struct MarketMaker {
    p: MarketMakerParams,
}

impl MarketMaker {
    /// A market maker with `p`.
    pub fn new(p: MarketMakerParams) -> Self {
        MarketMaker { p }
    }

    fn requote(&mut self, ctx: &mut StrategyContext<'_>) {
        let id = self.p.instrument.clone();
        if ctx.open_orders().any(|o| o.instrument == id) {
            ctx.cancel_all(Some(&id));
        }
        let Some(fair) = fair_value(ctx.market, &id) else {
            return;
        };
        let Some(tick) = ctx.market.instruments.get(&id).map(|i| i.tick_size) else {
            return;
        };
        let inventory = i128::from(ctx.position(&id));
        let max = i128::from(self.p.max_inventory.raw().max(1));
        let skew = (i128::from(self.p.skew_bps) * inventory / max) as i64;
        let half = self.p.half_spread_bps;
        if inventory < max {
            let bid = offset(fair, -half - skew, tick, false);
            ctx.limit(&id, Side::Buy, bid, self.p.size, TimeInForce::Gtc);
        }
        if inventory > -max {
            let ask = offset(fair, half - skew, tick, true);
            ctx.limit(&id, Side::Sell, ask, self.p.size, TimeInForce::Gtc);
        }
    }
}

impl Strategy for MarketMaker {
    fn on_start(&mut self, ctx: &mut StrategyContext<'_>) {
        let period = Nanos::from_std(self.p.refresh.as_std());
        ctx.set_periodic("refresh", period);
    }

    fn on_timer(&mut self, _timer: &Timer, ctx: &mut StrategyContext<'_>) {
        self.requote(ctx);
    }
}
