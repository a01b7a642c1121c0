//! The coordinator in real time, against running services.
//!
//! The same scenario file, the same [`Timeline`] and the same judging as
//! the simulated run; only the hands differ. Faults are injected through
//! the services' own HTTP hooks (the market simulator's overlays and feed
//! disruption, the exchange's admin chaos, the custodian's chaos, the
//! strategy service's misbehaviour switch), found through the registry.
//! Detections are read from the bus (`risk.alerts`, `risk.states`), clean
//! reconciliations from `custody.breaks`. Every injection and the run's
//! start and end are published on `chaos.injections` and `chaos.runs` for
//! the audit service.
//!
//! When the run ends (or is aborted) every fault still active is cleared,
//! so a run never leaves the ecosystem broken.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tradestack_audit::events::{
    INJECTIONS_TOPIC, InjectionEvent, RUNS_TOPIC, RunEvent, RunStatus, alert_detection,
    transition_detection,
};
use tradestack_audit::positions::PositionCheck;
use tradestack_audit::service::RULES;
use tradestack_audit::{Detection, Injection};
use tradestack_bus::{Bus, Subscription, Topic};
use tradestack_custody::service::{BREAKS_TOPIC, BreakReport};
use tradestack_custody::{CustodyChaos, Instruction, Status};
use tradestack_kernel::Clock;
use tradestack_marketdata::disruption::{CorruptFault, CorruptionKind, DisruptionConfig};
use tradestack_model::{Amount, Fill, Nanos, Order, UnixNanos};
use tradestack_risk::service::{ALERTS_TOPIC, STATES_TOPIC};
use tradestack_risk::{AlertChange, Transition};
use tradestack_trading::PositionView;
use tradestack_trading::service::StrategyView;

use crate::faults;
use crate::run::{Activity, GRACE, PnlPoint, PricePoint, Report, Validation, pnl_of, unaccounted};
use crate::scenario::{FaultKind, Scenario};
use crate::timeline::Timeline;

/// Finds a service's base URL (`http://host:port`) by its name.
#[async_trait]
pub trait Locate: Send + Sync + 'static {
    /// The base URL of a running `service`.
    async fn locate(&self, service: &str) -> Result<String, String>;
}

/// What live runs need from their host.
pub struct LiveContext {
    /// The bus detections are read from and injections published on.
    pub bus: Bus,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Finds the services.
    pub locate: Arc<dyn Locate>,
    /// The exchange's admin token, for its chaos hooks.
    pub admin_token: Option<String>,
    /// How often steps and conditions are judged.
    pub tick: Duration,
}

/// A live run as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// The scenario's name.
    pub scenario: String,
    /// The seed recorded with it.
    pub seed: u64,
    /// Where it is.
    pub status: RunStatus,
    /// When it started (wall clock).
    pub start: UnixNanos,
    /// How long it runs.
    pub duration: Nanos,
    /// Time done so far.
    pub done: Nanos,
    /// Injections so far.
    pub injections: Vec<Injection>,
    /// Detections so far.
    pub detections: Vec<Detection>,
    /// Hooks that failed, and checks that could not be made.
    pub errors: Vec<String>,
    /// The report, once ended.
    pub report: Option<Report>,
}

/// A run in progress or ended; dropping it does not stop it.
pub struct LiveRun {
    view: Arc<Mutex<RunView>>,
    abort: watch::Sender<bool>,
}

impl LiveRun {
    /// What it looks like now.
    pub fn view(&self) -> RunView {
        self.view.lock().clone()
    }

    /// Asks it to stop: active faults are cleared and it ends as aborted.
    pub fn abort(&self) {
        let _ = self.abort.send(true);
    }
}

/// Why a live run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The bus refused a subscription.
    #[error("bus: {0}")]
    Bus(#[from] tradestack_bus::BusError),
}

struct Inputs {
    alerts: Subscription<AlertChange>,
    states: Subscription<Transition>,
    breaks: Subscription<BreakReport>,
    fills: Subscription<Fill>,
}

/// Starts running `scenario` now; the run goes on in the background.
pub async fn start(
    ctx: Arc<LiveContext>,
    id: String,
    scenario: Scenario,
    seed: u64,
) -> Result<LiveRun, LiveError> {
    // Subscribed before the first injection, so no detection is missed.
    let inputs = Inputs {
        alerts: ctx.bus.subscribe(&Topic::new(ALERTS_TOPIC), None).await?,
        states: ctx.bus.subscribe(&Topic::new(STATES_TOPIC), None).await?,
        breaks: ctx.bus.subscribe(&Topic::new(BREAKS_TOPIC), None).await?,
        fills: ctx
            .bus
            .subscribe(&Topic::new(tradestack_trading::live::FILLS_TOPIC), None)
            .await?,
    };
    let view = Arc::new(Mutex::new(RunView {
        id,
        scenario: scenario.name.clone(),
        seed,
        status: RunStatus::Running,
        start: ctx.clock.now(),
        duration: Nanos::from_std(scenario.duration.as_std()),
        done: Nanos(0),
        injections: Vec::new(),
        detections: Vec::new(),
        errors: Vec::new(),
        report: None,
    }));
    let (abort, aborted) = watch::channel(false);
    let driver = Driver {
        hands: Hands {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            ctx: ctx.clone(),
        },
        ctx,
        scenario,
        view: view.clone(),
        timeline: Timeline::default(),
        held: Held::default(),
        activity: Activity::default(),
        pnl: Vec::new(),
        prices: Vec::new(),
        worst: None,
    };
    tokio::spawn(driver.drive(inputs, aborted));
    Ok(LiveRun { view, abort })
}

/// The services' HTTP hooks.
struct Hands {
    http: reqwest::Client,
    ctx: Arc<LiveContext>,
}

impl Hands {
    async fn call(
        &self,
        method: Method,
        service: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let base = self
            .ctx
            .locate
            .locate(service)
            .await
            .map_err(|e| format!("{service}: {e}"))?;
        let mut req = self.http.request(method.clone(), format!("{base}{path}"));
        if service == "exchange"
            && let Some(t) = &self.ctx.admin_token
        {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{service} {method} {path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{service} {method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        service: &str,
        path: &str,
    ) -> Result<T, String> {
        let v = self.call(Method::GET, service, path, None).await?;
        serde_json::from_value(v).map_err(|e| format!("{service} {path}: {e}"))
    }
}

/// Handles of what the live hooks hold for each active fault.
#[derive(Default)]
struct Held {
    /// Injection id → the simulator's overlay id.
    overlays: BTreeMap<String, u64>,
    /// Injection id → the exchange's chaos fault id.
    exchange: BTreeMap<String, u64>,
    /// Injection id → its custody chaos.
    custody: BTreeMap<String, CustodyChaos>,
    /// Feed delay and corruption in force.
    feed_delay: Option<Nanos>,
    corrupt_bps: Option<i64>,
}

struct Driver {
    ctx: Arc<LiveContext>,
    hands: Hands,
    scenario: Scenario,
    view: Arc<Mutex<RunView>>,
    timeline: Timeline,
    held: Held,
    activity: Activity,
    pnl: Vec<PnlPoint>,
    prices: Vec<PricePoint>,
    worst: Option<Amount>,
}

impl Driver {
    async fn drive(mut self, mut inputs: Inputs, mut aborted: watch::Receiver<bool>) {
        let (id, start, total) = {
            let v = self.view.lock();
            (v.id.clone(), v.start, v.duration)
        };
        self.announce(RunStatus::Running, Vec::new()).await;
        let mut pending = vec![true; self.scenario.steps.len()];
        let mut tick = tokio::time::interval(self.ctx.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_pnl = Nanos(0);
        let status = loop {
            tokio::select! {
                _ = async { let _ = aborted.wait_for(|a| *a).await; } => break RunStatus::Aborted,
                _ = tick.tick() => {
                    let offset = self.ctx.clock.now() - start;
                    if offset >= total {
                        break RunStatus::Passed;
                    }
                    for (i, step) in self.scenario.steps.clone().iter().enumerate() {
                        if !pending[i] || !self.timeline.due(step, offset) {
                            continue;
                        }
                        pending[i] = false;
                        if let Some(fault) = &step.inject {
                            self.inject(&id, &fault.id, &fault.kind, offset).await;
                        } else if let Some(fid) = &step.clear {
                            self.clear(&id, fid, offset).await;
                        }
                    }
                    if offset >= next_pnl {
                        next_pnl = offset + Nanos::from_secs(5);
                        self.sample(offset).await;
                    }
                    {
                        let mut v = self.view.lock();
                        v.done = offset;
                        v.detections = self.timeline.detections.clone();
                    }
                }
                Some(d) = inputs.alerts.recv() => {
                    if let AlertChange::Fired(a) = &d.msg && a.first_seen >= start {
                        self.timeline.detect(alert_detection(a, a.first_seen, start));
                    }
                }
                Some(d) = inputs.states.recv() => {
                    if d.msg.at >= start {
                        self.timeline.detect(transition_detection(&d.msg, start));
                    }
                }
                Some(d) = inputs.breaks.recv() => {
                    if d.msg.breaks.is_empty() && d.msg.ts >= start {
                        self.timeline.reconciled_clean(d.msg.ts - start);
                    }
                }
                Some(_) = inputs.fills.recv() => self.activity.strategy_fills += 1,
            }
        };
        let end = (self.ctx.clock.now() - start).min(total);
        for (fid, _) in self.timeline.active() {
            self.clear(&id, &fid, end).await;
        }
        self.sample(end).await;
        let lost = self.lost_orders().await;
        let validation = self.validation().await;
        let expectations = self
            .timeline
            .judge_all(&self.scenario.expect, self.worst, &lost);
        let passed = expectations.iter().all(|o| o.passed);
        let status = match status {
            RunStatus::Aborted => RunStatus::Aborted,
            _ if passed => RunStatus::Passed,
            _ => RunStatus::Failed,
        };
        let errors = self.view.lock().errors.clone();
        let report = Report {
            scenario: self.scenario.name.clone(),
            seed: self.view.lock().seed,
            duration: end,
            passed: passed && status != RunStatus::Aborted,
            expectations: expectations.clone(),
            injections: self.timeline.injected(),
            detections: self.timeline.detections.clone(),
            correlation: self.timeline.correlation(GRACE, RULES),
            activity: self.activity,
            pnl: std::mem::take(&mut self.pnl),
            worst_pnl: self.worst.unwrap_or(Amount::ZERO),
            prices: std::mem::take(&mut self.prices),
            validation,
            errors,
        };
        {
            let mut v = self.view.lock();
            v.done = end;
            v.status = status;
            v.injections = report.injections.clone();
            v.detections = report.detections.clone();
            v.report = Some(report);
        }
        self.announce(status, expectations).await;
    }

    fn error(&self, e: String) {
        tracing::warn!(error = %e, "scenario run");
        self.view.lock().errors.push(e);
    }

    async fn announce(&self, status: RunStatus, outcomes: Vec<tradestack_audit::events::Outcome>) {
        let ev = {
            let v = self.view.lock();
            RunEvent {
                run: v.id.clone(),
                scenario: v.scenario.clone(),
                status,
                start: v.start,
                duration: v.duration,
                outcomes,
            }
        };
        let key = ev.run.clone();
        if let Err(e) = self
            .ctx
            .bus
            .publish(&Topic::new(RUNS_TOPIC), Some(&key), ev)
            .await
        {
            self.error(format!("run not published: {e}"));
        }
    }

    async fn publish(&self, run: &str, injection: Injection) {
        self.view.lock().injections = self.timeline.injected();
        let ev = InjectionEvent {
            run: run.to_string(),
            injection,
        };
        if let Err(e) = self
            .ctx
            .bus
            .publish(&Topic::new(INJECTIONS_TOPIC), Some(run), ev)
            .await
        {
            self.error(format!("injection not published: {e}"));
        }
    }

    async fn inject(&mut self, run: &str, id: &str, kind: &FaultKind, at: Nanos) {
        match self.apply(id, kind, true).await {
            Ok(()) => {
                let inj = Injection {
                    id: id.to_string(),
                    kind: kind.name().to_string(),
                    at,
                    cleared_at: None,
                };
                self.timeline.inject(inj.clone(), kind.clone());
                self.publish(run, inj).await;
            }
            Err(e) => self.error(format!("injecting {id}: {e}")),
        }
    }

    async fn clear(&mut self, run: &str, id: &str, at: Nanos) {
        let Some((inj, kind)) = self.timeline.clear(id, at) else {
            return;
        };
        if let Err(e) = self.apply(id, &kind, false).await {
            self.error(format!("clearing {id}: {e}"));
        }
        self.publish(run, inj).await;
    }

    /// Injects (`on`) or clears one fault through the services' hooks.
    async fn apply(&mut self, id: &str, kind: &FaultKind, on: bool) -> Result<(), String> {
        let h = &self.hands;
        if let Some(overlay) = faults::overlay(kind, UnixNanos(0)) {
            if on {
                // The simulator stamps the start on its own clock.
                let mut body = serde_json::to_value(overlay).map_err(|e| e.to_string())?;
                if let Some(o) = body.as_object_mut() {
                    o.remove("start");
                }
                let r = h
                    .call(
                        Method::POST,
                        "marketdata",
                        "/api/v1/simulator/overlays",
                        Some(body),
                    )
                    .await?;
                let oid = r["id"]
                    .as_u64()
                    .ok_or("the simulator returned no overlay id")?;
                self.held.overlays.insert(id.to_string(), oid);
            } else if let Some(oid) = self.held.overlays.remove(id) {
                let path = format!("/api/v1/simulator/overlays/{oid}");
                h.call(Method::DELETE, "marketdata", &path, None).await?;
            }
            return Ok(());
        }
        if let Some(c) = faults::custody(kind) {
            if on {
                self.held.custody.insert(id.to_string(), c);
            } else {
                self.held.custody.remove(id);
            }
            let body = serde_json::to_value(faults::combined(&self.held.custody))
                .map_err(|e| e.to_string())?;
            h.call(
                Method::PUT,
                "custodian",
                "/api/v1/custody/chaos",
                Some(body),
            )
            .await?;
            if !on && matches!(kind, FaultKind::SettlementFailure { .. }) {
                // Recovery: operations retry what failed.
                let all: Vec<Instruction> =
                    h.get("custodian", "/api/v1/custody/instructions").await?;
                for i in all
                    .iter()
                    .filter(|i| matches!(i.status, Status::Failed { .. }))
                {
                    let path = format!("/api/v1/custody/instructions/{}/retry", i.id);
                    h.call(Method::POST, "custodian", &path, None).await?;
                }
            }
            return Ok(());
        }
        match kind {
            FaultKind::LiquidityWithdrawal => {
                h.call(
                    Method::PUT,
                    "marketdata",
                    "/api/v1/simulator/liquidity",
                    Some(json!({ "withdrawn": on })),
                )
                .await?;
            }
            FaultKind::ExchangeOutage => {
                if on {
                    let body = json!({ "fault": { "outage": { "websocket": true } } });
                    let r = h
                        .call(Method::POST, "exchange", "/admin/chaos", Some(body))
                        .await?;
                    let fid = r["id"]
                        .as_u64()
                        .ok_or("the exchange returned no fault id")?;
                    self.held.exchange.insert(id.to_string(), fid);
                } else if let Some(fid) = self.held.exchange.remove(id) {
                    let path = format!("/admin/chaos/{fid}");
                    h.call(Method::DELETE, "exchange", &path, None).await?;
                }
            }
            FaultKind::Strategy {
                strategy,
                misbehaviour,
            } => {
                let body = if on {
                    serde_json::to_value(misbehaviour).map_err(|e| e.to_string())?
                } else {
                    Value::Null
                };
                let path = format!("/api/v1/strategies/{strategy}/misbehaviour");
                h.call(Method::PUT, "strategy", &path, Some(body)).await?;
            }
            FaultKind::FeedDelay { delay } => {
                self.held.feed_delay = on.then(|| Nanos::from_std(delay.as_std()));
                self.feed().await?;
            }
            FaultKind::FeedCorruption { bps } => {
                self.held.corrupt_bps = on.then_some(*bps);
                self.feed().await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets the feed gateway's disruption to the feed faults in force.
    async fn feed(&self) -> Result<(), String> {
        let path = "/api/v1/feed/disruption";
        if self.held.feed_delay.is_none() && self.held.corrupt_bps.is_none() {
            self.hands
                .call(Method::DELETE, "marketdata", path, None)
                .await?;
            return Ok(());
        }
        let mut d = DisruptionConfig::default();
        if let Some(delay) = self.held.feed_delay {
            d.latency.base = delay;
        }
        if let Some(bps) = self.held.corrupt_bps {
            // Every other quote, as in simulated runs (there by turns, here by chance).
            d.corrupt = CorruptFault {
                probability: 0.5,
                kinds: vec![CorruptionKind::Shifted],
                shift_bps: bps.abs(),
            };
        }
        let body = serde_json::to_value(d).map_err(|e| e.to_string())?;
        self.hands
            .call(Method::PUT, "marketdata", path, Some(body))
            .await?;
        Ok(())
    }

    /// Samples the strategies' P&L and the simulator's reference prices.
    async fn sample(&mut self, at: Nanos) {
        match self
            .hands
            .get::<Vec<PositionView>>("strategy", "/api/v1/positions")
            .await
        {
            Ok(views) => {
                let p = pnl_of(&views);
                self.worst = Some(self.worst.map_or(p, |w| w.min(p)));
                self.pnl.push(PnlPoint { at, pnl: p });
            }
            Err(e) => tracing::debug!(error = %e, "P&L not read"),
        }
        match self
            .hands
            .get::<Value>("marketdata", "/api/v1/simulator")
            .await
        {
            Ok(v) => {
                let prices: BTreeMap<String, tradestack_model::Price> = v["prices"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, p)| Some((k.clone(), p.as_str()?.parse().ok()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                self.prices.push(PricePoint { at, prices });
            }
            Err(e) => tracing::debug!(error = %e, "reference prices not read"),
        }
    }

    /// Orders the engine and the exchange disagree on, seen in two reads a
    /// tick apart (one read can catch an order in flight).
    async fn lost_orders(&self) -> Result<Vec<String>, String> {
        let first = self.order_differences().await?;
        tokio::time::sleep(self.ctx.tick).await;
        let second = self.order_differences().await?;
        Ok(first.into_iter().filter(|o| second.contains(o)).collect())
    }

    async fn order_differences(&self) -> Result<Vec<String>, String> {
        let h = &self.hands;
        let strategies: Vec<StrategyView> = h.get("strategy", "/api/v1/strategies").await?;
        let mut out = Vec::new();
        for s in &strategies {
            let engine: Vec<Order> = h
                .get("strategy", &format!("/api/v1/orders?strategy={}", s.id))
                .await?;
            let venue: Vec<Order> = h
                .get("exchange", &format!("/admin/accounts/{}/orders", s.account))
                .await?;
            let prefix = format!("{}-", s.id);
            out.extend(unaccounted(
                engine
                    .iter()
                    .map(|o| o.client_order_id.to_string())
                    .collect(),
                venue
                    .iter()
                    .map(|o| o.client_order_id.to_string())
                    .filter(|c| c.starts_with(&prefix))
                    .collect(),
            ));
        }
        out.sort();
        Ok(out)
    }

    /// The audit service's independent position check.
    async fn validation(&self) -> Validation {
        match self
            .hands
            .get::<PositionCheck>("audit", "/api/v1/audit/validation")
            .await
        {
            Ok(c) => Validation {
                positions_checked: c.positions_checked,
                balances_checked: 0,
                disagreements: c.disagreements,
            },
            Err(e) => {
                self.error(format!("validation: {e}"));
                Validation::default()
            }
        }
    }
}
