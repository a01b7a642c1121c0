//! Positions and P&L per account, strategy and instrument, built from fills.
//!
//! # Exactness
//!
//! A position keeps its open lots first in, first out: each lot has the
//! exact price it was opened at. Closing consumes lots in order, and the
//! realized P&L of each closed piece is `(exit - entry) × quantity`. All
//! products are kept in raw price × raw quantity units (10⁻¹⁶ of the quote
//! asset) in `i128`, so nothing is rounded while it accumulates; an
//! [`Amount`] (10⁻⁸) is produced only when a value is read, truncating
//! toward zero like [`Price::notional`]. With FIFO lots there is no average
//! price to round: the average entry shown is derived from the lots.
//!
//! The identity that makes this checkable from the fills alone, per
//! instrument and at any mark `m`: realized + unrealized(m) = Σ sells p·q −
//! Σ buys p·q + position · m (times the contract size). Fees are kept apart,
//! per asset, because they are not always charged in the quote asset.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tradestack_model::fixed::SCALE;
use tradestack_model::{
    AccountId, Amount, AssetCode, Fill, Instrument, InstrumentId, Price, Side, StrategyId,
};

/// Whose position: an account, the strategy that traded it (if known) and the instrument.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionKey {
    /// The account.
    pub account: AccountId,
    /// The strategy, when the fill named one.
    pub strategy: Option<StrategyId>,
    /// The instrument.
    pub instrument: InstrumentId,
}

/// One open lot: quantity (raw, positive) at the price it was opened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lot {
    qty: i64,
    price: Price,
}

/// One position's state. Quantities are raw (10⁻⁸ of a contract), money is
/// in raw price × raw quantity units (10⁻¹⁶ of the quote asset) until read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    qty: i64,
    lots: VecDeque<Lot>,
    realized: i128,
    bought: i128,
    sold: i128,
    buy_value: i128,
    sell_value: i128,
    fees: BTreeMap<AssetCode, Amount>,
    fills: u64,
}

/// Raw price × raw quantity (10⁻¹⁶) as an [`Amount`] (10⁻⁸), toward zero.
fn amount(e16: i128) -> Amount {
    Amount::from_raw(e16 / i128::from(SCALE))
}

impl Position {
    /// Applies one fill of `side`, `qty` (raw) at `price`, with its fee.
    pub fn apply(
        &mut self,
        side: Side,
        qty: i64,
        price: Price,
        fee: Amount,
        fee_asset: &AssetCode,
    ) {
        let value = i128::from(price.raw()) * i128::from(qty);
        match side {
            Side::Buy => {
                self.bought += i128::from(qty);
                self.buy_value += value;
            }
            Side::Sell => {
                self.sold += i128::from(qty);
                self.sell_value += value;
            }
        }
        if !fee.is_zero() {
            *self.fees.entry(fee_asset.clone()).or_default() += fee;
        }
        self.fills += 1;
        let sign: i64 = if side == Side::Buy { 1 } else { -1 };
        let mut left = qty;
        // Close against the open lots while the fill opposes the position.
        while left > 0 && self.qty != 0 && self.qty.signum() != sign {
            let Some(lot) = self.lots.front_mut() else {
                break;
            };
            let take = left.min(lot.qty);
            // A long closes by selling: (exit - entry); a short by buying: (entry - exit).
            let per_unit = i128::from(price.raw()) - i128::from(lot.price.raw());
            self.realized += per_unit * i128::from(take) * i128::from(-sign);
            lot.qty -= take;
            if lot.qty == 0 {
                self.lots.pop_front();
            }
            left -= take;
            self.qty += sign * take;
        }
        // What is left opens (or adds to) a position on the fill's side.
        if left > 0 {
            self.lots.push_back(Lot { qty: left, price });
            self.qty += sign * left;
        }
    }

    /// Signed quantity, raw (10⁻⁸ contracts), positive long.
    pub fn qty(&self) -> i64 {
        self.qty
    }

    /// Average price of the open lots, truncated to the price's precision.
    pub fn avg_entry(&self) -> Option<Price> {
        if self.qty == 0 {
            return None;
        }
        let cost: i128 = self
            .lots
            .iter()
            .map(|l| i128::from(l.price.raw()) * i128::from(l.qty))
            .sum();
        i64::try_from(cost / i128::from(self.qty.unsigned_abs()))
            .ok()
            .map(Price::from_raw)
    }

    /// Realized P&L in the quote asset, raw price × raw quantity units.
    pub fn realized_e16(&self) -> i128 {
        self.realized
    }

    /// Unrealized P&L at `mark`, raw price × raw quantity units.
    pub fn unrealized_e16(&self, mark: Price) -> i128 {
        let sign = i128::from(self.qty.signum());
        self.lots
            .iter()
            .map(|l| {
                (i128::from(mark.raw()) - i128::from(l.price.raw())) * i128::from(l.qty) * sign
            })
            .sum()
    }

    /// Cost of the open lots, raw price × raw quantity units (unsigned).
    pub fn open_cost_e16(&self) -> i128 {
        self.lots
            .iter()
            .map(|l| i128::from(l.price.raw()) * i128::from(l.qty))
            .sum()
    }

    /// Fees paid so far, per asset (negative: rebates).
    pub fn fees(&self) -> &BTreeMap<AssetCode, Amount> {
        &self.fees
    }

    /// Fills applied.
    pub fn fills(&self) -> u64 {
        self.fills
    }

    /// Value traded, both sides, raw price × raw quantity units.
    pub fn turnover_e16(&self) -> i128 {
        self.buy_value + self.sell_value
    }

    /// Σ sells p·q − Σ buys p·q: the quote cash the fills moved (before fees).
    pub fn cash_flow_e16(&self) -> i128 {
        self.sell_value - self.buy_value
    }
}

/// The last marks of an instrument: the exchange mid and the reference price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// Mid of the exchange's best bid and ask.
    pub mid: Option<Price>,
    /// The reference (fair) price.
    pub reference: Option<Price>,
}

/// A position as the API and metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionView {
    /// The account.
    pub account: AccountId,
    /// The strategy, when known.
    pub strategy: Option<StrategyId>,
    /// The instrument.
    pub instrument: InstrumentId,
    /// Signed size in contracts (base units for spot), negative when short.
    pub quantity: Amount,
    /// Average price of the open lots.
    pub avg_entry: Option<Price>,
    /// Realized P&L, in `pnl_asset`.
    pub realized_pnl: Amount,
    /// Unrealized P&L marked to the exchange mid, when there is one.
    pub unrealized_mid: Option<Amount>,
    /// Unrealized P&L marked to the reference price, when there is one.
    pub unrealized_reference: Option<Amount>,
    /// The asset P&L is counted in (the quote asset).
    pub pnl_asset: AssetCode,
    /// Fees per asset (negative: rebates).
    pub fees: BTreeMap<AssetCode, Amount>,
    /// Value traded, both sides, in the quote asset.
    pub turnover: Amount,
    /// Fills applied.
    pub fills: u64,
}

/// Net holdings an owner's fills created in one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// The asset. Stablecoins stay apart per issuer (USDT, USDC, ...).
    pub asset: AssetCode,
    /// Net amount of the asset: base bought minus sold, quote paid and received, fees.
    pub net: Amount,
    /// Value of `net` in USD at the reference price, when it is known.
    pub usd: Option<Amount>,
}

/// Errors applying fills.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortfolioError {
    /// The fill's instrument is not one the portfolio knows.
    #[error("unknown instrument {0}")]
    UnknownInstrument(String),
}

/// Positions and P&L of every account and strategy, from fills, plus the
/// marks to value them.
#[derive(Clone, Debug, Default)]
pub struct Portfolio {
    instruments: BTreeMap<InstrumentId, Instrument>,
    positions: BTreeMap<PositionKey, Position>,
    marks: BTreeMap<InstrumentId, Marks>,
    /// USD price of an asset (10⁻⁸), from reference prices named `<ASSET>-USD`.
    usd: BTreeMap<AssetCode, Price>,
}

impl Portfolio {
    /// A portfolio over `instruments`.
    pub fn new<'a>(instruments: impl IntoIterator<Item = &'a Instrument>) -> Portfolio {
        Portfolio {
            instruments: instruments
                .into_iter()
                .map(|i| (i.id.clone(), i.clone()))
                .collect(),
            ..Portfolio::default()
        }
    }

    /// Applies one fill to its account's, strategy's and instrument's position.
    pub fn apply(&mut self, fill: &Fill) -> Result<(), PortfolioError> {
        if !self.instruments.contains_key(&fill.instrument) {
            return Err(PortfolioError::UnknownInstrument(
                fill.instrument.to_string(),
            ));
        }
        let key = PositionKey {
            account: fill.account.clone(),
            strategy: fill.strategy.clone(),
            instrument: fill.instrument.clone(),
        };
        self.positions.entry(key).or_default().apply(
            fill.side,
            fill.quantity.raw(),
            fill.price,
            fill.fee,
            &fill.fee_asset,
        );
        Ok(())
    }

    /// Records the exchange mid of an instrument.
    pub fn mark_mid(&mut self, instrument: &InstrumentId, mid: Price) {
        self.marks.entry(instrument.clone()).or_default().mid = Some(mid);
    }

    /// Records a reference price. `<ASSET>-USD` prices also value that asset.
    pub fn mark_reference(&mut self, instrument: &InstrumentId, price: Price) {
        self.marks.entry(instrument.clone()).or_default().reference = Some(price);
        if let Some(asset) = instrument.as_str().strip_suffix("-USD") {
            self.usd.insert(AssetCode::new(asset), price);
        }
    }

    /// The USD price of an asset (USD itself is 1), from `<ASSET>-USD` reference prices.
    pub fn usd_price(&self, asset: &AssetCode) -> Option<Price> {
        if asset.as_str() == "USD" {
            return Some(Price::ONE);
        }
        self.usd.get(asset).copied()
    }

    /// The instrument definitions.
    pub fn instrument(&self, id: &InstrumentId) -> Option<&Instrument> {
        self.instruments.get(id)
    }

    /// The marks of an instrument. Without a reference price of its own, its
    /// reference is derived from its assets' USD prices (`BTC-USDT` from
    /// `BTC-USD` and `USDT-USD`).
    pub fn marks(&self, instrument: &InstrumentId) -> Marks {
        let mut m = self.marks.get(instrument).copied().unwrap_or_default();
        if m.reference.is_none()
            && let Some(i) = self.instruments.get(instrument)
            && let (Some(b), Some(q)) = (self.usd_price(&i.base), self.usd_price(&i.quote))
            && q.raw() > 0
        {
            m.reference =
                i64::try_from(i128::from(b.raw()) * i128::from(SCALE) / i128::from(q.raw()))
                    .ok()
                    .map(Price::from_raw);
        }
        m
    }

    /// One position's raw state.
    pub fn position(&self, key: &PositionKey) -> Option<&Position> {
        self.positions.get(key)
    }

    /// Every position's raw state.
    pub fn positions(&self) -> impl Iterator<Item = (&PositionKey, &Position)> {
        self.positions.iter()
    }

    /// Every position, valued, optionally only one account's.
    pub fn views(&self, account: Option<&AccountId>) -> Vec<PositionView> {
        self.positions
            .iter()
            .filter(|(k, _)| account.is_none_or(|a| &k.account == a))
            .map(|(k, p)| self.view(k, p))
            .collect()
    }

    fn contract_size(&self, instrument: &InstrumentId) -> i128 {
        self.instruments
            .get(instrument)
            .map(|i| i128::from(i.contract_size().raw()))
            .unwrap_or(i128::from(SCALE))
    }

    /// Scales raw price × raw contracts to the quote asset, as an [`Amount`].
    fn quote_amount(&self, instrument: &InstrumentId, e16: i128) -> Amount {
        amount(e16 * self.contract_size(instrument) / i128::from(SCALE))
    }

    fn view(&self, k: &PositionKey, p: &Position) -> PositionView {
        let marks = self.marks(&k.instrument);
        let pnl_asset = self
            .instruments
            .get(&k.instrument)
            .map(|i| i.quote.clone())
            .unwrap_or_else(|| AssetCode::new("USD"));
        PositionView {
            account: k.account.clone(),
            strategy: k.strategy.clone(),
            instrument: k.instrument.clone(),
            quantity: Amount::from_raw(i128::from(p.qty)),
            avg_entry: p.avg_entry(),
            realized_pnl: self.quote_amount(&k.instrument, p.realized_e16()),
            unrealized_mid: marks
                .mid
                .map(|m| self.quote_amount(&k.instrument, p.unrealized_e16(m))),
            unrealized_reference: marks
                .reference
                .map(|m| self.quote_amount(&k.instrument, p.unrealized_e16(m))),
            pnl_asset,
            fees: p.fees.clone(),
            turnover: self.quote_amount(&k.instrument, p.turnover_e16()),
            fills: p.fills,
        }
    }

    /// Net holdings per asset created by the fills of one owner (an account,
    /// or one strategy of it), valued in USD at the reference prices.
    pub fn exposures(&self, account: &AccountId, strategy: Option<&StrategyId>) -> Vec<Exposure> {
        let mut net: BTreeMap<AssetCode, i128> = BTreeMap::new();
        for (k, p) in &self.positions {
            if &k.account != account || (strategy.is_some() && k.strategy.as_ref() != strategy) {
                continue;
            }
            let Some(inst) = self.instruments.get(&k.instrument) else {
                continue;
            };
            let cs = self.contract_size(&k.instrument);
            // Base: contracts × contract size; quote: the cash the fills moved.
            *net.entry(inst.base.clone()).or_default() +=
                i128::from(p.qty) * cs / i128::from(SCALE);
            *net.entry(inst.quote.clone()).or_default() +=
                p.cash_flow_e16() * cs / i128::from(SCALE) / i128::from(SCALE);
            for (asset, fee) in &p.fees {
                *net.entry(asset.clone()).or_default() -= fee.raw();
            }
        }
        net.into_iter()
            .map(|(asset, raw)| {
                let usd = self
                    .usd_price(&asset)
                    .map(|p| amount(raw * i128::from(p.raw())));
                Exposure {
                    asset,
                    net: Amount::from_raw(raw),
                    usd,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn fifo_lots_realize_exactly_through_a_reversal() {
        let usdt = AssetCode::new("USDT");
        let fee = Amount::from_raw(0);
        let mut pos = Position::default();
        pos.apply(Side::Buy, 100_000_000, p("100"), fee, &usdt);
        pos.apply(Side::Buy, 100_000_000, p("110"), fee, &usdt);
        assert_eq!(pos.avg_entry(), Some(p("105")));
        // Sell 3: closes 1 @100 and 1 @110 (+20, +10), opens 1 short @120.
        pos.apply(Side::Sell, 300_000_000, p("120"), fee, &usdt);
        assert_eq!(pos.qty(), -100_000_000);
        assert_eq!(amount(pos.realized_e16()), Amount::from_units(30));
        assert_eq!(pos.avg_entry(), Some(p("120")));
        // Short 1 @120, marked at 125: −5.
        assert_eq!(amount(pos.unrealized_e16(p("125"))), Amount::from_units(-5));
        // A third of a unit at a price with 8 decimals stays exact until read.
        pos.apply(Side::Buy, 33_333_333, p("119.99999999"), fee, &usdt);
        assert_eq!(
            pos.realized_e16() + pos.unrealized_e16(p("121")),
            pos.cash_flow_e16() + i128::from(pos.qty()) * i128::from(p("121").raw())
        );
    }
}
