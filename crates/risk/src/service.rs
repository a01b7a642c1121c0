//! The risk monitor as a service, watching the bus.
//!
//! It hears every venue fill (self and wash trades), the strategies'
//! attributed fills and order attempts and the venue round trips their
//! driver measured (positions, order rates, exchange health), the market
//! feed and reference prices (marks, staleness), and custody's
//! reconciliations (settlement breaks). It runs the rules on their cadence
//! in real time, and publishes alert changes (`risk.alerts`) and state
//! transitions (`risk.states`); the strategy service's gate follows the
//! transitions ([`follow_states`]) and pulls the kill switch.
//!
//! Alerts are stored (one row per rule and subject), transitions are
//! appended to the audit trail, and the restricted states are kept as a
//! snapshot so a restart does not quietly release a HALTED strategy.
//!
//! Routes (under `/api/v1/risk`): `GET alerts[?active=true]`,
//! `GET states`, `POST states` (manual change:
//! `{account, strategy?, state, user, reason}`), `GET positions`,
//! `GET utilisation`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tradestack_api::{ApiError, ApiQuery};
use tradestack_bus::{Bus, Publisher, Topic};
use tradestack_custody::service::{BREAKS_TOPIC, BreakReport};
use tradestack_kernel::Clock;
use tradestack_marketdata::feed::{FeedEvent, FeedMessage, ReferencePrices};
use tradestack_model::{AccountId, Alert, Fill, Instrument, StrategyId};
use tradestack_service::{Check, Service};
use tradestack_store::{AuditRecord, Snapshot, StateStore, StoredAlert, WriteBatch};
use tradestack_trading::PositionView;
use tradestack_trading::live::{ACTIVITY_TOPIC, Activity, DriverHandle, FILLS_TOPIC};

use crate::alerts::AlertChange;
use crate::config::RiskConfig;
use crate::delivery::Notifier;
use crate::monitor::RiskMonitor;
use crate::state::{Subject, TradingState, Transition};

/// Bus topic of alert changes ([`AlertChange`]).
pub const ALERTS_TOPIC: &str = "risk.alerts";
/// Bus topic of trading-state transitions ([`Transition`]).
pub const STATES_TOPIC: &str = "risk.states";
/// The snapshot id of the restricted states in the state store.
pub const STATES_SNAPSHOT: &str = "risk.states";

/// Labels of `risk_alerts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    severity: String,
}

/// Labels of the utilisation gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UtilisationLabels {
    rule: String,
    subject: String,
}

/// Labels of the state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubjectLabels {
    account: String,
    strategy: String,
}

#[derive(Clone, Default)]
struct RiskMetrics {
    alerts: Family<AlertLabels, Counter>,
    active: Family<AlertLabels, Gauge>,
    utilisation: Family<UtilisationLabels, Gauge<f64, AtomicU64>>,
    state: Family<SubjectLabels, Gauge>,
    transitions: Counter,
    /// Label sets of the gauges ever set, kept at 0 when they clear.
    seen: Arc<Mutex<SeenLabels>>,
}

#[derive(Default)]
struct SeenLabels {
    active: std::collections::HashSet<AlertLabels>,
    utilisation: std::collections::HashSet<UtilisationLabels>,
}

impl RiskMetrics {
    fn register(&self, m: &tradestack_telemetry::Metrics) {
        m.register(
            "risk_alerts",
            "Risk alerts fired, by rule and severity",
            self.alerts.clone(),
        );
        m.register(
            "risk_alerts_active",
            "Risk alerts not resolved, by rule and severity",
            self.active.clone(),
        );
        m.register(
            "risk_limit_utilisation_ratio",
            "Observed value over the limit, for every rule breaching or near its limit",
            self.utilisation.clone(),
        );
        m.register(
            "risk_trading_state",
            "Trading state of restricted subjects: 0 active, 1 reducing, 2 halted",
            self.state.clone(),
        );
        m.register(
            "risk_state_transitions",
            "Trading-state changes, automatic and manual",
            self.transitions.clone(),
        );
    }
}

/// What the service needs from its host.
pub struct Context {
    /// The bus.
    pub bus: Bus,
    /// The state store (alerts, audit, the states snapshot).
    pub store: Arc<dyn StateStore>,
    /// The service clock.
    pub clock: Arc<dyn Clock>,
    /// The process's metrics registry.
    pub metrics: tradestack_telemetry::Metrics,
    /// Only this venue's feed marks positions and counts as fresh data.
    pub feed_venue: String,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus refused a subscription.
    #[error("bus: {0}")]
    Bus(String),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] tradestack_store::StoreError),
    /// Alert delivery could not start (a missing token, a bad URL).
    #[error("risk.delivery: {0}")]
    Delivery(String),
}

struct Outputs {
    alerts: Publisher<AlertChange>,
    states: Publisher<Transition>,
}

/// The running risk service.
#[derive(Clone)]
pub struct RiskService {
    monitor: Arc<Mutex<RiskMonitor>>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    out: Arc<Outputs>,
    notifier: Option<Arc<Notifier>>,
    metrics: RiskMetrics,
}

/// The restricted states, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StoredStates {
    restricted: Vec<(Subject, TradingState)>,
}

/// Reads the stored restricted states (empty when none are stored).
pub async fn stored_states(
    store: &dyn StateStore,
) -> Result<Vec<(Subject, TradingState)>, tradestack_store::StoreError> {
    Ok(store
        .get_snapshot(STATES_SNAPSHOT)
        .await?
        .and_then(|s| serde_json::from_value::<StoredStates>(s.data).ok())
        .unwrap_or_default()
        .restricted)
}

impl RiskService {
    /// Restores the stored states, subscribes to everything it watches and
    /// starts evaluating.
    pub async fn start(
        config: RiskConfig,
        instruments: &[Instrument],
        strategies: &[(StrategyId, AccountId)],
        ctx: Context,
    ) -> Result<RiskService, StartError> {
        let notifier = if config.delivery.is_empty() {
            None
        } else {
            Some(Arc::new(
                Notifier::start(&config.delivery, Some(&ctx.metrics))
                    .map_err(|e| StartError::Delivery(e.to_string()))?,
            ))
        };
        let now = ctx.clock.now();
        let mut monitor = RiskMonitor::new(config, instruments.iter(), now);
        for (s, a) in strategies {
            monitor.register(s.clone(), a.clone());
        }
        for (subject, state) in stored_states(&*ctx.store).await? {
            monitor.set_state(subject, state, "risk", "restored after a restart", now);
        }
        let metrics = RiskMetrics::default();
        metrics.register(&ctx.metrics);
        let bus_err = |e: tradestack_bus::BusError| StartError::Bus(e.to_string());
        let out = Outputs {
            alerts: ctx
                .bus
                .publisher(&Topic::new(ALERTS_TOPIC))
                .map_err(bus_err)?,
            states: ctx
                .bus
                .publisher(&Topic::new(STATES_TOPIC))
                .map_err(bus_err)?,
        };
        let svc = RiskService {
            monitor: Arc::new(Mutex::new(monitor)),
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            out: Arc::new(out),
            notifier,
            metrics,
        };
        let group = Some("risk");
        let bus = &ctx.bus;
        let venue_fills = bus
            .subscribe(
                &Topic::<Fill>::new(tradestack_exchange::service::FILLS_TOPIC),
                group,
            )
            .await
            .map_err(bus_err)?;
        let strategy_fills = bus
            .subscribe(&Topic::<Fill>::new(FILLS_TOPIC), group)
            .await
            .map_err(bus_err)?;
        let activity = bus
            .subscribe(&Topic::<Activity>::new(ACTIVITY_TOPIC), group)
            .await
            .map_err(bus_err)?;
        let (feed, reference) = tradestack_marketdata::feed::subscribe_market(bus)
            .await
            .map_err(bus_err)?;
        let breaks = bus
            .subscribe(&Topic::<BreakReport>::new(BREAKS_TOPIC), group)
            .await
            .map_err(bus_err)?;
        tokio::spawn(watch_bus(
            svc.clone(),
            Inputs {
                venue_fills,
                strategy_fills,
                activity,
                feed,
                reference,
                breaks,
            },
            ctx.feed_venue,
            ctx.shutdown.clone(),
        ));
        tokio::spawn(evaluate_loop(svc.clone(), ctx.shutdown));
        Ok(svc)
    }

    /// Runs the rules now and publishes, stores and delivers what changed.
    pub async fn evaluate(&self) {
        let now = self.clock.now();
        let (ev, utilisation, active) = {
            let mut m = self.monitor.lock();
            let ev = m.evaluate(now);
            let active: Vec<Alert> = m.alerts().active().cloned().collect();
            (ev, m.utilisation(), active)
        };
        // Series seen once stay, at 0 when nothing is over a limit or
        // active: a vanished series reads as "no data", not as calm.
        {
            let mut seen = self.metrics.seen.lock();
            for l in &seen.utilisation {
                self.metrics.utilisation.get_or_create(l).set(0.0);
            }
            for (rule, subject, bps) in utilisation {
                let l = UtilisationLabels { rule, subject };
                self.metrics
                    .utilisation
                    .get_or_create(&l)
                    .set(bps as f64 / 10_000.0);
                seen.utilisation.insert(l);
            }
            for l in &seen.active {
                self.metrics.active.get_or_create(l).set(0);
            }
            for a in &active {
                let l = labels(a);
                self.metrics.active.get_or_create(&l).inc();
                seen.active.insert(l);
            }
        }
        for change in ev.alerts {
            self.alert(change).await;
        }
        for t in ev.transitions {
            self.transition(t).await;
        }
    }

    async fn alert(&self, change: AlertChange) {
        let a = change.alert();
        if let AlertChange::Fired(a) = &change {
            self.metrics.alerts.get_or_create(&labels(a)).inc();
        }
        tracing::info!(rule = %a.rule, subject = %a.subject, resolved = a.resolved, "{}", a.message);
        let batch = WriteBatch::new().put_alert(StoredAlert {
            // A condition that comes back is a new alert: first-seen keeps them apart.
            id: format!("{}/{}/{}", a.rule, a.subject, a.first_seen.0),
            alert: a.clone(),
        });
        if let Err(e) = self.store.commit(batch).await {
            tracing::warn!(error = %e, "alert not stored");
        }
        if let Some(n) = &self.notifier {
            n.send(&change);
        }
        let key = a.subject.clone();
        if let Err(e) = self.out.alerts.publish(Some(&key), change).await {
            tracing::warn!(error = %e, "alert not published");
        }
    }

    async fn transition(&self, t: Transition) {
        self.metrics.transitions.inc();
        let restricted: Vec<(Subject, TradingState)> = {
            let m = self.monitor.lock();
            m.states()
                .restricted()
                .map(|(s, st)| (s.clone(), st))
                .collect()
        };
        self.metrics.state.clear();
        for (s, st) in &restricted {
            self.metrics
                .state
                .get_or_create(&SubjectLabels {
                    account: s.account.to_string(),
                    strategy: s
                        .strategy
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                })
                .set(match st {
                    TradingState::Active => 0,
                    TradingState::Reducing => 1,
                    TradingState::Halted => 2,
                });
        }
        tracing::warn!(subject = %t.subject, from = %t.from, to = %t.to, reason = %t.reason, "trading state changed");
        let batch = WriteBatch::new()
            .put_snapshot(Snapshot {
                id: STATES_SNAPSHOT.into(),
                version: 0,
                ts: t.at,
                data: serde_json::to_value(StoredStates { restricted }).unwrap_or_default(),
            })
            .append_audit(AuditRecord {
                id: format!("risk-state-{}", uuid::Uuid::now_v7()),
                ts: t.at,
                actor: match &t.by {
                    crate::state::ChangedBy::Rule { rule } => format!("risk:{rule}"),
                    crate::state::ChangedBy::Manual { user } => user.clone(),
                },
                action: format!("state.{}", t.to.to_string().to_lowercase()),
                subject: t.subject.to_string(),
                detail: serde_json::to_value(&t).unwrap_or_default(),
            });
        if let Err(e) = self.store.commit(batch).await {
            tracing::error!(error = %e, "state change not stored");
        }
        let key = t.subject.account.clone();
        if let Err(e) = self.out.states.publish(Some(key.as_str()), t).await {
            tracing::error!(error = %e, "state change not published");
        }
    }

    /// A manual state change (API, CLI); returns the transition, if it changed anything.
    pub async fn set_state(
        &self,
        subject: Subject,
        to: TradingState,
        user: &str,
        reason: &str,
    ) -> Option<Transition> {
        let now = self.clock.now();
        let t = self
            .monitor
            .lock()
            .set_state(subject, to, user, reason, now)?;
        self.transition(t.clone()).await;
        Some(t)
    }
}

fn labels(a: &Alert) -> AlertLabels {
    AlertLabels {
        rule: a.rule.clone(),
        severity: crate::delivery::severity_name(a.severity).to_string(),
    }
}

struct Inputs {
    venue_fills: tradestack_bus::Subscription<Fill>,
    strategy_fills: tradestack_bus::Subscription<Fill>,
    activity: tradestack_bus::Subscription<Activity>,
    feed: tradestack_bus::Subscription<FeedMessage>,
    reference: tradestack_bus::Subscription<ReferencePrices>,
    breaks: tradestack_bus::Subscription<BreakReport>,
}

/// Feeds the monitor from the bus until shutdown.
async fn watch_bus(
    svc: RiskService,
    mut i: Inputs,
    feed_venue: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            Some(d) = i.venue_fills.recv() => {
                let now = svc.clock.now();
                svc.monitor.lock().on_venue_fill(&d.msg, now);
            }
            Some(d) = i.strategy_fills.recv() => svc.monitor.lock().on_strategy_fill(&d.msg),
            Some(d) = i.activity.recv() => {
                let mut m = svc.monitor.lock();
                match d.msg {
                    Activity::Submitted { strategy, account, ts, .. } => {
                        m.on_submission(&strategy, &account, ts);
                    }
                    Activity::Venue { ok, latency, ts, .. } => m.on_venue_result(ts, ok, latency),
                    Activity::Gated { .. } => {}
                }
            }
            Some(d) = i.feed.recv() => {
                if d.msg.venue != feed_venue {
                    continue;
                }
                let mut m = svc.monitor.lock();
                match &d.msg.event {
                    FeedEvent::Quote(q) => m.on_quote(q),
                    FeedEvent::Trade(t) => m.on_market_data(&t.instrument, t.ts),
                    FeedEvent::Book(b) => m.on_market_data(&b.instrument, b.ts),
                    FeedEvent::Bar(_) => {}
                }
            }
            Some(d) = i.reference.recv() => {
                let mut m = svc.monitor.lock();
                for (inst, p) in &d.msg.prices {
                    m.on_reference(inst, *p);
                }
            }
            Some(d) = i.breaks.recv() => svc.monitor.lock().on_reconciliation(&d.msg.breaks),
            else => return,
        }
    }
}

/// How often firing alerts are repeated to Alertmanager (well inside its
/// default 5-minute `resolve_timeout`).
const ALERTMANAGER_REFRESH: Duration = Duration::from_secs(60);

/// Runs the rules on their cadence.
async fn evaluate_loop(svc: RiskService, mut shutdown: watch::Receiver<bool>) {
    let mut refreshed = tokio::time::Instant::now();
    loop {
        if let Some(n) = &svc.notifier
            && refreshed.elapsed() >= ALERTMANAGER_REFRESH
        {
            refreshed = tokio::time::Instant::now();
            let active: Vec<Alert> = svc.monitor.lock().alerts().active().cloned().collect();
            n.refresh(&active);
        }
        let next = svc.monitor.lock().next_evaluation();
        let wait = (next.0 - svc.clock.now().0).clamp(0, 60_000_000_000);
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            _ = tokio::time::sleep(Duration::from_nanos(wait as u64)) => svc.evaluate().await,
        }
    }
}

/// Makes a strategy service's gate follow the risk service: the stored
/// restricted states at start, then every transition on the bus. A
/// restricted strategy's open orders are cancelled at once (the kill
/// switch); its new orders are refused by the gate.
pub async fn follow_states(
    bus: &Bus,
    store: &dyn StateStore,
    driver: DriverHandle<RiskMonitor>,
) -> Result<(), StartError> {
    let mut sub = bus
        .subscribe(&Topic::<Transition>::new(STATES_TOPIC), None)
        .await
        .map_err(|e| StartError::Bus(e.to_string()))?;
    for (subject, state) in stored_states(store).await? {
        let _ = driver
            .call(move |d| {
                let now = d.now;
                d.gate.set_state(
                    subject.clone(),
                    state,
                    "risk",
                    "restored after a restart",
                    now,
                );
                ((), kill_switch(&mut d.engine, &subject, state))
            })
            .await;
    }
    tokio::spawn(async move {
        while let Some(d) = sub.recv().await {
            let t = d.msg;
            let r = driver
                .call(move |d| {
                    d.gate.mirror(&t);
                    ((), kill_switch(&mut d.engine, &t.subject, t.to))
                })
                .await;
            if r.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// The cancels a restriction of `subject` to `to` calls for.
fn kill_switch(
    engine: &mut tradestack_trading::StrategyEngine,
    subject: &Subject,
    to: TradingState,
) -> Vec<tradestack_trading::Outgoing> {
    if to == TradingState::Active {
        return Vec::new();
    }
    let targets: Vec<StrategyId> = engine
        .strategies()
        .filter(|(s, a)| {
            **a == subject.account && subject.strategy.as_ref().is_none_or(|x| x == *s)
        })
        .map(|(s, _)| s.clone())
        .collect();
    targets
        .iter()
        .flat_map(|s| engine.cancel_all_of(s))
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertFilter {
    #[serde(default)]
    active: bool,
}

async fn alerts(
    State(svc): State<RiskService>,
    ApiQuery(q): ApiQuery<AlertFilter>,
) -> Json<Vec<Alert>> {
    let m = svc.monitor.lock();
    let mut out: Vec<Alert> = m.alerts().active().cloned().collect();
    if !q.active {
        out.extend(m.alerts().resolved().iter().cloned());
    }
    Json(out)
}

/// States as the API shows them.
#[derive(Serialize)]
struct StatesView {
    restricted: Vec<(Subject, TradingState)>,
    audit: Vec<Transition>,
}

async fn states(State(svc): State<RiskService>) -> Json<StatesView> {
    let m = svc.monitor.lock();
    Json(StatesView {
        restricted: m
            .states()
            .restricted()
            .map(|(s, st)| (s.clone(), st))
            .collect(),
        audit: m.states().audit().to_vec(),
    })
}

/// A manual state change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    account: AccountId,
    #[serde(default)]
    strategy: Option<StrategyId>,
    state: TradingState,
    user: String,
    #[serde(default)]
    reason: String,
}

async fn set_state(
    State(svc): State<RiskService>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let c: StateChange = tradestack_api::parse_json(&body)?;
    if c.user.trim().is_empty() {
        return Err(ApiError::bad_request(
            "user",
            "who makes the change must be named",
        ));
    }
    let subject = Subject {
        account: c.account,
        strategy: c.strategy,
    };
    let reason = if c.reason.is_empty() {
        "manual".to_string()
    } else {
        c.reason
    };
    match svc
        .set_state(subject.clone(), c.state, &c.user, &reason)
        .await
    {
        Some(t) => Ok((
            StatusCode::OK,
            Json(serde_json::to_value(t).unwrap_or_default()),
        )),
        None => Ok((
            StatusCode::OK,
            Json(serde_json::json!({"subject": subject, "to": c.state, "unchanged": true})),
        )),
    }
}

async fn positions(State(svc): State<RiskService>) -> Json<Vec<PositionView>> {
    Json(svc.monitor.lock().portfolio().views(None))
}

/// Utilisation as the API shows it.
#[derive(Serialize)]
struct UtilisationView {
    rule: String,
    subject: String,
    /// Observed value over the limit, in basis points.
    bps: i64,
}

async fn utilisation(State(svc): State<RiskService>) -> Json<Vec<UtilisationView>> {
    Json(
        svc.monitor
            .lock()
            .utilisation()
            .into_iter()
            .map(|(rule, subject, bps)| UtilisationView { rule, subject, bps })
            .collect(),
    )
}

#[async_trait]
impl Service for RiskService {
    fn name(&self) -> &'static str {
        "risk"
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/api/v1/risk/alerts", get(alerts))
            .route("/api/v1/risk/states", get(states).post(set_state))
            .route("/api/v1/risk/positions", get(positions))
            .route("/api/v1/risk/utilisation", get(utilisation))
            .with_state(self.clone())
    }

    async fn checks(&self) -> Vec<Check> {
        // Rules that have not run for three cadences mean the evaluator is stuck.
        let m = self.monitor.lock();
        let every = m.config().rules.evaluate_every.as_std().as_nanos() as i64;
        let late = self.clock.now().0 - m.next_evaluation().0;
        vec![Check::from_result(
            "evaluator",
            if late > 3 * every.max(1) {
                Err(format!("rules last ran {} ms late", late / 1_000_000))
            } else {
                Ok(())
            },
        )]
    }
}

/// A map of every strategy to its account, from `[[strategies]]`.
pub fn strategy_accounts(
    strategies: &[tradestack_trading::StrategyConfig],
) -> Vec<(StrategyId, AccountId)> {
    strategies
        .iter()
        .map(|s| (s.id.clone(), s.account.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect()
}
