//! The strategy service: the configured strategies on the live driver,
//! against the exchange in this process or a remote one, with positions
//! and P&L over HTTP and as metrics.
//!
//! Routes:
//! - `GET /api/v1/strategies`: each strategy, its account, kind,
//!   counters, open orders and misbehaviour;
//! - `PUT /api/v1/strategies/{id}/misbehaviour`: switch a misbehaviour
//!   on (a JSON [`Misbehaviour`]) or off (`null`);
//! - `GET /api/v1/orders[?strategy=]`: the strategies' open orders as the
//!   engine knows them;
//! - `GET /api/v1/positions[?account=&strategy=]`: positions with
//!   average entry, realized and unrealized P&L (to the mid and to the
//!   reference price) and fees, exact decimals;
//! - `GET /api/v1/exposures?account=[&strategy=]`: net holdings per asset
//!   with their USD value, stablecoins per issuer;
//! - `GET /api/v1/driver`: the driver's counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, http::StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tradestack_api::{ApiError, ApiQuery};
use tradestack_bus::Bus;
use tradestack_kernel::Clock;
use tradestack_model::{AccountId, Amount, Instrument, Nanos, StrategyId};
use tradestack_service::{Check, Service};

use crate::engine::{EngineStats, StrategyEngine};
use crate::gate::OrderGate;
use crate::live::{Driver, DriverHandle, DriverSettings, DriverStats};
use crate::metrics::TradingMetrics;
use crate::misbehaviour::Misbehaviour;
use crate::portfolio::{Exposure, PositionView};
use crate::strategies::StrategyConfig;
use crate::venue::remote::{RemoteSettings, RemoteVenue};
use crate::venue::{LocalVenue, Venue};

/// Where the strategies trade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueChoice {
    /// The exchange in this process (`tradestack up`).
    #[default]
    Local,
    /// A running exchange over its API: `[trading.remote]`.
    Remote,
}

/// The `[trading]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingSettings {
    /// `local` or `remote`.
    pub venue: VenueChoice,
    /// The remote exchange, for `venue = "remote"`.
    pub remote: Option<RemoteSettings>,
    /// Only the feed of this venue reaches the strategies.
    pub feed_venue: String,
    /// Deposited at start in every asset of a strategy's instruments that
    /// its account does not hold yet (0: none).
    pub funding: Amount,
    /// Bar intervals delivered to strategies, in nanoseconds.
    pub bar_intervals: Vec<i64>,
}

impl Default for TradingSettings {
    fn default() -> Self {
        TradingSettings {
            venue: VenueChoice::Local,
            remote: None,
            feed_venue: "tradestack".into(),
            funding: Amount::from_units(1_000_000),
            bar_intervals: vec![Nanos::MINUTE.0],
        }
    }
}

impl TradingSettings {
    /// Reads the `[trading]` table; errors name the key.
    pub fn from_table(table: &toml::Table) -> Result<Self, String> {
        let s: TradingSettings =
            serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| format!("trading.{}: {}", e.path(), e.inner().message()))?;
        if s.bar_intervals.iter().any(|&i| i <= 0) {
            return Err("trading.bar_intervals: every interval must be > 0 nanoseconds".into());
        }
        if s.venue == VenueChoice::Remote && s.remote.is_none() {
            return Err("trading.remote: required when venue = \"remote\"".into());
        }
        if s.funding < Amount::ZERO {
            return Err("trading.funding: must be >= 0".into());
        }
        Ok(s)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("{0}")]
    Settings(String),
    /// No exchange in this process for `venue = "local"`.
    #[error("trading.venue = \"local\" needs the exchange in this process; use venue = \"remote\"")]
    NoLocalExchange,
    /// A strategy trades an instrument the venue does not list.
    #[error("strategy {strategy}: the venue does not list {instrument}")]
    UnknownInstrument {
        /// The strategy.
        strategy: String,
        /// The instrument.
        instrument: String,
    },
    /// The venue could not be reached at start.
    #[error("venue: {0}")]
    Venue(#[from] crate::venue::VenueError),
    /// The engine refused a strategy.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The driver could not start.
    #[error(transparent)]
    Driver(#[from] crate::live::DriverError),
}

/// The venue `settings` name: the local exchange (when given) or the remote one.
pub fn venue_for(
    settings: &TradingSettings,
    local: Option<tradestack_exchange::ExchangeHandle>,
) -> Result<Arc<dyn Venue>, StartError> {
    match (settings.venue, &settings.remote) {
        (VenueChoice::Remote, Some(r)) => RemoteVenue::new(r.clone())
            .map(|v| Arc::new(v) as Arc<dyn Venue>)
            .map_err(|e| StartError::Settings(format!("trading.remote: {e}"))),
        (VenueChoice::Remote, None) => Err(StartError::Venue(
            crate::venue::VenueError::Unavailable("no [trading.remote] settings".into()),
        )),
        (VenueChoice::Local, _) => local
            .map(|h| Arc::new(LocalVenue::new(h)) as Arc<dyn Venue>)
            .ok_or(StartError::NoLocalExchange),
    }
}

/// What the service needs from its host.
pub struct Context {
    /// The message bus.
    pub bus: Bus,
    /// The service clock.
    pub clock: Arc<dyn Clock>,
    /// The process's metrics registry.
    pub metrics: tradestack_telemetry::Metrics,
    /// Turns true at shutdown: the strategies stop and cancel their orders.
    pub shutdown: watch::Receiver<bool>,
}

/// The running strategy service.
pub struct StrategyService<G> {
    driver: DriverHandle<G>,
    kinds: Arc<BTreeMap<StrategyId, &'static str>>,
    venue: &'static str,
}

impl<G: OrderGate + Send + 'static> StrategyService<G> {
    /// Funds the strategy accounts, registers the strategies and starts
    /// them on the live driver with `gate` in the order path.
    pub async fn start(
        settings: &TradingSettings,
        strategies: &[StrategyConfig],
        gate: G,
        venue: Arc<dyn Venue>,
        ctx: Context,
    ) -> Result<StrategyService<G>, StartError> {
        let instruments: Vec<Instrument> = venue.instruments().await?;
        let mut engine = StrategyEngine::new(instruments.iter());
        let mut kinds = BTreeMap::new();
        for s in strategies {
            for id in s.params.instruments() {
                if !instruments.iter().any(|i| i.id == id) {
                    return Err(StartError::UnknownInstrument {
                        strategy: s.id.to_string(),
                        instrument: id.to_string(),
                    });
                }
            }
            engine.add(s.id.clone(), s.account.clone(), s.params.build())?;
            kinds.insert(s.id.clone(), s.params.kind());
        }
        if settings.funding > Amount::ZERO {
            fund(&*venue, strategies, &instruments, settings.funding).await?;
        }
        let metrics = TradingMetrics::default();
        metrics.register(&ctx.metrics);
        let (driver, handle) = Driver::new(
            engine,
            gate,
            venue.clone(),
            &ctx.bus,
            ctx.clock,
            DriverSettings {
                feed_venue: settings.feed_venue.clone(),
                bar_intervals: settings.bar_intervals.iter().map(|&n| Nanos(n)).collect(),
            },
            metrics,
        )
        .await?;
        tokio::spawn(driver.run(ctx.shutdown));
        tracing::info!(
            strategies = strategies.len(),
            venue = venue.kind(),
            "strategies running"
        );
        Ok(StrategyService {
            driver: handle,
            kinds: Arc::new(kinds),
            venue: venue.kind(),
        })
    }

    /// The handle to the running driver (risk state changes go through it).
    pub fn driver(&self) -> &DriverHandle<G> {
        &self.driver
    }
}

/// Deposits `amount` of every asset of a strategy's instruments its account holds none of.
async fn fund(
    venue: &dyn Venue,
    strategies: &[StrategyConfig],
    instruments: &[Instrument],
    amount: Amount,
) -> Result<(), StartError> {
    let mut done: Vec<(AccountId, tradestack_model::AssetCode)> = Vec::new();
    for s in strategies {
        for id in s.params.instruments() {
            let Some(i) = instruments.iter().find(|i| i.id == id) else {
                continue;
            };
            for asset in [&i.base, &i.quote] {
                let key = (s.account.clone(), asset.clone());
                if done.contains(&key) {
                    continue;
                }
                // After a restart the account already holds its funding.
                if venue.balance(&s.account, asset).await? == Amount::ZERO {
                    venue.deposit(&s.account, asset, amount).await?;
                }
                done.push(key);
            }
        }
    }
    Ok(())
}

/// One strategy as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StrategyView {
    /// Its id.
    pub id: StrategyId,
    /// Its account.
    pub account: AccountId,
    /// Its kind.
    pub kind: String,
    /// What it did.
    pub stats: EngineStats,
    /// Its open orders.
    pub open_orders: usize,
    /// The misbehaviour switched on, if any.
    pub misbehaviour: Option<Misbehaviour>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionQuery {
    account: Option<AccountId>,
    strategy: Option<StrategyId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExposureQuery {
    account: AccountId,
    strategy: Option<StrategyId>,
}

struct Api<G> {
    driver: DriverHandle<G>,
    kinds: Arc<BTreeMap<StrategyId, &'static str>>,
}

impl<G> Clone for Api<G> {
    fn clone(&self) -> Self {
        Api {
            driver: self.driver.clone(),
            kinds: self.kinds.clone(),
        }
    }
}

fn stopped(_: crate::live::DriverStopped) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the strategy driver has stopped",
    )
}

async fn strategies<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
) -> Result<Json<Vec<StrategyView>>, ApiError> {
    let kinds = api.kinds.clone();
    let views = api
        .driver
        .read(move |d| {
            d.engine
                .strategies()
                .map(|(id, account)| StrategyView {
                    id: id.clone(),
                    account: account.clone(),
                    kind: kinds.get(id).copied().unwrap_or("custom").to_string(),
                    stats: d.engine.stats(id).unwrap_or_default(),
                    open_orders: d.engine.open_orders(id).len(),
                    misbehaviour: d.engine.misbehaviour(id),
                })
                .collect()
        })
        .await
        .map_err(stopped)?;
    Ok(Json(views))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    strategy: Option<StrategyId>,
}

async fn open_orders<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> Result<Json<Vec<tradestack_model::Order>>, ApiError> {
    let views = api
        .driver
        .read(move |d| {
            d.engine
                .strategies()
                .filter(|(id, _)| q.strategy.as_ref().is_none_or(|s| s == *id))
                .flat_map(|(id, _)| {
                    d.engine.open_orders(id).into_iter().map(|mut order| {
                        order.strategy.get_or_insert_with(|| id.clone());
                        order
                    })
                })
                .collect()
        })
        .await
        .map_err(stopped)?;
    Ok(Json(views))
}

async fn set_misbehaviour<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mode: Option<Misbehaviour> = tradestack_api::parse_json(&body)?;
    let id = StrategyId::new(&id);
    let r = api
        .driver
        .call(move |d| {
            let now = d.now;
            (
                d.engine.set_misbehaviour(&id, mode.clone(), now),
                Vec::new(),
            )
        })
        .await
        .map_err(stopped)?;
    match r {
        Ok(()) => Ok(Json(serde_json::json!({"ok": true}))),
        Err(e) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_strategy",
            e.to_string(),
        )),
    }
}

async fn positions<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
    ApiQuery(q): ApiQuery<PositionQuery>,
) -> Result<Json<Vec<PositionView>>, ApiError> {
    let views = api
        .driver
        .read(move |d| {
            d.engine
                .portfolio()
                .views(q.account.as_ref())
                .into_iter()
                .filter(|v| q.strategy.is_none() || v.strategy == q.strategy)
                .collect()
        })
        .await
        .map_err(stopped)?;
    Ok(Json(views))
}

async fn exposures<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
    ApiQuery(q): ApiQuery<ExposureQuery>,
) -> Result<Json<Vec<Exposure>>, ApiError> {
    let e = api
        .driver
        .read(move |d| {
            d.engine
                .portfolio()
                .exposures(&q.account, q.strategy.as_ref())
        })
        .await
        .map_err(stopped)?;
    Ok(Json(e))
}

async fn driver_stats<G: OrderGate + Send + 'static>(
    State(api): State<Api<G>>,
) -> Result<Json<DriverStats>, ApiError> {
    let s = api.driver.read(|d| d.stats).await.map_err(stopped)?;
    Ok(Json(s))
}

#[async_trait]
impl<G: OrderGate + Send + 'static> Service for StrategyService<G> {
    fn name(&self) -> &'static str {
        "strategy"
    }

    fn routes(&self) -> Router {
        let api = Api {
            driver: self.driver.clone(),
            kinds: self.kinds.clone(),
        };
        Router::new()
            .route("/api/v1/strategies", get(strategies::<G>))
            .route(
                "/api/v1/strategies/{id}/misbehaviour",
                put(set_misbehaviour::<G>),
            )
            .route("/api/v1/orders", get(open_orders::<G>))
            .route("/api/v1/positions", get(positions::<G>))
            .route("/api/v1/exposures", get(exposures::<G>))
            .route("/api/v1/driver", get(driver_stats::<G>))
            .with_state(api)
    }

    async fn checks(&self) -> Vec<Check> {
        let alive = self.driver.read(|_| ()).await;
        vec![Check::from_result(
            "driver",
            alive.map_err(|_| format!("the strategy driver ({} venue) has stopped", self.venue)),
        )]
    }
}
