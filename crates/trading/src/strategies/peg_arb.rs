//! Stablecoin peg arbitrage.

use serde::{Deserialize, Serialize};
use tradestack_model::{InstrumentId, Price, Quantity, Quote, Side, TimeInForce};

use crate::strategy::{Strategy, StrategyContext};

/// One pegged pair the strategy trades.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PegLeg {
    /// A stablecoin against USD or another stablecoin, e.g. `USDT-USD`.
    pub instrument: InstrumentId,
    /// The price the pair should trade at (default 1).
    #[serde(default = "one")]
    pub peg: Price,
}

fn one() -> Price {
    Price::ONE
}

/// Parameters of `kind = "peg_arb"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PegArbParams {
    /// The pairs, e.g. `USDT-USD` and `USDC-USDT`.
    pub legs: Vec<PegLeg>,
    /// Trade when the touch is this far through the peg, basis points (default 20).
    #[serde(default = "default_threshold")]
    pub threshold_bps: i64,
    /// Size of each order.
    pub size: Quantity,
    /// The largest position, long or short, per pair.
    pub max_position: Quantity,
}

fn default_threshold() -> i64 {
    20
}

/// Buys a stablecoin offered more than `threshold_bps` under its peg and
/// sells one bid that far over it, betting on the peg (IOC at the touch),
/// up to `max_position`; unwinds at the peg or better.
pub struct PegArb {
    p: PegArbParams,
}

impl PegArb {
    /// A peg arbitrageur with `p`.
    pub fn new(p: PegArbParams) -> Self {
        PegArb { p }
    }
}

impl Strategy for PegArb {
    fn on_quote(&mut self, q: &Quote, ctx: &mut StrategyContext<'_>) {
        let Some(leg) = self.p.legs.iter().find(|l| l.instrument == q.instrument) else {
            return;
        };
        if ctx.open_orders().any(|o| o.instrument == q.instrument) {
            return;
        }
        let peg = i128::from(leg.peg.raw());
        let band = peg * i128::from(self.p.threshold_bps) / 10_000;
        let (bid, ask) = (i128::from(q.bid.raw()), i128::from(q.ask.raw()));
        let position = ctx.position(&q.instrument);
        let max = self.p.max_position.raw();
        let size = self.p.size.raw();
        let order = if ask > 0 && ask < peg - band && position < max {
            Some((Side::Buy, q.ask, size.min(max - position)))
        } else if bid > peg + band && position > -max {
            Some((Side::Sell, q.bid, size.min(max + position)))
        } else if position > 0 && bid >= peg {
            Some((Side::Sell, q.bid, position.min(size)))
        } else if position < 0 && ask > 0 && ask <= peg {
            Some((Side::Buy, q.ask, (-position).min(size)))
        } else {
            None
        };
        if let Some((side, price, qty)) = order.filter(|o| o.2 > 0) {
            let lot = ctx
                .market
                .instruments
                .get(&q.instrument)
                .map(|i| i.lot_size)
                .unwrap_or(Quantity::from_raw(1));
            let qty = Quantity::from_raw(qty).round_down_to(lot);
            if !qty.is_zero() {
                ctx.limit(&q.instrument, side, price, qty, TimeInForce::Ioc);
            }
        }
    }
}
