//! [`OrderBook`]: one instrument's central limit order book.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tradestack_model::{
    Instrument, OrderId, OrderType, Price, Quantity, Rate, Side, TimeInForce, TradeId, UnixNanos,
};

use crate::hash::IdMap;
use crate::side::{BookSide, Level, NIL, flip};
use crate::stops::Stops;
use crate::types::{
    BookConfig, BookDelta, BookEvent, CancelReason, EventSink, FeeRates, NewOrder, Owner,
    RejectReason, StpMode, TradeEvent,
};

/// A resting order in the arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) remaining: i64,
    pub(crate) price: i64,
    pub(crate) expire_at: i64,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Slab index of its level (stable while the order rests).
    pub(crate) level: u32,
    pub(crate) owner: Owner,
    pub(crate) side: Side,
    pub(crate) tif: TimeInForce,
    pub(crate) stp: StpMode,
    pub(crate) fees: FeeRates,
}

impl Slot {
    /// Expiry, if the order has one.
    pub(crate) fn expire_at(&self) -> Option<UnixNanos> {
        (self.expire_at != NEVER).then_some(UnixNanos(self.expire_at))
    }
}

/// `expire_at` of an order that does not expire.
const NEVER: i64 = i64::MAX;

/// An incoming order while it matches.
struct Taker {
    id: u64,
    owner: Owner,
    side: Side,
    /// Crosses maker levels whose key is at least this.
    limit_key: i64,
    remaining: i64,
    stp: StpMode,
    taker_fee: Rate,
    /// Set when self-trade prevention cancelled the rest of the taker.
    stp_stopped: bool,
    /// Matching stops when `remaining` is down to this (the fill cap).
    keep: i64,
}

/// A read-only view of a resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    /// Order id.
    pub id: OrderId,
    /// Owner.
    pub owner: Owner,
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Open quantity.
    pub remaining: Quantity,
    /// Expiry (GTD), if any.
    pub expire_at: Option<UnixNanos>,
}

/// Aggregate of one price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LevelView {
    /// Price.
    pub price: Price,
    /// Total open quantity.
    pub quantity: Quantity,
    /// Number of orders.
    pub orders: u32,
}

/// A central limit order book with price-time priority for one instrument.
///
/// Every method that changes the book takes the current time and an event
/// sink, and emits what happened in order. No method allocates once the
/// book's arena, level vectors and id map have grown to their working size.
pub struct OrderBook {
    pub(crate) instrument: Instrument,
    pub(crate) config: BookConfig,
    pub(crate) bids: BookSide,
    pub(crate) asks: BookSide,
    pub(crate) slots: Vec<Slot>,
    free: Vec<u32>,
    pub(crate) index: IdMap<u32>,
    pub(crate) stops: Stops,
    expiries: BinaryHeap<Reverse<(i64, u64)>>,
    pub(crate) next_trade: u64,
    pub(crate) seq: u64,
    pub(crate) last_trade: Option<i64>,
    /// Scratch list for cancel-all, kept to avoid allocating.
    scratch: Vec<u64>,
}

impl OrderBook {
    /// An empty book for `instrument`.
    pub fn new(instrument: Instrument, config: BookConfig) -> Self {
        OrderBook::with_capacity(instrument, config, 4096)
    }

    /// An empty book sized for about `orders` resting orders.
    pub fn with_capacity(instrument: Instrument, config: BookConfig, orders: usize) -> Self {
        OrderBook {
            instrument,
            config,
            bids: BookSide::new(Side::Buy, orders.min(4096)),
            asks: BookSide::new(Side::Sell, orders.min(4096)),
            slots: Vec::with_capacity(orders),
            free: Vec::with_capacity(orders),
            index: IdMap::with_capacity_and_hasher(orders, Default::default()),
            stops: Stops::default(),
            expiries: BinaryHeap::with_capacity(orders),
            next_trade: 1,
            seq: 0,
            last_trade: None,
            scratch: Vec::with_capacity(orders),
        }
    }

    /// Changes the book's limits (band, fill cap) from the next command on.
    pub fn set_config(&mut self, config: BookConfig) {
        self.config = config;
    }

    /// The book's limits.
    pub fn config(&self) -> BookConfig {
        self.config
    }

    /// The instrument and its trading rules.
    pub fn instrument(&self) -> &Instrument {
        &self.instrument
    }

    /// The sequence number of the last book delta.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The last trade price.
    pub fn last_trade_price(&self) -> Option<Price> {
        self.last_trade.map(Price::from_raw)
    }

    /// Best bid price and quantity.
    pub fn best_bid(&self) -> Option<(Price, Quantity)> {
        Self::top(&self.bids)
    }

    /// Best ask price and quantity.
    pub fn best_ask(&self) -> Option<(Price, Quantity)> {
        Self::top(&self.asks)
    }

    fn top(side: &BookSide) -> Option<(Price, Quantity)> {
        side.best()
            .map(|l| (side.price(l.key), Quantity::from_raw(l.qty)))
    }

    /// Levels of one side, best first (L2).
    pub fn levels(&self, side: Side) -> impl Iterator<Item = LevelView> + '_ {
        let s = self.side(side);
        s.live().map(move |l| LevelView {
            price: s.price(l.key),
            quantity: Quantity::from_raw(l.qty),
            orders: l.count,
        })
    }

    /// Resting orders of one side in priority order: best price first, then
    /// oldest first (L3).
    pub fn orders(&self, side: Side) -> impl Iterator<Item = RestingOrder> + '_ {
        self.side(side).live().flat_map(move |l| self.queue(l.head))
    }

    /// The resting orders of one level, oldest first.
    fn queue(&self, head: u32) -> impl Iterator<Item = RestingOrder> + '_ {
        self.queue_slots(head).map(view)
    }

    fn queue_slots(&self, head: u32) -> impl Iterator<Item = &Slot> + '_ {
        let mut cur = head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let s = &self.slots[cur as usize];
            cur = s.next;
            Some(s)
        })
    }

    /// Arena slots of one side in priority order.
    pub(crate) fn resting_slots(&self, side: Side) -> impl Iterator<Item = &Slot> + '_ {
        self.side(side)
            .live()
            .flat_map(move |l| self.queue_slots(l.head))
    }

    /// Puts an order at the back of its level without matching (import).
    pub(crate) fn restore_resting(&mut self, order: &NewOrder) {
        if let Some(at) = order.expire_at {
            self.expiries.push(Reverse((at.as_i64(), order.id.0)));
        }
        self.rest(order, order.quantity.raw(), &mut Vec::new());
    }

    /// Adds a pending stop without validation (import).
    pub(crate) fn restore_stop(&mut self, order: NewOrder) {
        if let Some(at) = order.expire_at {
            self.expiries.push(Reverse((at.as_i64(), order.id.0)));
        }
        self.stops.insert(order);
    }

    /// A resting order by id.
    pub fn order(&self, id: OrderId) -> Option<RestingOrder> {
        self.index
            .get(&id.0)
            .map(|&i| view(&self.slots[i as usize]))
    }

    /// Number of resting orders (stops excluded).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no order rests.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Stop orders waiting for their trigger.
    pub fn pending_stops(&self) -> impl Iterator<Item = &NewOrder> + '_ {
        self.stops.iter()
    }

    fn side(&self, side: Side) -> &BookSide {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    // ------------------------------------------------------------ commands

    /// Enters a new order: validates it, matches it, rests what is left if
    /// its time in force allows, and fires any stop orders its trades trigger.
    pub fn submit<S: EventSink>(&mut self, order: &NewOrder, now: UnixNanos, sink: &mut S) {
        if let Err(reason) = self.validate(order, now) {
            sink.emit(BookEvent::Rejected {
                id: order.id,
                reason,
            });
            return;
        }
        sink.emit(BookEvent::Accepted {
            id: order.id,
            owner: order.owner,
        });
        if let Some(at) = order.expire_at {
            // Checked lazily on expiry: the order may be gone by then.
            self.expiries.push(Reverse((at.as_i64(), order.id.0)));
        }
        if matches!(order.order_type, OrderType::Stop | OrderType::StopLimit) {
            self.stops.insert(*order);
            return;
        }
        let traded = self.execute(order, sink);
        if traded {
            self.fire_stops(sink);
        }
    }

    /// Cancels an open order (resting or a pending stop). With `owner`, only
    /// that owner's order is cancelled.
    pub fn cancel<S: EventSink>(&mut self, id: OrderId, owner: Option<Owner>, sink: &mut S) {
        self.cancel_with(id, owner, CancelReason::Requested, sink);
    }

    fn cancel_with<S: EventSink>(
        &mut self,
        id: OrderId,
        owner: Option<Owner>,
        reason: CancelReason,
        sink: &mut S,
    ) {
        if let Some(&slot) = self.index.get(&id.0) {
            let s = self.slots[slot as usize];
            if owner.is_some_and(|o| o != s.owner) {
                sink.emit(BookEvent::Rejected {
                    id,
                    reason: RejectReason::NotOwner,
                });
                return;
            }
            self.remove_resting(slot, sink);
            sink.emit(BookEvent::Cancelled {
                id,
                owner: s.owner,
                quantity: Quantity::from_raw(s.remaining),
                reason,
            });
            return;
        }
        match self.stops.get(id) {
            Some(stop) if owner.is_some_and(|o| o != stop.owner) => {
                sink.emit(BookEvent::Rejected {
                    id,
                    reason: RejectReason::NotOwner,
                })
            }
            Some(_) => {
                if let Some(stop) = self.stops.remove(id) {
                    sink.emit(BookEvent::Cancelled {
                        id,
                        owner: stop.owner,
                        quantity: stop.quantity,
                        reason,
                    });
                }
            }
            None => sink.emit(BookEvent::Rejected {
                id,
                reason: RejectReason::UnknownOrder,
            }),
        }
    }

    /// Cancels every open order, or every open order of `owner`: bids best
    /// first, then asks, then pending stops.
    pub fn cancel_all<S: EventSink>(&mut self, owner: Option<Owner>, sink: &mut S) {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for side in [Side::Buy, Side::Sell] {
            ids.extend(
                self.orders(side)
                    .filter(|o| owner.is_none_or(|w| w == o.owner))
                    .map(|o| o.id.0),
            );
        }
        ids.extend(
            self.stops
                .iter()
                .filter(|o| owner.is_none_or(|w| w == o.owner))
                .map(|o| o.id.0),
        );
        for &id in &ids {
            self.cancel_with(OrderId(id), None, CancelReason::CancelAll, sink);
        }
        self.scratch = ids;
    }

    /// Changes a resting order's price and/or open quantity. Lowering the
    /// quantity at the same price keeps its place in the queue; a new price or
    /// a higher quantity sends it to the back, and it may trade at once.
    pub fn amend<S: EventSink>(
        &mut self,
        id: OrderId,
        owner: Option<Owner>,
        new_price: Option<Price>,
        new_qty: Option<Quantity>,
        sink: &mut S,
    ) {
        let reject = |sink: &mut S, reason| sink.emit(BookEvent::Rejected { id, reason });
        let Some(&slot) = self.index.get(&id.0) else {
            return reject(sink, RejectReason::UnknownOrder);
        };
        let s = self.slots[slot as usize];
        if owner.is_some_and(|o| o != s.owner) {
            return reject(sink, RejectReason::NotOwner);
        }
        let price = new_price.map_or(s.price, Price::raw);
        let qty = new_qty.map_or(s.remaining, Quantity::raw);
        if (price == s.price && qty == s.remaining) || qty <= 0 {
            return reject(sink, RejectReason::BadAmend);
        }
        let (p, q) = (Price::from_raw(price), Quantity::from_raw(qty));
        if let Err(v) = self
            .instrument
            .check_price(p)
            .and_then(|()| self.instrument.check_qty(q))
            .and_then(|()| self.instrument.check_notional(p, q))
        {
            return reject(sink, v.into());
        }
        if price == s.price && qty < s.remaining {
            // In place: same queue position.
            let cut = s.remaining - qty;
            self.slots[slot as usize].remaining = qty;
            let book = match s.side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            let level = &mut book.slab[s.level as usize];
            level.qty -= cut;
            let l = *level;
            self.seq += 1;
            sink.emit(BookEvent::Amended {
                id,
                price: p,
                quantity: q,
                kept_priority: true,
            });
            sink.emit(delta(self.seq, s.side, p, &l));
            return;
        }
        let crosses = self.crosses(s.side, price);
        if s.tif == TimeInForce::PostOnly && crosses {
            return reject(sink, RejectReason::PostOnlyWouldTake);
        }
        if !crosses {
            // Moves to the back of its new place without trading: the slot
            // and the id stay, only the links change. The events are the
            // same as a remove and a fresh rest.
            self.detach(slot, sink);
            sink.emit(BookEvent::Amended {
                id,
                price: p,
                quantity: q,
                kept_priority: false,
            });
            let moved = &mut self.slots[slot as usize];
            moved.price = price;
            moved.remaining = qty;
            self.attach(slot, sink);
            return;
        }
        self.remove_resting(slot, sink);
        sink.emit(BookEvent::Amended {
            id,
            price: p,
            quantity: q,
            kept_priority: false,
        });
        let order = NewOrder {
            id,
            owner: s.owner,
            side: s.side,
            order_type: OrderType::Limit,
            time_in_force: s.tif,
            price: Some(p),
            stop_price: None,
            quantity: q,
            expire_at: (s.expire_at != NEVER).then_some(UnixNanos(s.expire_at)),
            stp: s.stp,
            fees: s.fees,
        };
        if self.execute(&order, sink) {
            self.fire_stops(sink);
        }
    }

    /// Expires every GTD order (resting or pending stop) whose expiry is at or
    /// before `now`.
    pub fn expire<S: EventSink>(&mut self, now: UnixNanos, sink: &mut S) {
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > now.as_i64() {
                break;
            }
            self.expiries.pop();
            if let Some(&slot) = self.index.get(&id) {
                let s = self.slots[slot as usize];
                if s.expire_at == at {
                    self.remove_resting(slot, sink);
                    sink.emit(BookEvent::Expired {
                        id: OrderId(id),
                        owner: s.owner,
                        quantity: Quantity::from_raw(s.remaining),
                    });
                }
            } else if self
                .stops
                .get(OrderId(id))
                .is_some_and(|o| o.expire_at.map(UnixNanos::as_i64) == Some(at))
                && let Some(stop) = self.stops.remove(OrderId(id))
            {
                sink.emit(BookEvent::Expired {
                    id: OrderId(id),
                    owner: stop.owner,
                    quantity: stop.quantity,
                });
            }
        }
    }

    // ------------------------------------------------------------ validation

    fn validate(&self, o: &NewOrder, now: UnixNanos) -> Result<(), RejectReason> {
        if self.index.contains_key(&o.id.0)
            || (!self.stops.is_empty() && self.stops.get(o.id).is_some())
        {
            return Err(RejectReason::DuplicateOrderId);
        }
        let ins = &self.instrument;
        ins.check_qty(o.quantity)?;
        let needs_price = matches!(o.order_type, OrderType::Limit | OrderType::StopLimit);
        let needs_stop = matches!(o.order_type, OrderType::Stop | OrderType::StopLimit);
        match (needs_price, o.price) {
            (true, None) => return Err(RejectReason::MissingPrice),
            (false, Some(_)) => return Err(RejectReason::UnexpectedPrice),
            (true, Some(p)) => {
                ins.check_price(p)?;
                ins.check_notional(p, o.quantity)?;
            }
            (false, None) => {}
        }
        match (needs_stop, o.stop_price) {
            (true, None) => return Err(RejectReason::MissingStopPrice),
            (false, Some(_)) => return Err(RejectReason::UnexpectedPrice),
            (true, Some(p)) => ins.check_price(p)?,
            (false, None) => {}
        }
        let resting_tif = matches!(o.order_type, OrderType::Limit | OrderType::StopLimit);
        match o.time_in_force {
            TimeInForce::Gtc | TimeInForce::Ioc => {}
            TimeInForce::Fok | TimeInForce::PostOnly if !resting_tif => {
                return Err(RejectReason::BadTimeInForce);
            }
            TimeInForce::Fok | TimeInForce::PostOnly => {}
            TimeInForce::Gtd => {
                if !resting_tif {
                    return Err(RejectReason::BadTimeInForce);
                }
                if o.expire_at.is_none_or(|t| t <= now) {
                    return Err(RejectReason::BadExpiry);
                }
            }
        }
        if o.time_in_force != TimeInForce::Gtd && o.expire_at.is_some() {
            return Err(RejectReason::BadExpiry);
        }
        if let (Some(stop), Some(last)) = (o.stop_price, self.last_trade) {
            let reached = match o.side {
                Side::Buy => last >= stop.raw(),
                Side::Sell => last <= stop.raw(),
            };
            if reached {
                return Err(RejectReason::WouldTriggerImmediately);
            }
        }
        if o.order_type == OrderType::Limit {
            let price = o.price.map_or(0, Price::raw);
            if o.time_in_force == TimeInForce::PostOnly && self.crosses(o.side, price) {
                return Err(RejectReason::PostOnlyWouldTake);
            }
            if o.time_in_force == TimeInForce::Fok && !self.fok_fillable(o, price) {
                return Err(RejectReason::FokUnfillable);
            }
        }
        Ok(())
    }

    /// How much of `qty` may fill on arrival under the fill cap, on the lot grid.
    fn fill_cap(&self, qty: i64) -> i64 {
        if self.config.fill_cap_bps >= 10_000 {
            return qty;
        }
        let lot = self.instrument.lot_size.raw().max(1);
        let cap = (i128::from(qty) * i128::from(self.config.fill_cap_bps) / 10_000) as i64;
        (cap / lot * lot).max(lot.min(qty))
    }

    /// Whether a `side` order at `price` would trade with the best opposite level.
    fn crosses(&self, side: Side, price: i64) -> bool {
        let makers = self.side(side.opposite());
        makers.best().is_some_and(|l| l.key >= makers.key(price))
    }

    /// Whether a FOK order fills in full at once, walking the queue as matching
    /// would: a self-trade that stops or shrinks the taker means no.
    fn fok_fillable(&self, o: &NewOrder, price: i64) -> bool {
        let makers = self.side(o.side.opposite());
        let limit = makers.key(price);
        let need = o.quantity.raw();
        if self.fill_cap(need) < need {
            return false;
        }
        let mut got = 0i64;
        for level in makers.live() {
            if level.key < limit {
                break;
            }
            let mut cur = level.head;
            while cur != NIL {
                let s = &self.slots[cur as usize];
                cur = s.next;
                if s.owner == o.owner && o.stp != StpMode::None {
                    match o.stp {
                        StpMode::CancelOldest => continue,
                        _ => return false,
                    }
                }
                got += s.remaining;
                if got >= need {
                    return true;
                }
            }
        }
        false
    }

    // ------------------------------------------------------------ matching

    /// Matches a validated limit or market order and rests or cancels the
    /// rest. True when it traded.
    fn execute<S: EventSink>(&mut self, o: &NewOrder, sink: &mut S) -> bool {
        let makers = match o.side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        };
        let (limit_key, market) = match o.order_type {
            OrderType::Limit | OrderType::StopLimit => {
                (makers.key(o.price.map_or(0, Price::raw)), false)
            }
            OrderType::Market | OrderType::Stop => match makers.best() {
                // Protective band: no further than `market_band_bps` past the
                // best opposite price at arrival.
                Some(best) => {
                    let bps = i64::from(self.config.market_band_bps);
                    let best_price = makers.price(best.key).raw();
                    let band = (i128::from(best_price) * i128::from(bps) / 10_000) as i64;
                    let limit = match o.side {
                        Side::Buy => best_price.saturating_add(band),
                        Side::Sell => best_price.saturating_sub(band).max(1),
                    };
                    (makers.key(limit), true)
                }
                None => {
                    sink.emit(BookEvent::Cancelled {
                        id: o.id,
                        owner: o.owner,
                        quantity: o.quantity,
                        reason: CancelReason::Unfilled,
                    });
                    return false;
                }
            },
        };
        let mut taker = Taker {
            id: o.id.0,
            owner: o.owner,
            side: o.side,
            limit_key,
            remaining: o.quantity.raw(),
            stp: o.stp,
            taker_fee: o.fees.taker,
            stp_stopped: false,
            keep: o.quantity.raw() - self.fill_cap(o.quantity.raw()),
        };
        let traded = self.match_taker(&mut taker, sink);
        if taker.remaining > 0 {
            let reason = if taker.stp_stopped {
                Some(CancelReason::SelfTrade)
            } else if market {
                Some(if self.side(o.side.opposite()).best().is_some() {
                    CancelReason::PriceBand
                } else {
                    CancelReason::Unfilled
                })
            } else if o.time_in_force == TimeInForce::Ioc {
                Some(CancelReason::Unfilled)
            } else if taker.keep > 0 && self.crosses(o.side, o.price.map_or(0, Price::raw)) {
                // Held back by the fill cap and still marketable: resting it
                // would cross the book.
                Some(CancelReason::Unfilled)
            } else {
                None
            };
            match reason {
                Some(reason) => sink.emit(BookEvent::Cancelled {
                    id: o.id,
                    owner: o.owner,
                    quantity: Quantity::from_raw(taker.remaining),
                    reason,
                }),
                None => self.rest(o, taker.remaining, sink),
            }
        }
        traded
    }

    /// Trades `t` against the opposite side, best level first, oldest order
    /// first, at each maker's price. True when at least one trade happened.
    fn match_taker<S: EventSink>(&mut self, t: &mut Taker, sink: &mut S) -> bool {
        let OrderBook {
            bids,
            asks,
            slots,
            free,
            index,
            next_trade,
            seq,
            last_trade,
            ..
        } = self;
        let makers = match t.side {
            Side::Buy => asks,
            Side::Sell => bids,
        };
        let mut traded = false;
        while t.remaining > t.keep && !t.stp_stopped {
            let maker_side = makers.side;
            let Some(top) = makers.best_idx() else {
                break;
            };
            let level = &mut makers.slab[top as usize];
            if level.key < t.limit_key {
                break;
            }
            let price = Price::from_raw(flip(maker_side, level.key));
            let mut changed = false;
            let mut cur = level.head;
            while cur != NIL && t.remaining > t.keep {
                let s = &mut slots[cur as usize];
                let next = s.next;
                if s.owner == t.owner && t.stp != StpMode::None {
                    let (cancel_maker, cut) = match t.stp {
                        StpMode::CancelNewest => {
                            t.stp_stopped = true;
                            break;
                        }
                        StpMode::CancelOldest => (true, s.remaining),
                        StpMode::CancelBoth => {
                            t.stp_stopped = true;
                            (true, s.remaining)
                        }
                        StpMode::Decrement => {
                            let q = s.remaining.min(t.remaining - t.keep);
                            t.remaining -= q;
                            sink.emit(BookEvent::Cancelled {
                                id: OrderId(t.id),
                                owner: t.owner,
                                quantity: Quantity::from_raw(q),
                                reason: CancelReason::SelfTrade,
                            });
                            (q == s.remaining, q)
                        }
                        StpMode::None => unreachable!("checked above"),
                    };
                    let (maker_id, maker_owner) = (s.id, s.owner);
                    changed = true;
                    s.remaining -= cut;
                    level.qty -= cut;
                    sink.emit(BookEvent::Cancelled {
                        id: OrderId(maker_id),
                        owner: maker_owner,
                        quantity: Quantity::from_raw(cut),
                        reason: CancelReason::SelfTrade,
                    });
                    if cancel_maker {
                        unlink(level, slots, cur);
                        free.push(cur);
                        index.remove(&maker_id);
                    }
                    cur = next;
                    if t.stp_stopped {
                        break;
                    }
                    continue;
                }
                let q = s.remaining.min(t.remaining - t.keep);
                s.remaining -= q;
                t.remaining -= q;
                level.qty -= q;
                let qty = Quantity::from_raw(q);
                let notional = price.notional(qty);
                let maker_done = s.remaining == 0;
                let trade = TradeEvent {
                    trade_id: TradeId(*next_trade),
                    price,
                    quantity: qty,
                    aggressor: t.side,
                    maker: OrderId(s.id),
                    maker_owner: s.owner,
                    taker: OrderId(t.id),
                    taker_owner: t.owner,
                    maker_fee: fee(notional, s.fees.maker),
                    taker_fee: fee(notional, t.taker_fee),
                    maker_done,
                };
                *next_trade += 1;
                traded = true;
                changed = true;
                *last_trade = Some(price.raw());
                sink.emit(BookEvent::Trade(trade));
                if maker_done {
                    let id = s.id;
                    unlink(level, slots, cur);
                    free.push(cur);
                    index.remove(&id);
                    cur = next;
                }
            }
            if !changed {
                break;
            }
            *seq += 1;
            let l = *level;
            sink.emit(delta(*seq, maker_side, price, &l));
            if l.count == 0 {
                makers.emptied(top);
            }
        }
        traded
    }

    /// Puts the rest of a limit order at the back of its price level.
    fn rest<S: EventSink>(&mut self, o: &NewOrder, remaining: i64, sink: &mut S) {
        let price = o.price.map_or(0, Price::raw);
        let expire_at = o.expire_at.map_or(NEVER, UnixNanos::as_i64);
        let slot = Slot {
            id: o.id.0,
            remaining,
            price,
            expire_at,
            prev: NIL,
            next: NIL,
            level: NIL,
            owner: o.owner,
            side: o.side,
            tif: o.time_in_force,
            stp: o.stp,
            fees: o.fees,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(o.id.0, idx);
        self.attach(idx, sink);
    }

    /// Links the order in `slot` (price, side and quantity set) at the back
    /// of its level; emits `Rested` and the level's delta.
    fn attach<S: EventSink>(&mut self, idx: u32, sink: &mut S) {
        let s = self.slots[idx as usize];
        let book = match s.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let at = book.level_for(book.key(s.price));
        let level = &mut book.slab[at as usize];
        let slot = &mut self.slots[idx as usize];
        slot.level = at;
        slot.prev = level.tail;
        slot.next = NIL;
        if level.tail == NIL {
            level.head = idx;
        } else {
            self.slots[level.tail as usize].next = idx;
        }
        level.tail = idx;
        level.count += 1;
        level.qty += s.remaining;
        let l = *level;
        self.seq += 1;
        let price = Price::from_raw(s.price);
        sink.emit(BookEvent::Rested {
            id: OrderId(s.id),
            side: s.side,
            price,
            quantity: Quantity::from_raw(s.remaining),
        });
        sink.emit(delta(self.seq, s.side, price, &l));
    }

    /// Takes a resting order out of its level and frees its slot; emits the
    /// level's delta.
    fn remove_resting<S: EventSink>(&mut self, slot: u32, sink: &mut S) {
        let id = self.detach(slot, sink);
        self.free.push(slot);
        self.index.remove(&id);
    }

    /// Unlinks a resting order from its level (the slot stays); emits the
    /// level's delta. Returns the order id.
    fn detach<S: EventSink>(&mut self, slot: u32, sink: &mut S) -> u64 {
        let s = self.slots[slot as usize];
        let book = match s.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        debug_assert_eq!(book.slab[s.level as usize].key, book.key(s.price));
        let level = &mut book.slab[s.level as usize];
        unlink(level, &mut self.slots, slot);
        level.qty -= s.remaining;
        let l = *level;
        if l.count == 0 {
            book.emptied(s.level);
        }
        self.seq += 1;
        sink.emit(delta(self.seq, s.side, Price::from_raw(s.price), &l));
        s.id
    }

    /// Enters every stop order the last trade price has reached, in trigger
    /// order, until no more trigger (a triggered order's trades may trigger
    /// others).
    fn fire_stops<S: EventSink>(&mut self, sink: &mut S) {
        while let Some(last) = self.last_trade {
            let Some(stop) = self.stops.pop_triggered(last) else {
                break;
            };
            sink.emit(BookEvent::Triggered {
                id: stop.id,
                last: Price::from_raw(last),
            });
            let entered = NewOrder {
                order_type: match stop.order_type {
                    OrderType::StopLimit => OrderType::Limit,
                    _ => OrderType::Market,
                },
                stop_price: None,
                ..stop
            };
            // A triggered post-only that would take, or FOK that cannot fill
            // in full, is cancelled: it was accepted when it arrived.
            let limit = entered.price.map_or(0, Price::raw);
            let refused = entered.order_type == OrderType::Limit
                && match entered.time_in_force {
                    TimeInForce::PostOnly => self.crosses(entered.side, limit),
                    TimeInForce::Fok => !self.fok_fillable(&entered, limit),
                    _ => false,
                };
            if refused {
                sink.emit(BookEvent::Cancelled {
                    id: stop.id,
                    owner: stop.owner,
                    quantity: stop.quantity,
                    reason: CancelReason::Unfilled,
                });
                continue;
            }
            self.execute(&entered, sink);
        }
    }
}

/// A fee at `rate`; most books charge none, which skips the i128 division.
#[inline]
fn fee(notional: tradestack_model::Amount, rate: Rate) -> tradestack_model::Amount {
    if rate.raw() == 0 {
        tradestack_model::Amount::ZERO
    } else {
        notional.mul_rate(rate)
    }
}

fn view(s: &Slot) -> RestingOrder {
    RestingOrder {
        id: OrderId(s.id),
        owner: s.owner,
        side: s.side,
        price: Price::from_raw(s.price),
        remaining: Quantity::from_raw(s.remaining),
        expire_at: s.expire_at(),
    }
}

fn delta(seq: u64, side: Side, price: Price, l: &Level) -> BookEvent {
    BookEvent::Delta(BookDelta {
        seq,
        side,
        price,
        quantity: Quantity::from_raw(l.qty),
        orders: l.count,
    })
}

/// Removes `slot` from anywhere in `level`'s list.
fn unlink(level: &mut Level, slots: &mut [Slot], slot: u32) {
    let (prev, next) = {
        let s = &slots[slot as usize];
        (s.prev, s.next)
    };
    if prev == NIL {
        level.head = next;
    } else {
        slots[prev as usize].next = next;
    }
    if next == NIL {
        level.tail = prev;
    } else {
        slots[next as usize].prev = prev;
    }
    level.count -= 1;
}
