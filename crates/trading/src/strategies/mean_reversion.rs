//! Mean reversion on the z-score of a two-leg spread.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tradestack_config::ConfigDuration;
use tradestack_model::{InstrumentId, Nanos, Quantity, Rate, Side};

use crate::strategy::{Strategy, StrategyContext, Timer};

/// Parameters of `kind = "mean_reversion"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanReversionParams {
    /// First leg.
    pub leg_a: InstrumentId,
    /// Second leg.
    pub leg_b: InstrumentId,
    /// Units of `leg_b` per unit of `leg_a`: the spread is `mid_a - hedge_ratio × mid_b`.
    pub hedge_ratio: Rate,
    /// Size of the `leg_a` side; `leg_b` trades `size × hedge_ratio`.
    pub size: Quantity,
    /// Spread samples in the rolling window (default 60).
    #[serde(default = "default_window")]
    pub window: usize,
    /// How often the spread is sampled (default "10s").
    #[serde(default = "default_sample")]
    pub sample_every: ConfigDuration,
    /// Enter when |z| exceeds this (default 2).
    #[serde(default = "default_entry")]
    pub entry_z: Rate,
    /// Leave when |z| falls under this (default 0.5).
    #[serde(default = "default_exit")]
    pub exit_z: Rate,
}

fn default_window() -> usize {
    60
}
fn default_sample() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_entry() -> Rate {
    Rate::from_raw(200_000_000)
}
fn default_exit() -> Rate {
    Rate::from_raw(50_000_000)
}

/// Samples the spread, and when its z-score over the window passes
/// `entry_z` sells the rich leg and buys the cheap one; flattens when it
/// comes back inside `exit_z`. Integer arithmetic throughout (the standard
/// deviation is an exact integer square root), so runs are reproducible.
pub struct MeanReversion {
    p: MeanReversionParams,
    samples: VecDeque<i128>,
    /// +1 long the spread, -1 short, 0 flat.
    state: i64,
}

/// Mean and standard deviation (population) of `xs`, truncated.
fn mean_std(xs: &VecDeque<i128>) -> (i128, i128) {
    let n = xs.len() as i128;
    let mean = xs.iter().sum::<i128>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<i128>() / n;
    (mean, var.max(0).unsigned_abs().isqrt() as i128)
}

impl MeanReversion {
    /// A mean-reversion strategy with `p`.
    pub fn new(p: MeanReversionParams) -> Self {
        MeanReversion {
            p,
            samples: VecDeque::new(),
            state: 0,
        }
    }

    fn leg_b_size(&self, ctx: &StrategyContext<'_>) -> Quantity {
        let raw =
            i128::from(self.p.size.raw()) * i128::from(self.p.hedge_ratio.raw()) / 100_000_000;
        let q = Quantity::from_raw(i64::try_from(raw.max(0)).unwrap_or(i64::MAX));
        match ctx.market.instruments.get(&self.p.leg_b) {
            Some(i) => q.round_down_to(i.lot_size),
            None => q,
        }
    }

    fn go_to(&mut self, state: i64, ctx: &mut StrategyContext<'_>) {
        self.state = state;
        let size_b = self.leg_b_size(ctx).raw();
        let targets = [
            (self.p.leg_a.clone(), state * self.p.size.raw()),
            (self.p.leg_b.clone(), -state * size_b),
        ];
        for (leg, target) in targets {
            let diff = target - ctx.position(&leg);
            if diff != 0 {
                let side = if diff > 0 { Side::Buy } else { Side::Sell };
                ctx.market(&leg, side, Quantity::from_raw(diff.abs()));
            }
        }
    }
}

impl Strategy for MeanReversion {
    fn on_start(&mut self, ctx: &mut StrategyContext<'_>) {
        let period = Nanos::from_std(self.p.sample_every.as_std());
        ctx.set_periodic("sample", period);
    }

    fn on_timer(&mut self, _timer: &Timer, ctx: &mut StrategyContext<'_>) {
        let (Some(a), Some(b)) = (ctx.market.mid(&self.p.leg_a), ctx.market.mid(&self.p.leg_b))
        else {
            return;
        };
        let spread = i128::from(a.raw())
            - i128::from(b.raw()) * i128::from(self.p.hedge_ratio.raw()) / 100_000_000;
        self.samples.push_back(spread);
        while self.samples.len() > self.p.window.max(2) {
            self.samples.pop_front();
        }
        if self.samples.len() < self.p.window.max(2) {
            return;
        }
        let busy = ctx
            .open_orders()
            .any(|o| o.instrument == self.p.leg_a || o.instrument == self.p.leg_b);
        let (mean, std) = mean_std(&self.samples);
        if busy || std == 0 {
            return;
        }
        // z × std compared in 10⁻⁸ units: |d| × 10⁸ against z_raw × std.
        let d = (spread - mean) * 100_000_000;
        let entry = i128::from(self.p.entry_z.raw()) * std;
        let exit = i128::from(self.p.exit_z.raw()) * std;
        if self.state == 0 && d > entry {
            self.go_to(-1, ctx);
        } else if self.state == 0 && d < -entry {
            self.go_to(1, ctx);
        } else if self.state != 0 && d.abs() < exit {
            self.go_to(0, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_deviation_are_exact_integers() {
        let xs: VecDeque<i128> = [2, 4, 4, 4, 5, 5, 7, 9].into_iter().collect();
        assert_eq!(mean_std(&xs), (5, 2));
    }
}
