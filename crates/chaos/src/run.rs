//! The coordinator in simulated time: the whole ecosystem in one process
//! (the market simulator's agents and the exchange core, the strategies
//! with the risk monitor as their gate and watcher, the custodian), the
//! scenario's steps applied at their times, and every injection and
//! detection on one timeline.
//!
//! Deterministic: time is simulated and every random stream comes from the
//! seed, so the same scenario and seed give the same report, byte for byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_audit::events::{alert_detection, transition_detection};
use tradestack_audit::positions::FillPositions;
use tradestack_audit::{Correlation, Detection, Injection};
use tradestack_custody::{Custodian, CustodyChaos, CustodyConfig, SettlementCycle, Status};
use tradestack_exchange::{ExchangeEvent, ExchangeSettings};
use tradestack_marketdata::reference::OverlayId;
use tradestack_marketdata::sim::SimConfig;
use tradestack_model::{AccountId, Amount, Nanos, Price, UnixNanos};
use tradestack_risk::{AlertChange, RiskEvent, RiskedSession};
use tradestack_trading::SessionConfig;
use tradestack_trading::session::SessionFaults;

use crate::faults;
use crate::scenario::{FaultKind, Scenario};
use crate::timeline::Timeline;

pub use tradestack_audit::events::Outcome;
pub use tradestack_audit::service::RULES;

/// Where every run starts: 2026-01-01T00:00:00Z, so reports do not depend on when they ran.
pub const START: UnixNanos = UnixNanos(1_767_225_600_000_000_000);

/// How long after clearing a fault its detections still count for it.
pub const GRACE: Nanos = Nanos(300_000_000_000);

/// The coordinator's clock step: steps and conditions are judged each second.
const TICK: Nanos = Nanos::SECOND;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The session refused the scenario's setup.
    #[error("setup: {0}")]
    Setup(String),
}

/// Counts of what the run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Exchange events (orders, fills, trades, book changes).
    pub events: u64,
    /// Public trades.
    pub trades: u64,
    /// Strategy fills.
    pub strategy_fills: u64,
    /// Settlement instructions settled.
    pub settled: u64,
}

/// One sample of the strategies' P&L, for the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnlPoint {
    /// Offset from the start.
    pub at: Nanos,
    /// Realized plus unrealized at the reference (else the mid), in the quote assets.
    pub pnl: Amount,
}

/// One sample of the reference prices, for the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePoint {
    /// Offset from the start.
    pub at: Nanos,
    /// Reference price per symbol (`BTC-USD`, `USDT-USD`, ...).
    pub prices: BTreeMap<String, Price>,
}

/// The report of one run. Field order is the JSON order, and nothing in it
/// depends on the wall clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// Simulated time covered.
    pub duration: Nanos,
    /// True when every expectation held.
    pub passed: bool,
    /// Each expectation's outcome, in the file's order.
    pub expectations: Vec<Outcome>,
    /// What was injected.
    pub injections: Vec<Injection>,
    /// What was detected.
    pub detections: Vec<Detection>,
    /// The audit correlator's view of the two.
    pub correlation: Correlation,
    /// What happened.
    pub activity: Activity,
    /// P&L once a simulated minute.
    pub pnl: Vec<PnlPoint>,
    /// Lowest P&L seen.
    pub worst_pnl: Amount,
    /// Reference prices once a simulated minute (live: every 5 s).
    pub prices: Vec<PricePoint>,
    /// The independent checks: positions recomputed from the fills, and
    /// custody balances from the settlements.
    pub validation: Validation,
    /// Hooks that failed and checks that could not be made (live runs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What the independent recomputation found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// Positions compared (strategy and instrument).
    pub positions_checked: usize,
    /// Balances compared (account and asset).
    pub balances_checked: usize,
    /// Every disagreement with what the services report.
    pub disagreements: Vec<String>,
}

/// Progress while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Simulated time done.
    pub done: Nanos,
    /// Simulated time in all.
    pub total: Nanos,
    /// Injections so far.
    pub injections: usize,
    /// Detections so far.
    pub detections: usize,
}

/// Something that happened, as the live summary shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// A fault was injected or cleared.
    Injected(Injection),
    /// An alert fired or a state changed.
    Detected(Detection),
}

/// Runs `scenario` with `seed` in simulated time; `progress` hears each
/// simulated second, `happening` each injection and detection.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    mut progress: impl FnMut(Progress),
    mut happening: impl FnMut(&Happening),
) -> Result<Report, RunError> {
    let mut exchange = ExchangeSettings::default();
    if !scenario.instruments.is_empty() {
        exchange
            .instruments
            .retain(|i| scenario.instruments.contains(&i.id));
    }
    let mut sim = SimConfig::default();
    if let Some(agents) = &scenario.agents {
        sim.agents = agents.clone();
    }
    sim.agents
        .retain(|a| exchange.instruments.iter().any(|i| i.id == a.instrument));
    let config = SessionConfig {
        sim,
        exchange,
        strategies: scenario.strategies.clone(),
        funding: scenario.funding,
        ..SessionConfig::default()
    };
    let mut rs = RiskedSession::new(&config, scenario.risk.clone(), START, seed)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let instruments = config.exchange.instruments.clone();
    let accounts: Vec<AccountId> = {
        let mut a: Vec<AccountId> = scenario
            .strategies
            .iter()
            .map(|s| s.account.clone())
            .collect();
        a.sort();
        a.dedup();
        a
    };
    let mut custodian = Custodian::new(
        CustodyConfig {
            cycle: match scenario.custody.settle_days {
                0 => SettlementCycle::Immediate,
                n => SettlementCycle::Days(n),
            },
            ..CustodyConfig::default()
        },
        instruments.iter(),
        seed ^ 0xC057_0D1A,
    );
    for account in &accounts {
        for asset in tradestack_model::assets_of(&instruments) {
            custodian.open_balance(account, &asset, scenario.funding, START);
        }
    }
    let reconcile_every = Nanos::from_std(scenario.custody.reconcile_every.as_std())
        .0
        .max(TICK.0);
    let total = Nanos::from_std(scenario.duration.as_std());
    let end = START + total;

    let mut st = State::default();
    let mut pending: Vec<bool> = vec![true; scenario.steps.len()];
    let mut now = START;
    let mut next_reconcile = START.0 + reconcile_every;
    let mut worst = Amount::ZERO;
    let mut pnl = Vec::new();
    let mut prices = Vec::new();
    while now < end {
        // Steps due now (their offset passed, or their condition holds).
        for (i, step) in scenario.steps.iter().enumerate() {
            let offset = now - START;
            if !pending[i] || !st.timeline.due(step, offset) {
                continue;
            }
            pending[i] = false;
            if let Some(fault) = &step.inject {
                apply(
                    &fault.kind,
                    &fault.id,
                    true,
                    &mut rs,
                    &mut custodian,
                    &mut st,
                    now,
                );
                let inj = Injection {
                    id: fault.id.clone(),
                    kind: fault.kind.name().to_string(),
                    at: offset,
                    cleared_at: None,
                };
                happening(&Happening::Injected(inj.clone()));
                st.timeline.inject(inj, fault.kind.clone());
            } else if let Some(id) = &step.clear
                && let Some((inj, kind)) = st.timeline.clear(id, offset)
            {
                apply(&kind, id, false, &mut rs, &mut custodian, &mut st, now);
                happening(&Happening::Injected(inj));
            }
        }
        let until = now + TICK;
        let mut fills = Vec::new();
        let mut detections = Vec::new();
        rs.run_until(until, |at, e| match e {
            RiskEvent::Exchange(ExchangeEvent::Fill(f)) => {
                if accounts.contains(&f.account) {
                    fills.push(f.clone());
                }
                st.activity.events += 1;
            }
            RiskEvent::Exchange(ExchangeEvent::Trade(_)) => {
                st.activity.trades += 1;
                st.activity.events += 1;
            }
            RiskEvent::Exchange(_) => st.activity.events += 1,
            RiskEvent::Alert(AlertChange::Fired(a)) => {
                detections.push(alert_detection(a, at, START));
            }
            RiskEvent::Alert(AlertChange::Resolved(_)) => {}
            RiskEvent::Transition(t) => detections.push(transition_detection(t, START)),
        });
        now = until;
        for f in &fills {
            st.activity.strategy_fills += 1;
            st.positions.add(f);
            let _ = custodian.on_fill(f);
        }
        st.activity.settled += custodian
            .step(now)
            .iter()
            .filter(|id| {
                custodian
                    .instructions()
                    .any(|i| i.id == **id && i.status == Status::Settled)
            })
            .count() as u64;
        if now.0 >= next_reconcile {
            next_reconcile += reconcile_every;
            let ledger = rs.session.sim.exchange.ledger();
            let breaks = custodian.reconcile(|a, s| ledger.get(a, s).total());
            if breaks.is_empty() {
                st.timeline.reconciled_clean(now - START);
            }
            rs.monitor_mut().on_reconciliation(&breaks);
        }
        for d in detections {
            happening(&Happening::Detected(d.clone()));
            st.timeline.detect(d);
        }
        if (now.0 - START.0) % Nanos::MINUTE.0 == 0 || now >= end {
            let p = total_pnl(&rs);
            worst = worst.min(p);
            pnl.push(PnlPoint {
                at: Nanos(now.0 - START.0),
                pnl: p,
            });
            prices.push(PricePoint {
                at: Nanos(now.0 - START.0),
                prices: rs
                    .session
                    .sim
                    .reference
                    .prices()
                    .into_iter()
                    .map(|(i, p)| (i.to_string(), p))
                    .collect(),
            });
        }
        progress(Progress {
            done: Nanos(now.0 - START.0),
            total,
            injections: st.timeline.injections.len(),
            detections: st.timeline.detections.len(),
        });
    }
    let lost = lost_orders(&rs, scenario);
    let validation = validate(
        &rs,
        &custodian,
        &st,
        &accounts,
        scenario.funding,
        &instruments,
    );
    let expectations = st
        .timeline
        .judge_all(&scenario.expect, Some(worst), &Ok(lost));
    let correlation = st.timeline.correlation(GRACE, RULES);
    Ok(Report {
        scenario: scenario.name.clone(),
        seed,
        duration: total,
        passed: expectations.iter().all(|o| o.passed),
        expectations,
        injections: st.timeline.injected(),
        detections: st.timeline.detections,
        correlation,
        activity: st.activity,
        pnl,
        worst_pnl: worst,
        prices,
        validation,
        errors: Vec::new(),
    })
}

/// What the run has seen so far.
#[derive(Default)]
struct State {
    timeline: Timeline,
    overlays: BTreeMap<String, OverlayId>,
    faults: SessionFaults,
    chaos: BTreeMap<String, CustodyChaos>,
    activity: Activity,
    /// Positions summed from the fills.
    positions: FillPositions,
}

/// Injects (`on`) or clears one fault.
fn apply(
    kind: &FaultKind,
    id: &str,
    on: bool,
    rs: &mut RiskedSession,
    custodian: &mut Custodian,
    st: &mut State,
    now: UnixNanos,
) {
    let sim = &mut rs.session.sim;
    if let Some(o) = faults::overlay(kind, now) {
        if on {
            if let Ok(oid) = sim.reference.add_overlay(o) {
                st.overlays.insert(id.to_string(), oid);
            }
        } else if let Some(oid) = st.overlays.remove(id) {
            sim.reference.clear_overlay(oid);
        }
        return;
    }
    if let Some(c) = faults::custody(kind) {
        if on {
            st.chaos.insert(id.to_string(), c);
        } else {
            st.chaos.remove(id);
        }
        custodian.set_chaos(faults::combined(&st.chaos));
        if !on && matches!(kind, FaultKind::SettlementFailure { .. }) {
            // Recovery: operations retry what failed.
            let failed: Vec<u64> = custodian
                .instructions()
                .filter(|i| matches!(i.status, Status::Failed { .. }))
                .map(|i| i.id)
                .collect();
            for i in failed {
                custodian.retry(i, now);
            }
        }
        return;
    }
    match kind {
        FaultKind::LiquidityWithdrawal => sim.population.withdraw_liquidity(on),
        FaultKind::ExchangeOutage => st.faults.outage = on,
        FaultKind::FeedCorruption { bps } => st.faults.corrupt_bps = if on { *bps } else { 0 },
        FaultKind::FeedDelay { delay } => {
            st.faults.feed_delay = if on {
                Nanos::from_std(delay.as_std())
            } else {
                Nanos(0)
            };
        }
        FaultKind::Strategy {
            strategy,
            misbehaviour,
        } => {
            let _ = rs
                .session
                .set_misbehaviour(strategy, on.then(|| misbehaviour.clone()));
        }
        _ => {}
    }
    rs.session.set_faults(st.faults);
}

/// Recomputes positions from the fills and custody balances from the
/// opening balances and the settled instructions, and compares them with
/// what the engine and the custodian report.
fn validate(
    rs: &RiskedSession,
    custodian: &Custodian,
    st: &State,
    accounts: &[AccountId],
    funding: Amount,
    instruments: &[tradestack_model::Instrument],
) -> Validation {
    let views = rs.session.engine.portfolio().views(None);
    let check = st.positions.compare(&views, "the engine");
    let mut v = Validation {
        positions_checked: check.positions_checked,
        balances_checked: 0,
        disagreements: check.disagreements,
    };
    for account in accounts {
        for asset in tradestack_model::assets_of(instruments) {
            v.balances_checked += 1;
            let settled: i128 = custodian
                .instructions()
                .filter(|i| {
                    &i.account == account && i.asset == asset && i.status == Status::Settled
                })
                .map(|i| i.amount.raw())
                .sum();
            let expected = funding.raw() + settled;
            let held = custodian.total(account, &asset).raw();
            if expected != held {
                v.disagreements.push(format!(
                    "custody {account} {asset}: settlements say {}, custody holds {}",
                    Amount::from_raw(expected),
                    Amount::from_raw(held)
                ));
            }
        }
    }
    v
}

/// Realized plus unrealized P&L of every strategy position, in their quote assets.
fn total_pnl(rs: &RiskedSession) -> Amount {
    pnl_of(&rs.session.engine.portfolio().views(None))
}

/// Realized plus unrealized (at the reference, else the mid) P&L of `views`.
pub fn pnl_of(views: &[tradestack_trading::PositionView]) -> Amount {
    views
        .iter()
        .map(|v| {
            let unrealized = v
                .unrealized_reference
                .or(v.unrealized_mid)
                .unwrap_or(Amount::ZERO);
            v.realized_pnl + unrealized
        })
        .fold(Amount::ZERO, |a, b| a + b)
}

/// Client order ids open on one side only: the engine's and the venue's lists.
pub fn unaccounted(engine: Vec<String>, venue: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = venue
        .iter()
        .filter(|c| !engine.contains(c))
        .cloned()
        .collect();
    out.extend(engine.iter().filter(|c| !venue.contains(c)).cloned());
    out
}

/// Orders the exchange holds open for a strategy account that the engine
/// does not know as open, and the reverse, by client order id.
fn lost_orders(rs: &RiskedSession, scenario: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for s in &scenario.strategies {
        let engine: Vec<String> = rs
            .session
            .engine
            .open_orders(&s.id)
            .iter()
            .map(|o| o.client_order_id.to_string())
            .collect();
        let prefix = format!("{}-", s.id);
        let venue: Vec<String> = rs
            .session
            .sim
            .exchange
            .open_orders(&s.account, None)
            .iter()
            .map(|o| o.client_order_id.to_string())
            .filter(|c| c.starts_with(&prefix))
            .collect();
        out.extend(unaccounted(engine, venue));
    }
    out.sort();
    out
}
