//! Assets and instruments: spot pairs, perpetuals, dated futures and options.

use crate::fixed::{Amount, Price, Quantity, Rate};
use crate::ids::{AssetCode, InstrumentId};
use crate::time::UnixNanos;
use serde::{Deserialize, Serialize};

/// What kind of thing an asset is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A native crypto asset (BTC, ETH, SOL).
    Crypto,
    /// A fiat currency (USD, EUR).
    Fiat,
    /// A token that targets a fixed value of another asset.
    Stablecoin {
        /// The asset it is pegged to, e.g. USD.
        peg: AssetCode,
        /// The target price in units of `peg`, normally 1.
        peg_rate: Rate,
        /// Who issues it (Tether, Circle); exposure is counted per issuer.
        issuer: String,
    },
}

/// A currency or token that balances are held in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Its code, e.g. `USDT`.
    pub code: AssetCode,
    /// Crypto, fiat or stablecoin (with its peg).
    pub kind: AssetKind,
    /// Decimal places the asset is shown and transferred with (at most 8).
    pub precision: u8,
}

/// Call or put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionRight {
    /// The right to buy.
    Call,
    /// The right to sell.
    Put,
}

/// The contract type of an instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    /// Immediate exchange of base for quote.
    Spot,
    /// A future with no expiry, kept near spot by funding payments.
    Perpetual {
        /// Base units per contract.
        contract_size: Quantity,
        /// The asset margin and P&L are settled in.
        settle: AssetCode,
    },
    /// A future that expires and settles on a fixed date.
    Future {
        /// Base units per contract.
        contract_size: Quantity,
        /// The asset margin and P&L are settled in.
        settle: AssetCode,
        /// Expiry time.
        expiry: UnixNanos,
    },
    /// A European option on the base asset.
    Option {
        /// Strike in quote units.
        strike: Price,
        /// Expiry time.
        expiry: UnixNanos,
        /// Call or put.
        right: OptionRight,
        /// Base units per contract.
        contract_size: Quantity,
        /// The asset premium and settlement are paid in.
        settle: AssetCode,
    },
}

/// A tradable instrument with its trading rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Symbol, e.g. `BTC-USDT`.
    pub id: InstrumentId,
    /// The asset bought and sold (or the underlying).
    pub base: AssetCode,
    /// The asset prices are quoted in.
    pub quote: AssetCode,
    /// Spot, perpetual, future or option.
    pub kind: InstrumentKind,
    /// Smallest price increment.
    pub tick_size: Price,
    /// Smallest quantity increment.
    pub lot_size: Quantity,
    /// Smallest order quantity.
    pub min_qty: Quantity,
    /// Largest order quantity.
    pub max_qty: Quantity,
    /// Smallest order value in quote units.
    pub min_notional: Amount,
}

/// Why a price or quantity breaks an instrument's rules. Each has its own code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleViolation {
    /// Price is zero or negative.
    #[error("price must be positive")]
    NonPositivePrice,
    /// Price is not a multiple of the tick size.
    #[error("price {price} is not a multiple of tick size {tick}")]
    OffTick {
        /// The offending price.
        price: Price,
        /// The tick size.
        tick: Price,
    },
    /// Quantity is zero.
    #[error("quantity must be positive")]
    ZeroQuantity,
    /// Quantity is not a multiple of the lot size.
    #[error("quantity {qty} is not a multiple of lot size {lot}")]
    OffLot {
        /// The offending quantity.
        qty: Quantity,
        /// The lot size.
        lot: Quantity,
    },
    /// Quantity below the minimum.
    #[error("quantity {qty} is below the minimum {min}")]
    BelowMinQty {
        /// The offending quantity.
        qty: Quantity,
        /// The minimum.
        min: Quantity,
    },
    /// Quantity above the maximum.
    #[error("quantity {qty} is above the maximum {max}")]
    AboveMaxQty {
        /// The offending quantity.
        qty: Quantity,
        /// The maximum.
        max: Quantity,
    },
    /// Order value below the minimum notional.
    #[error("notional {notional} is below the minimum {min}")]
    BelowMinNotional {
        /// The order value.
        notional: Amount,
        /// The minimum.
        min: Amount,
    },
}

/// Every asset the instruments trade (bases and quotes), sorted, once each.
pub fn assets_of<'a>(instruments: impl IntoIterator<Item = &'a Instrument>) -> Vec<AssetCode> {
    let mut assets: Vec<AssetCode> = instruments
        .into_iter()
        .flat_map(|i| [i.base.clone(), i.quote.clone()])
        .collect();
    assets.sort();
    assets.dedup();
    assets
}

impl Instrument {
    /// A spot pair with the given trading rules.
    pub fn spot(
        id: &str,
        base: &str,
        quote: &str,
        tick_size: Price,
        lot_size: Quantity,
    ) -> Instrument {
        Instrument {
            id: InstrumentId::new(id),
            base: AssetCode::new(base),
            quote: AssetCode::new(quote),
            kind: InstrumentKind::Spot,
            tick_size,
            lot_size,
            min_qty: lot_size,
            max_qty: Quantity::from_units(1_000_000),
            min_notional: Amount::ZERO,
        }
    }

    /// Checks a price against the tick grid.
    pub fn check_price(&self, price: Price) -> Result<(), RuleViolation> {
        if price.raw() <= 0 {
            return Err(RuleViolation::NonPositivePrice);
        }
        if !price.is_multiple_of(self.tick_size) {
            return Err(RuleViolation::OffTick {
                price,
                tick: self.tick_size,
            });
        }
        Ok(())
    }

    /// Checks a quantity against lot size and min/max.
    pub fn check_qty(&self, qty: Quantity) -> Result<(), RuleViolation> {
        if qty.is_zero() {
            return Err(RuleViolation::ZeroQuantity);
        }
        if !qty.is_multiple_of(self.lot_size) {
            return Err(RuleViolation::OffLot {
                qty,
                lot: self.lot_size,
            });
        }
        if qty < self.min_qty {
            return Err(RuleViolation::BelowMinQty {
                qty,
                min: self.min_qty,
            });
        }
        if qty > self.max_qty {
            return Err(RuleViolation::AboveMaxQty {
                qty,
                max: self.max_qty,
            });
        }
        Ok(())
    }

    /// Checks an order's value against the minimum notional.
    pub fn check_notional(&self, price: Price, qty: Quantity) -> Result<(), RuleViolation> {
        let notional = price.notional(qty);
        if notional < self.min_notional {
            return Err(RuleViolation::BelowMinNotional {
                notional,
                min: self.min_notional,
            });
        }
        Ok(())
    }

    /// Base units per contract (1 for spot).
    pub fn contract_size(&self) -> Quantity {
        match &self.kind {
            InstrumentKind::Spot => Quantity::ONE,
            InstrumentKind::Perpetual { contract_size, .. }
            | InstrumentKind::Future { contract_size, .. }
            | InstrumentKind::Option { contract_size, .. } => *contract_size,
        }
    }

    /// The expiry, for futures and options.
    pub fn expiry(&self) -> Option<UnixNanos> {
        match &self.kind {
            InstrumentKind::Future { expiry, .. } | InstrumentKind::Option { expiry, .. } => {
                Some(*expiry)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Instrument {
        let mut i = Instrument::spot(
            "BTC-USDT",
            "BTC",
            "USDT",
            "0.01".parse().unwrap(),
            "0.00001".parse().unwrap(),
        );
        i.min_notional = "5".parse().unwrap();
        i
    }

    #[test]
    fn rules_each_have_their_own_reason() {
        let i = btc();
        assert_eq!(
            i.check_price("0".parse().unwrap()),
            Err(RuleViolation::NonPositivePrice)
        );
        assert!(matches!(
            i.check_price("1.001".parse().unwrap()),
            Err(RuleViolation::OffTick { .. })
        ));
        assert_eq!(
            i.check_qty(Quantity::ZERO),
            Err(RuleViolation::ZeroQuantity)
        );
        assert!(matches!(
            i.check_qty("0.000001".parse().unwrap()),
            Err(RuleViolation::OffLot { .. })
        ));
        assert!(matches!(
            i.check_qty("2000000".parse().unwrap()),
            Err(RuleViolation::AboveMaxQty { .. })
        ));
        assert!(matches!(
            i.check_notional("100".parse().unwrap(), "0.01".parse().unwrap()),
            Err(RuleViolation::BelowMinNotional { .. })
        ));
        assert!(i.check_price("42000.01".parse().unwrap()).is_ok());
        assert!(
            i.check_notional("42000".parse().unwrap(), "0.001".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn option_roundtrips_through_json() {
        let opt = Instrument {
            id: "BTC-27DEC24-60000-C".into(),
            base: "BTC".into(),
            quote: "USD".into(),
            kind: InstrumentKind::Option {
                strike: Price::from_units(60_000),
                expiry: UnixNanos::from_secs(1_735_286_400),
                right: OptionRight::Call,
                contract_size: Quantity::ONE,
                settle: "BTC".into(),
            },
            tick_size: "0.0005".parse().unwrap(),
            lot_size: "0.1".parse().unwrap(),
            min_qty: "0.1".parse().unwrap(),
            max_qty: Quantity::from_units(10_000),
            min_notional: Amount::ZERO,
        };
        let json = serde_json::to_string(&opt).unwrap();
        assert!(json.contains("\"kind\":{\"option\":"), "{json}");
        let bin = crate::codec::encode(&opt).unwrap();
        assert_eq!(crate::codec::decode::<Instrument>(&bin).unwrap(), opt);
        assert_eq!(serde_json::from_str::<Instrument>(&json).unwrap(), opt);
        assert_eq!(opt.expiry(), Some(UnixNanos::from_secs(1_735_286_400)));
    }

    #[test]
    fn stablecoin_has_a_peg() {
        let usdt = Asset {
            code: "USDT".into(),
            kind: AssetKind::Stablecoin {
                peg: "USD".into(),
                peg_rate: Rate::ONE,
                issuer: "Tether".into(),
            },
            precision: 6,
        };
        let json = serde_json::to_string(&usdt).unwrap();
        assert_eq!(serde_json::from_str::<Asset>(&json).unwrap(), usdt);
    }
}
