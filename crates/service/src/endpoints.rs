//! `/livez`, `/readyz`, `/health` and `/metrics`, common to every service.

use crate::{Runtime, Service};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tradestack_bus::Bus;
use tradestack_cache::Cache;
use tradestack_store::StateStore;
use tradestack_telemetry::Metrics;
use tradestack_telemetry::exposition::{
    OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, wants_openmetrics,
};
use tradestack_telemetry::metrics::ServiceLabels;

/// The outcome of one readiness check.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked (`store`, `cache`, `bus`, or a service's own name for it).
    pub name: String,
    /// `Err` with the reason when the dependency is unusable.
    pub result: Result<(), String>,
}

impl Check {
    /// A check result from any displayable error.
    pub fn from_result<E: std::fmt::Display>(name: &str, r: Result<(), E>) -> Check {
        Check {
            name: name.to_string(),
            result: r.map_err(|e| e.to_string()),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Endpoints {
    service: Arc<dyn Service>,
    store: Arc<dyn StateStore>,
    cache: Arc<dyn Cache>,
    bus: Bus,
    metrics: Metrics,
    started: Instant,
}

/// How long one dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn timed<F, E>(name: &str, f: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(r) => Check::from_result(name, r),
        Err(_) => Check {
            name: name.to_string(),
            result: Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        },
    }
}

impl Endpoints {
    async fn checks(&self) -> Vec<Check> {
        let (store, cache, bus) = tokio::join!(
            timed("store", self.store.ping()),
            timed("cache", self.cache.ping()),
            timed("bus", self.bus.ping()),
        );
        let mut all = vec![store, cache, bus];
        all.extend(self.service.checks().await);
        let ready = all.iter().all(|c| c.result.is_ok());
        self.metrics
            .ready
            .get_or_create(&ServiceLabels {
                service: self.service.name().to_string(),
            })
            .set(i64::from(ready));
        all
    }

    /// Re-runs the checks every `every` until shutdown, so `tradestack_ready`
    /// stays current between probes.
    pub(crate) async fn refresh_ready(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            let _ = self.checks().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

impl Endpoints {
    /// The common endpoints' state for `service` in `rt`.
    pub(crate) fn new(rt: &Runtime, service: Arc<dyn Service>) -> Endpoints {
        Endpoints {
            service,
            store: rt.store.clone(),
            cache: rt.cache.clone(),
            bus: rt.bus.clone(),
            metrics: rt.metrics.clone(),
            started: Instant::now(),
        }
    }

    pub(crate) fn routes(self) -> Router {
        Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

/// The common endpoints for `service` in `rt`.
pub fn common_routes(rt: &Runtime, service: Arc<dyn Service>) -> Router {
    Endpoints::new(rt, service).routes()
}

async fn livez() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(s): State<Endpoints>) -> impl IntoResponse {
    let checks = s.checks().await;
    let failed: Vec<_> = checks
        .iter()
        .filter_map(|c| {
            c.result
                .as_ref()
                .err()
                .map(|e| json!({ "dependency": c.name, "error": e }))
        })
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "unavailable", "failed": failed })),
        )
    }
}

async fn health(State(s): State<Endpoints>) -> impl IntoResponse {
    let checks = s.checks().await;
    let healthy = checks.iter().all(|c| c.result.is_ok());
    let detail: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|c| {
            let v = match c.result {
                Ok(()) => json!({ "status": "up" }),
                Err(e) => json!({ "status": "down", "error": e }),
            };
            (c.name, v)
        })
        .collect();
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "service": s.service.name(),
        "version": crate::VERSION,
        "uptime_seconds": s.started.elapsed().as_secs(),
        "engines": { "store": s.store.engine(), "cache": s.cache.engine(), "bus": s.bus.engine_name() },
        "checks": detail,
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

async fn metrics(State(s): State<Endpoints>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if wants_openmetrics(accept) {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            s.metrics.encode_openmetrics(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            s.metrics.encode_prometheus(),
        )
    }
}
