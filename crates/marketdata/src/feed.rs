//! The market-data feed: one normalized stream of trades, top-of-book quotes, bars and book
//! snapshots, tagged with their venue, that strategies and the risk monitor consume from the
//! bus ([`FEED_TOPIC`]).
//!
//! The venue's own topics (`exchange.trades`, `exchange.book`) are the truth and are what the
//! recorder stores; the feed is what a market-data gateway delivers, so it is where feed
//! faults are injected. [`FeedGate`] passes messages through unchanged until a
//! [`DisruptionConfig`] is set, then runs them through one [`Disruptor`] per instrument and
//! kind (so a stale BTC quote repeats the last BTC quote, never an ETH trade) and reports each
//! fault it injected as a [`FeedDisruption`] ([`DISRUPTIONS_TOPIC`]), which the audit
//! correlator matches with what detected it.
//!
//! The gate is pure: it says how long after the input each delivery is due; the service's
//! gate task does the waiting (see [`crate::service`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_kernel::DetRng;
use tradestack_model::{Bar, InstrumentId, Nanos, Price, Quantity, Quote, Trade, UnixNanos};

use crate::disruption::{
    Action, DisruptionConfig, DisruptionError, DisruptionRecord, Disruptor, Tick,
};

/// The bus topic of the normalized feed ([`FeedMessage`]).
pub const FEED_TOPIC: &str = "marketdata.feed";
/// The bus topic of injected feed faults ([`FeedDisruption`]).
pub const DISRUPTIONS_TOPIC: &str = "marketdata.disruptions";
/// Bus topic of the simulator's reference prices ([`ReferencePrices`]), once a second.
pub const REFERENCE_TOPIC: &str = "marketdata.reference";

/// Subscribes to the whole feed and the reference prices (no consumer
/// group: every subscriber sees everything), as strategies and the risk
/// monitor need them.
pub async fn subscribe_market(
    bus: &tradestack_bus::Bus,
) -> Result<
    (
        tradestack_bus::Subscription<FeedMessage>,
        tradestack_bus::Subscription<ReferencePrices>,
    ),
    tradestack_bus::BusError,
> {
    let feed = bus
        .subscribe(&tradestack_bus::Topic::new(FEED_TOPIC), None)
        .await?;
    let reference = bus
        .subscribe(&tradestack_bus::Topic::new(REFERENCE_TOPIC), None)
        .await?;
    Ok((feed, reference))
}

/// Reference (fair) prices at one instant, as published on [`REFERENCE_TOPIC`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferencePrices {
    /// When they held.
    pub ts: UnixNanos,
    /// `BTC-USD`, `USDT-USD`, ... with their prices.
    pub prices: Vec<(InstrumentId, Price)>,
}

/// Price levels of one side of a book snapshot, best first.
pub type Levels = Vec<(Price, Quantity)>;

/// The top levels of a book at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookLevels {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Venue time.
    pub ts: UnixNanos,
    /// Bids, best (highest) first.
    pub bids: Levels,
    /// Asks, best (lowest) first.
    pub asks: Levels,
}

/// One market-data event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedEvent {
    /// A trade print.
    Trade(Trade),
    /// Top of book.
    Quote(Quote),
    /// A closed bar.
    Bar(Bar),
    /// Top levels of the book.
    Book(BookLevels),
}

impl FeedEvent {
    /// The instrument.
    pub fn instrument(&self) -> &InstrumentId {
        match self {
            FeedEvent::Trade(t) => &t.instrument,
            FeedEvent::Quote(q) => &q.instrument,
            FeedEvent::Bar(b) => &b.instrument,
            FeedEvent::Book(b) => &b.instrument,
        }
    }

    /// `trade`, `quote`, `bar` or `book`.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedEvent::Trade(_) => "trade",
            FeedEvent::Quote(_) => "quote",
            FeedEvent::Bar(_) => "bar",
            FeedEvent::Book(_) => "book",
        }
    }
}

impl Tick for FeedEvent {
    /// Event time; a bar is known when it closes.
    fn ts(&self) -> UnixNanos {
        match self {
            FeedEvent::Trade(t) => t.ts,
            FeedEvent::Quote(q) => q.ts,
            FeedEvent::Bar(b) => b.open_time + b.interval,
            FeedEvent::Book(b) => b.ts,
        }
    }

    fn map_prices(&mut self, f: &mut dyn FnMut(Price) -> Price) {
        match self {
            FeedEvent::Trade(t) => t.map_prices(f),
            FeedEvent::Quote(q) => q.map_prices(f),
            FeedEvent::Bar(b) => {
                for p in [&mut b.open, &mut b.high, &mut b.low, &mut b.close] {
                    *p = f(*p);
                }
            }
            FeedEvent::Book(b) => {
                for (p, _) in b.bids.iter_mut().chain(b.asks.iter_mut()) {
                    *p = f(*p);
                }
            }
        }
    }

    fn freeze_like(&mut self, frozen: &Self) {
        match (self, frozen) {
            (FeedEvent::Trade(t), FeedEvent::Trade(f)) => t.freeze_like(f),
            (FeedEvent::Quote(q), FeedEvent::Quote(f)) => q.freeze_like(f),
            (FeedEvent::Bar(b), FeedEvent::Bar(f)) => {
                let (open_time, interval) = (b.open_time, b.interval);
                *b = f.clone();
                b.open_time = open_time;
                b.interval = interval;
            }
            (FeedEvent::Book(b), FeedEvent::Book(f)) => {
                b.bids = f.bids.clone();
                b.asks = f.asks.clone();
            }
            // The gate keeps one disruptor per kind, so kinds never meet.
            _ => {}
        }
    }

    fn main_price(&self) -> Price {
        match self {
            FeedEvent::Trade(t) => t.price,
            FeedEvent::Quote(q) => q.bid,
            FeedEvent::Bar(b) => b.close,
            FeedEvent::Book(b) => b.bids.first().map_or(Price::ZERO, |l| l.0),
        }
    }
}

/// A feed event with its venue, as published on [`FEED_TOPIC`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedMessage {
    /// Where it comes from (`tradestack` for the in-process exchange, `binance-futures` for a
    /// replayed Tardis file, ...).
    pub venue: String,
    /// The event.
    pub event: FeedEvent,
}

/// One fault the gate injected, as published on [`DISRUPTIONS_TOPIC`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedDisruption {
    /// The venue of the disrupted stream.
    pub venue: String,
    /// The instrument.
    pub instrument: InstrumentId,
    /// `trade`, `quote`, `bar` or `book`.
    pub kind: String,
    /// What was done (its `seq` counts within this instrument and kind).
    pub record: DisruptionRecord,
}

/// A delivery: the message and how long after its input it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Delay after the input that produced it (0 = now).
    pub after: Nanos,
    /// The message.
    pub message: FeedMessage,
}

/// Counts of injected faults, by action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Dropped in a gap.
    pub dropped: u64,
    /// Delivered with frozen content.
    pub stale: u64,
    /// Prices corrupted.
    pub corrupted: u64,
    /// Delayed by a latency spike.
    pub delayed: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Delivered out of order.
    pub reordered: u64,
}

impl FaultCounts {
    fn count(&mut self, a: &Action) {
        let slot = match a {
            Action::Dropped { .. } => &mut self.dropped,
            Action::Stale { .. } => &mut self.stale,
            Action::Corrupted { .. } => &mut self.corrupted,
            Action::Delayed { .. } => &mut self.delayed,
            Action::Duplicated => &mut self.duplicated,
            Action::Reordered { .. } => &mut self.reordered,
        };
        *slot += 1;
    }
}

type StreamKey = (String, InstrumentId, &'static str);

/// The feed's fault injector (see the module docs). Deterministic from its seed and input.
#[derive(Debug)]
pub struct FeedGate {
    seed: u64,
    config: Option<DisruptionConfig>,
    streams: BTreeMap<StreamKey, Disruptor<FeedEvent>>,
    log: Vec<FeedDisruption>,
    counts: FaultCounts,
    delivered: u64,
}

/// FNV-1a, a stable per-stream fork id (std's hasher is randomly seeded).
fn stream_id(key: &StreamKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [key.0.as_str(), key.1.as_str(), key.2] {
        for b in part.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl FeedGate {
    /// A pass-through gate; faults drawn later come from `seed`.
    pub fn new(seed: u64) -> FeedGate {
        FeedGate {
            seed,
            config: None,
            streams: BTreeMap::new(),
            log: Vec::new(),
            counts: FaultCounts::default(),
            delivered: 0,
        }
    }

    /// The faults being injected, if any.
    pub fn config(&self) -> Option<&DisruptionConfig> {
        self.config.as_ref()
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Starts injecting `config`'s faults, or stops with `None`. Messages held back for
    /// reordering are released at once. A refused configuration changes nothing.
    pub fn set(
        &mut self,
        config: Option<DisruptionConfig>,
    ) -> Result<Vec<Release>, DisruptionError> {
        if let Some(c) = &config {
            c.validate()?;
        }
        let mut out = Vec::new();
        for ((venue, _, _), mut d) in std::mem::take(&mut self.streams) {
            for del in d.finish() {
                out.push(Release {
                    after: Nanos::ZERO,
                    message: FeedMessage {
                        venue: venue.clone(),
                        event: del.tick,
                    },
                });
            }
        }
        self.delivered += out.len() as u64;
        self.config = config;
        Ok(out)
    }

    /// Takes the faults injected since the last call.
    pub fn take_log(&mut self) -> Vec<FeedDisruption> {
        std::mem::take(&mut self.log)
    }

    /// Feeds one message (per instrument, in time order); returns what is delivered and when.
    pub fn push(&mut self, message: FeedMessage) -> Vec<Release> {
        let Some(config) = &self.config else {
            self.delivered += 1;
            return vec![Release {
                after: Nanos::ZERO,
                message,
            }];
        };
        let key = (
            message.venue.clone(),
            message.event.instrument().clone(),
            message.event.kind(),
        );
        let pushed_at = message.event.ts();
        let disruptor = match self.streams.entry(key.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let rng = DetRng::new(self.seed).fork(stream_id(&key));
                // The configuration was validated in `set`.
                match Disruptor::new(config.clone(), &rng) {
                    Ok(d) => e.insert(d),
                    Err(_) => return Vec::new(),
                }
            }
        };
        let deliveries = disruptor.push(message.event);
        for record in disruptor.take_log() {
            self.counts.count(&record.action);
            self.log.push(FeedDisruption {
                venue: key.0.clone(),
                instrument: key.1.clone(),
                kind: key.2.to_string(),
                record,
            });
        }
        self.delivered += deliveries.len() as u64;
        deliveries
            .into_iter()
            .map(|d| Release {
                after: Nanos((d.deliver_at.0 - pushed_at.0).max(0)),
                message: FeedMessage {
                    venue: key.0.clone(),
                    event: d.tick,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disruption::{CorruptFault, CorruptionKind, LatencyFault, Window, WindowFault};
    use tradestack_model::{Side, TradeId};

    fn trade(symbol: &str, i: i64) -> FeedMessage {
        FeedMessage {
            venue: "v".into(),
            event: FeedEvent::Trade(Trade {
                id: TradeId(i as u64),
                instrument: InstrumentId::new(symbol),
                price: Price::from_units(100 + i),
                quantity: Quantity::from_units(1),
                aggressor: Side::Buy,
                ts: UnixNanos::from_secs(i),
            }),
        }
    }

    #[test]
    fn passes_through_until_configured() {
        let mut g = FeedGate::new(7);
        let out = g.push(trade("BTC-USD", 1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].after, Nanos::ZERO);
        assert_eq!(out[0].message, trade("BTC-USD", 1));
        assert!(g.take_log().is_empty());
        assert_eq!(g.delivered(), 1);
    }

    #[test]
    fn gaps_and_latency_apply_per_stream_and_are_logged() {
        let mut g = FeedGate::new(7);
        let config = DisruptionConfig {
            gaps: WindowFault {
                windows: vec![Window {
                    start: UnixNanos::from_secs(3),
                    end: UnixNanos::from_secs(5),
                }],
                ..WindowFault::default()
            },
            latency: LatencyFault {
                base: Nanos::from_millis(20),
                ..LatencyFault::default()
            },
            ..DisruptionConfig::default()
        };
        assert!(g.set(Some(config)).unwrap().is_empty());
        let mut delivered = Vec::new();
        for i in 1..=6 {
            for s in ["BTC-USD", "ETH-USD"] {
                delivered.extend(g.push(trade(s, i)));
            }
        }
        // Seconds 3 and 4 dropped for both instruments; the rest 20 ms late.
        assert_eq!(delivered.len(), 8);
        assert!(delivered.iter().all(|r| r.after == Nanos::from_millis(20)));
        let log = g.take_log();
        assert_eq!(log.len(), 4);
        assert!(
            log.iter()
                .all(|d| matches!(d.record.action, Action::Dropped { .. }))
        );
        assert_eq!(g.counts().dropped, 4);
        // Clearing stops injecting.
        g.set(None).unwrap();
        assert_eq!(g.push(trade("BTC-USD", 7))[0].after, Nanos::ZERO);
    }

    #[test]
    fn corruption_is_deterministic_from_the_seed() {
        let config = DisruptionConfig {
            corrupt: CorruptFault {
                probability: 0.5,
                kinds: vec![CorruptionKind::TimesTen],
                shift_bps: 0,
            },
            ..DisruptionConfig::default()
        };
        let run = |seed| {
            let mut g = FeedGate::new(seed);
            g.set(Some(config.clone())).unwrap();
            (0..50)
                .flat_map(|i| g.push(trade("BTC-USD", i)))
                .map(|r| r.message)
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        let corrupted = a
            .iter()
            .zip(0..)
            .filter(|(m, i)| **m != trade("BTC-USD", *i))
            .count();
        assert!((10..=40).contains(&corrupted), "{corrupted} corrupted");
    }

    #[test]
    fn a_refused_configuration_changes_nothing() {
        let mut g = FeedGate::new(1);
        let bad = DisruptionConfig {
            duplicate_probability: 2.0,
            ..DisruptionConfig::default()
        };
        assert!(g.set(Some(bad)).is_err());
        assert!(g.config().is_none());
    }
}
