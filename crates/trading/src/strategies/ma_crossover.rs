//! A moving-average crossover: momentum on closed bars.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tradestack_config::ConfigDuration;
use tradestack_model::{Bar, InstrumentId, Nanos, Quantity, Side};

use crate::strategy::{Strategy, StrategyContext};

/// Parameters of `kind = "ma_crossover"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaCrossoverParams {
    /// The instrument traded.
    pub instrument: InstrumentId,
    /// Bars in the fast average.
    pub fast: usize,
    /// Bars in the slow average (more than `fast`).
    pub slow: usize,
    /// Position held while the fast average is above the slow one.
    pub size: Quantity,
    /// The bar interval it reads (default "1m").
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    /// Hold `-size` while below, instead of flat (default false).
    #[serde(default)]
    pub allow_short: bool,
}

fn default_interval() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}

/// Long `size` while the fast simple moving average of closes is above the
/// slow one; flat (or short) while below. Trades the difference between
/// the target and its position with market orders, one at a time.
pub struct MaCrossover {
    p: MaCrossoverParams,
    closes: VecDeque<i128>,
}

impl MaCrossover {
    /// A crossover strategy with `p`.
    pub fn new(p: MaCrossoverParams) -> Self {
        MaCrossover {
            p,
            closes: VecDeque::new(),
        }
    }

    fn average(&self, n: usize) -> Option<i128> {
        (n > 0 && self.closes.len() >= n)
            .then(|| self.closes.iter().rev().take(n).sum::<i128>() / n as i128)
    }
}

impl Strategy for MaCrossover {
    fn on_bar(&mut self, bar: &Bar, ctx: &mut StrategyContext<'_>) {
        let interval = Nanos::from_std(self.p.interval.as_std()).0;
        if bar.instrument != self.p.instrument || bar.interval.0 != interval {
            return;
        }
        self.closes.push_back(i128::from(bar.close.raw()));
        while self.closes.len() > self.p.slow.max(self.p.fast) {
            self.closes.pop_front();
        }
        let (Some(fast), Some(slow)) = (self.average(self.p.fast), self.average(self.p.slow))
        else {
            return;
        };
        if ctx.open_orders().any(|o| o.instrument == self.p.instrument) {
            return;
        }
        let size = self.p.size.raw();
        let target = if fast > slow {
            size
        } else if fast < slow && self.p.allow_short {
            -size
        } else if fast < slow {
            0
        } else {
            return;
        };
        let diff = target - ctx.position(&self.p.instrument);
        if diff != 0 {
            let side = if diff > 0 { Side::Buy } else { Side::Sell };
            ctx.market(&self.p.instrument, side, Quantity::from_raw(diff.abs()));
        }
    }
}
