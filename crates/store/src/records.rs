//! Records kept by the store that are not domain events, the queries over
//! them, and the [`WriteBatch`] that changes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_model::{
    AccountId, Alert, Amount, AssetCode, EventId, Fill, InstrumentId, Order, OrderId, UnixNanos,
};

/// A trading account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id.
    pub id: AccountId,
    /// Fee/limit tier name.
    pub tier: String,
    /// When the account was opened.
    pub created_at: UnixNanos,
}

/// One account's holding of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Owner.
    pub account: AccountId,
    /// Asset held.
    pub asset: AssetCode,
    /// Available to trade or withdraw.
    pub free: Amount,
    /// Reserved by open orders or pending withdrawals.
    pub locked: Amount,
    /// When it last changed.
    pub updated_at: UnixNanos,
}

/// An alert with the id it is upserted under (usually rule + subject).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Stable id: writing the same id again updates the alert.
    pub id: String,
    /// The alert itself.
    pub alert: Alert,
}

/// One entry of the append-only audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id; appending an existing id is a [`crate::StoreError::Conflict`].
    pub id: String,
    /// When the action happened.
    pub ts: UnixNanos,
    /// Who did it (a user, a service).
    pub actor: String,
    /// What was done, e.g. `order.cancel`.
    pub action: String,
    /// What it was done to, e.g. an account or order id.
    pub subject: String,
    /// Free-form structured detail.
    pub detail: serde_json::Value,
}

/// A simulation scenario run and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRun {
    /// Run id.
    pub id: String,
    /// Scenario name.
    pub name: String,
    /// RNG seed, so the run can be replayed.
    pub seed: u64,
    /// Free-form status, e.g. `running`, `passed`, `failed`.
    pub status: String,
    /// When it started.
    pub started_at: UnixNanos,
    /// When it finished, if it has.
    pub finished_at: Option<UnixNanos>,
    /// The final report, if any.
    pub report: Option<serde_json::Value>,
}

/// A service instance known to the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// Instance id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Host name or IP address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// When it registered.
    pub registered_at: UnixNanos,
}

/// A service's state under a stable id (e.g. `custody`), replaced as a whole,
/// so a service can persist it in the same batch as its audit records and
/// outbox messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Stable id, usually the service name; writing it again replaces the snapshot.
    pub id: String,
    /// The writer's version of the state, checked by
    /// [`Write::PutSnapshotIfVersion`]; at most `i64::MAX`.
    pub version: u64,
    /// When the state was taken.
    pub ts: UnixNanos,
    /// The state itself.
    pub data: serde_json::Value,
}

/// A message to publish on the bus once the transaction that wrote it commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Event id; writing the same id twice keeps the first (deduplication).
    pub id: EventId,
    /// Destination topic.
    pub topic: String,
    /// Partition key, if any.
    pub key: Option<Vec<u8>>,
    /// Message headers, in order.
    pub headers: Vec<(String, String)>,
    /// Encoded message body.
    pub payload: Vec<u8>,
    /// When the message was created.
    pub created_at: UnixNanos,
}

/// Position of a message in the outbox: allocation order, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboxSeq(pub i64);

/// A pending outbox message with its sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// Sequence number, used to mark it delivered.
    pub seq: OutboxSeq,
    /// The message.
    pub message: OutboxMessage,
}

/// Outbox row counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Rows not yet delivered.
    pub pending: u64,
    /// Rows delivered and not yet purged.
    pub delivered: u64,
}

/// Filter for [`crate::StateStore::orders`]; results are newest first (by id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this account's orders.
    pub account: Option<AccountId>,
    /// Only orders on this instrument.
    pub instrument: Option<InstrumentId>,
    /// Only orders that can still fill (not filled, cancelled, rejected or expired).
    pub open_only: bool,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// Filter for [`crate::StateStore::fills`]; results are newest first (by ts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FillQuery {
    /// Only this account's fills.
    pub account: Option<AccountId>,
    /// Only fills of this order.
    pub order_id: Option<OrderId>,
    /// Only fills on this instrument.
    pub instrument: Option<InstrumentId>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// Filter for [`crate::StateStore::alerts`]; results are most recently seen first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only alerts from this rule.
    pub rule: Option<String>,
    /// Only alerts whose condition has not cleared.
    pub unresolved_only: bool,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// Filter for [`crate::StateStore::audit`]; results are oldest first, so
/// `since` = last seen ts pages forward through the trail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records about this subject.
    pub subject: Option<String>,
    /// Only records at or after this time.
    pub since: Option<UnixNanos>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// One change in a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Insert or replace an order (by order id).
    PutOrder(Order),
    /// Insert a fill; a fill already stored under (trade_id, order_id) is kept as is.
    PutFill(Fill),
    /// Insert or replace an account.
    PutAccount(Account),
    /// Insert or replace a balance (by account and asset).
    PutBalance(Balance),
    /// Insert or replace an alert (by id).
    PutAlert(StoredAlert),
    /// Append an audit record; an existing id fails the whole batch.
    AppendAudit(AuditRecord),
    /// Insert or replace a scenario run (by id).
    PutScenarioRun(ScenarioRun),
    /// Insert or replace a registry entry (by id).
    PutRegistryEntry(RegistryRecord),
    /// Remove a registry entry (no error when absent).
    DeleteRegistryEntry(String),
    /// Insert or replace a service snapshot (by id), whatever version is stored.
    PutSnapshot(Snapshot),
    /// Insert or replace a service snapshot (by id) only if the stored version
    /// is `expected` (`None`: no snapshot is stored under the id yet);
    /// otherwise the whole batch fails with [`crate::StoreError::VersionConflict`].
    /// A service that lost a race to another instance thus never overwrites
    /// newer state.
    PutSnapshotIfVersion {
        /// The new state, usually at version `expected + 1`.
        snapshot: Snapshot,
        /// The version the writer last read, or `None` if it read no snapshot.
        expected: Option<u64>,
    },
    /// Queue a bus message; a message with an id already queued is kept as is.
    Outbox(OutboxMessage),
}

impl Write {
    /// Short name of the operation, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Write::PutOrder(_) => "put_order",
            Write::PutFill(_) => "put_fill",
            Write::PutAccount(_) => "put_account",
            Write::PutBalance(_) => "put_balance",
            Write::PutAlert(_) => "put_alert",
            Write::AppendAudit(_) => "append_audit",
            Write::PutScenarioRun(_) => "put_scenario_run",
            Write::PutRegistryEntry(_) => "put_registry_entry",
            Write::DeleteRegistryEntry(_) => "delete_registry_entry",
            Write::PutSnapshot(_) => "put_snapshot",
            Write::PutSnapshotIfVersion { .. } => "put_snapshot_if_version",
            Write::Outbox(_) => "outbox",
        }
    }
}

/// Writes applied together in one transaction by [`crate::StateStore::commit`]:
/// all of them or none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    writes: Vec<Write>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a write in place.
    pub fn push(&mut self, write: Write) -> &mut Self {
        self.writes.push(write);
        self
    }
    /// Adds a write (builder style).
    pub fn with(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }
    /// Adds [`Write::PutOrder`].
    pub fn put_order(self, order: Order) -> Self {
        self.with(Write::PutOrder(order))
    }
    /// Adds [`Write::PutFill`].
    pub fn put_fill(self, fill: Fill) -> Self {
        self.with(Write::PutFill(fill))
    }
    /// Adds [`Write::PutAccount`].
    pub fn put_account(self, account: Account) -> Self {
        self.with(Write::PutAccount(account))
    }
    /// Adds [`Write::PutBalance`].
    pub fn put_balance(self, balance: Balance) -> Self {
        self.with(Write::PutBalance(balance))
    }
    /// Adds [`Write::PutAlert`].
    pub fn put_alert(self, alert: StoredAlert) -> Self {
        self.with(Write::PutAlert(alert))
    }
    /// Adds [`Write::AppendAudit`].
    pub fn append_audit(self, record: AuditRecord) -> Self {
        self.with(Write::AppendAudit(record))
    }
    /// Adds [`Write::PutScenarioRun`].
    pub fn put_scenario_run(self, run: ScenarioRun) -> Self {
        self.with(Write::PutScenarioRun(run))
    }
    /// Adds [`Write::PutRegistryEntry`].
    pub fn put_registry_entry(self, entry: RegistryRecord) -> Self {
        self.with(Write::PutRegistryEntry(entry))
    }
    /// Adds [`Write::DeleteRegistryEntry`].
    pub fn delete_registry_entry(self, id: impl Into<String>) -> Self {
        self.with(Write::DeleteRegistryEntry(id.into()))
    }
    /// Adds [`Write::PutSnapshot`].
    pub fn put_snapshot(self, snapshot: Snapshot) -> Self {
        self.with(Write::PutSnapshot(snapshot))
    }
    /// Adds [`Write::PutSnapshotIfVersion`].
    pub fn put_snapshot_if_version(self, snapshot: Snapshot, expected: Option<u64>) -> Self {
        self.with(Write::PutSnapshotIfVersion { snapshot, expected })
    }
    /// Adds [`Write::Outbox`].
    pub fn outbox(self, message: OutboxMessage) -> Self {
        self.with(Write::Outbox(message))
    }
    /// The writes, in the order they will be applied.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }
    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

impl From<Vec<Write>> for WriteBatch {
    fn from(writes: Vec<Write>) -> Self {
        WriteBatch { writes }
    }
}

impl Extend<Write> for WriteBatch {
    fn extend<I: IntoIterator<Item = Write>>(&mut self, iter: I) {
        self.writes.extend(iter);
    }
}

impl IntoIterator for WriteBatch {
    type Item = Write;
    type IntoIter = std::vec::IntoIter<Write>;
    fn into_iter(self) -> Self::IntoIter {
        self.writes.into_iter()
    }
}
