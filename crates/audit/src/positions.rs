//! The independent position check: positions summed from the strategies'
//! fills, compared with what a service reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_model::{Amount, Fill, Side};
use tradestack_trading::PositionView;

/// Signed positions per (strategy, instrument), summed from fills.
#[derive(Clone, Debug, Default)]
pub struct FillPositions {
    positions: BTreeMap<(String, String), i128>,
    fills: u64,
}

/// Positions from the fills compared with a service's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionCheck {
    /// Strategy fills summed.
    pub fills: u64,
    /// Positions compared (strategy and instrument).
    pub positions_checked: usize,
    /// Every disagreement.
    pub disagreements: Vec<String>,
}

impl FillPositions {
    /// Adds one fill (fills of no strategy are ignored).
    pub fn add(&mut self, f: &Fill) {
        let Some(strategy) = &f.strategy else { return };
        let q = i128::from(f.quantity.raw());
        self.fills += 1;
        *self
            .positions
            .entry((strategy.to_string(), f.instrument.to_string()))
            .or_default() += match f.side {
            Side::Buy => q,
            Side::Sell => -q,
        };
    }

    /// Compares with the positions `who` reports.
    pub fn compare<'a>(
        &self,
        reported: impl IntoIterator<Item = &'a PositionView>,
        who: &str,
    ) -> PositionCheck {
        let theirs: BTreeMap<(String, String), i128> = reported
            .into_iter()
            .filter_map(|p| {
                Some((
                    (p.strategy.as_ref()?.to_string(), p.instrument.to_string()),
                    p.quantity.raw(),
                ))
            })
            .collect();
        let mut check = PositionCheck {
            fills: self.fills,
            ..PositionCheck::default()
        };
        let mut keys: Vec<&(String, String)> = self.positions.keys().chain(theirs.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            check.positions_checked += 1;
            let (a, b) = (
                self.positions.get(k).copied().unwrap_or(0),
                theirs.get(k).copied().unwrap_or(0),
            );
            if a != b {
                check.disagreements.push(format!(
                    "position {}/{}: fills say {}, {who} says {}",
                    k.0,
                    k.1,
                    Amount::from_raw(a),
                    Amount::from_raw(b)
                ));
            }
        }
        check
    }
}
