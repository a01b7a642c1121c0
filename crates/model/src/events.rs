//! Orders, fills, trades, quotes, bars, signals and alerts.
//!
//! Every event carries integer-nanosecond timestamps. Enum variants use
//! `snake_case` in JSON so API clients see stable, readable names.

use crate::fixed::{Amount, Price, Quantity, Rate};
use crate::ids::{AccountId, AssetCode, ClientOrderId, InstrumentId, OrderId, StrategyId, TradeId};
use crate::time::{Nanos, UnixNanos};
use serde::{Deserialize, Serialize};

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy (bid).
    Buy,
    /// Sell (ask).
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// How an order is priced and triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Rests at its limit price.
    Limit,
    /// Takes liquidity at any price inside the protective band.
    Market,
    /// Becomes a market order when the last trade reaches the stop price.
    Stop,
    /// Becomes a limit order when the last trade reaches the stop price.
    StopLimit,
}

/// How long an order stays live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Good till a given time.
    Gtd,
    /// Immediate or cancel: fill what is possible, cancel the rest.
    Ioc,
    /// Fill or kill: fill completely at once or not at all.
    Fok,
    /// Post only: never takes liquidity.
    PostOnly,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, resting, nothing filled.
    New,
    /// Some filled, the rest resting.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled by the owner or the venue.
    Cancelled,
    /// Refused at entry.
    Rejected,
    /// Reached its expiry time.
    Expired,
    /// A stop waiting for its trigger.
    PendingTrigger,
}

impl OrderStatus {
    /// True when no further fills can happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }
}

/// An order and its current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Venue-assigned id.
    pub id: OrderId,
    /// Client-assigned id.
    pub client_order_id: ClientOrderId,
    /// Owner.
    pub account: AccountId,
    /// The strategy that sent it, when known.
    pub strategy: Option<StrategyId>,
    /// What is traded.
    pub instrument: InstrumentId,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, stop or stop-limit.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Limit price (none for market and stop orders).
    pub price: Option<Price>,
    /// Trigger price for stop orders.
    pub stop_price: Option<Price>,
    /// Expiry for GTD orders.
    pub expire_at: Option<UnixNanos>,
    /// Original quantity.
    pub quantity: Quantity,
    /// Quantity filled so far.
    pub filled: Quantity,
    /// Current state.
    pub status: OrderStatus,
    /// When the venue accepted it.
    pub created_at: UnixNanos,
    /// When it last changed.
    pub updated_at: UnixNanos,
}

impl Order {
    /// Quantity still open.
    pub fn remaining(&self) -> Quantity {
        self.quantity - self.filled
    }
}

/// Whether a fill added or removed liquidity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liquidity {
    /// The resting side.
    Maker,
    /// The incoming side.
    Taker,
}

/// One account's side of a trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The trade this fill belongs to.
    pub trade_id: TradeId,
    /// The order that was filled.
    pub order_id: OrderId,
    /// Its client id.
    pub client_order_id: ClientOrderId,
    /// Owner.
    pub account: AccountId,
    /// The strategy, when known.
    pub strategy: Option<StrategyId>,
    /// What was traded.
    pub instrument: InstrumentId,
    /// The order's side.
    pub side: Side,
    /// Execution price (always the maker's price).
    pub price: Price,
    /// Executed quantity.
    pub quantity: Quantity,
    /// Fee charged (negative for a rebate).
    pub fee: Amount,
    /// The asset the fee is charged in.
    pub fee_asset: AssetCode,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// Execution time.
    pub ts: UnixNanos,
}

/// A public trade print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Per-instrument trade id.
    pub id: TradeId,
    /// What was traded.
    pub instrument: InstrumentId,
    /// Execution price.
    pub price: Price,
    /// Executed quantity.
    pub quantity: Quantity,
    /// The taker's side (the aggressor).
    pub aggressor: Side,
    /// Execution time at the venue.
    pub ts: UnixNanos,
}

/// Top of book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Best bid price.
    pub bid: Price,
    /// Size at the best bid.
    pub bid_size: Quantity,
    /// Best ask price.
    pub ask: Price,
    /// Size at the best ask.
    pub ask_size: Quantity,
    /// Venue time.
    pub ts: UnixNanos,
}

/// An OHLCV bar built from trades.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Bar length.
    pub interval: Nanos,
    /// Bucket start (inclusive), UTC-aligned.
    pub open_time: UnixNanos,
    /// First trade price.
    pub open: Price,
    /// Highest trade price.
    pub high: Price,
    /// Lowest trade price.
    pub low: Price,
    /// Last trade price.
    pub close: Price,
    /// Base volume.
    pub volume: Quantity,
    /// Quote volume (sum of price × quantity).
    pub quote_volume: Amount,
    /// Number of trades.
    pub trades: u64,
    /// Volume-weighted average price.
    pub vwap: Price,
}

/// A trading signal from a strategy or an external source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Where it came from (a strategy id, a channel name).
    pub source: String,
    /// Instrument it refers to.
    pub instrument: InstrumentId,
    /// The suggested direction.
    pub side: Side,
    /// Conviction in [0, 1].
    pub strength: Rate,
    /// Suggested entry, if any.
    pub price: Option<Price>,
    /// When it was produced.
    pub ts: UnixNanos,
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

/// A risk or system alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule that fired.
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// What it is about: an account, a strategy, an asset, a service.
    pub subject: String,
    /// Human-readable description.
    pub message: String,
    /// The observed value, in the rule's own units.
    pub value: Amount,
    /// The threshold it was compared against.
    pub threshold: Amount,
    /// First time this condition was seen.
    pub first_seen: UnixNanos,
    /// Most recent time it was seen.
    pub last_seen: UnixNanos,
    /// True once the condition has cleared.
    pub resolved: bool,
}

/// Any domain event, for the journal, the bus and the kernel's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An order was created or changed state.
    Order(Order),
    /// A fill for one account.
    Fill(Fill),
    /// A public trade.
    Trade(Trade),
    /// A top-of-book update.
    Quote(Quote),
    /// A completed bar.
    Bar(Bar),
    /// A trading signal.
    Signal(Signal),
    /// An alert.
    Alert(Alert),
}

impl Event {
    /// The instrument the event concerns, used as the partition key on the bus.
    pub fn instrument(&self) -> Option<&InstrumentId> {
        match self {
            Event::Order(o) => Some(&o.instrument),
            Event::Fill(f) => Some(&f.instrument),
            Event::Trade(t) => Some(&t.instrument),
            Event::Quote(q) => Some(&q.instrument),
            Event::Bar(b) => Some(&b.instrument),
            Event::Signal(s) => Some(&s.instrument),
            Event::Alert(_) => None,
        }
    }

    /// The event's own timestamp.
    pub fn ts(&self) -> UnixNanos {
        match self {
            Event::Order(o) => o.updated_at,
            Event::Fill(f) => f.ts,
            Event::Trade(t) => t.ts,
            Event::Quote(q) => q.ts,
            Event::Bar(b) => b.open_time + b.interval,
            Event::Signal(s) => s.ts,
            Event::Alert(a) => a.last_seen,
        }
    }
}
