//! The custodian as a service: fills from the bus, settlement steps in real
//! time, state in the state store, reconciliation against the venue, and
//! breaks published for the risk monitor.
//!
//! **Nothing settles twice.** The custodian's whole state is one snapshot
//! in the state store, written in the same transaction as the audit
//! records of what changed, and only over the version it was read at. A
//! crash (even `kill -9`) in the middle of a cycle loses only what was not
//! committed; the restarted custodian redoes that from the last snapshot,
//! so each instruction is settled in exactly one committed transaction.
//! Fills acknowledged on the bus but not yet in a snapshot are not lost
//! either: at start the custodian reads the fill history the exchange keeps
//! in the same store, and counts each fill once.
//!
//! Routes (under `/api/v1/custody`): `GET balances[?account=]`,
//! `GET instructions`, `GET reconciliation`, `GET audit`,
//! `PUT chaos` (a JSON [`CustodyChaos`]), `POST instructions/{id}/retry`,
//! `POST deposits` and `POST withdrawals` (`{account, asset, amount}`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tradestack_api::{ApiError, ApiQuery};
use tradestack_bus::{Bus, Topic};
use tradestack_config::ConfigDuration;
use tradestack_kernel::Clock;
use tradestack_model::{AccountId, Amount, AssetCode, Fill, Instrument, Nanos, UnixNanos};
use tradestack_service::{Check, Service};
use tradestack_store::{
    AuditRecord as StoredAudit, FillQuery, Snapshot, StateStore, Write, WriteBatch,
};
use tradestack_trading::venue::Venue;

use crate::custodian::{
    Break, Custodian, CustodyChaos, CustodyConfig, CustodySnapshot, Instruction, SettlementCycle,
    WalletKind,
};

/// Bus topic of reconciliation results ([`BreakReport`]).
pub const BREAKS_TOPIC: &str = "custody.breaks";
/// The custodian's snapshot id in the state store.
pub const SNAPSHOT_ID: &str = "custody";

/// One reconciliation, as published on [`BREAKS_TOPIC`]: every break now
/// (an empty list means all clean).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakReport {
    /// When it ran.
    pub ts: UnixNanos,
    /// The breaks found.
    pub breaks: Vec<Break>,
}

/// The `[custody]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustodySettings {
    /// `t0` (immediate), or the number of days after the trade date: 1 for T+1, ...
    pub cycle: CycleSetting,
    /// The accounts kept in custody (default: every strategy account).
    pub accounts: Vec<AccountId>,
    /// Confirmations per asset for deposits and withdrawals.
    pub confirmations: std::collections::BTreeMap<AssetCode, u32>,
    /// Confirmations for other assets.
    pub default_confirmations: u32,
    /// Time per confirmation.
    pub block_time: ConfigDuration,
    /// How often settlement steps run.
    pub step_every: ConfigDuration,
    /// How often custody is reconciled with the venue.
    pub reconcile_every: ConfigDuration,
    /// Seed of percentage chaos.
    pub seed: u64,
    /// Reconciliations in a row a difference must show up in before it is
    /// reported: the venue's balances and the fills reach custody by
    /// different paths, so one run can catch a fill on one side only.
    pub confirm_breaks: u32,
}

/// The settlement cycle as written in TOML: `"t0"` or a number of days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CycleSetting {
    /// `"t0"`.
    Named(CycleName),
    /// Days after the trade date.
    Days(u32),
}

/// Named cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleName {
    /// Immediate.
    T0,
}

impl Default for CustodySettings {
    fn default() -> Self {
        CustodySettings {
            cycle: CycleSetting::Named(CycleName::T0),
            accounts: Vec::new(),
            confirmations: Default::default(),
            default_confirmations: 3,
            block_time: ConfigDuration::from_secs(10),
            step_every: ConfigDuration::from_secs(1),
            reconcile_every: ConfigDuration::from_secs(10),
            seed: 7,
            confirm_breaks: 2,
        }
    }
}

impl CustodySettings {
    /// Reads the `[custody]` table; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<Self, String> {
        let s: CustodySettings =
            serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| format!("custody.{}: {}", e.path(), e.inner().message()))?;
        if s.cycle == CycleSetting::Days(0) {
            return Err("custody.cycle: use \"t0\" for same-day settlement".into());
        }
        if s.step_every.as_std().is_zero() || s.reconcile_every.as_std().is_zero() {
            return Err("custody.step_every and reconcile_every: must be > 0".into());
        }
        Ok(s)
    }

    /// The custodian's configuration.
    pub fn custody_config(&self) -> CustodyConfig {
        CustodyConfig {
            cycle: match self.cycle {
                CycleSetting::Named(CycleName::T0) => SettlementCycle::Immediate,
                CycleSetting::Days(n) => SettlementCycle::Days(n),
            },
            confirmations: self.confirmations.clone(),
            default_confirmations: self.default_confirmations,
            block_time: Nanos::from_std(self.block_time.as_std()),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] tradestack_store::StoreError),
    /// The stored snapshot is unreadable.
    #[error("custody snapshot: {0}")]
    Snapshot(String),
    /// The venue could not be read.
    #[error("venue: {0}")]
    Venue(#[from] tradestack_trading::venue::VenueError),
    /// The bus refused a subscription.
    #[error("bus: {0}")]
    Bus(String),
}

struct Inner {
    custodian: Custodian,
    /// Snapshot version in the store (None: not written yet).
    version: Option<u64>,
    /// Changed since the last commit.
    dirty: bool,
    /// Audit records drained but not yet committed.
    audit: Vec<(u64, crate::custodian::AuditRecord)>,
    last_breaks: Option<BreakReport>,
    /// Consecutive reconciliations each (account, asset) has differed in.
    streaks: std::collections::BTreeMap<(AccountId, AssetCode), u32>,
    accounts: BTreeSet<AccountId>,
    /// Set when another instance wrote a newer snapshot: this one stops writing.
    fenced: bool,
}

/// What the service needs from its host.
pub struct Context {
    /// The state store (the exchange's fill history is read from it too).
    pub store: Arc<dyn StateStore>,
    /// The bus.
    pub bus: Bus,
    /// The service clock.
    pub clock: Arc<dyn Clock>,
    /// The venue whose balances custody is reconciled with.
    pub venue: Arc<dyn Venue>,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// The running custodian service.
#[derive(Clone)]
pub struct CustodianService {
    inner: Arc<Mutex<Inner>>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
}

impl CustodianService {
    /// Restores the custodian from the store (or opens the accounts'
    /// venue balances on first start), catches up on stored fills, and
    /// starts stepping, persisting and reconciling.
    pub async fn start(
        settings: CustodySettings,
        ctx: Context,
    ) -> Result<CustodianService, StartError> {
        let instruments: Vec<Instrument> = ctx.venue.instruments().await?;
        let accounts: BTreeSet<AccountId> = settings.accounts.iter().cloned().collect();
        // Subscribe before reading the history, so nothing falls in between.
        let fills = ctx
            .bus
            .subscribe(
                &Topic::<Fill>::new(tradestack_exchange::service::FILLS_TOPIC),
                Some("custodian"),
            )
            .await
            .map_err(|e| StartError::Bus(e.to_string()))?;
        let stored = ctx.store.get_snapshot(SNAPSHOT_ID).await?;
        let (mut custodian, version) = match stored {
            Some(s) => {
                let snap: CustodySnapshot = serde_json::from_value(s.data)
                    .map_err(|e| StartError::Snapshot(e.to_string()))?;
                let c = Custodian::restore(
                    settings.custody_config(),
                    instruments.iter(),
                    settings.seed,
                    snap,
                );
                tracing::info!(
                    version = s.version,
                    "custodian restored from the state store"
                );
                (c, Some(s.version))
            }
            None => {
                let mut c =
                    Custodian::new(settings.custody_config(), instruments.iter(), settings.seed);
                let now = ctx.clock.now();
                let assets = tradestack_model::assets_of(&instruments);
                for account in &accounts {
                    for asset in &assets {
                        let held = ctx.venue.balance(account, asset).await?;
                        if held != Amount::ZERO {
                            c.open_balance(account, asset, held, now);
                        }
                    }
                }
                (c, None)
            }
        };
        let mut caught_up = 0u64;
        for account in &accounts {
            let history = ctx
                .store
                .fills(FillQuery {
                    account: Some(account.clone()),
                    ..FillQuery::default()
                })
                .await?;
            // Oldest first, as they happened; fills already counted are skipped.
            for f in history.iter().rev() {
                if custodian.on_fill(f).is_ok() {
                    caught_up += 1;
                }
            }
        }
        tracing::info!(
            fills = caught_up,
            "custodian caught up on the stored fill history"
        );
        let svc = CustodianService {
            inner: Arc::new(Mutex::new(Inner {
                custodian,
                version,
                dirty: true,
                audit: Vec::new(),
                last_breaks: None,
                streaks: Default::default(),
                accounts,
                fenced: false,
            })),
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
        };
        // Persist what start-up changed before anything else happens.
        svc.persist().await;
        tokio::spawn(take_fills(svc.clone(), fills));
        tokio::spawn(run(svc.clone(), settings, ctx.venue, ctx.bus, ctx.shutdown));
        Ok(svc)
    }

    /// Writes the snapshot and the new audit records, in one transaction,
    /// over the version last read or written. Returns false when nothing
    /// could be written.
    pub async fn persist(&self) -> bool {
        let (batch, next) = {
            let mut g = self.inner.lock();
            if g.fenced || !g.dirty {
                return !g.fenced;
            }
            let drained = g.custodian.drain_audit();
            g.audit.extend(drained);
            let snap = g.custodian.snapshot();
            let Ok(data) = serde_json::to_value(&snap) else {
                return false;
            };
            let next = g.version.map_or(1, |v| v + 1);
            let now = self.clock.now();
            let mut batch = WriteBatch::new();
            batch.push(Write::PutSnapshotIfVersion {
                snapshot: Snapshot {
                    id: SNAPSHOT_ID.to_string(),
                    version: next,
                    ts: now,
                    data,
                },
                expected: g.version,
            });
            for (n, r) in &g.audit {
                batch.push(Write::AppendAudit(StoredAudit {
                    id: format!("custody-{n}"),
                    ts: r.at,
                    actor: "custodian".into(),
                    action: r.event.clone(),
                    subject: format!("{}/{}", r.account, r.asset),
                    detail: serde_json::json!({
                        "amount": r.amount.to_string(),
                        "reference": r.reference,
                    }),
                }));
            }
            g.dirty = false;
            (batch, next)
        };
        match self.store.commit(batch).await {
            Ok(()) => {
                let mut g = self.inner.lock();
                g.version = Some(next);
                g.audit.clear();
                true
            }
            Err(tradestack_store::StoreError::VersionConflict { .. }) => {
                let mut g = self.inner.lock();
                g.fenced = true;
                tracing::error!(
                    "another custodian wrote a newer snapshot; this one stops writing (restart it)"
                );
                false
            }
            Err(e) => {
                self.inner.lock().dirty = true;
                tracing::warn!(error = %e, "custody state not persisted; retrying at the next step");
                false
            }
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock())
    }
}

/// Counts the managed accounts' fills into the custodian.
async fn take_fills(svc: CustodianService, mut fills: tradestack_bus::Subscription<Fill>) {
    while let Some(d) = fills.recv().await {
        svc.with(|g| {
            if g.accounts.contains(&d.msg.account) {
                match g.custodian.on_fill(&d.msg) {
                    Ok(()) => g.dirty = true,
                    Err(e) => tracing::warn!(error = %e, "fill not taken into custody"),
                }
            }
        });
    }
}

/// Steps and persists on `step_every`; reconciles and publishes on `reconcile_every`.
async fn run(
    svc: CustodianService,
    settings: CustodySettings,
    venue: Arc<dyn Venue>,
    bus: Bus,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut step = tokio::time::interval(settings.step_every.as_std());
    let mut reconcile = tokio::time::interval(settings.reconcile_every.as_std());
    let publisher = bus.publisher(&Topic::<BreakReport>::new(BREAKS_TOPIC)).ok();
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            _ = step.tick() => {
                let now = svc.clock.now();
                svc.with(|g| {
                    if !g.custodian.step(now).is_empty() {
                        g.dirty = true;
                    }
                });
                svc.persist().await;
            }
            _ = reconcile.tick() => {
                let Some(report) = reconcile_once(&svc, &*venue, settings.confirm_breaks).await else { continue };
                if let Some(p) = &publisher
                    && let Err(e) = p.publish(None, report.clone()).await
                {
                    tracing::warn!(error = %e, "reconciliation not published");
                }
                svc.with(|g| g.last_breaks = Some(report));
            }
        }
    }
    svc.persist().await;
}

/// Reads the venue's balances of every (account, asset) custody knows and
/// compares; reports the differences seen `confirm` times in a row.
async fn reconcile_once(
    svc: &CustodianService,
    venue: &dyn Venue,
    confirm: u32,
) -> Option<BreakReport> {
    let keys: Vec<(AccountId, AssetCode)> = svc.with(|g| {
        g.custodian
            .known_balances()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    });
    let mut venue_balances = std::collections::BTreeMap::new();
    for (account, asset) in keys {
        match venue.balance(&account, &asset).await {
            Ok(b) => {
                venue_balances.insert((account, asset), b);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation skipped: the venue did not answer");
                return None;
            }
        }
    }
    let ts = svc.clock.now();
    let breaks = svc.with(|g| {
        let found = g.custodian.reconcile(|a, s| {
            venue_balances
                .get(&(a.clone(), s.clone()))
                .copied()
                .unwrap_or(Amount::ZERO)
        });
        let mut streaks = std::collections::BTreeMap::new();
        for b in &found {
            let key = (b.account.clone(), b.asset.clone());
            let n = g.streaks.get(&key).copied().unwrap_or(0) + 1;
            streaks.insert(key, n);
        }
        g.streaks = streaks;
        found
            .into_iter()
            .filter(|b| g.streaks[&(b.account.clone(), b.asset.clone())] >= confirm.max(1))
            .collect()
    });
    Some(BreakReport { ts, breaks })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFilter {
    account: Option<AccountId>,
}

/// One wallet balance as the API shows it.
#[derive(Serialize)]
struct WalletView {
    account: AccountId,
    asset: AssetCode,
    wallet: WalletKind,
    balance: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    account: AccountId,
    asset: AssetCode,
    amount: Amount,
}

async fn balances(
    State(svc): State<CustodianService>,
    ApiQuery(q): ApiQuery<AccountFilter>,
) -> Json<Vec<WalletView>> {
    Json(svc.with(|g| {
        g.custodian
            .wallets()
            .filter(|(a, _, _, _)| q.account.as_ref().is_none_or(|x| x == *a))
            .map(|(account, asset, wallet, balance)| WalletView {
                account: account.clone(),
                asset: asset.clone(),
                wallet,
                balance,
            })
            .collect()
    }))
}

async fn instructions(State(svc): State<CustodianService>) -> Json<Vec<Instruction>> {
    Json(svc.with(|g| g.custodian.instructions().cloned().collect()))
}

async fn reconciliation(State(svc): State<CustodianService>) -> Json<Option<BreakReport>> {
    Json(svc.with(|g| g.last_breaks.clone()))
}

async fn audit(State(svc): State<CustodianService>) -> Result<Json<Vec<StoredAudit>>, ApiError> {
    let records = svc
        .store
        .audit(tradestack_store::AuditQuery::default())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()))?;
    Ok(Json(
        records
            .into_iter()
            .filter(|r| r.actor == "custodian")
            .collect(),
    ))
}

async fn set_chaos(
    State(svc): State<CustodianService>,
    body: Bytes,
) -> Result<Json<CustodyChaos>, ApiError> {
    let chaos: CustodyChaos = tradestack_api::parse_json(&body)?;
    svc.with(|g| {
        g.custodian.set_chaos(chaos.clone());
        g.dirty = true;
    });
    svc.persist().await;
    Ok(Json(chaos))
}

async fn retry(
    State(svc): State<CustodianService>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = svc.clock.now();
    let ok = svc.with(|g| {
        let ok = g.custodian.retry(id, now);
        g.dirty |= ok;
        ok
    });
    if !ok {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!("instruction {id} does not exist or has not failed"),
        ));
    }
    svc.persist().await;
    Ok(Json(serde_json::json!({"retried": id})))
}

async fn transfer(
    svc: CustodianService,
    body: Bytes,
    withdrawal: bool,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: TransferBody = tradestack_api::parse_json(&body)?;
    let now = svc.clock.now();
    let r = svc.with(|g| {
        let r = if withdrawal {
            g.custodian.withdraw(&b.account, &b.asset, b.amount, now)
        } else {
            g.custodian.deposit(&b.account, &b.asset, b.amount, now)
        };
        g.dirty |= r.is_ok();
        r
    });
    match r {
        Ok(id) => {
            svc.persist().await;
            Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"id": id}))))
        }
        Err(e) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, "refused", e.to_string()).with_field("amount"),
        ),
    }
}

async fn deposit(
    State(svc): State<CustodianService>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    transfer(svc, body, false).await
}

async fn withdraw(
    State(svc): State<CustodianService>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    transfer(svc, body, true).await
}

#[async_trait]
impl Service for CustodianService {
    fn name(&self) -> &'static str {
        "custodian"
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/api/v1/custody/balances", get(balances))
            .route("/api/v1/custody/instructions", get(instructions))
            .route("/api/v1/custody/instructions/{id}/retry", post(retry))
            .route("/api/v1/custody/reconciliation", get(reconciliation))
            .route("/api/v1/custody/audit", get(audit))
            .route("/api/v1/custody/chaos", put(set_chaos))
            .route("/api/v1/custody/deposits", post(deposit))
            .route("/api/v1/custody/withdrawals", post(withdraw))
            .with_state(self.clone())
    }

    async fn checks(&self) -> Vec<Check> {
        let fenced = self.with(|g| g.fenced);
        vec![Check::from_result(
            "custody_state",
            if fenced {
                Err("another custodian owns the stored state")
            } else {
                Ok(())
            },
        )]
    }
}
