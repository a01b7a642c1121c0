//! The [`Strategy`] trait and the context a strategy acts through.
//!
//! A strategy never performs I/O and never reads a clock: it is called with
//! an event and a [`StrategyContext`] that holds the time, its view of the
//! market and of its own orders and position, and collects what it wants
//! done as [`Action`]s. The engine carries those out against whatever venue
//! it drives (the in-process exchange core in simulated time, or the
//! exchange's HTTP API in real time), so the same strategy code runs in
//! backtests, scenarios and live.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_marketdata::feed::BookLevels;
use tradestack_model::{
    AccountId, Bar, ClientOrderId, Fill, Instrument, InstrumentId, Nanos, Order, OrderType, Price,
    Quantity, Quote, Side, StrategyId, TimeInForce, Trade, UnixNanos,
};

/// An order a strategy asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// The client id the engine assigned.
    pub client_order_id: ClientOrderId,
    /// What to trade.
    pub instrument: InstrumentId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Limit price.
    pub price: Option<Price>,
    /// Quantity.
    pub quantity: Quantity,
}

/// Something a strategy wants done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Enter an order.
    Submit(OrderRequest),
    /// Cancel one order by client id.
    Cancel {
        /// Instrument.
        instrument: InstrumentId,
        /// Which order.
        client_order_id: ClientOrderId,
    },
    /// Cancel every open order, on one instrument or all.
    CancelAll {
        /// One instrument, or all.
        instrument: Option<InstrumentId>,
    },
}

/// A timer a strategy set, delivered to [`Strategy::on_timer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The name the strategy gave it.
    pub name: String,
    /// When it was due.
    pub at: UnixNanos,
}

/// What the engine knows of the market, shared by all strategies.
#[derive(Clone, Debug, Default)]
pub struct MarketState {
    /// Instruments by id.
    pub instruments: BTreeMap<InstrumentId, Instrument>,
    /// Last quote per instrument.
    pub quotes: BTreeMap<InstrumentId, Quote>,
    /// Last trade price per instrument.
    pub last: BTreeMap<InstrumentId, Price>,
    /// Reference (fair) prices, e.g. `BTC-USD`, `USDT-USD`.
    pub reference: BTreeMap<InstrumentId, Price>,
}

impl MarketState {
    /// Mid of the last quote.
    pub fn mid(&self, instrument: &InstrumentId) -> Option<Price> {
        self.quotes.get(instrument).map(|q| {
            Price::from_raw(((i128::from(q.bid.raw()) + i128::from(q.ask.raw())) / 2) as i64)
        })
    }
}

/// The engine's per-strategy bookkeeping the context exposes.
#[derive(Clone, Debug, Default)]
pub struct StrategyState {
    /// Open orders by client id.
    pub open: BTreeMap<ClientOrderId, Order>,
    /// Signed position per instrument, raw (10⁻⁸), as the strategy's fills say.
    pub position: BTreeMap<InstrumentId, i64>,
    /// Orders submitted so far (for client ids).
    pub submitted: u64,
    /// The last order submitted.
    pub last_order: Option<(InstrumentId, ClientOrderId)>,
    /// Submitted orders the venue has not answered yet.
    pub pending: BTreeMap<ClientOrderId, OrderRequest>,
    /// Timers due: (at, name), with the period of periodic ones.
    pub timers: Vec<(UnixNanos, String, Option<Nanos>)>,
}

/// What a strategy sees and acts through during one callback.
pub struct StrategyContext<'a> {
    /// Simulated or real time now.
    pub now: UnixNanos,
    /// This strategy's id.
    pub id: &'a StrategyId,
    /// The account it trades for.
    pub account: &'a AccountId,
    /// The market.
    pub market: &'a MarketState,
    pub(crate) state: &'a mut StrategyState,
    pub(crate) actions: &'a mut Vec<Action>,
}

impl StrategyContext<'_> {
    /// Enters a limit order; returns its client id.
    pub fn limit(
        &mut self,
        instrument: &InstrumentId,
        side: Side,
        price: Price,
        quantity: Quantity,
        time_in_force: TimeInForce,
    ) -> ClientOrderId {
        self.submit(
            instrument,
            side,
            OrderType::Limit,
            time_in_force,
            Some(price),
            quantity,
        )
    }

    /// Enters a market order; returns its client id.
    pub fn market(
        &mut self,
        instrument: &InstrumentId,
        side: Side,
        quantity: Quantity,
    ) -> ClientOrderId {
        self.submit(
            instrument,
            side,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            quantity,
        )
    }

    fn submit(
        &mut self,
        instrument: &InstrumentId,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: Option<Price>,
        quantity: Quantity,
    ) -> ClientOrderId {
        self.state.submitted += 1;
        let client_order_id = ClientOrderId::new(format!("{}-{}", self.id, self.state.submitted));
        self.actions.push(Action::Submit(OrderRequest {
            client_order_id: client_order_id.clone(),
            instrument: instrument.clone(),
            side,
            order_type,
            time_in_force,
            price,
            quantity,
        }));
        client_order_id
    }

    /// Cancels one open order.
    pub fn cancel(&mut self, instrument: &InstrumentId, client_order_id: &ClientOrderId) {
        self.actions.push(Action::Cancel {
            instrument: instrument.clone(),
            client_order_id: client_order_id.clone(),
        });
    }

    /// Cancels every open order, on one instrument or all.
    pub fn cancel_all(&mut self, instrument: Option<&InstrumentId>) {
        self.actions.push(Action::CancelAll {
            instrument: instrument.cloned(),
        });
    }

    /// Calls [`Strategy::on_timer`] with `name` after `delay`.
    pub fn set_timer(&mut self, name: &str, delay: Nanos) {
        self.state
            .timers
            .push((self.now + delay, name.to_string(), None));
    }

    /// Calls [`Strategy::on_timer`] with `name` every `period` (at least 1 ns).
    pub fn set_periodic(&mut self, name: &str, period: Nanos) {
        let period = Nanos(period.0.max(1));
        self.state
            .timers
            .push((self.now + period, name.to_string(), Some(period)));
    }

    /// Stops a timer by name.
    pub fn cancel_timer(&mut self, name: &str) {
        self.state.timers.retain(|(_, n, _)| n != name);
    }

    /// Open orders, by client id.
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.state.open.values()
    }

    /// Signed position in `instrument`, raw (10⁻⁸), positive long.
    pub fn position(&self, instrument: &InstrumentId) -> i64 {
        self.state.position.get(instrument).copied().unwrap_or(0)
    }
}

/// A trading strategy. Every method has an empty default, so a strategy
/// implements only what it reacts to.
pub trait Strategy: Send {
    /// Called once before any event.
    fn on_start(&mut self, _ctx: &mut StrategyContext<'_>) {}
    /// Called once when the engine stops it.
    fn on_stop(&mut self, _ctx: &mut StrategyContext<'_>) {}
    /// A new top of book.
    fn on_quote(&mut self, _quote: &Quote, _ctx: &mut StrategyContext<'_>) {}
    /// A public trade.
    fn on_trade(&mut self, _trade: &Trade, _ctx: &mut StrategyContext<'_>) {}
    /// A closed bar.
    fn on_bar(&mut self, _bar: &Bar, _ctx: &mut StrategyContext<'_>) {}
    /// A book snapshot.
    fn on_book(&mut self, _book: &BookLevels, _ctx: &mut StrategyContext<'_>) {}
    /// One of its orders changed state.
    fn on_order_update(&mut self, _order: &Order, _ctx: &mut StrategyContext<'_>) {}
    /// One of its orders filled (after the position was updated).
    fn on_fill(&mut self, _fill: &Fill, _ctx: &mut StrategyContext<'_>) {}
    /// A timer it set is due.
    fn on_timer(&mut self, _timer: &Timer, _ctx: &mut StrategyContext<'_>) {}
}
