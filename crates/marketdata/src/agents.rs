//! Trading agents that make real order flow on the exchange, in the style
//! of ABIDES: market makers, noise, momentum and value traders.
//!
//! An agent is pure: on each wake-up it looks at a [`MarketView`] and
//! appends exchange [`Command`]s. The driver (simulated time in
//! [`crate::sim`], or the live service) gathers the view and submits the
//! commands, so the same agents run in both.

use serde::{Deserialize, Serialize};
use tradestack_exchange::{Command, PlaceOrder};
use tradestack_kernel::DetRng;
use tradestack_model::{
    AccountId, InstrumentId, Nanos, OrderType, Price, Quantity, Side, TimeInForce, UnixNanos,
};

/// What an agent sees when it wakes.
#[derive(Clone, Debug)]
pub struct MarketView {
    /// Current time.
    pub now: UnixNanos,
    /// The instrument's fair value from the reference process.
    pub reference: Price,
    /// Best bid price and size.
    pub best_bid: Option<(Price, Quantity)>,
    /// Best ask price and size.
    pub best_ask: Option<(Price, Quantity)>,
    /// Price tick.
    pub tick: Price,
    /// Quantity step.
    pub lot: Quantity,
    /// The agent's net position in the base asset (raw 10^-8 units, signed).
    pub inventory: i64,
}

impl MarketView {
    /// Mid price, or the reference when one side is empty.
    pub fn mid(&self) -> Price {
        match (self.best_bid, self.best_ask) {
            (Some((b, _)), Some((a, _))) => Price((b.0 + a.0) / 2),
            _ => self.reference,
        }
    }

    /// `p` moved by `bps` basis points (negative moves down), on the tick
    /// grid: rounded down for bids, up for asks.
    pub fn offset(&self, p: Price, bps: i64, side: Side) -> Price {
        let raw = i128::from(p.0) * i128::from(10_000 + bps) / 10_000;
        let tick = i128::from(self.tick.0.max(1));
        let snapped = match side {
            Side::Buy => raw.div_euclid(tick) * tick,
            Side::Sell => (raw + tick - 1).div_euclid(tick) * tick,
        };
        Price(i64::try_from(snapped.max(tick)).unwrap_or(i64::MAX))
    }

    /// `q` on the lot grid, at least one lot.
    pub fn lots(&self, q: Quantity) -> Quantity {
        let lot = self.lot.0.max(1);
        Quantity((q.0 / lot).max(1) * lot)
    }
}

/// The agent kinds, as configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentKind {
    /// Quotes both sides around the reference, skewed against its inventory.
    MarketMaker {
        /// Half-spread of the innermost level, basis points.
        half_spread_bps: i64,
        /// Levels per side.
        levels: u32,
        /// Distance between levels, basis points.
        level_step_bps: i64,
        /// Size per level.
        size: Quantity,
        /// Inventory at which the quotes are skewed by one half-spread.
        max_inventory: Quantity,
    },
    /// Random marketable orders.
    Noise {
        /// Largest order.
        max_size: Quantity,
        /// Chance (per thousand) of trading on a wake-up.
        per_mille: u32,
    },
    /// Buys rising prices and sells falling ones.
    Momentum {
        /// Wake-ups to look back over.
        lookback: usize,
        /// Move that triggers a trade, basis points.
        threshold_bps: i64,
        /// Order size.
        size: Quantity,
    },
    /// Trades the mid towards its (noisy) view of the reference.
    Value {
        /// Mispricing that triggers a trade, basis points.
        threshold_bps: i64,
        /// Noise of its estimate of the reference, basis points.
        noise_bps: i64,
        /// Order size.
        size: Quantity,
    },
}

/// One configured agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// Its exchange account.
    pub account: AccountId,
    /// The instrument it trades.
    pub instrument: InstrumentId,
    /// Time between wake-ups.
    pub every: Nanos,
    /// What it does.
    #[serde(flatten)]
    pub kind: AgentKind,
}

/// A running agent.
#[derive(Clone, Debug)]
pub struct Agent {
    /// Its configuration.
    pub config: AgentConfig,
    history: Vec<Price>,
    /// Market makers: quotes withdrawn (scenario hook).
    pub withdrawn: bool,
}

impl Agent {
    /// An agent from its configuration.
    pub fn new(config: AgentConfig) -> Agent {
        Agent {
            config,
            history: Vec::new(),
            withdrawn: false,
        }
    }

    fn order(&self, side: Side, price: Price, quantity: Quantity, tif: TimeInForce) -> Command {
        Command::Place(PlaceOrder {
            account: self.config.account.clone(),
            instrument: self.config.instrument.clone(),
            client_order_id: None,
            side,
            order_type: OrderType::Limit,
            time_in_force: tif,
            price: Some(price),
            stop_price: None,
            quantity,
            expire_at: None,
            stp: None,
        })
    }

    /// A marketable limit order (IOC through the touch by `slip_bps`).
    fn take(&self, view: &MarketView, side: Side, quantity: Quantity) -> Command {
        let (touch, bps) = match side {
            Side::Buy => (view.best_ask.map_or(view.reference, |a| a.0), 20),
            Side::Sell => (view.best_bid.map_or(view.reference, |b| b.0), -20),
        };
        let price = view.offset(touch, bps, side);
        self.order(side, price, view.lots(quantity), TimeInForce::Ioc)
    }

    /// Wakes the agent: appends its commands.
    pub fn wake(&mut self, view: &MarketView, rng: &mut DetRng, out: &mut Vec<Command>) {
        match self.config.kind.clone() {
            AgentKind::MarketMaker {
                half_spread_bps,
                levels,
                level_step_bps,
                size,
                max_inventory,
            } => {
                out.push(Command::CancelAll {
                    account: self.config.account.clone(),
                    instrument: Some(self.config.instrument.clone()),
                });
                if self.withdrawn {
                    return;
                }
                // Long inventory moves both quotes down, to sell it off.
                let skew = if max_inventory.0 > 0 {
                    (i128::from(view.inventory) * i128::from(half_spread_bps)
                        / i128::from(max_inventory.0))
                    .clamp(
                        -4 * i128::from(half_spread_bps),
                        4 * i128::from(half_spread_bps),
                    ) as i64
                } else {
                    0
                };
                for l in 0..i64::from(levels) {
                    let d = half_spread_bps + l * level_step_bps;
                    let bid = view.offset(view.reference, -d - skew, Side::Buy);
                    let ask = view.offset(view.reference, d - skew, Side::Sell);
                    let q = view.lots(size);
                    out.push(self.order(Side::Buy, bid, q, TimeInForce::PostOnly));
                    out.push(self.order(Side::Sell, ask, q, TimeInForce::PostOnly));
                }
            }
            AgentKind::Noise {
                max_size,
                per_mille,
            } => {
                if rng.gen_range(0..1000u32) >= per_mille {
                    return;
                }
                let side = if rng.chance(1, 2) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let q = Quantity(rng.gen_range(1..=max_size.0.max(1)));
                out.push(self.take(view, side, q));
            }
            AgentKind::Momentum {
                lookback,
                threshold_bps,
                size,
            } => {
                let mid = view.mid();
                self.history.push(mid);
                if self.history.len() > lookback.max(1) + 1 {
                    self.history.remove(0);
                }
                let Some(&old) = self.history.first() else {
                    return;
                };
                if old.0 <= 0 || self.history.len() <= lookback {
                    return;
                }
                let moved = (i128::from(mid.0 - old.0) * 10_000 / i128::from(old.0)) as i64;
                if moved >= threshold_bps {
                    out.push(self.take(view, Side::Buy, size));
                } else if moved <= -threshold_bps {
                    out.push(self.take(view, Side::Sell, size));
                }
            }
            AgentKind::Value {
                threshold_bps,
                noise_bps,
                size,
            } => {
                let noise = rng.gen_range(-noise_bps.max(0)..=noise_bps.max(0));
                let estimate = view.offset(view.reference, noise, Side::Buy);
                let mid = view.mid();
                if estimate.0 <= 0 {
                    return;
                }
                let gap = (i128::from(mid.0 - estimate.0) * 10_000 / i128::from(estimate.0)) as i64;
                if gap <= -threshold_bps {
                    out.push(self.take(view, Side::Buy, size));
                } else if gap >= threshold_bps {
                    out.push(self.take(view, Side::Sell, size));
                }
            }
        }
    }
}
