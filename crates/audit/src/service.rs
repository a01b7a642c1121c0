//! The audit correlator as a service (`tradestack serve audit`).
//!
//! It reads everything from the bus and nothing else: the coordinator's
//! runs and injections (`chaos.runs`, `chaos.injections`), the risk
//! service's alerts and state changes (`risk.alerts`, `risk.states`), and
//! the strategies' fills (`trading.fills`). Each run's injections are
//! matched with the detections that followed by [`correlate`]; when a run
//! ends, its detection latencies and expectation outcomes become metrics.
//! Positions are summed from the fills independently of the strategy
//! service, and `GET /api/v1/audit/validation` compares them with what the
//! strategy service reports (found through the registry).
//!
//! Routes: `GET /api/v1/audit/runs`, `GET /api/v1/audit/runs/{id}`,
//! `GET /api/v1/audit/validation`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tradestack_api::ApiError;
use tradestack_bus::{Bus, Subscription, Topic};
use tradestack_config::ConfigDuration;
use tradestack_kernel::Clock;
use tradestack_model::{Fill, Nanos, UnixNanos};
use tradestack_risk::service::{ALERTS_TOPIC, STATES_TOPIC};
use tradestack_risk::{AlertChange, Transition};
use tradestack_service::{RegistryLink, Service};
use tradestack_trading::live::FILLS_TOPIC;
use tradestack_trading::portfolio::PositionView;

use crate::events::{
    INJECTIONS_TOPIC, InjectionEvent, RUNS_TOPIC, RunEvent, alert_detection, transition_detection,
};
use crate::positions::{FillPositions, PositionCheck};
use crate::{Correlation, Detection, Injection, correlate};

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

/// The `[audit]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// How long after a fault is cleared (or its run ends) detections still count for it.
    pub grace: ConfigDuration,
    /// Runs kept in memory; the oldest ended ones are dropped first.
    pub keep_runs: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            grace: ConfigDuration::from_secs(300),
            keep_runs: 100,
        }
    }
}

impl AuditSettings {
    /// Reads the `[audit]` table; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<Self, String> {
        serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| format!("audit.{}: {}", e.path(), e.inner().message()))
    }
}

/// What the service needs from its host.
pub struct Context {
    /// The bus everything is read from.
    pub bus: Bus,
    /// The service clock.
    pub clock: Arc<dyn Clock>,
    /// The service's metrics registry.
    pub metrics: tradestack_telemetry::Metrics,
    /// Finds the strategy service for validation.
    pub registry: RegistryLink,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bus refused a subscription.
    #[error("bus: {0}")]
    Bus(#[from] tradestack_bus::BusError),
}

/// One run as the audit sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAudit {
    /// The latest run event (status, and outcomes once ended).
    pub run: RunEvent,
    /// When it ended, on the audit's clock.
    pub ended_at: Option<UnixNanos>,
    /// Injections, as they stand.
    pub injections: Vec<Injection>,
    /// Alerts and state changes from its start until the grace after its end.
    pub detections: Vec<Detection>,
    /// The correlation of the two.
    pub correlation: Correlation,
}

/// A run in the list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub run: String,
    /// Its scenario.
    pub scenario: String,
    /// Its status.
    pub status: crate::events::RunStatus,
    /// Injections so far.
    pub injections: usize,
    /// Detections so far.
    pub detections: usize,
    /// Injections detected, basis points.
    pub detected_bps: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone)]
struct Metrics {
    latency: Histogram,
    expectations: Family<OutcomeLabels, Counter>,
    injections: Family<KindLabels, Counter>,
    detections: Family<KindLabels, Counter>,
    missed: Counter,
    false_positives: Counter,
    disagreements: Gauge,
}

impl Metrics {
    fn new(m: &tradestack_telemetry::Metrics) -> Metrics {
        let me = Metrics {
            // Detection takes seconds to minutes: 0.1 s doubling to about 55 min.
            latency: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
            expectations: Family::default(),
            injections: Family::default(),
            detections: Family::default(),
            missed: Counter::default(),
            false_positives: Counter::default(),
            disagreements: Gauge::default(),
        };
        m.register_seconds(
            "detection_latency",
            "Time from a fault's injection to its first detection, per ended run",
            me.latency.clone(),
        );
        m.register(
            "scenario_expectations",
            "Scenario expectations judged, by outcome (passed, failed)",
            me.expectations.clone(),
        );
        m.register(
            "audit_injections",
            "Faults injected, by kind",
            me.injections.clone(),
        );
        m.register(
            "audit_detections",
            "Detections during runs, by kind (alert, state)",
            me.detections.clone(),
        );
        m.register(
            "audit_missed_detections",
            "Injections no detection answered, per ended run",
            me.missed.clone(),
        );
        m.register(
            "audit_false_positives",
            "Detections that answered no injection, per ended run",
            me.false_positives.clone(),
        );
        m.register(
            "audit_position_disagreements",
            "Positions the fills and the strategy service disagree on, at the last validation",
            me.disagreements.clone(),
        );
        me
    }
}

struct Run {
    event: RunEvent,
    ended_at: Option<UnixNanos>,
    injections: Vec<Injection>,
    detections: Vec<Detection>,
}

#[derive(Default)]
struct Inner {
    /// Runs in the order they started.
    runs: Vec<Run>,
    /// Positions summed from the strategies' fills.
    positions: FillPositions,
}

/// The running audit service; cheap to clone.
#[derive(Clone)]
pub struct AuditService {
    inner: Arc<Mutex<Inner>>,
    settings: AuditSettings,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    registry: RegistryLink,
    http: reqwest::Client,
}

struct Inputs {
    runs: Subscription<RunEvent>,
    injections: Subscription<InjectionEvent>,
    alerts: Subscription<AlertChange>,
    states: Subscription<Transition>,
    fills: Subscription<Fill>,
}

impl AuditService {
    /// Subscribes to everything it reads and starts following the bus.
    pub async fn start(settings: AuditSettings, ctx: Context) -> Result<AuditService, StartError> {
        let svc = AuditService {
            inner: Arc::default(),
            settings,
            clock: ctx.clock.clone(),
            metrics: Metrics::new(&ctx.metrics),
            registry: ctx.registry,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        };
        let group = Some("audit");
        let bus = &ctx.bus;
        let inputs = Inputs {
            runs: bus.subscribe(&Topic::new(RUNS_TOPIC), group).await?,
            injections: bus.subscribe(&Topic::new(INJECTIONS_TOPIC), group).await?,
            alerts: bus.subscribe(&Topic::new(ALERTS_TOPIC), group).await?,
            states: bus.subscribe(&Topic::new(STATES_TOPIC), group).await?,
            fills: bus.subscribe(&Topic::new(FILLS_TOPIC), group).await?,
        };
        tokio::spawn(follow(svc.clone(), inputs, ctx.shutdown));
        Ok(svc)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Vec<RunSummary> {
        let grace = self.grace();
        self.inner
            .lock()
            .runs
            .iter()
            .map(|r| RunSummary {
                run: r.event.run.clone(),
                scenario: r.event.scenario.clone(),
                status: r.event.status,
                injections: r.injections.len(),
                detections: r.detections.len(),
                detected_bps: correlate(&r.injections, &r.detections, grace, RULES).detected_bps,
            })
            .collect()
    }

    /// One run with its correlation.
    pub fn run(&self, id: &str) -> Option<RunAudit> {
        let grace = self.grace();
        let g = self.inner.lock();
        let r = g.runs.iter().find(|r| r.event.run == id)?;
        Some(RunAudit {
            run: r.event.clone(),
            ended_at: r.ended_at,
            injections: r.injections.clone(),
            detections: r.detections.clone(),
            correlation: correlate(&r.injections, &r.detections, grace, RULES),
        })
    }

    /// Compares the positions summed from the fills with the strategy service's.
    pub async fn validate(&self) -> Result<PositionCheck, ApiError> {
        let unavailable =
            |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "strategy_unavailable", m);
        let base = self
            .registry
            .locate("strategy")
            .await
            .map_err(|e| unavailable(format!("registry: {e}")))?
            .ok_or_else(|| unavailable("no passing strategy service is registered".into()))?;
        let reported: Vec<PositionView> = self
            .http
            .get(format!("{base}/api/v1/positions"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(format!("strategy service: {e}")))?
            .json()
            .await
            .map_err(|e| unavailable(format!("strategy service answer: {e}")))?;
        let check = self
            .inner
            .lock()
            .positions
            .compare(&reported, "the strategy service");
        self.metrics
            .disagreements
            .set(i64::try_from(check.disagreements.len()).unwrap_or(i64::MAX));
        Ok(check)
    }

    fn grace(&self) -> Nanos {
        Nanos::from_std(self.settings.grace.as_std())
    }

    fn on_run(&self, ev: RunEvent) {
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let ended = ev.status.ended();
        let i = match g.runs.iter().position(|r| r.event.run == ev.run) {
            Some(i) => i,
            None => {
                g.runs.push(Run {
                    event: ev.clone(),
                    ended_at: None,
                    injections: Vec::new(),
                    detections: Vec::new(),
                });
                g.runs.len() - 1
            }
        };
        let run = &mut g.runs[i];
        let newly_ended = ended && run.ended_at.is_none();
        run.event = ev;
        if newly_ended {
            run.ended_at = Some(now);
            let c = correlate(&run.injections, &run.detections, self.grace(), RULES);
            for a in &c.injections {
                if let Some(l) = a.latency {
                    self.metrics.latency.observe(l.0 as f64 / 1e9);
                }
            }
            self.metrics.missed.inc_by(c.missed.len() as u64);
            self.metrics
                .false_positives
                .inc_by(c.false_positives.len() as u64);
            for o in &run.event.outcomes {
                let outcome = if o.passed { "passed" } else { "failed" };
                self.metrics
                    .expectations
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.into(),
                    })
                    .inc();
            }
        }
        // Keep the newest runs; running ones are never dropped.
        while g.runs.len() > self.settings.keep_runs.max(1) {
            match g.runs.iter().position(|r| r.ended_at.is_some()) {
                Some(i) => drop(g.runs.remove(i)),
                None => break,
            }
        }
    }

    fn on_injection(&self, ev: InjectionEvent) {
        let mut g = self.inner.lock();
        let Some(run) = g.runs.iter_mut().find(|r| r.event.run == ev.run) else {
            tracing::warn!(run = %ev.run, "injection for a run never announced");
            return;
        };
        match run.injections.iter_mut().find(|i| i.id == ev.injection.id) {
            Some(i) => *i = ev.injection,
            None => {
                self.metrics
                    .injections
                    .get_or_create(&KindLabels {
                        kind: ev.injection.kind.clone(),
                    })
                    .inc();
                run.injections.push(ev.injection);
            }
        }
    }

    /// Adds a detection (made by `detect` from a run's start) to every run it falls in.
    fn on_detection(&self, at: UnixNanos, detect: impl Fn(UnixNanos) -> Detection) {
        let grace = self.grace();
        let mut g = self.inner.lock();
        for run in &mut g.runs {
            let start = run.event.start;
            let end = run
                .ended_at
                .map_or(i64::MAX, |e| e.0.saturating_add(grace.0));
            if at < start || at.0 > end {
                continue;
            }
            let d = detect(start);
            self.metrics
                .detections
                .get_or_create(&KindLabels {
                    kind: d.kind.clone(),
                })
                .inc();
            run.detections.push(d);
        }
    }

    fn on_fill(&self, f: &Fill) {
        self.inner.lock().positions.add(f);
    }
}

async fn follow(svc: AuditService, mut i: Inputs, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            Some(d) = i.runs.recv() => svc.on_run(d.msg),
            Some(d) = i.injections.recv() => svc.on_injection(d.msg),
            Some(d) = i.alerts.recv() => {
                if let AlertChange::Fired(a) = &d.msg {
                    svc.on_detection(a.first_seen, |start| alert_detection(a, a.first_seen, start));
                }
            }
            Some(d) = i.states.recv() => {
                let t = &d.msg;
                svc.on_detection(t.at, |start| transition_detection(t, start));
            }
            Some(d) = i.fills.recv() => svc.on_fill(&d.msg),
            else => return,
        }
    }
}

#[async_trait]
impl Service for AuditService {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/api/v1/audit/runs", get(list_runs))
            .route("/api/v1/audit/runs/{id}", get(get_run))
            .route("/api/v1/audit/validation", get(validation))
            .with_state(self.clone())
    }
}

async fn list_runs(State(svc): State<AuditService>) -> Json<Vec<RunSummary>> {
    Json(svc.runs())
}

async fn get_run(
    State(svc): State<AuditService>,
    Path(id): Path<String>,
) -> Result<Json<RunAudit>, ApiError> {
    svc.run(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            format!("no run {id:?} has been seen on the bus"),
        )
    })
}

async fn validation(State(svc): State<AuditService>) -> Result<Json<PositionCheck>, ApiError> {
    svc.validate().await.map(Json)
}
