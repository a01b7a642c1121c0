//! The book's vocabulary: commands in, events out.
//!
//! Everything here is `Copy` and free of strings, so emitting an event never
//! allocates. The exchange maps its account ids to [`Owner`] numbers and
//! fills in names and timestamps when it turns these events into the model's.

use serde::{Deserialize, Serialize};
use tradestack_model::{
    Amount, OrderId, OrderType, Price, Quantity, Rate, RuleViolation, Side, TimeInForce, TradeId,
    UnixNanos,
};

/// A compact account number, used for self-trade prevention and fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner(pub u32);

/// What happens when an incoming order would trade with a resting order of
/// the same owner. The names follow Binance's `selfTradePreventionMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StpMode {
    /// No prevention: the owner trades with itself.
    None,
    /// Cancel the incoming order's remainder (Binance `EXPIRE_TAKER`).
    #[default]
    CancelNewest,
    /// Cancel the resting order and go on matching (`EXPIRE_MAKER`).
    CancelOldest,
    /// Cancel both (`EXPIRE_BOTH`).
    CancelBoth,
    /// Reduce both by the smaller quantity without a trade; whichever reaches
    /// zero is cancelled (`DECREMENT`).
    Decrement,
}

/// Maker and taker fee rates for one order, set by the exchange from the
/// owner's tier. A negative maker rate is a rebate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRates {
    /// Rate charged when the order rests and is hit.
    pub maker: Rate,
    /// Rate charged when the order takes liquidity.
    pub taker: Rate,
}

/// An order entering the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Venue order id, unique within the book.
    pub id: OrderId,
    /// Who sends it.
    pub owner: Owner,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, stop (market once triggered) or stop-limit.
    pub order_type: OrderType,
    /// Time in force; ignored for market and stop orders, which never rest.
    pub time_in_force: TimeInForce,
    /// Limit price: required for limit and stop-limit orders.
    pub price: Option<Price>,
    /// Trigger price: required for stop and stop-limit orders.
    pub stop_price: Option<Price>,
    /// Quantity to trade.
    pub quantity: Quantity,
    /// Expiry, required for GTD.
    pub expire_at: Option<UnixNanos>,
    /// Self-trade prevention when this order takes liquidity.
    pub stp: StpMode,
    /// Fee rates.
    pub fees: FeeRates,
}

impl NewOrder {
    /// A GTC limit order with default STP and no fees.
    pub fn limit(id: u64, owner: u32, side: Side, price: Price, quantity: Quantity) -> NewOrder {
        NewOrder {
            id: OrderId(id),
            owner: Owner(owner),
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price: Some(price),
            stop_price: None,
            quantity,
            expire_at: None,
            stp: StpMode::default(),
            fees: FeeRates::default(),
        }
    }

    /// A market order with default STP and no fees.
    pub fn market(id: u64, owner: u32, side: Side, quantity: Quantity) -> NewOrder {
        NewOrder {
            order_type: OrderType::Market,
            price: None,
            ..NewOrder::limit(id, owner, side, Price::ZERO, quantity)
        }
    }

    /// The same order with another time in force.
    pub fn with_tif(mut self, tif: TimeInForce) -> NewOrder {
        self.time_in_force = tif;
        self
    }

    /// The same order with another self-trade prevention mode.
    pub fn with_stp(mut self, stp: StpMode) -> NewOrder {
        self.stp = stp;
        self
    }
}

/// Why an order or an amendment was refused. Each reason has a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Price is zero or negative.
    #[error("price must be positive")]
    NonPositivePrice,
    /// Price is not on the tick grid.
    #[error("price is not a multiple of the tick size")]
    OffTick,
    /// Quantity is zero.
    #[error("quantity must be positive")]
    ZeroQuantity,
    /// Quantity is not on the lot grid.
    #[error("quantity is not a multiple of the lot size")]
    OffLot,
    /// Quantity under the instrument's minimum.
    #[error("quantity is below the minimum")]
    BelowMinQty,
    /// Quantity over the instrument's maximum.
    #[error("quantity is above the maximum")]
    AboveMaxQty,
    /// Price times quantity under the minimum notional.
    #[error("order value is below the minimum notional")]
    BelowMinNotional,
    /// A limit or stop-limit order without a price.
    #[error("a limit price is required")]
    MissingPrice,
    /// A stop or stop-limit order without a trigger price.
    #[error("a stop price is required")]
    MissingStopPrice,
    /// A market order with a price, or a limit order with a stop price.
    #[error("a price field does not apply to this order type")]
    UnexpectedPrice,
    /// A GTD order without an expiry, or one already past it.
    #[error("GTD needs an expiry in the future")]
    BadExpiry,
    /// The order id is already in the book.
    #[error("duplicate order id")]
    DuplicateOrderId,
    /// A post-only order would have taken liquidity.
    #[error("post-only order would take liquidity")]
    PostOnlyWouldTake,
    /// A fill-or-kill order could not be filled in full at once.
    #[error("fill-or-kill order cannot be filled in full")]
    FokUnfillable,
    /// A stop whose trigger is already reached by the last trade price.
    #[error("stop order would trigger immediately")]
    WouldTriggerImmediately,
    /// Cancel or amend of an order that is not open.
    #[error("unknown order")]
    UnknownOrder,
    /// Cancel or amend by someone who does not own the order.
    #[error("order belongs to another owner")]
    NotOwner,
    /// An amendment that changes nothing or sets the quantity to zero.
    #[error("amendment changes nothing or leaves no quantity")]
    BadAmend,
    /// The time in force does not apply to this order type.
    #[error("time in force does not apply to this order type")]
    BadTimeInForce,
    /// A price or quantity outside the range the book can represent.
    #[error("value out of range")]
    OutOfRange,
}

impl RejectReason {
    /// Stable machine-readable code (the serde name).
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::NonPositivePrice => "non_positive_price",
            RejectReason::OffTick => "off_tick",
            RejectReason::ZeroQuantity => "zero_quantity",
            RejectReason::OffLot => "off_lot",
            RejectReason::BelowMinQty => "below_min_qty",
            RejectReason::AboveMaxQty => "above_max_qty",
            RejectReason::BelowMinNotional => "below_min_notional",
            RejectReason::MissingPrice => "missing_price",
            RejectReason::MissingStopPrice => "missing_stop_price",
            RejectReason::UnexpectedPrice => "unexpected_price",
            RejectReason::BadExpiry => "bad_expiry",
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::PostOnlyWouldTake => "post_only_would_take",
            RejectReason::FokUnfillable => "fok_unfillable",
            RejectReason::WouldTriggerImmediately => "would_trigger_immediately",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::NotOwner => "not_owner",
            RejectReason::BadAmend => "bad_amend",
            RejectReason::BadTimeInForce => "bad_time_in_force",
            RejectReason::OutOfRange => "out_of_range",
        }
    }
}

impl From<RuleViolation> for RejectReason {
    fn from(v: RuleViolation) -> Self {
        match v {
            RuleViolation::NonPositivePrice => RejectReason::NonPositivePrice,
            RuleViolation::OffTick { .. } => RejectReason::OffTick,
            RuleViolation::ZeroQuantity => RejectReason::ZeroQuantity,
            RuleViolation::OffLot { .. } => RejectReason::OffLot,
            RuleViolation::BelowMinQty { .. } => RejectReason::BelowMinQty,
            RuleViolation::AboveMaxQty { .. } => RejectReason::AboveMaxQty,
            RuleViolation::BelowMinNotional { .. } => RejectReason::BelowMinNotional,
        }
    }
}

/// Why open quantity left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The owner asked.
    Requested,
    /// A cancel-all by owner or for the whole book.
    CancelAll,
    /// Self-trade prevention.
    SelfTrade,
    /// The unfilled rest of an IOC or market order.
    Unfilled,
    /// A market order reached its protective price band.
    PriceBand,
}

/// A trade between a resting (maker) and an incoming (taker) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeEvent {
    /// Per-book trade id.
    pub trade_id: TradeId,
    /// Execution price: always the maker's.
    pub price: Price,
    /// Executed quantity.
    pub quantity: Quantity,
    /// The taker's side.
    pub aggressor: Side,
    /// The resting order.
    pub maker: OrderId,
    /// Its owner.
    pub maker_owner: Owner,
    /// The incoming order.
    pub taker: OrderId,
    /// Its owner.
    pub taker_owner: Owner,
    /// Fee charged to the maker, in the quote asset (negative: rebate).
    pub maker_fee: Amount,
    /// Fee charged to the taker, in the quote asset.
    pub taker_fee: Amount,
    /// The maker order is now completely filled.
    pub maker_done: bool,
}

/// A price level's new aggregate, numbered per book so a client applying
/// deltas to a snapshot detects a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookDelta {
    /// Per-book sequence number, one per delta, without gaps.
    pub seq: u64,
    /// Which side of the book.
    pub side: Side,
    /// The level's price.
    pub price: Price,
    /// Total open quantity at the level now; zero removes the level.
    pub quantity: Quantity,
    /// Orders at the level now.
    pub orders: u32,
}

/// One output of the book, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookEvent {
    /// The order passed validation (stops: it is waiting for its trigger).
    Accepted {
        /// The order.
        id: OrderId,
        /// Its owner.
        owner: Owner,
    },
    /// The order or the amendment was refused; nothing changed.
    Rejected {
        /// The order.
        id: OrderId,
        /// Why.
        reason: RejectReason,
    },
    /// A stop order's trigger was reached; it now enters the book.
    Triggered {
        /// The order.
        id: OrderId,
        /// The last trade price that triggered it.
        last: Price,
    },
    /// A trade.
    Trade(TradeEvent),
    /// An order now rests in the book with this open quantity.
    Rested {
        /// The order.
        id: OrderId,
        /// Its side.
        side: Side,
        /// Its price.
        price: Price,
        /// Open quantity resting.
        quantity: Quantity,
    },
    /// A resting order's price or quantity changed.
    Amended {
        /// The order.
        id: OrderId,
        /// Its price now.
        price: Price,
        /// Its open quantity now.
        quantity: Quantity,
        /// Whether it kept its place in the queue.
        kept_priority: bool,
    },
    /// Open quantity removed without trading.
    Cancelled {
        /// The order.
        id: OrderId,
        /// Its owner.
        owner: Owner,
        /// The quantity removed.
        quantity: Quantity,
        /// Why.
        reason: CancelReason,
    },
    /// A GTD order reached its expiry.
    Expired {
        /// The order.
        id: OrderId,
        /// Its owner.
        owner: Owner,
        /// The quantity removed.
        quantity: Quantity,
    },
    /// A price level changed.
    Delta(BookDelta),
}

/// Receives the book's events. `Vec<BookEvent>` is the usual sink; a
/// benchmark can count instead of storing.
pub trait EventSink {
    /// Takes one event.
    fn emit(&mut self, event: BookEvent);
}

impl EventSink for Vec<BookEvent> {
    #[inline]
    fn emit(&mut self, event: BookEvent) {
        self.push(event);
    }
}

/// Per-book limits that are not instrument rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookConfig {
    /// How far past the best opposite price at arrival a market order may
    /// trade, in basis points; the rest is cancelled with `PriceBand`.
    pub market_band_bps: u32,
    /// Share of an incoming order that may fill on arrival, in basis points
    /// (10,000: all of it). Below that, every order fills only in part (a
    /// chaos mode); the rest rests or is cancelled per its time in force.
    #[serde(default = "full_fill")]
    pub fill_cap_bps: u32,
}

fn full_fill() -> u32 {
    10_000
}

impl Default for BookConfig {
    fn default() -> Self {
        BookConfig {
            market_band_bps: 500,
            fill_cap_bps: 10_000,
        }
    }
}
