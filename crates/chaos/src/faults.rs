//! What each scenario fault means to the part of the ecosystem it hits,
//! shared by the simulated and the live coordinator: the reference-price
//! overlay of a market fault, the custodian chaos of a settlement fault.

use std::collections::BTreeMap;

use tradestack_custody::{CustodyChaos, Selector};
use tradestack_marketdata::reference::Overlay;
use tradestack_model::{Nanos, UnixNanos};

use crate::scenario::FaultKind;

fn nanos(d: &tradestack_config::ConfigDuration) -> Nanos {
    Nanos::from_std(d.as_std())
}

/// The market simulator's overlay for a market fault starting at `start`.
pub fn overlay(kind: &FaultKind, start: UnixNanos) -> Option<Overlay> {
    Some(match kind {
        FaultKind::MarketShock {
            change,
            over,
            assets,
        } => Overlay::Shock {
            start,
            duration: over.as_ref().map_or(Nanos(0), nanos),
            change: *change,
            assets: assets.clone(),
        },
        FaultKind::Depeg {
            asset,
            target,
            decline,
            hold,
            recovery,
        } => Overlay::Depeg {
            asset: asset.clone(),
            start,
            target: *target,
            decline: nanos(decline),
            hold: hold.as_ref().map(nanos),
            recovery: nanos(recovery),
        },
        FaultKind::Volatility { factor, jumps } => Overlay::VolRegime {
            start,
            assets: Vec::new(),
            vol_factor: *factor,
            jump_factor: *jumps,
        },
        _ => return None,
    })
}

/// The custodian's chaos for a settlement fault.
pub fn custody(kind: &FaultKind) -> Option<CustodyChaos> {
    match kind {
        FaultKind::SettlementFailure {
            asset,
            account,
            bps,
        } => Some(CustodyChaos {
            fail: vec![Selector {
                asset: asset.clone(),
                account: account.clone(),
                bps: *bps,
            }],
            ..CustodyChaos::default()
        }),
        FaultKind::SettlementDelay { asset, by } => Some(CustodyChaos {
            delay: vec![(
                Selector {
                    asset: asset.clone(),
                    ..Selector::default()
                },
                nanos(by),
            )],
            ..CustodyChaos::default()
        }),
        _ => None,
    }
}

/// Every active custody fault (by injection id) combined into one setting.
pub fn combined(active: &BTreeMap<String, CustodyChaos>) -> CustodyChaos {
    let mut c = CustodyChaos::default();
    for f in active.values() {
        c.fail.extend(f.fail.iter().cloned());
        c.delay.extend(f.delay.iter().cloned());
        c.freeze_withdrawals |= f.freeze_withdrawals;
    }
    c
}
