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
use tradestack_audit::{Correlation, Detection, Injection};
use tradestack_custody::{
    Custodian, CustodyChaos, CustodyConfig, Selector, SettlementCycle, Status,
};
use tradestack_exchange::{ExchangeEvent, ExchangeSettings};
use tradestack_marketdata::reference::{Overlay, OverlayId};
use tradestack_marketdata::sim::SimConfig;
use tradestack_model::{AccountId, Amount, Nanos, UnixNanos};
use tradestack_risk::{AlertChange, ChangedBy, RiskEvent, RiskedSession};
use tradestack_trading::SessionConfig;
use tradestack_trading::session::SessionFaults;

use crate::scenario::{Condition, Expectation, FaultKind, Scenario};

/// Where every run starts: 2026-01-01T00:00:00Z, so reports do not depend on when they ran.
pub const START: UnixNanos = UnixNanos(1_767_225_600_000_000_000);

/// Rules the risk monitor can fire, for coverage.
pub const RULES: &[&str] = &[
    "position_limit",
    "gross_exposure",
    "net_exposure",
    "concentration",
    "drawdown",
    "daily_loss",
    "depeg_exposure",
    "stale_market_data",
    "market_data_deviation",
    "exchange_errors",
    "exchange_latency",
    "settlement_break",
    "self_trade",
    "wash_trade",
    "order_rate",
];

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

/// How one expectation came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The expectation, in words.
    pub expectation: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
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
    /// The independent checks: positions recomputed from the fills, and
    /// custody balances from the settlements.
    pub validation: Validation,
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
    while now < end {
        // Steps due now (their offset passed, or their condition holds).
        for (i, step) in scenario.steps.iter().enumerate() {
            if !pending[i] {
                continue;
            }
            let due = match (&step.at, &step.when) {
                (Some(at), _) => now.0 - START.0 >= Nanos::from_std(at.as_std()).0,
                (None, Some(c)) => st.holds(c, now),
                _ => false,
            };
            if !due {
                continue;
            }
            pending[i] = false;
            let offset = Nanos(now.0 - START.0);
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
                st.injections.push((inj, fault.kind.clone()));
            } else if let Some(id) = &step.clear
                && let Some(n) = st.injections.iter().position(|(i, _)| &i.id == id)
            {
                let kind = st.injections[n].1.clone();
                apply(&kind, id, false, &mut rs, &mut custodian, &mut st, now);
                st.injections[n].0.cleared_at = Some(offset);
                happening(&Happening::Injected(st.injections[n].0.clone()));
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
            RiskEvent::Alert(AlertChange::Fired(a)) => detections.push(Detection {
                at: Nanos(at.0 - START.0),
                kind: "alert".into(),
                rule: a.rule.clone(),
                subject: a.subject.clone(),
                detail: format!("{:?}", a.severity).to_lowercase(),
            }),
            RiskEvent::Alert(AlertChange::Resolved(_)) => {}
            RiskEvent::Transition(t) => detections.push(Detection {
                at: Nanos(at.0 - START.0),
                kind: "state".into(),
                rule: match &t.by {
                    ChangedBy::Rule { rule } => rule.clone(),
                    ChangedBy::Manual { .. } => "manual".into(),
                },
                subject: t.subject.to_string(),
                detail: t.to.to_string(),
            }),
        });
        now = until;
        for f in &fills {
            st.activity.strategy_fills += 1;
            if let Some(strategy) = &f.strategy {
                let q = i128::from(f.quantity.raw());
                *st.positions
                    .entry((strategy.to_string(), f.instrument.to_string()))
                    .or_default() += match f.side {
                    tradestack_model::Side::Buy => q,
                    tradestack_model::Side::Sell => -q,
                };
            }
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
                st.clean.push(now);
            }
            rs.monitor_mut().on_reconciliation(&breaks);
        }
        for d in detections {
            if d.kind == "state" {
                st.states.push((d.subject.clone(), d.detail.clone(), now));
            } else {
                st.alerts.push((d.rule.clone(), now));
            }
            happening(&Happening::Detected(d.clone()));
            st.detections.push(d);
        }
        if (now.0 - START.0) % Nanos::MINUTE.0 == 0 || now >= end {
            let p = total_pnl(&rs);
            worst = worst.min(p);
            pnl.push(PnlPoint {
                at: Nanos(now.0 - START.0),
                pnl: p,
            });
        }
        progress(Progress {
            done: Nanos(now.0 - START.0),
            total,
            injections: st.injections.len(),
            detections: st.detections.len(),
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
    let injections: Vec<Injection> = st.injections.iter().map(|(i, _)| i.clone()).collect();
    let expectations: Vec<Outcome> = scenario
        .expect
        .iter()
        .map(|e| judge(e, &st, &injections, worst, &lost))
        .collect();
    let correlation = tradestack_audit::correlate(&injections, &st.detections, GRACE, RULES);
    Ok(Report {
        scenario: scenario.name.clone(),
        seed,
        duration: total,
        passed: expectations.iter().all(|o| o.passed),
        expectations,
        injections,
        detections: st.detections,
        correlation,
        activity: st.activity,
        pnl,
        worst_pnl: worst,
        validation,
    })
}

/// What the run has seen so far.
#[derive(Default)]
struct State {
    injections: Vec<(Injection, FaultKind)>,
    detections: Vec<Detection>,
    /// (rule, time) of every alert fired.
    alerts: Vec<(String, UnixNanos)>,
    /// (subject, new state, time) of every transition.
    states: Vec<(String, String, UnixNanos)>,
    overlays: BTreeMap<String, OverlayId>,
    faults: SessionFaults,
    chaos: BTreeMap<String, CustodyChaos>,
    /// Times custody reconciled clean.
    clean: Vec<UnixNanos>,
    activity: Activity,
    /// Signed position per (strategy, instrument), summed from the fills.
    positions: BTreeMap<(String, String), i128>,
}

impl State {
    fn holds(&self, c: &Condition, now: UnixNanos) -> bool {
        match c {
            Condition::Alert { rule } => self.alerts.iter().any(|(r, _)| r == rule),
            Condition::State { strategy, state } => self.states.iter().any(|(s, to, _)| {
                s.rsplit('/').next() == Some(strategy.as_str()) && *to == state.to_string()
            }),
            Condition::Cleared { fault, after } => self.injections.iter().any(|(i, _)| {
                &i.id == fault
                    && i.cleared_at.is_some_and(|c| {
                        let wait = after.map_or(0, |a| Nanos::from_std(a.as_std()).0);
                        now.0 - START.0 >= c.0 + wait
                    })
            }),
        }
    }

    /// The custodian's chaos: every active custody fault combined.
    fn custody_chaos(&self) -> CustodyChaos {
        let mut c = CustodyChaos::default();
        for f in self.chaos.values() {
            c.fail.extend(f.fail.iter().cloned());
            c.delay.extend(f.delay.iter().cloned());
            c.freeze_withdrawals |= f.freeze_withdrawals;
        }
        c
    }
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
    let overlay = |o: Overlay, sim: &mut tradestack_marketdata::sim::Simulation, st: &mut State| {
        if let Ok(oid) = sim.reference.add_overlay(o) {
            st.overlays.insert(id.to_string(), oid);
        }
    };
    match (kind, on) {
        (
            FaultKind::MarketShock {
                change,
                over,
                assets,
            },
            true,
        ) => overlay(
            Overlay::Shock {
                start: now,
                duration: over.map_or(Nanos(0), |d| Nanos::from_std(d.as_std())),
                change: *change,
                assets: assets.clone(),
            },
            sim,
            st,
        ),
        (
            FaultKind::Depeg {
                asset,
                target,
                decline,
                hold,
                recovery,
            },
            true,
        ) => overlay(
            Overlay::Depeg {
                asset: asset.clone(),
                start: now,
                target: *target,
                decline: Nanos::from_std(decline.as_std()),
                hold: hold.map(|h| Nanos::from_std(h.as_std())),
                recovery: Nanos::from_std(recovery.as_std()),
            },
            sim,
            st,
        ),
        (FaultKind::Volatility { factor, jumps }, true) => overlay(
            Overlay::VolRegime {
                start: now,
                assets: Vec::new(),
                vol_factor: *factor,
                jump_factor: *jumps,
            },
            sim,
            st,
        ),
        (
            FaultKind::MarketShock { .. } | FaultKind::Depeg { .. } | FaultKind::Volatility { .. },
            false,
        ) => {
            if let Some(oid) = st.overlays.remove(id) {
                sim.reference.clear_overlay(oid);
            }
        }
        (FaultKind::LiquidityWithdrawal, on) => sim.population.withdraw_liquidity(on),
        (FaultKind::ExchangeOutage, on) => {
            st.faults.outage = on;
            rs.session.set_faults(st.faults);
        }
        (FaultKind::FeedCorruption { bps }, on) => {
            st.faults.corrupt_bps = if on { *bps } else { 0 };
            rs.session.set_faults(st.faults);
        }
        (FaultKind::FeedDelay { delay }, on) => {
            st.faults.feed_delay = if on {
                Nanos::from_std(delay.as_std())
            } else {
                Nanos(0)
            };
            rs.session.set_faults(st.faults);
        }
        (
            FaultKind::SettlementFailure {
                asset,
                account,
                bps,
            },
            on,
        ) => {
            if on {
                st.chaos.insert(
                    id.to_string(),
                    CustodyChaos {
                        fail: vec![Selector {
                            asset: asset.clone(),
                            account: account.clone(),
                            bps: *bps,
                        }],
                        ..CustodyChaos::default()
                    },
                );
            } else {
                st.chaos.remove(id);
            }
            custodian.set_chaos(st.custody_chaos());
            if !on {
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
        }
        (FaultKind::SettlementDelay { asset, by }, on) => {
            if on {
                st.chaos.insert(
                    id.to_string(),
                    CustodyChaos {
                        delay: vec![(
                            Selector {
                                asset: asset.clone(),
                                ..Selector::default()
                            },
                            Nanos::from_std(by.as_std()),
                        )],
                        ..CustodyChaos::default()
                    },
                );
            } else {
                st.chaos.remove(id);
            }
            custodian.set_chaos(st.custody_chaos());
        }
        (
            FaultKind::Strategy {
                strategy,
                misbehaviour,
            },
            on,
        ) => {
            let _ = rs
                .session
                .set_misbehaviour(strategy, on.then(|| misbehaviour.clone()));
        }
    }
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
    let mut v = Validation::default();
    let reported: BTreeMap<(String, String), i128> = rs
        .session
        .engine
        .portfolio()
        .views(None)
        .into_iter()
        .filter_map(|p| {
            Some((
                (p.strategy?.to_string(), p.instrument.to_string()),
                p.quantity.raw(),
            ))
        })
        .collect();
    let mut keys: Vec<&(String, String)> = st.positions.keys().chain(reported.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        v.positions_checked += 1;
        let (ours, theirs) = (
            st.positions.get(k).copied().unwrap_or(0),
            reported.get(k).copied().unwrap_or(0),
        );
        if ours != theirs {
            v.disagreements.push(format!(
                "position {}/{}: fills say {}, the engine says {}",
                k.0,
                k.1,
                Amount::from_raw(ours),
                Amount::from_raw(theirs)
            ));
        }
    }
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
    rs.session
        .engine
        .portfolio()
        .views(None)
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
        out.extend(venue.iter().filter(|c| !engine.contains(c)).cloned());
        out.extend(engine.iter().filter(|c| !venue.contains(c)).cloned());
    }
    out.sort();
    out
}

fn dur(d: &tradestack_config::ConfigDuration) -> String {
    humantime::format_duration(d.as_std()).to_string()
}

fn secs(n: Nanos) -> String {
    format!(
        "{}.{:03} s",
        n.0 / 1_000_000_000,
        n.0 % 1_000_000_000 / 1_000_000
    )
}

fn judge(
    e: &Expectation,
    st: &State,
    injections: &[Injection],
    worst: Amount,
    lost: &[String],
) -> Outcome {
    let injected = |id: &str| injections.iter().find(|i| i.id == id);
    let (expectation, passed, detail) = match e {
        Expectation::Alert {
            rule,
            after,
            within,
        } => {
            let text = format!("alert {rule} within {} of {after}", dur(within));
            match injected(after) {
                None => (text, false, format!("{after} was never injected")),
                Some(i) => {
                    let limit = Nanos::from_std(within.as_std());
                    let first = st
                        .alerts
                        .iter()
                        .find(|(r, t)| r == rule && t.0 - START.0 >= i.at.0)
                        .map(|(_, t)| Nanos(t.0 - START.0 - i.at.0));
                    match first {
                        Some(l) => (text, l <= limit, format!("fired after {}", secs(l))),
                        None => (text, false, "never fired".into()),
                    }
                }
            }
        }
        Expectation::NoAlert { rule, from, to } => {
            let from_n = from.map_or(0, |f| Nanos::from_std(f.as_std()).0);
            let to_n = to.map_or(i64::MAX, |t| Nanos::from_std(t.as_std()).0);
            let text = format!("no alert {rule} in the quiet period");
            let hit = st
                .alerts
                .iter()
                .find(|(r, t)| r == rule && (from_n..to_n).contains(&(t.0 - START.0)));
            match hit {
                Some((_, t)) => (
                    text,
                    false,
                    format!("fired at {}", secs(Nanos(t.0 - START.0))),
                ),
                None => (text, true, "quiet".into()),
            }
        }
        Expectation::State {
            strategy,
            state,
            after,
            within,
        } => {
            let text = format!(
                "{strategy} reaches {state} within {} of {after}",
                dur(within)
            );
            match injected(after) {
                None => (text, false, format!("{after} was never injected")),
                Some(i) => {
                    let limit = Nanos::from_std(within.as_std());
                    let first = st
                        .states
                        .iter()
                        .find(|(s, to, t)| {
                            s.rsplit('/').next() == Some(strategy.as_str())
                                && *to == state.to_string()
                                && t.0 - START.0 >= i.at.0
                        })
                        .map(|(_, _, t)| Nanos(t.0 - START.0 - i.at.0));
                    match first {
                        Some(l) => (text, l <= limit, format!("after {}", secs(l))),
                        None => (text, false, format!("never reached {state}")),
                    }
                }
            }
        }
        Expectation::Reconciled { after, within } => {
            let text = format!(
                "custody reconciled within {} of clearing {after}",
                dur(within)
            );
            match injected(after).and_then(|i| i.cleared_at) {
                None => (text, false, format!("{after} was never cleared")),
                Some(c) => {
                    let limit = Nanos::from_std(within.as_std());
                    let first = st
                        .clean
                        .iter()
                        .map(|t| Nanos(t.0 - START.0))
                        .find(|t| *t >= c)
                        .map(|t| Nanos(t.0 - c.0));
                    match first {
                        Some(l) => (text, l <= limit, format!("clean {} after", secs(l))),
                        None => (text, false, "never clean after it".into()),
                    }
                }
            }
        }
        Expectation::PnlImpact { max_loss } => (
            format!("P&L stays above -{max_loss}"),
            worst >= Amount::ZERO - *max_loss,
            format!("worst {worst}"),
        ),
        Expectation::NoLostOrders => (
            "no acknowledged order lost".to_string(),
            lost.is_empty(),
            if lost.is_empty() {
                "every order accounted for".into()
            } else {
                format!("unaccounted: {}", lost.join(", "))
            },
        ),
    };
    Outcome {
        expectation,
        passed,
        detail,
    }
}
