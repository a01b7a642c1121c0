//! Matching engine: a central limit order book per instrument with
//! price-time priority, as a pure library (no I/O, no clock, no allocation
//! per operation once warm).
//!
//! Commands go in ([`OrderBook::submit`], [`OrderBook::cancel`],
//! [`OrderBook::cancel_all`], [`OrderBook::amend`], [`OrderBook::expire`]);
//! an ordered stream of [`BookEvent`]s comes out. The same commands always
//! give the same events, which is what lets the exchange journal commands and
//! rebuild its books by replaying them. See `DESIGN.md` for the data layout
//! and the order-type semantics.

mod book;
mod hash;
mod side;
mod state;
mod stops;
mod types;
mod view;

pub use book::{LevelView, OrderBook, RestingOrder};
pub use state::{BookState, RestingState};
pub use types::{
    BookConfig, BookDelta, BookEvent, CancelReason, EventSink, FeeRates, NewOrder, Owner,
    RejectReason, StpMode, TradeEvent,
};
pub use view::{L2Book, L2Snapshot, SeqGap};
