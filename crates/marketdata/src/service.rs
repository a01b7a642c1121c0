//! The market-data service: the embedded time-series store with its
//! line-protocol ingest (HTTP and TCP) and SQL API, a recorder that stores
//! every trade, top-of-book quote and bar the exchange publishes on the
//! bus, periodic flush, retention and compaction, the forwarding of every
//! stored row to the configured sinks, the market-data feed with its fault
//! gate, the live simulator's agents, replay jobs, and the scenario hooks
//! over HTTP ([`crate::api`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use serde::{Deserialize, Serialize};
use tradestack_bus::{Bus, Topic};
use tradestack_exchange::ExchangeHandle;
use tradestack_kernel::Clock;
use tradestack_matching::BookDelta;
use tradestack_model::{InstrumentId, Trade};
use tradestack_service::{Check, Service};
use tradestack_timeseries::http::TimeseriesApi;
use tradestack_timeseries::metrics::IngestMetrics;
use tradestack_timeseries::sinks::{Forwarder, Sink, SinkConfig};
use tradestack_timeseries::{Store, StoreConfig};

use crate::api::ControlApi;
use crate::bars::{BarConfig, LatePolicy};
use crate::gateway::{FeedHandle, Tops};
use crate::live::SimControl;
use crate::recorder::Recorder;
use crate::replayer::Replays;

/// The `[marketdata]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketDataSettings {
    /// Line protocol over TCP; empty turns it off.
    pub ilp_listen: String,
    /// Store directory, relative to the data directory.
    pub dir: PathBuf,
    /// The time-series store: `[marketdata.store]`.
    pub store: StoreConfig,
    /// Bar intervals, in nanoseconds.
    pub bar_intervals: Vec<i64>,
    /// Store the exchange's trades, quotes and bars from the bus.
    pub record_exchange: bool,
    /// How often changed books are stored in `book_snapshots`, in nanoseconds; 0 = never.
    pub book_snapshot_interval: i64,
    /// Levels per side in a book snapshot.
    pub book_snapshot_depth: usize,
    /// The venue name recorded with the exchange's data.
    pub venue: String,
    /// Run the market simulator's agents on the in-process exchange.
    pub simulate: bool,
    /// The simulator: `[marketdata.simulator]`.
    pub simulator: crate::sim::SimConfig,
    /// Real engines that receive every stored row: `[[marketdata.sinks]]`.
    pub sinks: Vec<SinkConfig>,
    /// Directories whose files may be replayed; empty = any file the service can read.
    pub replay_dirs: Vec<PathBuf>,
}

impl Default for MarketDataSettings {
    fn default() -> Self {
        MarketDataSettings {
            ilp_listen: "127.0.0.1:9009".into(),
            dir: PathBuf::from("timeseries"),
            store: StoreConfig::default(),
            bar_intervals: BarConfig::default().intervals.iter().map(|n| n.0).collect(),
            record_exchange: true,
            book_snapshot_interval: 1_000_000_000,
            book_snapshot_depth: 10,
            venue: "tradestack".into(),
            simulate: true,
            simulator: crate::sim::SimConfig::default(),
            sinks: Vec::new(),
            replay_dirs: Vec::new(),
        }
    }
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("marketdata.{key}: {reason}")]
pub struct SettingsError {
    /// The key, dotted.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl MarketDataSettings {
    /// Reads the `[marketdata]` table, naming the bad key on error.
    pub fn from_table(table: &toml::Table) -> Result<Self, SettingsError> {
        let value = toml::Value::Table(table.clone());
        let s: MarketDataSettings =
            serde_path_to_error::deserialize(value).map_err(|e| SettingsError {
                key: e.path().to_string(),
                reason: e
                    .inner()
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
        if s.bar_intervals.iter().any(|&i| i <= 0) {
            return Err(SettingsError {
                key: "bar_intervals".into(),
                reason: "every interval must be > 0 nanoseconds".into(),
            });
        }
        if s.book_snapshot_interval < 0 {
            return Err(SettingsError {
                key: "book_snapshot_interval".into(),
                reason: "must be >= 0 nanoseconds (0 turns snapshots off)".into(),
            });
        }
        if !s.ilp_listen.is_empty() && s.ilp_listen.parse::<SocketAddr>().is_err() {
            return Err(SettingsError {
                key: "ilp_listen".into(),
                reason: format!("{:?} is not an address like 127.0.0.1:9009", s.ilp_listen),
            });
        }
        Ok(s)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("time-series store: {0}")]
    Store(#[from] tradestack_timeseries::StoreError),
    /// The TCP port could not be bound.
    #[error("line-protocol listener {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Error.
        source: std::io::Error,
    },
    /// Bars could not be configured.
    #[error("bars: {0}")]
    Bars(#[from] crate::recorder::RecordError),
    /// A sink's settings are unusable.
    #[error("marketdata.sinks: {0}")]
    Sink(#[from] tradestack_timeseries::sinks::SinkError),
}

/// What the service runs with besides its settings.
pub struct Context {
    /// Where relative store directories live.
    pub data_dir: PathBuf,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where metrics are registered.
    pub metrics: tradestack_telemetry::Metrics,
    /// The bus.
    pub bus: Bus,
    /// The in-process exchange, for the live simulator's agents.
    pub exchange: Option<ExchangeHandle>,
    /// The in-process exchange's minute bars, seeded from the store at start.
    pub exchange_bars: Option<tradestack_exchange::bars::MinuteBars>,
    /// The run seed (simulator and feed faults).
    pub seed: u64,
}

/// The running service.
pub struct MarketDataService {
    api: Arc<TimeseriesApi>,
    control: Arc<ControlApi>,
    ilp_addr: Option<SocketAddr>,
}

impl MarketDataService {
    /// Opens the store (replaying its log), binds the line-protocol port and
    /// starts the recorder, feed, simulator and maintenance tasks.
    pub async fn start(
        settings: MarketDataSettings,
        ctx: Context,
    ) -> Result<MarketDataService, StartError> {
        let Context {
            data_dir,
            clock,
            metrics,
            bus,
            exchange,
            exchange_bars,
            seed,
        } = ctx;
        let metrics = &metrics;
        let dir = if settings.dir.is_absolute() {
            settings.dir.clone()
        } else {
            data_dir.join(&settings.dir)
        };
        let config = settings.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, config))
            .await
            .expect("store open does not panic")?;
        let sinks = tradestack_timeseries::sinks::build(&settings.sinks).await?;
        if !sinks.is_empty() {
            let forwarder = Arc::new(Forwarder::spawn(sinks.clone()));
            store.on_commit(Arc::new(move |table, batch| {
                forwarder.forward(table.clone(), batch.clone());
            }));
        }
        let ingest = IngestMetrics::default();
        ingest.register(metrics);
        let api = TimeseriesApi::new(store.clone(), clock.clone(), ingest.clone());
        let ilp_addr = if settings.ilp_listen.is_empty() {
            None
        } else {
            let listener = tokio::net::TcpListener::bind(&settings.ilp_listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.ilp_listen.clone(),
                    source,
                })?;
            let addr = listener.local_addr().ok();
            tokio::spawn(tradestack_timeseries::tcp::serve(
                listener,
                store.clone(),
                clock.clone(),
                ingest.clone(),
            ));
            addr
        };
        tokio::spawn(maintain(store.clone(), clock.clone(), ingest, sinks));
        let bars = BarConfig {
            intervals: settings
                .bar_intervals
                .iter()
                .map(|&n| tradestack_model::Nanos(n))
                .collect(),
            // Bus order is venue order: a late trade is a replayed one.
            late: LatePolicy::Drop,
        };
        let feed = FeedHandle::spawn(bus.clone(), seed, metrics);
        if settings.record_exchange {
            if let Some(minutes) = exchange_bars {
                let (store, venue) = (store.clone(), settings.venue.clone());
                let since = crate::history::seed_window(clock.now().0);
                tokio::spawn(async move {
                    match crate::history::seed_exchange_bars(store, &venue, &minutes, since).await {
                        Ok(n) => {
                            tracing::info!(minutes = n, "exchange candles seeded from the store")
                        }
                        Err(e) => tracing::warn!(error = %e, "exchange candles not seeded"),
                    }
                });
            }
            let recorder = Recorder::new(store.clone(), &settings.venue, &bars)?;
            let snapshots = (settings.book_snapshot_interval > 0).then(|| {
                (
                    Duration::from_nanos(settings.book_snapshot_interval as u64),
                    settings.book_snapshot_depth.max(1),
                )
            });
            tokio::spawn(record(bus.clone(), clock.clone(), recorder, snapshots));
            tokio::spawn(crate::gateway::exchange_feed(
                bus.clone(),
                settings.venue.clone(),
                feed.clone(),
            ));
        }
        let simulator = match (settings.simulate, exchange) {
            (true, Some(handle)) => {
                let (control, requests) = SimControl::channel();
                tokio::spawn(crate::live::run(
                    handle,
                    settings.simulator.clone(),
                    clock.clone(),
                    seed,
                    requests,
                    Some(bus.clone()),
                ));
                Some(control)
            }
            _ => None,
        };
        let replays = Arc::new(Replays::new(store.clone(), feed.clone(), bars));
        let control = Arc::new(ControlApi {
            simulator,
            feed,
            clock,
            replays,
            // A directory that does not exist allows nothing: kept as given.
            replay_dirs: settings
                .replay_dirs
                .iter()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
                .collect(),
        });
        Ok(MarketDataService {
            api,
            control,
            ilp_addr,
        })
    }

    /// Where line protocol over TCP is accepted.
    pub fn ilp_addr(&self) -> Option<SocketAddr> {
        self.ilp_addr
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.api.store
    }
}

#[async_trait]
impl Service for MarketDataService {
    fn name(&self) -> &'static str {
        "marketdata"
    }

    fn routes(&self) -> Router {
        tradestack_timeseries::http::routes(self.api.clone())
            .merge(crate::api::routes(self.control.clone()))
    }

    async fn checks(&self) -> Vec<Check> {
        let store = self.api.store.clone();
        let ok = tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        vec![Check::from_result("timeseries", ok)]
    }
}

/// How often the sinks' own housekeeping (partition expiry) runs.
const SINK_MAINTENANCE: Duration = Duration::from_secs(600);

/// Flushes to Parquet when enough rows are in memory or the interval
/// passed, then applies retention and compaction; now and then lets the
/// sinks expire their old partitions.
async fn maintain(
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: IngestMetrics,
    sinks: Vec<Arc<dyn Sink>>,
) {
    let every = store
        .config()
        .flush_interval
        .max(Duration::from_millis(100));
    let threshold = store.config().flush_rows.max(1);
    let mut last = tokio::time::Instant::now();
    let mut last_sinks: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !sinks.is_empty() && last_sinks.is_none_or(|t| t.elapsed() >= SINK_MAINTENANCE) {
            last_sinks = Some(tokio::time::Instant::now());
            for sink in &sinks {
                if let Err(e) = sink.maintain(clock.now().0).await {
                    tracing::warn!(sink = sink.name(), error = %e, "sink maintenance failed");
                }
            }
        }
        let rows = store.mem_rows();
        metrics.memory_rows.set(rows as i64);
        if rows < threshold && last.elapsed() < every {
            continue;
        }
        last = tokio::time::Instant::now();
        let s = store.clone();
        let now = clock.now().0;
        match tokio::task::spawn_blocking(move || s.maintain(now)).await {
            Ok(Ok(r)) => {
                metrics.flushed_rows.inc_by(r.flushed_rows);
                if r.files_written + r.files_compacted + r.files_expired > 0 {
                    tracing::debug!(?r, "time-series maintenance");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "time-series flush failed; will retry"),
            Err(e) => tracing::error!(error = %e, "time-series maintenance panicked"),
        }
    }
}

/// Stores the exchange's trades, quotes, bars and (every `snapshots.0`, the top `snapshots.1`
/// levels of the books that changed) book snapshots as they arrive on the bus.
async fn record(
    bus: Bus,
    clock: Arc<dyn Clock>,
    mut recorder: Recorder,
    snapshots: Option<(Duration, usize)>,
) {
    let trades_topic: Topic<Trade> = Topic::new(tradestack_exchange::service::TRADES_TOPIC);
    let book_topic: Topic<(InstrumentId, BookDelta)> =
        Topic::new(tradestack_exchange::service::BOOK_TOPIC);
    let (mut trades, mut book) = match (
        bus.subscribe(&trades_topic, Some("marketdata-recorder"))
            .await,
        bus.subscribe(&book_topic, Some("marketdata-recorder"))
            .await,
    ) {
        (Ok(t), Ok(b)) => (t, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "market data will not record the exchange");
            return;
        }
    };
    let mut tops = Tops::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_snapshot = tokio::time::Instant::now();
    loop {
        let result = tokio::select! {
            d = trades.recv() => match d {
                Some(d) => recorder.trade(&d.msg),
                None => return,
            },
            d = book.recv() => match d {
                Some(d) => {
                    let (instrument, delta) = &d.msg;
                    match tops.apply(instrument, delta, d.ts) {
                        Some(q) => recorder.quote(&q),
                        None => Ok(()),
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                let mut r = recorder.advance_to(clock.now());
                if let Some((every, depth)) = snapshots
                    && last_snapshot.elapsed() >= every
                {
                    last_snapshot = tokio::time::Instant::now();
                    for levels in tops.take_changed(depth, clock.now()) {
                        r = r.and_then(|()| recorder.book(&levels));
                    }
                }
                if r.is_ok() && recorder.pending() > 0 {
                    tokio::task::block_in_place(|| recorder.commit()).map(|_| ())
                } else {
                    r
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "market data record failed");
        }
        if recorder.pending() >= 10_000
            && let Err(e) = tokio::task::block_in_place(|| recorder.commit())
        {
            tracing::warn!(error = %e, "market data commit failed");
        }
    }
}
