//! Misbehaviour modes, switched on a strategy at run time for chaos tests.
//!
//! They model how real algorithms go wrong, so the risk monitor has
//! something true to catch: the engine itself generates the runaway loop
//! and the cancel storm on a 100 ms tick (with an exact carry, so the
//! order rate is what is configured), distorts a fat-fingered strategy's
//! orders, withholds fills from one that ignores them, and stops calling a
//! stuck one.

use serde::{Deserialize, Serialize};
use tradestack_model::{InstrumentId, Nanos, Price, Quantity, Side, UnixNanos};

use crate::strategy::{Action, MarketState};

/// How a strategy misbehaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Misbehaviour {
    /// Submits small passive orders in a loop, faster and faster: starting
    /// at `start_per_second`, doubling every `double_every`, up to `max_per_second`.
    RunawayLoop {
        /// Where the orders go.
        instrument: InstrumentId,
        /// The first rate.
        start_per_second: u32,
        /// How often the rate doubles.
        double_every: Nanos,
        /// The ceiling.
        max_per_second: u32,
    },
    /// Multiplies order sizes by `size_factor` and moves limit prices
    /// `price_bps` the aggressive way, for the next `orders` orders (0: all).
    FatFinger {
        /// Size multiplier.
        size_factor: u32,
        /// Price move, basis points.
        price_bps: i64,
        /// How many orders are affected (0: every one).
        orders: u32,
    },
    /// Never hears of its fills, so its own position stays where it was
    /// while the real one drifts.
    IgnoreFills,
    /// Cancels its open orders over and over, `per_second` cancels a second.
    CancelStorm {
        /// Cancels a second.
        per_second: u32,
    },
    /// Stops responding: no callback runs, its orders stay where they are.
    Stuck,
}

/// The engine's tick for generated orders and cancels.
pub const TICK: Nanos = Nanos(100_000_000);

/// What the engine sends for the strategy on a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Burst {
    /// `count` orders on `instrument`.
    Orders {
        /// How many.
        count: u64,
        /// Where.
        instrument: InstrumentId,
    },
    /// `count` cancels of its open orders.
    Cancels {
        /// How many.
        count: u64,
    },
}

/// A misbehaviour with its progress.
#[derive(Clone, Debug, Default)]
pub struct MisbehaviourState {
    /// The mode, if any.
    pub mode: Option<Misbehaviour>,
    since: UnixNanos,
    next: Option<UnixNanos>,
    /// Rate × nanoseconds not yet turned into whole actions.
    carry: u128,
    /// Fat-finger orders left (when limited).
    fat_left: u32,
}

impl MisbehaviourState {
    /// A mode switched on at `now`.
    pub fn new(mode: Option<Misbehaviour>, now: UnixNanos) -> Self {
        let next = match &mode {
            Some(Misbehaviour::RunawayLoop { .. } | Misbehaviour::CancelStorm { .. }) => {
                Some(now + TICK)
            }
            _ => None,
        };
        let fat_left = match &mode {
            Some(Misbehaviour::FatFinger { orders, .. }) => *orders,
            _ => 0,
        };
        MisbehaviourState {
            mode,
            since: now,
            next,
            carry: 0,
            fat_left,
        }
    }

    /// True when the strategy is stuck.
    pub fn is_stuck(&self) -> bool {
        matches!(self.mode, Some(Misbehaviour::Stuck))
    }

    /// True when fills are withheld from the strategy.
    pub fn ignores_fills(&self) -> bool {
        matches!(self.mode, Some(Misbehaviour::IgnoreFills))
    }

    /// When the engine must next call [`MisbehaviourState::tick`].
    pub fn next_tick(&self) -> Option<UnixNanos> {
        self.next
    }

    /// The rate at `now`, actions a second.
    pub fn rate(&self, now: UnixNanos) -> u64 {
        match &self.mode {
            Some(Misbehaviour::RunawayLoop {
                start_per_second,
                double_every,
                max_per_second,
                ..
            }) => {
                let doublings = (now.0 - self.since.0).max(0) / double_every.0.max(1);
                let rate = u64::from(*start_per_second)
                    .checked_shl(u32::try_from(doublings).unwrap_or(u32::MAX))
                    .unwrap_or(u64::MAX);
                // A shift past the width wraps to small numbers; cap instead.
                if doublings >= 63 {
                    u64::from(*max_per_second)
                } else {
                    rate.min(u64::from(*max_per_second))
                }
            }
            Some(Misbehaviour::CancelStorm { per_second }) => u64::from(*per_second),
            _ => 0,
        }
    }

    /// The burst due at `now`, if a tick is due.
    pub fn tick(&mut self, now: UnixNanos) -> Option<Burst> {
        let due = self.next.filter(|t| *t <= now)?;
        self.next = Some(due + TICK);
        self.carry += u128::from(self.rate(now)) * TICK.0 as u128;
        let count = (self.carry / 1_000_000_000) as u64;
        self.carry %= 1_000_000_000;
        if count == 0 {
            return None;
        }
        match &self.mode {
            Some(Misbehaviour::RunawayLoop { instrument, .. }) => Some(Burst::Orders {
                count,
                instrument: instrument.clone(),
            }),
            Some(Misbehaviour::CancelStorm { .. }) => Some(Burst::Cancels { count }),
            _ => None,
        }
    }

    /// The action as a fat finger would send it.
    pub fn distort(&mut self, action: Action, market: &MarketState) -> Action {
        let Some(Misbehaviour::FatFinger {
            size_factor,
            price_bps,
            orders,
        }) = &self.mode
        else {
            return action;
        };
        let Action::Submit(mut req) = action else {
            return action;
        };
        if *orders > 0 {
            if self.fat_left == 0 {
                return Action::Submit(req);
            }
            self.fat_left -= 1;
        }
        req.quantity =
            Quantity::from_raw(req.quantity.raw().saturating_mul(i64::from(*size_factor)));
        if let Some(p) = req.price {
            let tick = market
                .instruments
                .get(&req.instrument)
                .map(|i| i.tick_size.raw().max(1))
                .unwrap_or(1);
            let moved = i128::from(p.raw()) * i128::from(*price_bps) / 10_000;
            let raw = match req.side {
                Side::Buy => i128::from(p.raw()) + moved,
                Side::Sell => i128::from(p.raw()) - moved,
            };
            let raw = i64::try_from(raw / i128::from(tick) * i128::from(tick)).unwrap_or(p.raw());
            req.price = Some(Price::from_raw(raw.max(tick)));
        }
        Action::Submit(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_rate_doubles_up_to_its_ceiling_and_counts_exactly() {
        let start = UnixNanos(1_000_000_000_000);
        let mut m = MisbehaviourState::new(
            Some(Misbehaviour::RunawayLoop {
                instrument: InstrumentId::new("BTC-USDT"),
                start_per_second: 5,
                double_every: Nanos(10_000_000_000),
                max_per_second: 1_000,
            }),
            start,
        );
        assert_eq!(m.rate(start), 5);
        assert_eq!(m.rate(start + Nanos(10_000_000_000)), 10);
        assert_eq!(m.rate(start + Nanos(1_000_000_000_000)), 1_000);
        // Over the first 10 s at 5/s: exactly 50 orders (the last tick lands at 10 s).
        let mut total = 0;
        let mut t = start;
        while let Some(next) = m.next_tick().filter(|n| n.0 < start.0 + 10_000_000_000) {
            t = next;
            if let Some(Burst::Orders { count, .. }) = m.tick(t) {
                total += count;
            }
        }
        assert_eq!(
            total, 49,
            "99 ticks before 10 s at 0.5 orders a tick, last at {t:?}"
        );
    }
}
