//! The custodian: wallets, deposits and withdrawals with confirmations,
//! internal transfers, settlement of exchange trades on a cycle, chaos
//! hooks, and the three-way reconciliation.
//!
//! Pure and deterministic: time comes in as arguments and the only
//! randomness (percentage failures) is a seeded stream, so the same inputs
//! always settle the same way. Every change is appended to an audit trail.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tradestack_kernel::DetRng;
use tradestack_model::{
    AccountId, Amount, AssetCode, Fill, Instrument, InstrumentId, Nanos, Side, UnixNanos,
};

const DAY: i64 = 86_400_000_000_000;

/// Where a balance is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletKind {
    /// Online, for settlement and withdrawals.
    Hot,
    /// Offline storage.
    Cold,
}

/// When exchange trades settle into custody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementCycle {
    /// T+0: every processing step nets what traded since the last one and settles it at once.
    Immediate,
    /// T+N: a UTC trade date's net is instructed when the date ends and
    /// settles at the end of the Nth day after it (N ≥ 1).
    Days(u32),
}

/// Custody settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyConfig {
    /// The settlement cycle.
    pub cycle: SettlementCycle,
    /// Confirmations a deposit or withdrawal needs, per asset (default `default_confirmations`).
    pub confirmations: BTreeMap<AssetCode, u32>,
    /// Confirmations for assets not listed.
    pub default_confirmations: u32,
    /// Time between confirmations (one block).
    pub block_time: Nanos,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        CustodyConfig {
            cycle: SettlementCycle::Immediate,
            confirmations: BTreeMap::new(),
            default_confirmations: 3,
            block_time: Nanos::from_secs(10),
        }
    }
}

/// Where an instruction or transfer is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its time or its confirmations.
    Pending,
    /// Postponed until `until`.
    Delayed {
        /// When it is tried again.
        until: UnixNanos,
    },
    /// Done.
    Settled,
    /// Refused; nothing moved.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One net movement of one asset for one account, from one trade date's fills.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// Sequence number.
    pub id: u64,
    /// Account.
    pub account: AccountId,
    /// Asset.
    pub asset: AssetCode,
    /// Signed amount: positive is received.
    pub amount: Amount,
    /// The UTC day the trades happened (days since the epoch).
    pub trade_date: i64,
    /// When it is due.
    pub due: UnixNanos,
    /// Where it is.
    pub status: Status,
    /// Attempts so far.
    pub attempts: u32,
}

/// A deposit or withdrawal on its way through confirmations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Sequence number.
    pub id: u64,
    /// Account.
    pub account: AccountId,
    /// Asset.
    pub asset: AssetCode,
    /// Amount, positive.
    pub amount: Amount,
    /// True for a withdrawal.
    pub withdrawal: bool,
    /// Confirmations needed.
    pub required: u32,
    /// When it was requested.
    pub requested_at: UnixNanos,
    /// Where it is.
    pub status: Status,
}

/// Which settlements a chaos rule hits: any field left out matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    /// One asset.
    pub asset: Option<AssetCode>,
    /// One account.
    pub account: Option<AccountId>,
    /// Share of the matching settlements hit, basis points (default all).
    pub bps: Option<u32>,
}

impl Selector {
    fn matches(&self, i: &Instruction) -> bool {
        self.asset.as_ref().is_none_or(|a| *a == i.asset)
            && self.account.as_ref().is_none_or(|a| *a == i.account)
    }
}

/// Chaos switched on in the custodian.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustodyChaos {
    /// Settlements that fail.
    pub fail: Vec<Selector>,
    /// Settlements that are postponed, and by how long.
    pub delay: Vec<(Selector, Nanos)>,
    /// No withdrawal is accepted.
    pub freeze_withdrawals: bool,
}

/// One audited change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When.
    pub at: UnixNanos,
    /// What happened, e.g. `instruction.settled`.
    pub event: String,
    /// The account.
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// The amount.
    pub amount: Amount,
    /// The instruction or transfer id.
    pub reference: u64,
}

/// Errors of custody requests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustodyError {
    /// Amounts must be positive.
    #[error("amount must be positive")]
    NonPositive,
    /// Not enough in the wallet.
    #[error("{account} has {available} {asset} in its {wallet:?} wallet, {requested} requested")]
    Insufficient {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetCode,
        /// Wallet.
        wallet: WalletKind,
        /// What is there.
        available: Amount,
        /// What was asked.
        requested: Amount,
    },
    /// Withdrawals are frozen.
    #[error("withdrawals are frozen")]
    Frozen,
    /// An unknown instrument in a fill.
    #[error("unknown instrument {0}")]
    UnknownInstrument(InstrumentId),
}

/// A difference between two of the three views of a balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    /// Account.
    pub account: AccountId,
    /// Asset.
    pub asset: AssetCode,
    /// What the fills (and deposits, withdrawals) say to expect.
    pub expected: Amount,
    /// The exchange's balance.
    pub exchange: Amount,
    /// Custody's settled balance, hot and cold.
    pub custody: Amount,
    /// Settlements not done yet (pending, delayed, failed, or not yet instructed).
    pub in_flight: Amount,
    /// Which views disagree: `exchange` (exchange ≠ expected) and/or `custody` (custody + in flight ≠ expected, or a failed settlement).
    pub kind: Vec<String>,
}

/// The custodian.
pub struct Custodian {
    config: CustodyConfig,
    instruments: BTreeMap<InstrumentId, Instrument>,
    wallets: BTreeMap<(AccountId, AssetCode, WalletKind), Amount>,
    transfers: BTreeMap<u64, Transfer>,
    instructions: BTreeMap<u64, Instruction>,
    /// Fill flows not yet in an instruction: (account, asset, trade date) → amount.
    unsettled: BTreeMap<(AccountId, AssetCode, i64), i128>,
    /// What the fills, deposits and withdrawals say each balance should be.
    expected: BTreeMap<(AccountId, AssetCode), i128>,
    /// Fills already counted, so a fill seen twice is counted once.
    seen: BTreeSet<(InstrumentId, u64, AccountId, bool)>,
    chaos: CustodyChaos,
    rng: DetRng,
    next_id: u64,
    audit: Vec<AuditRecord>,
    /// Audit records handed out by [`Custodian::drain_audit`] so far.
    audited: u64,
}

/// A custodian's whole state, as the service persists it.
///
/// Maps are lists here so the snapshot is plain JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodySnapshot {
    /// Wallet balances.
    pub wallets: Vec<(AccountId, AssetCode, WalletKind, Amount)>,
    /// Deposits and withdrawals.
    pub transfers: Vec<Transfer>,
    /// Settlement instructions.
    pub instructions: Vec<Instruction>,
    /// Fill flows not yet instructed: account, asset, trade date, amount.
    pub unsettled: Vec<(AccountId, AssetCode, i64, Amount)>,
    /// What each balance should be.
    pub expected: Vec<(AccountId, AssetCode, Amount)>,
    /// Fills counted: instrument, trade id, account, buyer side.
    pub seen: Vec<(InstrumentId, u64, AccountId, bool)>,
    /// Chaos switched on.
    pub chaos: CustodyChaos,
    /// The last id given out.
    pub next_id: u64,
    /// Audit records handed out so far (the next one's number).
    pub audited: u64,
}

impl Custodian {
    /// A custodian over `instruments`, seeded with `seed` for percentage chaos.
    pub fn new<'a>(
        config: CustodyConfig,
        instruments: impl IntoIterator<Item = &'a Instrument>,
        seed: u64,
    ) -> Custodian {
        Custodian {
            config,
            instruments: instruments
                .into_iter()
                .map(|i| (i.id.clone(), i.clone()))
                .collect(),
            wallets: BTreeMap::new(),
            transfers: BTreeMap::new(),
            instructions: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            expected: BTreeMap::new(),
            seen: BTreeSet::new(),
            chaos: CustodyChaos::default(),
            rng: DetRng::new(seed),
            next_id: 0,
            audit: Vec::new(),
            audited: 0,
        }
    }

    /// The state to persist. Audit records not yet drained are not in it:
    /// drain them first and store them with it.
    pub fn snapshot(&self) -> CustodySnapshot {
        CustodySnapshot {
            wallets: self
                .wallets
                .iter()
                .map(|((a, s, k), v)| (a.clone(), s.clone(), *k, *v))
                .collect(),
            transfers: self.transfers.values().cloned().collect(),
            instructions: self.instructions.values().cloned().collect(),
            unsettled: self
                .unsettled
                .iter()
                .map(|((a, s, d), v)| (a.clone(), s.clone(), *d, Amount::from_raw(*v)))
                .collect(),
            expected: self
                .expected
                .iter()
                .map(|((a, s), v)| (a.clone(), s.clone(), Amount::from_raw(*v)))
                .collect(),
            seen: self.seen.iter().cloned().collect(),
            chaos: self.chaos.clone(),
            next_id: self.next_id,
            audited: self.audited + self.audit.len() as u64,
        }
    }

    /// A custodian back from a snapshot. Percentage chaos continues on a
    /// stream forked from `seed` by the snapshot's position, so a restored
    /// custodian stays deterministic.
    pub fn restore<'a>(
        config: CustodyConfig,
        instruments: impl IntoIterator<Item = &'a Instrument>,
        seed: u64,
        snap: CustodySnapshot,
    ) -> Custodian {
        let mut c = Custodian::new(config, instruments, seed);
        c.rng = DetRng::new(seed).fork(snap.next_id);
        c.wallets = snap
            .wallets
            .into_iter()
            .map(|(a, s, k, v)| ((a, s, k), v))
            .collect();
        c.transfers = snap.transfers.into_iter().map(|t| (t.id, t)).collect();
        c.instructions = snap.instructions.into_iter().map(|i| (i.id, i)).collect();
        c.unsettled = snap
            .unsettled
            .into_iter()
            .map(|(a, s, d, v)| ((a, s, d), v.raw()))
            .collect();
        c.expected = snap
            .expected
            .into_iter()
            .map(|(a, s, v)| ((a, s), v.raw()))
            .collect();
        c.seen = snap.seen.into_iter().collect();
        c.chaos = snap.chaos;
        c.next_id = snap.next_id;
        c.audited = snap.audited;
        c
    }

    /// Takes the audit records not taken yet, each with its sequence
    /// number (stable across restarts: the store refuses a number twice).
    pub fn drain_audit(&mut self) -> Vec<(u64, AuditRecord)> {
        let first = self.audited;
        let out: Vec<(u64, AuditRecord)> = self
            .audit
            .drain(..)
            .enumerate()
            .map(|(i, r)| (first + i as u64, r))
            .collect();
        self.audited += out.len() as u64;
        out
    }

    /// Every wallet balance: account, asset, wallet, amount.
    pub fn wallets(&self) -> impl Iterator<Item = (&AccountId, &AssetCode, WalletKind, Amount)> {
        self.wallets.iter().map(|((a, s, k), v)| (a, s, *k, *v))
    }

    /// Every (account, asset) custody or the fills know of.
    pub fn known_balances(&self) -> impl Iterator<Item = (AccountId, AssetCode)> + '_ {
        self.expected
            .keys()
            .cloned()
            .chain(self.wallets.keys().map(|(a, s, _)| (a.clone(), s.clone())))
    }

    /// True when nothing has happened yet (no wallet, fill or transfer).
    pub fn is_empty(&self) -> bool {
        self.wallets.is_empty() && self.expected.is_empty() && self.transfers.is_empty()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn record(
        &mut self,
        at: UnixNanos,
        event: &str,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
        reference: u64,
    ) {
        self.audit.push(AuditRecord {
            at,
            event: event.to_string(),
            account: account.clone(),
            asset: asset.clone(),
            amount,
            reference,
        });
    }

    fn wallet(&mut self, account: &AccountId, asset: &AssetCode, kind: WalletKind) -> &mut Amount {
        self.wallets
            .entry((account.clone(), asset.clone(), kind))
            .or_default()
    }

    /// A balance.
    pub fn balance(&self, account: &AccountId, asset: &AssetCode, kind: WalletKind) -> Amount {
        self.wallets
            .get(&(account.clone(), asset.clone(), kind))
            .copied()
            .unwrap_or_default()
    }

    fn ensure_available(
        &self,
        account: &AccountId,
        asset: &AssetCode,
        wallet: WalletKind,
        requested: Amount,
    ) -> Result<(), CustodyError> {
        let available = self.balance(account, asset, wallet);
        if available < requested {
            return Err(CustodyError::Insufficient {
                account: account.clone(),
                asset: asset.clone(),
                wallet,
                available,
                requested,
            });
        }
        Ok(())
    }

    /// Hot plus cold.
    pub fn total(&self, account: &AccountId, asset: &AssetCode) -> Amount {
        self.balance(account, asset, WalletKind::Hot)
            + self.balance(account, asset, WalletKind::Cold)
    }

    /// Switches chaos.
    pub fn set_chaos(&mut self, chaos: CustodyChaos) {
        self.chaos = chaos;
    }

    /// The chaos in force.
    pub fn chaos(&self) -> &CustodyChaos {
        &self.chaos
    }

    fn required(&self, asset: &AssetCode) -> u32 {
        self.config
            .confirmations
            .get(asset)
            .copied()
            .unwrap_or(self.config.default_confirmations)
    }

    fn open_transfer(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
        withdrawal: bool,
        now: UnixNanos,
    ) -> u64 {
        let id = self.id();
        let required = self.required(asset);
        self.transfers.insert(
            id,
            Transfer {
                id,
                account: account.clone(),
                asset: asset.clone(),
                amount,
                withdrawal,
                required,
                requested_at: now,
                status: Status::Pending,
            },
        );
        id
    }

    /// Starts a deposit; it is credited to the hot wallet once confirmed.
    pub fn deposit(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
        now: UnixNanos,
    ) -> Result<u64, CustodyError> {
        if amount.raw() <= 0 {
            return Err(CustodyError::NonPositive);
        }
        let id = self.open_transfer(account, asset, amount, false, now);
        self.record(now, "deposit.requested", account, asset, amount, id);
        Ok(id)
    }

    /// Starts a withdrawal: the amount leaves the hot wallet at once and
    /// the transfer completes once confirmed.
    pub fn withdraw(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
        now: UnixNanos,
    ) -> Result<u64, CustodyError> {
        if self.chaos.freeze_withdrawals {
            return Err(CustodyError::Frozen);
        }
        if amount.raw() <= 0 {
            return Err(CustodyError::NonPositive);
        }
        self.ensure_available(account, asset, WalletKind::Hot, amount)?;
        *self.wallet(account, asset, WalletKind::Hot) -= amount;
        *self
            .expected
            .entry((account.clone(), asset.clone()))
            .or_default() -= amount.raw();
        let id = self.open_transfer(account, asset, amount, true, now);
        self.record(now, "withdrawal.requested", account, asset, amount, id);
        Ok(id)
    }

    /// Moves between wallets or accounts, at once.
    pub fn transfer(
        &mut self,
        from: (&AccountId, WalletKind),
        to: (&AccountId, WalletKind),
        asset: &AssetCode,
        amount: Amount,
        now: UnixNanos,
    ) -> Result<u64, CustodyError> {
        if amount.raw() <= 0 {
            return Err(CustodyError::NonPositive);
        }
        self.ensure_available(from.0, asset, from.1, amount)?;
        *self.wallet(from.0, asset, from.1) -= amount;
        *self.wallet(to.0, asset, to.1) += amount;
        if from.0 != to.0 {
            *self
                .expected
                .entry((from.0.clone(), asset.clone()))
                .or_default() -= amount.raw();
            *self
                .expected
                .entry((to.0.clone(), asset.clone()))
                .or_default() += amount.raw();
        }
        let id = self.id();
        self.record(now, "transfer.out", from.0, asset, amount, id);
        self.record(now, "transfer.in", to.0, asset, amount, id);
        Ok(id)
    }

    /// Transfers, by id.
    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers.values()
    }

    /// A fill of an exchange trade: its flows join the account's unsettled net.
    pub fn on_fill(&mut self, fill: &Fill) -> Result<(), CustodyError> {
        let key = (
            fill.instrument.clone(),
            fill.trade_id.0,
            fill.account.clone(),
            fill.side == Side::Buy,
        );
        if !self.seen.insert(key) {
            return Ok(());
        }
        let inst = self
            .instruments
            .get(&fill.instrument)
            .ok_or_else(|| CustodyError::UnknownInstrument(fill.instrument.clone()))?;
        let (base, quote) = (inst.base.clone(), inst.quote.clone());
        let value = fill.price.notional(fill.quantity).raw();
        let qty = i128::from(fill.quantity.raw());
        let (b, q) = match fill.side {
            Side::Buy => (qty, -value),
            Side::Sell => (-qty, value),
        };
        let day = fill.ts.0.div_euclid(DAY);
        for (asset, amount) in [
            (base, b),
            (quote, q),
            (fill.fee_asset.clone(), -fill.fee.raw()),
        ] {
            if amount == 0 {
                continue;
            }
            *self
                .unsettled
                .entry((fill.account.clone(), asset.clone(), day))
                .or_default() += amount;
            *self
                .expected
                .entry((fill.account.clone(), asset))
                .or_default() += amount;
        }
        Ok(())
    }

    /// An account funded on the exchange and in custody alike (opening balances).
    pub fn open_balance(
        &mut self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
        now: UnixNanos,
    ) {
        *self.wallet(account, asset, WalletKind::Hot) += amount;
        *self
            .expected
            .entry((account.clone(), asset.clone()))
            .or_default() += amount.raw();
        self.record(now, "balance.opened", account, asset, amount, 0);
    }

    /// Instructions, by id.
    pub fn instructions(&self) -> impl Iterator<Item = &Instruction> {
        self.instructions.values()
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> &[AuditRecord] {
        &self.audit
    }

    /// When the next step has something to do, if ever.
    pub fn next_due(&self) -> Option<UnixNanos> {
        let instructions = self.instructions.values().filter_map(|i| match i.status {
            Status::Pending => Some(i.due),
            Status::Delayed { until } => Some(until),
            _ => None,
        });
        let transfers = self
            .transfers
            .values()
            .filter(|t| t.status == Status::Pending)
            .map(|t| t.requested_at + Nanos(self.config.block_time.0 * i64::from(t.required)));
        instructions.chain(transfers).min()
    }

    /// Advances to `now`: confirms transfers, creates the instructions of
    /// the trade dates the cycle closes, and settles what is due. Returns
    /// the ids of instructions that changed.
    pub fn step(&mut self, now: UnixNanos) -> Vec<u64> {
        self.confirm(now);
        self.instruct(now);
        self.settle(now)
    }

    fn confirm(&mut self, now: UnixNanos) {
        let block = self.config.block_time.0.max(1);
        let due: Vec<u64> = self
            .transfers
            .values()
            .filter(|t| {
                t.status == Status::Pending
                    && now.0 - t.requested_at.0 >= block * i64::from(t.required)
            })
            .map(|t| t.id)
            .collect();
        for id in due {
            let t = self.transfers.get_mut(&id).expect("listed above");
            t.status = Status::Settled;
            let t = t.clone();
            if t.withdrawal {
                self.record(
                    now,
                    "withdrawal.confirmed",
                    &t.account,
                    &t.asset,
                    t.amount,
                    id,
                );
            } else {
                *self.wallet(&t.account, &t.asset, WalletKind::Hot) += t.amount;
                *self
                    .expected
                    .entry((t.account.clone(), t.asset.clone()))
                    .or_default() += t.amount.raw();
                self.record(now, "deposit.credited", &t.account, &t.asset, t.amount, id);
            }
        }
    }

    /// Nets unsettled flows into instructions: all of them at T+0, closed trade dates at T+N.
    fn instruct(&mut self, now: UnixNanos) {
        let today = now.0.div_euclid(DAY);
        let ready: Vec<(AccountId, AssetCode, i64)> = self
            .unsettled
            .keys()
            .filter(|(_, _, day)| match self.config.cycle {
                SettlementCycle::Immediate => true,
                SettlementCycle::Days(_) => *day < today,
            })
            .cloned()
            .collect();
        for key in ready {
            let amount = self.unsettled.remove(&key).unwrap_or(0);
            if amount == 0 {
                continue;
            }
            let (account, asset, day) = key;
            let due = match self.config.cycle {
                SettlementCycle::Immediate => now,
                // T+N: at the end of the Nth day after the trade date.
                SettlementCycle::Days(n) => UnixNanos((day + 1 + i64::from(n.max(1))) * DAY),
            };
            let id = self.id();
            self.instructions.insert(
                id,
                Instruction {
                    id,
                    account: account.clone(),
                    asset: asset.clone(),
                    amount: Amount::from_raw(amount),
                    trade_date: day,
                    due,
                    status: Status::Pending,
                    attempts: 0,
                },
            );
            self.record(
                now,
                "instruction.created",
                &account,
                &asset,
                Amount::from_raw(amount),
                id,
            );
        }
    }

    fn settle(&mut self, now: UnixNanos) -> Vec<u64> {
        let due: Vec<u64> = self
            .instructions
            .values()
            .filter(|i| match i.status {
                Status::Pending => i.due <= now,
                Status::Delayed { until } => until <= now,
                _ => false,
            })
            .map(|i| i.id)
            .collect();
        let mut changed = Vec::new();
        for id in due {
            let i = self.instructions[&id].clone();
            let hit = |sel: &Selector, rng: &mut DetRng| {
                sel.matches(&i) && sel.bps.is_none_or(|b| rng.gen_range(0u32..10_000) < b)
            };
            let fail = self
                .chaos
                .fail
                .clone()
                .iter()
                .any(|s| hit(s, &mut self.rng));
            let delay = if fail {
                None
            } else {
                self.chaos
                    .delay
                    .clone()
                    .iter()
                    .find(|(s, _)| hit(s, &mut self.rng))
                    .map(|(_, d)| *d)
            };
            let hot = self.balance(&i.account, &i.asset, WalletKind::Hot);
            let status = if fail {
                Status::Failed {
                    reason: "failed by chaos".into(),
                }
            } else if let Some(d) = delay.filter(|_| !matches!(i.status, Status::Delayed { .. })) {
                Status::Delayed { until: now + d }
            } else if hot + i.amount < Amount::ZERO {
                Status::Failed {
                    reason: format!(
                        "hot wallet holds {hot} {}, {} to deliver",
                        i.asset, -i.amount
                    ),
                }
            } else {
                Status::Settled
            };
            if status == Status::Settled {
                *self.wallet(&i.account, &i.asset, WalletKind::Hot) += i.amount;
            }
            let event = match &status {
                Status::Settled => "instruction.settled",
                Status::Failed { .. } => "instruction.failed",
                Status::Delayed { .. } => "instruction.delayed",
                Status::Pending => "instruction.pending",
            };
            self.record(now, event, &i.account, &i.asset, i.amount, id);
            let entry = self.instructions.get_mut(&id).expect("listed above");
            entry.attempts += 1;
            entry.status = status;
            changed.push(id);
        }
        changed
    }

    /// Retries a failed instruction at its next step.
    pub fn retry(&mut self, id: u64, now: UnixNanos) -> bool {
        match self.instructions.get_mut(&id) {
            Some(i) if matches!(i.status, Status::Failed { .. }) => {
                i.status = Status::Pending;
                i.due = now;
                let (account, asset, amount) = (i.account.clone(), i.asset.clone(), i.amount);
                self.record(now, "instruction.retried", &account, &asset, amount, id);
                true
            }
            _ => false,
        }
    }

    /// Compares the exchange's balances, custody's and what the fills say,
    /// for every account and asset any of them knows. Deposits and
    /// withdrawals are expected on the exchange too (the service mirrors
    /// them). `exchange` gives the
    /// exchange's total balance of an (account, asset).
    pub fn reconcile(&self, exchange: impl Fn(&AccountId, &AssetCode) -> Amount) -> Vec<Break> {
        let mut keys: BTreeSet<(AccountId, AssetCode)> = self.expected.keys().cloned().collect();
        keys.extend(self.wallets.keys().map(|(a, s, _)| (a.clone(), s.clone())));
        let mut out = Vec::new();
        for (account, asset) in keys {
            let expected = Amount::from_raw(
                self.expected
                    .get(&(account.clone(), asset.clone()))
                    .copied()
                    .unwrap_or(0),
            );
            let ex = exchange(&account, &asset);
            let custody = self.total(&account, &asset);
            let mut in_flight: i128 = self
                .unsettled
                .iter()
                .filter(|((a, s, _), _)| *a == account && *s == asset)
                .map(|(_, v)| *v)
                .sum();
            let mut failed = false;
            for i in self
                .instructions
                .values()
                .filter(|i| i.account == account && i.asset == asset)
            {
                match i.status {
                    Status::Pending | Status::Delayed { .. } => in_flight += i.amount.raw(),
                    Status::Failed { .. } => {
                        in_flight += i.amount.raw();
                        failed = true;
                    }
                    Status::Settled => {}
                }
            }
            let mut kind = Vec::new();
            if ex != expected {
                kind.push("exchange".to_string());
            }
            if custody.raw() + in_flight != expected.raw() || failed {
                kind.push("custody".to_string());
            }
            if !kind.is_empty() {
                out.push(Break {
                    account,
                    asset,
                    expected,
                    exchange: ex,
                    custody,
                    in_flight: Amount::from_raw(in_flight),
                    kind,
                });
            }
        }
        out
    }
}
