//! The exchange as a tradestack service: the sequencer, the APIs, and the
//! edges to the state store and the bus.
//!
//! Order and fill history goes to the state store, and order, fill and trade
//! events go on the bus through the store's outbox, in one transaction per
//! batch. Event ids are derived from the journal sequence number, so when a
//! restart replays journal entries whose events were already stored, the
//! upserts are idempotent and bus consumers drop the repeats by id. Book
//! deltas are market data: they are published directly, best effort (a
//! client that sees a gap re-reads the snapshot).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::Router;
use tokio::sync::mpsc;
use tradestack_bus::{Bus, Topic};
use tradestack_kernel::Clock;
use tradestack_model::EventId;
use tradestack_service::{Check, Service};
use tradestack_store::{StateStore, WriteBatch};

use crate::api::{self, ApiState, RecentTrades};
use crate::binance::BinanceState;
use crate::binance::auth::Keys;
use crate::binance::limits::{Limits, RateLimiter};
use crate::chaos::Chaos;
use crate::engine::{Command, ExchangeEvent};
use crate::metrics::ExchangeMetrics;
use crate::sequencer::{Applied, Durable, RecoveryReport, Sequencer, SequencerSettings};
use crate::settings::ExchangeSettings;
use tradestack_model::{InstrumentId, Price};

/// Bus topic of order updates.
pub const ORDERS_TOPIC: &str = "exchange.orders";
/// Bus topic of fills.
pub const FILLS_TOPIC: &str = "exchange.fills";
/// Bus topic of public trades.
pub const TRADES_TOPIC: &str = "exchange.trades";
/// Bus topic of perpetual position, funding and liquidation events.
pub const POSITIONS_TOPIC: &str = "exchange.positions";
/// Bus topic of book deltas.
pub const BOOK_TOPIC: &str = "exchange.book";

/// The running exchange service.
pub struct ExchangeService {
    state: ApiState,
    binance: BinanceState,
    ws: crate::ws::WsState,
    chaos: Chaos,
    admin_token: Option<String>,
    native_auth: Arc<crate::auth::NativeAuth>,
    /// What recovery did at start.
    pub recovery: RecoveryReport,
}

impl ExchangeService {
    /// Recovers the exchange from its journal under `data_dir` and starts the
    /// sequencer and the store/bus writers.
    pub fn start(
        settings: ExchangeSettings,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        metrics: &tradestack_telemetry::metrics::Metrics,
        store: Arc<dyn StateStore>,
        bus: Bus,
        seed: u64,
    ) -> Result<ExchangeService, crate::journal::JournalError> {
        let m = ExchangeMetrics::default();
        m.register(metrics);
        let ws_metrics = m.clone();
        let dir = if settings.journal.dir.is_absolute() {
            settings.journal.dir.clone()
        } else {
            data_dir.join(&settings.journal.dir)
        };
        let seq_settings = SequencerSettings {
            dir,
            fsync: settings.journal.fsync,
            snapshot_every: settings.journal.snapshot_every.max(1),
            batch_max: settings.journal.batch_max.max(1),
        };
        let settings_keys: Vec<(String, tradestack_model::AccountId, String)> = settings
            .accounts
            .iter()
            .filter_map(|a| Some((a.api_key.clone()?, a.id.clone(), a.api_secret.clone()?)))
            .collect();
        let instruments = settings.instruments.clone();
        let admin_token = settings.admin_token.clone();
        let require_signatures = settings.require_signatures;
        let limits = Limits {
            weight_per_minute: settings.weight_per_minute,
            orders_per_10s: settings.orders_per_10s,
        };
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        let stored = Arc::new(AtomicU64::new(0));
        let durable = Durable {
            tx: durable_tx,
            stored: stored.clone(),
        };
        let clock_for_api = clock.clone();
        let margin = settings.margin;
        let perps: Vec<(InstrumentId, InstrumentId)> = settings
            .instruments
            .iter()
            .filter(|i| matches!(i.kind, tradestack_model::InstrumentKind::Perpetual { .. }))
            .filter_map(|p| {
                let spot = settings.instruments.iter().find(|s| {
                    s.kind == tradestack_model::InstrumentKind::Spot
                        && s.base == p.base
                        && s.quote == p.quote
                })?;
                Some((p.id.clone(), spot.id.clone()))
            })
            .collect();
        let seq = Sequencer::start(settings, seq_settings, clock, m, Some(durable))?;
        tokio::spawn(write_history(durable_rx, store.clone(), stored));
        if !perps.is_empty() {
            tokio::spawn(drive_perpetuals(seq.handle.clone(), perps, margin));
        }
        let trades = RecentTrades::default();
        let bars = crate::bars::MinuteBars::default();
        let chaos = Chaos::new(
            seed,
            clock_for_api.clone(),
            seq.handle.clone(),
            bus.clone(),
            store.clone(),
        );
        tokio::spawn(fan_out(
            seq.handle.subscribe(),
            trades.clone(),
            bars.clone(),
            bus,
            chaos.clone(),
        ));
        let keys = Keys::new(settings_keys.iter().cloned());
        let symbols = Arc::new(
            instruments
                .iter()
                // The compatible API is spot: perpetuals are not its symbols.
                .filter(|i| i.kind == tradestack_model::InstrumentKind::Spot)
                .map(|i| (crate::binance::symbol_of(&i.id), i.id.clone()))
                .collect(),
        );
        tracing::info!(recovery = ?seq.recovery, "exchange recovered");
        let recovery = seq.recovery.clone();
        // The thread ends when the last handle is dropped.
        drop(seq.thread);
        let state = ApiState {
            exchange: seq.handle,
            trades,
            store,
            clock: clock_for_api,
            bars,
        };
        Ok(ExchangeService {
            ws: crate::ws::WsState {
                exchange: state.exchange.clone(),
                keys: keys.clone(),
                clock: state.clock.clone(),
                metrics: ws_metrics,
                chaos: chaos.clone(),
            },
            chaos,
            admin_token,
            native_auth: Arc::new(crate::auth::NativeAuth {
                keys: keys.clone(),
                clock: state.clock.clone(),
                required: require_signatures,
                limiter: RateLimiter::new(limits),
            }),
            binance: BinanceState {
                api: state.clone(),
                keys,
                limiter: RateLimiter::new(limits),
                symbols,
            },
            state,
            recovery,
        })
    }

    /// The handle to the sequencer.
    pub fn handle(&self) -> &crate::sequencer::ExchangeHandle {
        &self.state.exchange
    }

    /// The venue's in-memory minute bars (klines, 24-hour tickers).
    pub fn minute_bars(&self) -> &crate::bars::MinuteBars {
        &self.state.bars
    }
}

#[async_trait]
impl Service for ExchangeService {
    fn name(&self) -> &'static str {
        "exchange"
    }

    fn routes(&self) -> Router {
        api::router(self.state.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.native_auth.clone(),
                crate::auth::middleware,
            ))
            .merge(crate::binance::router(self.binance.clone()))
            .merge(crate::ws::router(self.ws.clone()))
            .layer(axum::middleware::from_fn_with_state(
                self.chaos.clone(),
                crate::chaos::middleware,
            ))
            .merge(crate::admin::router(
                self.state.exchange.clone(),
                self.chaos.clone(),
                self.admin_token.clone(),
            ))
    }

    async fn checks(&self) -> Vec<Check> {
        let ok = self.state.exchange.is_healthy();
        vec![Check::from_result(
            "sequencer",
            if ok {
                Ok(())
            } else {
                Err("the sequencer stopped (journal failure)")
            },
        )]
    }
}

/// A deterministic event id: the same journal entry gives the same ids.
fn event_id(seq: u64, index: usize) -> EventId {
    // High byte 0xE1 marks exchange events.
    EventId((0xE1u128 << 120) | (u128::from(seq) << 32) | index as u128)
}

/// Writes order, fill and balance history and the outbox, one transaction
/// per batch of applied commands.
async fn write_history(
    mut rx: mpsc::UnboundedReceiver<Arc<Applied>>,
    store: Arc<dyn StateStore>,
    stored: Arc<AtomicU64>,
) {
    let mut batch_of: Vec<Arc<Applied>> = Vec::new();
    loop {
        let Some(first) = rx.recv().await else { return };
        batch_of.push(first);
        while batch_of.len() < 512 {
            match rx.try_recv() {
                Ok(a) => batch_of.push(a),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::new();
        let upto = batch_of.last().map_or(0, |a| a.seq);
        for applied in batch_of.drain(..) {
            for (i, e) in applied.events.iter().enumerate() {
                let id = event_id(applied.seq, i);
                match e {
                    ExchangeEvent::Order(o) => {
                        batch.push(tradestack_store::Write::PutOrder(o.clone()));
                        push_outbox(
                            &mut batch,
                            id,
                            ORDERS_TOPIC,
                            o.instrument.as_str(),
                            applied.ts,
                            o,
                        );
                    }
                    ExchangeEvent::Fill(f) => {
                        batch.push(tradestack_store::Write::PutFill(f.clone()));
                        push_outbox(
                            &mut batch,
                            id,
                            FILLS_TOPIC,
                            f.instrument.as_str(),
                            applied.ts,
                            f,
                        );
                    }
                    ExchangeEvent::Trade(t) => {
                        push_outbox(
                            &mut batch,
                            id,
                            TRADES_TOPIC,
                            t.instrument.as_str(),
                            applied.ts,
                            t,
                        );
                    }
                    ExchangeEvent::Balance {
                        account,
                        asset,
                        balance,
                    } => {
                        batch.push(tradestack_store::Write::PutBalance(
                            tradestack_store::Balance {
                                account: account.clone(),
                                asset: asset.clone(),
                                free: balance.free,
                                locked: balance.locked,
                                updated_at: applied.ts,
                            },
                        ));
                    }
                    ExchangeEvent::Position { account, .. }
                    | ExchangeEvent::Funding { account, .. }
                    | ExchangeEvent::Liquidated { account, .. } => {
                        push_outbox(
                            &mut batch,
                            id,
                            POSITIONS_TOPIC,
                            account.as_str(),
                            applied.ts,
                            e,
                        );
                    }
                    ExchangeEvent::Book { .. } => {}
                }
            }
        }
        if !batch.is_empty() {
            // The journal holds the commands: a failure here loses no order,
            // and is retried until it succeeds (snapshots wait meanwhile).
            let mut delay = std::time::Duration::from_millis(50);
            while let Err(e) = store.commit(batch.clone()).await {
                tracing::warn!(error = %e, "cannot write exchange history; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
        stored.fetch_max(upto, Ordering::AcqRel);
    }
}

fn push_outbox<T: serde::Serialize>(
    batch: &mut WriteBatch,
    id: EventId,
    topic: &str,
    key: &str,
    ts: tradestack_model::UnixNanos,
    msg: &T,
) {
    match tradestack_bus::envelope::encode(id, topic, Some(key), ts, msg) {
        Ok(env) => {
            batch.push(tradestack_store::Write::Outbox(env));
        }
        Err(e) => tracing::error!(error = %e, topic, "cannot encode an exchange event"),
    }
}

/// Feeds the recent-trades cache and publishes book deltas (and makes the
/// chaos topic ready, so both publish without waiting).
async fn fan_out(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Applied>>,
    trades: RecentTrades,
    bars: crate::bars::MinuteBars,
    bus: Bus,
    chaos: Chaos,
) {
    let book = Topic::<(
        tradestack_model::InstrumentId,
        tradestack_matching::BookDelta,
    )>::new(BOOK_TOPIC);
    let publisher = match bus.publisher(&book) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "book deltas will not be published");
            None
        }
    };
    // Deltas are queued without waiting (the fan-out must keep up with
    // matching), which on Kafka needs the topic to exist first.
    crate::chaos::prepare(&bus).await;
    if let Some(p) = &publisher
        && let Err(e) = p.ready().await
    {
        tracing::warn!(error = %e, "the book topic is not ready; deltas are dropped until it is");
    }
    loop {
        let applied = match rx.recv().await {
            Ok(a) => a,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "exchange fan-out lagged");
                continue;
            }
            Err(_) => return,
        };
        for e in &applied.events {
            match e {
                ExchangeEvent::Trade(t) => {
                    bars.push(t);
                    trades.push(t.clone());
                }
                ExchangeEvent::Book { instrument, delta } => {
                    if let Some(p) = publisher.as_ref().filter(|_| !chaos.frozen()) {
                        let _ =
                            p.try_publish(Some(instrument.as_str()), (instrument.clone(), *delta));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Marks each perpetual to its index (the mid, else the last trade, of the
/// spot pair with the same assets) every `mark_interval`, which liquidates
/// positions under maintenance, and pays funding every `funding_interval`.
/// Both go through the journal like any command.
async fn drive_perpetuals(
    exchange: crate::sequencer::ExchangeHandle,
    perps: Vec<(InstrumentId, InstrumentId)>,
    margin: crate::margin::MarginSettings,
) {
    let mut mark = tokio::time::interval(
        margin
            .mark_interval
            .max(std::time::Duration::from_millis(100)),
    );
    let mut funding = tokio::time::interval(
        margin
            .funding_interval
            .max(std::time::Duration::from_secs(1)),
    );
    funding.tick().await;
    loop {
        let pay = tokio::select! {
            _ = mark.tick() => false,
            _ = funding.tick() => true,
        };
        for (perp, spot) in &perps {
            let (spot2, perp2) = (spot.clone(), perp.clone());
            let Ok(Some(index)) = exchange
                .read(move |ex| {
                    // Nothing to mark or fund without positions: keep the
                    // journal quiet.
                    if !ex
                        .all_positions()
                        .any(|((_, i), p)| i == &perp2 && p.qty != 0)
                    {
                        return None;
                    }
                    ex.book(&spot2)
                        .and_then(|b| match (b.best_bid(), b.best_ask()) {
                            (Some((bid, _)), Some((ask, _))) => {
                                Some(Price::from_raw((bid.raw() + ask.raw()) / 2))
                            }
                            _ => b.last_trade_price(),
                        })
                })
                .await
            else {
                continue;
            };
            let cmd = if pay {
                Command::Funding {
                    instrument: perp.clone(),
                    index,
                }
            } else {
                Command::Mark {
                    instrument: perp.clone(),
                    index,
                }
            };
            if exchange.execute(cmd).await.is_err() {
                return;
            }
        }
    }
}
