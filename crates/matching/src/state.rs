//! A book's full state, for exchange snapshots: importing what `export`
//! gave yields a book that behaves identically from then on.

use serde::{Deserialize, Serialize};
use tradestack_model::{
    Instrument, OrderId, OrderType, Price, Quantity, Side, TimeInForce, UnixNanos,
};

use crate::book::OrderBook;
use crate::types::{BookConfig, FeeRates, NewOrder, Owner, StpMode};

/// A resting order with everything needed to rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingState {
    /// Order id.
    pub id: OrderId,
    /// Owner.
    pub owner: Owner,
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Open quantity.
    pub remaining: Quantity,
    /// Time in force it was entered with.
    pub time_in_force: TimeInForce,
    /// Expiry (GTD).
    pub expire_at: Option<UnixNanos>,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Fee rates.
    pub fees: FeeRates,
}

/// Everything in a book: resting orders in priority order, pending stops in
/// arrival order, and the counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookState {
    /// Last delta sequence number.
    pub seq: u64,
    /// Next trade id.
    pub next_trade: u64,
    /// Last trade price.
    pub last_trade: Option<Price>,
    /// Bids best first, then asks best first; oldest first within a level.
    pub orders: Vec<RestingState>,
    /// Pending stops, oldest first.
    pub stops: Vec<NewOrder>,
    /// The book's limits when exported.
    pub config: BookConfig,
}

impl OrderBook {
    /// The book's full state.
    pub fn export(&self) -> BookState {
        let mut orders = Vec::with_capacity(self.len());
        for side in [Side::Buy, Side::Sell] {
            orders.extend(self.resting_slots(side).map(|s| RestingState {
                id: OrderId(s.id),
                owner: s.owner,
                side: s.side,
                price: Price::from_raw(s.price),
                remaining: Quantity::from_raw(s.remaining),
                time_in_force: s.tif,
                expire_at: s.expire_at(),
                stp: s.stp,
                fees: s.fees,
            }));
        }
        BookState {
            seq: self.seq,
            next_trade: self.next_trade,
            last_trade: self.last_trade.map(Price::from_raw),
            orders,
            stops: self.stops.in_arrival_order(),
            config: self.config,
        }
    }

    /// A book with exactly the exported state (limits included).
    pub fn import(instrument: Instrument, state: &BookState) -> OrderBook {
        let mut book =
            OrderBook::with_capacity(instrument, state.config, state.orders.len().max(4096));
        for o in &state.orders {
            let order = NewOrder {
                id: o.id,
                owner: o.owner,
                side: o.side,
                order_type: OrderType::Limit,
                time_in_force: o.time_in_force,
                price: Some(o.price),
                stop_price: None,
                quantity: o.remaining,
                expire_at: o.expire_at,
                stp: o.stp,
                fees: o.fees,
            };
            book.restore_resting(&order);
        }
        for s in &state.stops {
            book.restore_stop(*s);
        }
        book.seq = state.seq;
        book.next_trade = state.next_trade;
        book.last_trade = state.last_trade.map(Price::raw);
        book
    }
}
