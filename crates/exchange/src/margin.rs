//! Linear perpetuals: positions, margin, funding and liquidation.
//!
//! Margin is cross per account, in the contract's settle asset (USDT for
//! `BTC-USDT-PERP`). An order reserves its initial margin plus the highest fee
//! it could pay; a fill that opens or grows a position moves that reservation
//! into the position's margin, and a fill that reduces it releases the
//! position's margin in proportion and books the realized P&L. Funding moves
//! money between longs and shorts at each funding command; liquidation closes
//! a position whose margin plus unrealized P&L at the mark price falls below
//! the maintenance margin. Losses beyond what an account has are taken by the
//! insurance fund, so no balance goes negative and money is conserved:
//! balances + position margins + fees + insurance fund = deposits.

use serde::{Deserialize, Serialize};
use tradestack_model::{Amount, Price, Quantity, Rate};

/// Margin parameters (the `[exchange.margin]` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarginSettings {
    /// Initial margin as a share of notional (0.1: 10x leverage).
    pub initial: Rate,
    /// Maintenance margin as a share of notional at the mark price.
    pub maintenance: Rate,
    /// Funding rate bound per funding command, either way.
    pub funding_cap: Rate,
    /// How far the mark price may stray from the index, either way.
    pub mark_band: Rate,
    /// How often the service marks perpetuals to the index (spot mid of the
    /// same pair) and liquidates.
    #[serde(with = "humantime_text")]
    pub mark_interval: std::time::Duration,
    /// How often funding is paid.
    #[serde(with = "humantime_text")]
    pub funding_interval: std::time::Duration,
}

/// Durations as text like `"8h"` or `"1s"`.
mod humantime_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

impl Default for MarginSettings {
    fn default() -> Self {
        MarginSettings {
            initial: Rate::from_raw(10_000_000),    // 10%
            maintenance: Rate::from_raw(5_000_000), // 5%
            funding_cap: Rate::from_raw(750_000),   // 0.75%
            mark_band: Rate::from_raw(1_000_000),   // 1%
            mark_interval: std::time::Duration::from_secs(1),
            funding_interval: std::time::Duration::from_secs(8 * 3600),
        }
    }
}

/// One account's position in one perpetual.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Contracts, positive long, negative short (raw, 10⁻⁸).
    pub qty: i64,
    /// Average entry price.
    pub entry: Price,
    /// Margin held for it, in the settle asset.
    pub margin: Amount,
    /// P&L realized so far.
    pub realized: Amount,
    /// Funding received (positive) or paid (negative) so far.
    pub funding: Amount,
}

/// What a fill did to a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionChange {
    /// Contracts closed (raw, unsigned).
    pub closed: i64,
    /// Contracts opened (raw, unsigned).
    pub opened: i64,
    /// P&L realized on the closed part.
    pub realized: Amount,
    /// Margin released from the closed part.
    pub released: Amount,
}

/// Base units of `qty` contracts of `contract_size`.
fn base(qty: i64, contract_size: Quantity) -> Quantity {
    Quantity::from_raw(
        (i128::from(qty.abs()) * i128::from(contract_size.raw())
            / i128::from(tradestack_model::fixed::SCALE)) as i64,
    )
}

/// Notional value of `qty` contracts at `price`.
pub fn notional(price: Price, qty: i64, contract_size: Quantity) -> Amount {
    price.notional(base(qty, contract_size))
}

impl Position {
    /// Applies a fill of `dq` contracts (positive buys) at `price`; `margin`
    /// is what the fill brings for the part it opens.
    pub fn apply(
        &mut self,
        dq: i64,
        price: Price,
        contract_size: Quantity,
        margin: Amount,
    ) -> PositionChange {
        let mut change = PositionChange {
            closed: 0,
            opened: 0,
            realized: Amount::ZERO,
            released: Amount::ZERO,
        };
        if self.qty != 0 && (self.qty > 0) != (dq > 0) {
            let closed = dq.abs().min(self.qty.abs());
            let direction = if self.qty > 0 { 1 } else { -1 };
            let pnl = notional(price, closed, contract_size)
                - notional(self.entry, closed, contract_size);
            change.realized = if direction > 0 { pnl } else { -pnl };
            change.released = Amount::from_raw(
                self.margin.raw() * i128::from(closed) / i128::from(self.qty.abs()),
            );
            self.margin -= change.released;
            self.realized += change.realized;
            self.qty -= direction * closed;
            change.closed = closed;
            if self.qty == 0 {
                self.entry = Price::ZERO;
                // Rounding leftovers go with the last contract.
                change.released += self.margin;
                self.margin = Amount::ZERO;
            }
        }
        let opened = dq.abs() - change.closed;
        if opened > 0 {
            let held = i128::from(self.qty.abs());
            let total = held + i128::from(opened);
            // Average entry, weighted by contracts.
            let entry = (i128::from(self.entry.raw()) * held
                + i128::from(price.raw()) * i128::from(opened))
                / total;
            self.entry = Price::from_raw(entry as i64);
            self.qty += if dq > 0 { opened } else { -opened };
            self.margin += margin;
            change.opened = opened;
        }
        change
    }

    /// Unrealized P&L at `mark`.
    pub fn unrealized(&self, mark: Price, contract_size: Quantity) -> Amount {
        let pnl =
            notional(mark, self.qty, contract_size) - notional(self.entry, self.qty, contract_size);
        if self.qty >= 0 { pnl } else { -pnl }
    }

    /// Margin below which the position is liquidated.
    pub fn maintenance(&self, mark: Price, contract_size: Quantity, rate: Rate) -> Amount {
        notional(mark, self.qty, contract_size).mul_rate(rate)
    }

    /// True when margin plus unrealized P&L is under maintenance.
    pub fn underwater(&self, mark: Price, contract_size: Quantity, rate: Rate) -> bool {
        self.qty != 0
            && self.margin + self.unrealized(mark, contract_size)
                < self.maintenance(mark, contract_size, rate)
    }
}

/// The mark price: the book's mid (or last trade, or the index), kept
/// within `band` of the index.
pub fn mark_price(index: Price, mid: Option<Price>, band: Rate) -> Price {
    let m = mid.unwrap_or(index);
    let width = Amount::from_raw(i128::from(index.raw()))
        .mul_rate(band)
        .raw() as i64;
    Price::from_raw(m.raw().clamp(index.raw() - width, index.raw() + width))
}

/// The funding rate: the mark's premium over the index, capped.
pub fn funding_rate(mark: Price, index: Price, cap: Rate) -> Rate {
    if index.raw() <= 0 {
        return Rate::ZERO;
    }
    let premium = (i128::from(mark.raw() - index.raw())
        * i128::from(tradestack_model::fixed::SCALE)
        / i128::from(index.raw())) as i64;
    Rate::from_raw(premium.clamp(-cap.raw(), cap.raw()))
}
