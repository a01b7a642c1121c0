//! The live driver: the strategy engine in real time, fed from the bus and
//! a [`Venue`], its actions sent through the pre-trade gate to the venue.
//!
//! One task owns the engine and the gate, so nothing is shared or locked:
//! market data ([`FEED_TOPIC`], [`REFERENCE_TOPIC`]), order updates and
//! fills from the venue, timers and requests from elsewhere ([`Job`]s,
//! which is how the API reads positions and how the risk service's state
//! changes reach the gate) are handled one at a time. What the strategies
//! answer is checked by the gate and sent to the venue before the next
//! input. Every attempt, refusal, venue round trip and attributed order
//! and fill is published on the bus for the risk monitor and the audit.
//!
//! [`FEED_TOPIC`]: tradestack_marketdata::feed::FEED_TOPIC
//! [`REFERENCE_TOPIC`]: tradestack_marketdata::feed::REFERENCE_TOPIC

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tradestack_bus::{Bus, Publisher, Subscription, Topic};
use tradestack_kernel::Clock;
use tradestack_marketdata::bars::{BarBuilder, BarConfig};
use tradestack_marketdata::feed::{FeedEvent, FeedMessage, ReferencePrices};
use tradestack_model::{AccountId, Fill, InstrumentId, Nanos, Order, StrategyId, UnixNanos};

use crate::engine::{Outgoing, StrategyEngine};
use crate::gate::OrderGate;
use crate::metrics::TradingMetrics;
use crate::strategy::Action;
use crate::venue::{Venue, VenueError, VenueEvent};

/// Bus topic of strategy orders' updates, with the strategy named.
pub const ORDERS_TOPIC: &str = "trading.orders";
/// Bus topic of strategy fills, with the strategy named.
pub const FILLS_TOPIC: &str = "trading.fills";
/// Bus topic of [`Activity`]: order attempts, refusals, venue round trips.
pub const ACTIVITY_TOPIC: &str = "trading.activity";

/// What the driver did with one action, as published on [`ACTIVITY_TOPIC`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    /// A strategy asked for a new order (counted before the gate).
    Submitted {
        /// The strategy.
        strategy: StrategyId,
        /// Its account.
        account: AccountId,
        /// The instrument.
        instrument: InstrumentId,
        /// When.
        ts: UnixNanos,
    },
    /// The pre-trade gate refused an order.
    Gated {
        /// The strategy.
        strategy: StrategyId,
        /// Its account.
        account: AccountId,
        /// The rule that refused it.
        rule: String,
        /// Why.
        message: String,
        /// When.
        ts: UnixNanos,
    },
    /// One request to the venue and how it went.
    Venue {
        /// The strategy.
        strategy: StrategyId,
        /// True when the venue answered (even with a refusal); false when
        /// it was unreachable or failed.
        ok: bool,
        /// The venue's refusal code, if it refused.
        refused: Option<String>,
        /// The round trip.
        latency: Nanos,
        /// When it was sent.
        ts: UnixNanos,
    },
}

/// Counters of a live driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStats {
    /// Actions sent to the venue and taken.
    pub sent: u64,
    /// Actions the venue refused.
    pub refused: u64,
    /// Actions that could not reach the venue.
    pub failed: u64,
    /// Orders the pre-trade gate refused.
    pub gated: u64,
    /// Order updates and fills received.
    pub updates: u64,
    /// Times the venue stream lost updates.
    pub gaps: u64,
}

/// What a [`Job`] sees: the engine, the gate, the time and the counters.
pub struct Desk<G> {
    /// The strategies.
    pub engine: StrategyEngine,
    /// The pre-trade gate.
    pub gate: G,
    /// Time of the input being handled.
    pub now: UnixNanos,
    /// Counters.
    pub stats: DriverStats,
}

/// Work run inside the driver between inputs; the actions it returns are
/// gated and sent like the strategies' own.
pub type Job<G> = Box<dyn FnOnce(&mut Desk<G>) -> Vec<Outgoing> + Send>;

/// The driver has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the strategy driver has stopped")]
pub struct DriverStopped;

/// Sends work to a running driver; cheap to clone.
pub struct DriverHandle<G> {
    tx: mpsc::Sender<Job<G>>,
}

impl<G> Clone for DriverHandle<G> {
    fn clone(&self) -> Self {
        DriverHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<G: Send + 'static> DriverHandle<G> {
    /// Runs `f` in the driver and returns its result; the actions it
    /// returns go through the gate to the venue afterwards.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Desk<G>) -> (R, Vec<Outgoing>) + Send + 'static,
    ) -> Result<R, DriverStopped> {
        let (tx, rx) = oneshot::channel();
        let job: Job<G> = Box::new(move |desk| {
            let (r, out) = f(desk);
            let _ = tx.send(r);
            out
        });
        self.tx.send(job).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// Reads from the driver without acting.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Desk<G>) -> R + Send + 'static,
    ) -> Result<R, DriverStopped> {
        self.call(move |d| (f(d), Vec::new())).await
    }
}

/// Settings of the live driver.
#[derive(Clone, Debug)]
pub struct DriverSettings {
    /// Only feed messages of this venue reach the strategies.
    pub feed_venue: String,
    /// Bar intervals built from the venue's trades.
    pub bar_intervals: Vec<Nanos>,
}

/// The live driver, before it runs.
pub struct Driver<G> {
    desk: Desk<G>,
    venue: Arc<dyn Venue>,
    clock: Arc<dyn Clock>,
    bars: BarBuilder,
    settings: DriverSettings,
    feed: Subscription<FeedMessage>,
    reference: Subscription<ReferencePrices>,
    events: mpsc::Receiver<VenueEvent>,
    jobs: mpsc::Receiver<Job<G>>,
    out: mpsc::UnboundedSender<Published>,
    metrics: TradingMetrics,
}

/// What the driver publishes, in the order it happened.
enum Published {
    Order(Order),
    Fill(Fill),
    Activity(Activity),
}

/// Publishes the driver's events in order, off its task (a slow broker
/// must not stall trading).
async fn publish(
    mut rx: mpsc::UnboundedReceiver<Published>,
    orders: Publisher<Order>,
    fills: Publisher<Fill>,
    activity: Publisher<Activity>,
) {
    while let Some(m) = rx.recv().await {
        let r = match m {
            Published::Order(o) => {
                let key = o.instrument.to_string();
                orders.publish(Some(&key), o).await
            }
            Published::Fill(f) => {
                let key = f.instrument.to_string();
                fills.publish(Some(&key), f).await
            }
            Published::Activity(a) => activity.publish(None, a).await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "strategy event not published");
        }
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The bus refused a subscription or publisher.
    #[error("bus: {0}")]
    Bus(String),
    /// The venue could not be reached.
    #[error(transparent)]
    Venue(#[from] VenueError),
    /// Invalid bar intervals.
    #[error(transparent)]
    Bars(#[from] tradestack_marketdata::bars::BarError),
}

impl<G: OrderGate + Send + 'static> Driver<G> {
    /// Subscribes to market data and the venue's stream of the engine's
    /// accounts; returns the driver and the handle to send it work.
    pub async fn new(
        engine: StrategyEngine,
        gate: G,
        venue: Arc<dyn Venue>,
        bus: &Bus,
        clock: Arc<dyn Clock>,
        settings: DriverSettings,
        metrics: TradingMetrics,
    ) -> Result<(Driver<G>, DriverHandle<G>), DriverError> {
        let bus_err = |e: tradestack_bus::BusError| DriverError::Bus(e.to_string());
        let accounts = engine.strategies().map(|(_, a)| a.clone()).collect();
        let events = venue.events(accounts).await?;
        let (feed, reference) = tradestack_marketdata::feed::subscribe_market(bus)
            .await
            .map_err(bus_err)?;
        let bars = BarBuilder::new(&BarConfig {
            intervals: settings.bar_intervals.clone(),
            ..BarConfig::default()
        })?;
        let (tx, jobs) = mpsc::channel(1_024);
        let (out, published) = mpsc::unbounded_channel();
        tokio::spawn(publish(
            published,
            bus.publisher(&Topic::new(ORDERS_TOPIC)).map_err(bus_err)?,
            bus.publisher(&Topic::new(FILLS_TOPIC)).map_err(bus_err)?,
            bus.publisher(&Topic::new(ACTIVITY_TOPIC))
                .map_err(bus_err)?,
        ));
        let driver = Driver {
            desk: Desk {
                engine,
                gate,
                now: clock.now(),
                stats: DriverStats::default(),
            },
            venue,
            clock,
            bars,
            settings,
            feed,
            reference,
            events,
            jobs,
            out,
            metrics,
        };
        Ok((driver, DriverHandle { tx }))
    }

    /// Starts the strategies and runs until `shutdown` turns true, then
    /// stops them (their orders are cancelled).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let now = self.tick();
        let out = self.desk.engine.start(now);
        self.execute(out).await;
        let mut last_metrics = Instant::now();
        loop {
            let now = self.clock.now();
            // Wake for the next strategy timer, and at least once a second
            // to close bars and refresh the gauges.
            let wait = self
                .desk
                .engine
                .next_timer()
                .map_or(Nanos::SECOND.0, |t| t.0 - now.0)
                .clamp(0, Nanos::SECOND.0);
            let out = tokio::select! {
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
                job = self.jobs.recv() => match job {
                    Some(job) => {
                        self.tick();
                        job(&mut self.desk)
                    }
                    None => Vec::new(),
                },
                e = self.events.recv() => match e {
                    Some(e) => self.on_venue_event(e),
                    None => {
                        tracing::error!("the venue's update stream ended; stopping the strategies");
                        break;
                    }
                },
                m = self.feed.recv() => match m {
                    Some(d) => self.on_feed(d.msg),
                    None => break,
                },
                r = self.reference.recv() => match r {
                    Some(d) => {
                        for (i, p) in &d.msg.prices {
                            self.desk.engine.on_reference(i, *p);
                        }
                        Vec::new()
                    }
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_nanos(wait as u64)) => {
                    let now = self.tick();
                    let mut out = self.desk.engine.fire_timers(now);
                    for b in self.bars.advance_to(now) {
                        out.extend(self.desk.engine.on_bar(b.bar(), now));
                    }
                    out
                }
            };
            self.execute(out).await;
            if last_metrics.elapsed() >= Duration::from_secs(1) {
                last_metrics = Instant::now();
                self.metrics.refresh(&self.desk.engine, self.desk.stats);
            }
        }
        let now = self.tick();
        let out = self.desk.engine.stop(now);
        self.execute(out).await;
        self.metrics.refresh(&self.desk.engine, self.desk.stats);
        tracing::info!(stats = ?self.desk.stats, "strategies stopped");
    }

    fn tick(&mut self) -> UnixNanos {
        self.desk.now = self.clock.now().max(self.desk.now);
        self.desk.now
    }

    fn on_feed(&mut self, m: FeedMessage) -> Vec<Outgoing> {
        if m.venue != self.settings.feed_venue {
            return Vec::new();
        }
        let now = self.tick();
        let engine = &mut self.desk.engine;
        match &m.event {
            FeedEvent::Quote(q) => engine.on_quote(q, now),
            FeedEvent::Trade(t) => {
                let mut out = Vec::new();
                if let Ok(closed) = self.bars.on_trade(t) {
                    for b in closed {
                        out.extend(engine.on_bar(b.bar(), now));
                    }
                }
                out.extend(engine.on_trade(t, now));
                out
            }
            // Bars are built here from the trades, in the driver's intervals.
            FeedEvent::Bar(_) => Vec::new(),
            FeedEvent::Book(b) => engine.on_book(b, now),
        }
    }

    fn on_venue_event(&mut self, e: VenueEvent) -> Vec<Outgoing> {
        let now = self.tick();
        match e {
            VenueEvent::Order(mut o) => {
                self.desk.stats.updates += 1;
                if o.strategy.is_none() {
                    o.strategy = self.desk.engine.owner(&o.client_order_id).cloned();
                }
                let out = self.desk.engine.on_order(&o, now);
                if o.strategy.is_some() {
                    let _ = self.out.send(Published::Order(o));
                }
                out
            }
            VenueEvent::Fill(mut f) => {
                self.desk.stats.updates += 1;
                if f.strategy.is_none() {
                    f.strategy = self.desk.engine.owner(&f.client_order_id).cloned();
                }
                let out = self.desk.engine.on_fill(&f, now);
                if let Some(s) = &f.strategy {
                    self.metrics.fill(s);
                    let _ = self.out.send(Published::Fill(f));
                }
                out
            }
            VenueEvent::Gap(why) => {
                self.desk.stats.gaps += 1;
                tracing::warn!(%why, "the venue stream lost updates; positions may lag until the next fills");
                Vec::new()
            }
        }
    }

    /// Gates and sends actions, and whatever the strategies answer to refusals.
    async fn execute(&mut self, out: Vec<Outgoing>) {
        let mut queue: VecDeque<Outgoing> = out.into();
        while let Some(o) = queue.pop_front() {
            let now = self.tick();
            if let Action::Submit(req) = &o.action {
                let a = Activity::Submitted {
                    strategy: o.strategy.clone(),
                    account: o.account.clone(),
                    instrument: req.instrument.clone(),
                    ts: now,
                };
                let _ = self.out.send(Published::Activity(a));
            }
            if let Err(r) = self.desk.gate.check(&o, now, &self.desk.engine) {
                self.desk.stats.gated += 1;
                self.metrics
                    .order(&o.strategy, &format!("gated_{}", r.rule));
                let a = Activity::Gated {
                    strategy: o.strategy.clone(),
                    account: o.account.clone(),
                    rule: r.rule,
                    message: r.message,
                    ts: now,
                };
                let _ = self.out.send(Published::Activity(a));
                if let Action::Submit(req) = &o.action {
                    queue.extend(self.desk.engine.on_refused(&req.client_order_id, now));
                }
                continue;
            }
            let started = Instant::now();
            let result = self.venue.send(&o).await;
            let latency = Nanos(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX));
            self.metrics.venue_latency(latency);
            let (ok, refused) = match &result {
                Ok(()) => {
                    self.desk.stats.sent += 1;
                    (true, None)
                }
                Err(VenueError::Refused { code, .. }) => {
                    self.desk.stats.refused += 1;
                    (true, Some(code.clone()))
                }
                Err(VenueError::Unavailable(why)) => {
                    self.desk.stats.failed += 1;
                    tracing::warn!(strategy = %o.strategy, %why, "action not sent");
                    (false, None)
                }
            };
            if let Action::Submit(req) = &o.action {
                let outcome = match (&result, &refused) {
                    (Ok(()), _) => "sent".to_string(),
                    (_, Some(code)) => format!("refused_{code}"),
                    _ => "failed".to_string(),
                };
                self.metrics.order(&o.strategy, &outcome);
                if result.is_err() {
                    queue.extend(self.desk.engine.on_refused(&req.client_order_id, now));
                }
            }
            let a = Activity::Venue {
                strategy: o.strategy.clone(),
                ok,
                refused,
                latency,
                ts: now,
            };
            let _ = self.out.send(Published::Activity(a));
        }
    }
}
