//! The coordinator as a service (`tradestack serve coordinator`): the
//! coordinator API that runs scenarios in real time against the running
//! ecosystem (see [`crate::live`]). `tradestack scenario run --target URL`
//! drives it.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/scenarios` | the built-in scenarios |
//! | POST | `/api/v1/scenarios/runs` | starts a run: `{"name": "market-crash"}` or `{"yaml": "..."}`, optional `"seed"` (202 with the run) |
//! | GET | `/api/v1/scenarios/runs` | every run, newest last |
//! | GET | `/api/v1/scenarios/runs/{id}` | one run: progress, injections, detections, and its report once ended |
//! | DELETE | `/api/v1/scenarios/runs/{id}` | aborts a run (its faults are cleared) |
//!
//! One run at a time: two runs would fight over the same faults.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tradestack_api::{ApiError, parse_json};
use tradestack_bus::Bus;
use tradestack_config::ConfigDuration;
use tradestack_kernel::Clock;
use tradestack_service::{RegistryLink, Service};

use crate::live::{LiveContext, LiveRun, Locate, RunView};
use crate::scenario::Scenario;

/// The `[coordinator]` table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorSettings {
    /// Base URLs by service name, overriding the registry (e.g. `exchange = "http://10.0.0.5:8600"`).
    pub urls: BTreeMap<String, String>,
    /// The exchange's admin token (default: `exchange.admin_token`).
    pub admin_token: Option<String>,
    /// How often steps and conditions are judged (default 1 s).
    pub tick: Option<ConfigDuration>,
}

impl CoordinatorSettings {
    /// Reads the `[coordinator]` table; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<Self, String> {
        let s: CoordinatorSettings =
            serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| format!("coordinator.{}: {}", e.path(), e.inner().message()))?;
        if s.tick.is_some_and(|t| t.as_std().is_zero()) {
            return Err("coordinator.tick: must be > 0".into());
        }
        Ok(s)
    }
}

/// What the service needs from its host.
pub struct Context {
    /// The bus.
    pub bus: Bus,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Finds the services.
    pub registry: RegistryLink,
}

/// Finds services through the configured URLs, else the registry.
struct Finder {
    urls: BTreeMap<String, String>,
    registry: RegistryLink,
}

#[async_trait]
impl Locate for Finder {
    async fn locate(&self, service: &str) -> Result<String, String> {
        if let Some(u) = self.urls.get(service) {
            return Ok(u.trim_end_matches('/').to_string());
        }
        self.registry
            .locate(service)
            .await
            .map_err(|e| format!("registry: {e}"))?
            .ok_or_else(|| format!("no passing {service} service is registered"))
    }
}

/// The running coordinator; cheap to clone.
#[derive(Clone)]
pub struct CoordinatorService {
    live: Arc<LiveContext>,
    runs: Arc<Mutex<Vec<(String, LiveRun)>>>,
    next: Arc<Mutex<u64>>,
}

impl CoordinatorService {
    /// A coordinator with no run yet.
    pub fn new(settings: CoordinatorSettings, ctx: Context) -> CoordinatorService {
        CoordinatorService {
            live: Arc::new(LiveContext {
                bus: ctx.bus,
                clock: ctx.clock,
                locate: Arc::new(Finder {
                    urls: settings.urls,
                    registry: ctx.registry,
                }),
                admin_token: settings.admin_token,
                tick: settings
                    .tick
                    .map_or(std::time::Duration::from_secs(1), |t| t.as_std()),
            }),
            runs: Arc::default(),
            next: Arc::default(),
        }
    }

    /// Starts `scenario`, unless a run is in progress.
    pub async fn start(&self, scenario: Scenario, seed: u64) -> Result<RunView, ApiError> {
        if let Some((id, _)) = self
            .runs
            .lock()
            .iter()
            .find(|(_, r)| !r.view().status.ended())
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "run_in_progress",
                format!("run {id} is still in progress; abort it or wait for it to end"),
            ));
        }
        let id = {
            let mut n = self.next.lock();
            *n += 1;
            format!("run-{}-{}", self.live.clock.now().0 / 1_000_000_000, *n)
        };
        let run = crate::live::start(self.live.clone(), id.clone(), scenario, seed)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "bus_unavailable",
                    e.to_string(),
                )
            })?;
        let view = run.view();
        self.runs.lock().push((id, run));
        Ok(view)
    }

    fn find<T>(&self, id: &str, f: impl FnOnce(&LiveRun) -> T) -> Result<T, ApiError> {
        self.runs
            .lock()
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, r)| f(r))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_run",
                    format!("no run {id:?}"),
                )
            })
    }
}

/// The body of `POST /api/v1/scenarios/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// A built-in scenario.
    #[serde(default)]
    name: Option<String>,
    /// A scenario file's text.
    #[serde(default)]
    yaml: Option<String>,
    /// Overrides the scenario's seed.
    #[serde(default)]
    seed: Option<u64>,
}

/// The scenario a start request names; errors name the field.
fn scenario_of(body: &StartBody) -> Result<Scenario, ApiError> {
    let text = match (&body.name, &body.yaml) {
        (Some(n), None) => crate::builtin::get(n).ok_or_else(|| {
            let names: Vec<&str> = crate::builtin::ALL.iter().map(|(n, _)| *n).collect();
            ApiError::bad_request(
                "name",
                format!("no built-in scenario {n:?}; there are {}", names.join(", ")),
            )
        })?,
        (None, Some(y)) => y.as_str(),
        _ => {
            return Err(ApiError::bad_request(
                "name",
                "give exactly one of `name` (a built-in scenario) and `yaml` (a scenario file's text)",
            ));
        }
    };
    Scenario::from_yaml(text).map_err(|e| {
        let prefix = if body.yaml.is_some() { "yaml." } else { "" };
        ApiError::bad_request(format!("{prefix}{}", e.field), e.message)
    })
}

async fn builtins() -> Json<Value> {
    let list: Vec<Value> = crate::builtin::ALL
        .iter()
        .filter_map(|(n, y)| {
            let s = Scenario::from_yaml(y).ok()?;
            Some(json!({
                "name": n,
                "description": s.description,
                "duration_seconds": s.duration.as_std().as_secs(),
            }))
        })
        .collect();
    Json(Value::Array(list))
}

async fn start_run(
    State(svc): State<CoordinatorService>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let b: StartBody = parse_json(&body)?;
    let scenario = scenario_of(&b)?;
    let seed = b.seed.unwrap_or(scenario.seed);
    let view = svc.start(scenario, seed).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

async fn list_runs(State(svc): State<CoordinatorService>) -> Json<Vec<RunView>> {
    Json(
        svc.runs
            .lock()
            .iter()
            .map(|(_, r)| {
                // The list stays small: reports only on the run itself.
                let mut v = r.view();
                v.report = None;
                v
            })
            .collect(),
    )
}

async fn get_run(
    State(svc): State<CoordinatorService>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    svc.find(&id, |r| r.view()).map(Json)
}

async fn abort_run(
    State(svc): State<CoordinatorService>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let view = svc.find(&id, |r| {
        r.abort();
        r.view()
    })?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[async_trait]
impl Service for CoordinatorService {
    fn name(&self) -> &'static str {
        "coordinator"
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/api/v1/scenarios", get(builtins))
            .route("/api/v1/scenarios/runs", get(list_runs).post(start_run))
            .route(
                "/api/v1/scenarios/runs/{id}",
                get(get_run).delete(abort_run),
            )
            .with_state(self.clone())
    }
}
