//! Balances per account and asset, split into free and locked (reserved by
//! open orders). Every change is exact fixed point; no balance goes negative.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_model::{AccountId, Amount, AssetCode};

/// One asset's balance of one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Available for new orders and withdrawals.
    pub free: Amount,
    /// Reserved by open orders.
    pub locked: Amount,
}

impl Balance {
    /// Free plus locked.
    pub fn total(&self) -> Amount {
        self.free + self.locked
    }
}

/// Not enough free balance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("insufficient {asset} balance: need {need}, free {free}")]
pub struct Insufficient {
    /// The asset.
    pub asset: AssetCode,
    /// What was asked for.
    pub need: Amount,
    /// What is free.
    pub free: Amount,
}

/// All balances, ordered so iteration (and snapshots) are deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    balances: BTreeMap<AccountId, BTreeMap<AssetCode, Balance>>,
}

impl Ledger {
    /// One balance (zero if never touched).
    pub fn get(&self, account: &AccountId, asset: &AssetCode) -> Balance {
        self.balances
            .get(account)
            .and_then(|m| m.get(asset))
            .copied()
            .unwrap_or_default()
    }

    /// Every balance of an account.
    pub fn account(&self, account: &AccountId) -> impl Iterator<Item = (&AssetCode, &Balance)> {
        self.balances
            .get(account)
            .into_iter()
            .flat_map(|m| m.iter())
    }

    /// Every account with a balance.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
        self.balances.keys()
    }

    fn entry(&mut self, account: &AccountId, asset: &AssetCode) -> &mut Balance {
        self.balances
            .entry(account.clone())
            .or_default()
            .entry(asset.clone())
            .or_default()
    }

    /// Adds to the free balance (a deposit, proceeds, a rebate).
    pub fn credit(&mut self, account: &AccountId, asset: &AssetCode, amount: Amount) {
        debug_assert!(amount >= Amount::ZERO);
        self.entry(account, asset).free += amount;
    }

    /// The balance, after checking `amount` is free.
    fn with_free(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<&mut Balance, Insufficient> {
        let b = self.entry(account, asset);
        if b.free < amount {
            return Err(Insufficient {
                asset: asset.clone(),
                need: amount,
                free: b.free,
            });
        }
        Ok(b)
    }

    /// Takes from the free balance (a withdrawal).
    pub fn debit(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<(), Insufficient> {
        self.with_free(account, asset, amount)?.free -= amount;
        Ok(())
    }

    /// Moves `amount` from free to locked.
    pub fn reserve(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<(), Insufficient> {
        let b = self.with_free(account, asset, amount)?;
        b.free -= amount;
        b.locked += amount;
        Ok(())
    }

    /// Moves `amount` from locked back to free.
    pub fn release(&mut self, account: &AccountId, asset: &AssetCode, amount: Amount) {
        let b = self.entry(account, asset);
        debug_assert!(b.locked >= amount, "release more than locked");
        b.locked -= amount;
        b.free += amount;
    }

    /// Takes `share` out of locked and adds `delta` (which may be negative:
    /// a loss) to free. A loss beyond the free balance leaves it at zero and
    /// returns the shortfall (for the insurance fund to cover).
    pub fn settle_signed(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        share: Amount,
        delta: Amount,
    ) -> Amount {
        let b = self.entry(account, asset);
        debug_assert!(b.locked >= share);
        b.locked -= share;
        b.free += delta;
        if b.free < Amount::ZERO {
            let shortfall = -b.free;
            b.free = Amount::ZERO;
            return shortfall;
        }
        Amount::ZERO
    }

    /// Spends `spent` out of a reservation of `share`: the rest of the share
    /// goes back to free.
    pub fn settle(&mut self, account: &AccountId, asset: &AssetCode, share: Amount, spent: Amount) {
        let b = self.entry(account, asset);
        debug_assert!(b.locked >= share && share >= spent);
        b.locked -= share;
        b.free += share - spent;
    }
}
