//! The feed gateway: the task that publishes [`FeedMessage`]s on the bus through the
//! [`FeedGate`], holding delayed deliveries until they are due, and the adapter that turns the
//! in-process exchange's trades and book deltas into feed messages.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tradestack_bus::{Bus, Topic};
use tradestack_matching::BookDelta;
use tradestack_model::{InstrumentId, Price, Quantity, Quote, Side, Trade, UnixNanos};

use crate::disruption::{DisruptionConfig, DisruptionError};
use crate::feed::{
    BookLevels, DISRUPTIONS_TOPIC, FEED_TOPIC, FaultCounts, FeedDisruption, FeedEvent, FeedGate,
    FeedMessage, Release,
};

/// What the gateway reports about itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FeedStatus {
    /// The faults being injected, if any.
    pub disruption: Option<DisruptionConfig>,
    /// Faults injected since start.
    pub faults: FaultCounts,
    /// Messages delivered since start.
    pub delivered: u64,
    /// Deliveries waiting for their (delayed) time.
    pub pending: usize,
}

enum Input {
    Message(FeedMessage),
    Configure(
        Option<DisruptionConfig>,
        oneshot::Sender<Result<(), DisruptionError>>,
    ),
}

/// Labels of the fault counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    action: String,
}

/// Publishes to the feed; cheap to clone.
#[derive(Clone)]
pub struct FeedHandle {
    tx: mpsc::Sender<Input>,
    status: Arc<Mutex<FeedStatus>>,
}

impl std::fmt::Debug for FeedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedHandle")
    }
}

/// The gateway has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the feed gateway has stopped")]
pub struct GatewayStopped;

impl FeedHandle {
    /// Starts the gateway task; fault randomness comes from `seed`.
    pub fn spawn(bus: Bus, seed: u64, metrics: &tradestack_telemetry::Metrics) -> FeedHandle {
        let (tx, rx) = mpsc::channel(8_192);
        let status = Arc::new(Mutex::new(FeedStatus::default()));
        let faults = Family::<FaultLabels, Counter>::default();
        let delivered = Counter::default();
        metrics.register(
            "marketdata_feed_faults",
            "Faults injected into the market-data feed, by action",
            faults.clone(),
        );
        metrics.register(
            "marketdata_feed_messages",
            "Messages delivered on the market-data feed",
            delivered.clone(),
        );
        let counters = Counters { faults, delivered };
        tokio::spawn(run(bus, FeedGate::new(seed), rx, status.clone(), counters));
        FeedHandle { tx, status }
    }

    /// Queues a message for the feed (waits when the gateway is 8,192 messages behind).
    pub async fn send(&self, message: FeedMessage) -> Result<(), GatewayStopped> {
        self.tx
            .send(Input::Message(message))
            .await
            .map_err(|_| GatewayStopped)
    }

    /// Starts injecting faults, or stops with `None`.
    pub async fn configure(
        &self,
        config: Option<DisruptionConfig>,
    ) -> Result<Result<(), DisruptionError>, GatewayStopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Input::Configure(config, tx))
            .await
            .map_err(|_| GatewayStopped)?;
        rx.await.map_err(|_| GatewayStopped)
    }

    /// The gateway's state.
    pub fn status(&self) -> FeedStatus {
        self.status.lock().clone()
    }
}

struct Counters {
    faults: Family<FaultLabels, Counter>,
    delivered: Counter,
}

/// A delivery waiting for its time; `seq` keeps equal times in order.
struct Pending {
    due: Instant,
    seq: u64,
    message: FeedMessage,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

async fn run(
    bus: Bus,
    mut gate: FeedGate,
    mut rx: mpsc::Receiver<Input>,
    status: Arc<Mutex<FeedStatus>>,
    counters: Counters,
) {
    let feed: Topic<FeedMessage> = Topic::new(FEED_TOPIC);
    let faults: Topic<FeedDisruption> = Topic::new(DISRUPTIONS_TOPIC);
    let (Ok(feed), Ok(faults)) = (bus.publisher(&feed), bus.publisher(&faults)) else {
        tracing::error!("market-data feed topics unavailable; feed not started");
        return;
    };
    let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    // Deliveries never go out before earlier ones: the transport is ordered.
    let mut last_due = Instant::now();
    loop {
        let next_due = pending.peek().map(|p| p.0.due);
        let input = tokio::select! {
            i = rx.recv() => match i {
                Some(i) => Some(i),
                None => return,
            },
            _ = sleep_until(next_due) => None,
        };
        let mut releases: Vec<Release> = Vec::new();
        match input {
            Some(Input::Message(m)) => releases = gate.push(m),
            Some(Input::Configure(c, reply)) => {
                let r = gate.set(c).map(|flushed| releases = flushed);
                let _ = reply.send(r);
            }
            None => {}
        }
        let now = Instant::now();
        for r in releases {
            let due = (now + Duration::from_nanos(r.after.0.max(0) as u64)).max(last_due);
            last_due = due;
            pending.push(Reverse(Pending {
                due,
                seq,
                message: r.message,
            }));
            seq += 1;
        }
        for d in gate.take_log() {
            counters
                .faults
                .get_or_create(&FaultLabels {
                    action: action_name(&d.record.action).to_string(),
                })
                .inc();
            let key = d.instrument.as_str().to_string();
            if let Err(e) = faults.publish(Some(&key), d).await {
                tracing::warn!(error = %e, "feed fault not published");
            }
        }
        while pending.peek().is_some_and(|p| p.0.due <= now) {
            let Some(Reverse(p)) = pending.pop() else {
                break;
            };
            counters.delivered.inc();
            let key = p.message.event.instrument().as_str().to_string();
            if let Err(e) = feed.publish(Some(&key), p.message).await {
                tracing::warn!(error = %e, "feed message not published");
            }
        }
        let mut s = status.lock();
        s.disruption = gate.config().cloned();
        s.faults = gate.counts();
        s.delivered = gate.delivered();
        s.pending = pending.len();
    }
}

fn action_name(a: &crate::disruption::Action) -> &'static str {
    use crate::disruption::Action;
    match a {
        Action::Dropped { .. } => "dropped",
        Action::Stale { .. } => "stale",
        Action::Corrupted { .. } => "corrupted",
        Action::Delayed { .. } => "delayed",
        Action::Duplicated => "duplicated",
        Action::Reordered { .. } => "reordered",
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One side's levels: price to quantity.
type BookSide = BTreeMap<Price, Quantity>;

/// Books per instrument, rebuilt from the exchange's level deltas, for the top of book.
#[derive(Default)]
pub(crate) struct Tops {
    books: HashMap<InstrumentId, (BookSide, BookSide)>,
    /// Instruments whose book changed since the last [`Tops::take_changed`].
    changed: std::collections::BTreeSet<InstrumentId>,
}

impl Tops {
    /// Applies a delta; the top of book after it, if both sides have a level.
    pub(crate) fn apply(
        &mut self,
        instrument: &InstrumentId,
        d: &BookDelta,
        ts: UnixNanos,
    ) -> Option<Quote> {
        if !self.changed.contains(instrument) {
            self.changed.insert(instrument.clone());
        }
        let (bids, asks) = self.books.entry(instrument.clone()).or_default();
        let side = match d.side {
            Side::Buy => &mut *bids,
            Side::Sell => &mut *asks,
        };
        if d.quantity.0 == 0 {
            side.remove(&d.price);
        } else {
            side.insert(d.price, d.quantity);
        }
        let (bid, bid_size) = bids.iter().next_back().map(|(p, q)| (*p, *q))?;
        let (ask, ask_size) = asks.iter().next().map(|(p, q)| (*p, *q))?;
        Some(Quote {
            instrument: instrument.clone(),
            bid,
            bid_size,
            ask,
            ask_size,
            ts,
        })
    }
}

impl Tops {
    /// The top `depth` levels of every book that changed since the last call, stamped `ts`.
    pub(crate) fn take_changed(&mut self, depth: usize, ts: UnixNanos) -> Vec<BookLevels> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|id| {
                let (bids, asks) = self.books.get(&id)?;
                Some(BookLevels {
                    ts,
                    bids: bids
                        .iter()
                        .rev()
                        .take(depth)
                        .map(|(p, q)| (*p, *q))
                        .collect(),
                    asks: asks.iter().take(depth).map(|(p, q)| (*p, *q)).collect(),
                    instrument: id,
                })
            })
            .collect()
    }
}

/// Feeds the in-process exchange's trades and top of book to the gateway, as `venue`.
pub async fn exchange_feed(bus: Bus, venue: String, feed: FeedHandle) {
    let trades_topic: Topic<Trade> = Topic::new(tradestack_exchange::service::TRADES_TOPIC);
    let book_topic: Topic<(InstrumentId, BookDelta)> =
        Topic::new(tradestack_exchange::service::BOOK_TOPIC);
    let (mut trades, mut book) = match (
        bus.subscribe(&trades_topic, Some("marketdata-feed")).await,
        bus.subscribe(&book_topic, Some("marketdata-feed")).await,
    ) {
        (Ok(t), Ok(b)) => (t, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "the exchange will not be on the market-data feed");
            return;
        }
    };
    let mut tops = Tops::default();
    let mut last: HashMap<InstrumentId, Quote> = HashMap::new();
    loop {
        let event = tokio::select! {
            d = trades.recv() => match d {
                Some(d) => FeedEvent::Trade(d.msg),
                None => return,
            },
            d = book.recv() => match d {
                Some(d) => {
                    let (instrument, delta) = &d.msg;
                    let Some(q) = tops.apply(instrument, delta, d.ts) else { continue };
                    // Only a changed top of book is a quote.
                    if last.get(instrument).is_some_and(|l| same_top(l, &q)) {
                        continue;
                    }
                    last.insert(instrument.clone(), q.clone());
                    FeedEvent::Quote(q)
                }
                None => return,
            },
        };
        let message = FeedMessage {
            venue: venue.clone(),
            event,
        };
        if feed.send(message).await.is_err() {
            return;
        }
    }
}

/// True when two quotes show the same prices and sizes.
pub(crate) fn same_top(a: &Quote, b: &Quote) -> bool {
    (a.bid, a.bid_size, a.ask, a.ask_size) == (b.bid, b.bid_size, b.ask, b.ask_size)
}
