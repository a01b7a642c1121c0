//! The strategy engine: routes market data, order updates, fills and timers
//! to strategies, keeps their orders and positions, applies run-time
//! misbehaviour, and returns what they want done.
//!
//! Sans-I/O: the engine takes events with their time and returns
//! [`Outgoing`] actions. A driver feeds it from a venue and executes the
//! actions (see [`crate::session`] for the in-process exchange core in
//! simulated time), so nothing here knows which clock or venue is in use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_exchange::ExchangeEvent;
use tradestack_marketdata::feed::BookLevels;
use tradestack_model::{
    AccountId, Bar, ClientOrderId, Fill, Instrument, InstrumentId, Order, OrderStatus, Price,
    Quantity, Quote, Side, StrategyId, TimeInForce, Trade, UnixNanos,
};

use crate::misbehaviour::{Misbehaviour, MisbehaviourState};
use crate::portfolio::Portfolio;
use crate::strategy::{Action, MarketState, Strategy, StrategyContext, StrategyState, Timer};

/// An action with the strategy and account it is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The strategy.
    pub strategy: StrategyId,
    /// Its account.
    pub account: AccountId,
    /// What to do.
    pub action: Action,
}

/// Engine errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// Two strategies with one id.
    #[error("strategy {0} is already registered")]
    Duplicate(String),
    /// No strategy with that id.
    #[error("unknown strategy {0}")]
    Unknown(String),
}

struct Slot {
    id: StrategyId,
    account: AccountId,
    strategy: Box<dyn Strategy>,
    state: StrategyState,
    misbehaviour: MisbehaviourState,
    started: bool,
}

/// Counters of what the engine did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Orders submitted.
    pub submitted: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Fills received.
    pub fills: u64,
}

/// Strategies, their state, the shared market view and the portfolio.
pub struct StrategyEngine {
    market: MarketState,
    slots: Vec<Slot>,
    owners: BTreeMap<ClientOrderId, usize>,
    portfolio: Portfolio,
    stats: BTreeMap<StrategyId, EngineStats>,
}

impl StrategyEngine {
    /// An engine over `instruments`.
    pub fn new<'a>(instruments: impl IntoIterator<Item = &'a Instrument> + Clone) -> Self {
        StrategyEngine {
            market: MarketState {
                instruments: instruments
                    .clone()
                    .into_iter()
                    .map(|i| (i.id.clone(), i.clone()))
                    .collect(),
                ..MarketState::default()
            },
            slots: Vec::new(),
            owners: BTreeMap::new(),
            portfolio: Portfolio::new(instruments),
            stats: BTreeMap::new(),
        }
    }

    /// Registers a strategy trading for `account`.
    pub fn add(
        &mut self,
        id: StrategyId,
        account: AccountId,
        strategy: Box<dyn Strategy>,
    ) -> Result<(), EngineError> {
        if self.slots.iter().any(|s| s.id == id) {
            return Err(EngineError::Duplicate(id.to_string()));
        }
        self.stats.insert(id.clone(), EngineStats::default());
        self.slots.push(Slot {
            id,
            account,
            strategy,
            state: StrategyState::default(),
            misbehaviour: MisbehaviourState::default(),
            started: false,
        });
        Ok(())
    }

    /// The ids of the strategies, in registration order.
    pub fn strategies(&self) -> impl Iterator<Item = (&StrategyId, &AccountId)> {
        self.slots.iter().map(|s| (&s.id, &s.account))
    }

    /// The market as the engine sees it.
    pub fn market(&self) -> &MarketState {
        &self.market
    }

    /// Positions and P&L of every strategy.
    pub fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    /// What the engine did for one strategy.
    pub fn stats(&self, id: &StrategyId) -> Option<EngineStats> {
        self.stats.get(id).copied()
    }

    /// One strategy's open orders.
    pub fn open_orders(&self, id: &StrategyId) -> Vec<Order> {
        self.slot(id)
            .map(|i| self.slots[i].state.open.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The position a strategy believes it has (differs from the portfolio
    /// when it ignores its fills).
    pub fn believed_position(&self, id: &StrategyId, instrument: &InstrumentId) -> i64 {
        self.slot(id)
            .and_then(|i| self.slots[i].state.position.get(instrument).copied())
            .unwrap_or(0)
    }

    /// The strategy that sent the order with this client id, while it is live.
    pub fn owner(&self, client_order_id: &ClientOrderId) -> Option<&StrategyId> {
        self.owners.get(client_order_id).map(|&i| &self.slots[i].id)
    }

    /// Cancels for every open order of one strategy (a kill switch).
    pub fn cancel_all_of(&mut self, id: &StrategyId) -> Vec<Outgoing> {
        let Some(i) = self.slot(id) else {
            return Vec::new();
        };
        let open: Vec<(InstrumentId, ClientOrderId)> = self.slots[i]
            .state
            .open
            .values()
            .map(|o| (o.instrument.clone(), o.client_order_id.clone()))
            .collect();
        let mut out = Vec::new();
        for (instrument, client_order_id) in open {
            self.push(
                i,
                Action::Cancel {
                    instrument,
                    client_order_id,
                },
                &mut out,
            );
        }
        out
    }

    fn slot(&self, id: &StrategyId) -> Option<usize> {
        self.slots.iter().position(|s| &s.id == id)
    }

    /// Switches a strategy's misbehaviour at run time (`None` to behave).
    pub fn set_misbehaviour(
        &mut self,
        id: &StrategyId,
        mode: Option<Misbehaviour>,
        now: UnixNanos,
    ) -> Result<(), EngineError> {
        let i = self
            .slot(id)
            .ok_or_else(|| EngineError::Unknown(id.to_string()))?;
        self.slots[i].misbehaviour = MisbehaviourState::new(mode, now);
        Ok(())
    }

    /// The misbehaviour a strategy is in.
    pub fn misbehaviour(&self, id: &StrategyId) -> Option<Misbehaviour> {
        self.slot(id)
            .and_then(|i| self.slots[i].misbehaviour.mode.clone())
    }

    /// Starts every strategy not started yet.
    pub fn start(&mut self, now: UnixNanos) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if !self.slots[i].started {
                self.slots[i].started = true;
                self.call(i, now, &mut out, |s, ctx| s.on_start(ctx));
            }
        }
        out
    }

    /// Stops every strategy: `on_stop`, then cancel their open orders.
    pub fn stop(&mut self, now: UnixNanos) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            self.call(i, now, &mut out, |s, ctx| s.on_stop(ctx));
            if !self.slots[i].state.open.is_empty() {
                self.push(i, Action::CancelAll { instrument: None }, &mut out);
            }
        }
        out
    }

    /// A new top of book.
    pub fn on_quote(&mut self, quote: &Quote, now: UnixNanos) -> Vec<Outgoing> {
        self.market
            .quotes
            .insert(quote.instrument.clone(), quote.clone());
        if let Some(mid) = self.market.mid(&quote.instrument) {
            self.portfolio.mark_mid(&quote.instrument, mid);
        }
        self.broadcast(now, |s, ctx| s.on_quote(quote, ctx))
    }

    /// A public trade.
    pub fn on_trade(&mut self, trade: &Trade, now: UnixNanos) -> Vec<Outgoing> {
        self.market
            .last
            .insert(trade.instrument.clone(), trade.price);
        self.broadcast(now, |s, ctx| s.on_trade(trade, ctx))
    }

    /// A closed bar.
    pub fn on_bar(&mut self, bar: &Bar, now: UnixNanos) -> Vec<Outgoing> {
        self.broadcast(now, |s, ctx| s.on_bar(bar, ctx))
    }

    /// A book snapshot.
    pub fn on_book(&mut self, book: &BookLevels, now: UnixNanos) -> Vec<Outgoing> {
        self.broadcast(now, |s, ctx| s.on_book(book, ctx))
    }

    /// A reference (fair) price, e.g. `BTC-USD`.
    pub fn on_reference(&mut self, instrument: &InstrumentId, price: Price) {
        self.market.reference.insert(instrument.clone(), price);
        self.portfolio.mark_reference(instrument, price);
    }

    /// An order or fill from the venue. Events of orders no strategy owns
    /// are ignored; trades go to [`StrategyEngine::on_trade`].
    pub fn on_exchange_event(&mut self, event: &ExchangeEvent, now: UnixNanos) -> Vec<Outgoing> {
        match event {
            ExchangeEvent::Order(order) => self.on_order(order, now),
            ExchangeEvent::Fill(fill) => self.on_fill(fill, now),
            ExchangeEvent::Trade(trade) => self.on_trade(trade, now),
            _ => Vec::new(),
        }
    }

    /// An order's new state.
    pub fn on_order(&mut self, order: &Order, now: UnixNanos) -> Vec<Outgoing> {
        let Some(&i) = self.owners.get(&order.client_order_id) else {
            return Vec::new();
        };
        self.slots[i].state.pending.remove(&order.client_order_id);
        let terminal = matches!(
            order.status,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        );
        if terminal {
            self.slots[i].state.open.remove(&order.client_order_id);
            self.owners.remove(&order.client_order_id);
        } else {
            self.slots[i]
                .state
                .open
                .insert(order.client_order_id.clone(), order.clone());
        }
        let mut out = Vec::new();
        self.call(i, now, &mut out, |s, ctx| s.on_order_update(order, ctx));
        out
    }

    /// The venue refused an order outright (no order event will follow):
    /// the strategy sees it as rejected.
    pub fn on_refused(&mut self, client_order_id: &ClientOrderId, now: UnixNanos) -> Vec<Outgoing> {
        let Some(i) = self.owners.remove(client_order_id) else {
            return Vec::new();
        };
        let Some(req) = self.slots[i].state.pending.remove(client_order_id) else {
            return Vec::new();
        };
        let order = Order {
            id: tradestack_model::OrderId(0),
            client_order_id: req.client_order_id,
            account: self.slots[i].account.clone(),
            strategy: Some(self.slots[i].id.clone()),
            instrument: req.instrument,
            side: req.side,
            order_type: req.order_type,
            time_in_force: req.time_in_force,
            price: req.price,
            stop_price: None,
            expire_at: None,
            quantity: req.quantity,
            filled: Quantity::ZERO,
            status: OrderStatus::Rejected,
            created_at: now,
            updated_at: now,
        };
        let mut out = Vec::new();
        self.call(i, now, &mut out, |s, ctx| s.on_order_update(&order, ctx));
        out
    }

    /// A fill: tagged with its strategy, applied to the portfolio, then
    /// to the strategy's own position (unless it ignores fills).
    pub fn on_fill(&mut self, fill: &Fill, now: UnixNanos) -> Vec<Outgoing> {
        let Some(&i) = self.owners.get(&fill.client_order_id) else {
            return Vec::new();
        };
        let mut fill = fill.clone();
        fill.strategy = Some(self.slots[i].id.clone());
        // The engine only registers strategies on listed instruments' orders.
        let _ = self.portfolio.apply(&fill);
        if let Some(s) = self.stats.get_mut(&self.slots[i].id) {
            s.fills += 1;
        }
        let mut out = Vec::new();
        if self.slots[i].misbehaviour.ignores_fills() {
            return out;
        }
        let signed = match fill.side {
            Side::Buy => fill.quantity.raw(),
            Side::Sell => -fill.quantity.raw(),
        };
        *self.slots[i]
            .state
            .position
            .entry(fill.instrument.clone())
            .or_default() += signed;
        self.call(i, now, &mut out, |s, ctx| s.on_fill(&fill, ctx));
        out
    }

    /// The earliest due timer or misbehaviour tick.
    pub fn next_timer(&self) -> Option<UnixNanos> {
        self.slots
            .iter()
            .flat_map(|s| {
                s.state
                    .timers
                    .iter()
                    .map(|t| t.0)
                    .chain(s.misbehaviour.next_tick())
            })
            .min()
    }

    /// Fires every timer and misbehaviour tick due at or before `now`.
    pub fn fire_timers(&mut self, now: UnixNanos) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            loop {
                let due = self.slots[i]
                    .state
                    .timers
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.0 <= now)
                    .min_by_key(|(k, t)| (t.0, *k))
                    .map(|(k, _)| k);
                let Some(k) = due else { break };
                let (at, name, period) = self.slots[i].state.timers.remove(k);
                if let Some(p) = period {
                    self.slots[i]
                        .state
                        .timers
                        .push((at + p, name.clone(), Some(p)));
                }
                let timer = Timer { name, at };
                self.call(i, now, &mut out, |s, ctx| s.on_timer(&timer, ctx));
            }
            self.misbehave(i, now, &mut out);
        }
        out
    }

    /// Runaway loops and cancel storms: the engine acts for the strategy.
    fn misbehave(&mut self, i: usize, now: UnixNanos, out: &mut Vec<Outgoing>) {
        let slot = &mut self.slots[i];
        let Some(burst) = slot.misbehaviour.tick(now) else {
            return;
        };
        let open: Vec<(InstrumentId, ClientOrderId)> = slot
            .state
            .open
            .values()
            .map(|o| (o.instrument.clone(), o.client_order_id.clone()))
            .collect();
        let mut actions = Vec::new();
        match burst {
            crate::misbehaviour::Burst::Orders { count, instrument } => {
                // Small passive orders far from the touch: they rest, and pile up.
                let Some(q) = self.market.quotes.get(&instrument) else {
                    return;
                };
                let Some(inst) = self.market.instruments.get(&instrument) else {
                    return;
                };
                let tick = inst.tick_size.raw().max(1);
                let far = ((q.bid.raw() - q.bid.raw() / 10) / tick * tick).max(tick);
                // The smallest size the venue takes at that price (lots, minimum notional).
                let step = i128::from(inst.lot_size.raw().max(1));
                let need = inst.min_notional.raw() * 100_000_000 / i128::from(far.max(1));
                let lots = (need + step - 1) / step;
                let lot = Quantity::from_raw(
                    i64::try_from(lots * step)
                        .unwrap_or(i64::MAX)
                        .max(inst.min_qty.raw()),
                );
                let mut state = std::mem::take(&mut slot.state);
                let mut ctx = StrategyContext {
                    now,
                    id: &slot.id,
                    account: &slot.account,
                    market: &self.market,
                    state: &mut state,
                    actions: &mut actions,
                };
                for _ in 0..count {
                    ctx.limit(
                        &instrument,
                        Side::Buy,
                        Price::from_raw(far),
                        lot,
                        TimeInForce::Gtc,
                    );
                }
                slot.state = state;
            }
            crate::misbehaviour::Burst::Cancels { count } => {
                // With nothing open, it keeps cancelling its last order.
                let targets = if open.is_empty() {
                    slot.state.last_order.iter().cloned().collect()
                } else {
                    open
                };
                if targets.is_empty() {
                    return;
                }
                for k in 0..count {
                    let (instrument, id) = &targets[k as usize % targets.len()];
                    actions.push(Action::Cancel {
                        instrument: instrument.clone(),
                        client_order_id: id.clone(),
                    });
                }
            }
        }
        for a in actions {
            self.push(i, a, out);
        }
    }

    fn broadcast(
        &mut self,
        now: UnixNanos,
        f: impl Fn(&mut dyn Strategy, &mut StrategyContext<'_>),
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            self.call(i, now, &mut out, &f);
        }
        out
    }

    /// Calls one strategy with a fresh context, then records its actions.
    fn call(
        &mut self,
        i: usize,
        now: UnixNanos,
        out: &mut Vec<Outgoing>,
        f: impl FnOnce(&mut dyn Strategy, &mut StrategyContext<'_>),
    ) {
        let slot = &mut self.slots[i];
        if !slot.started || slot.misbehaviour.is_stuck() {
            return;
        }
        let mut actions = Vec::new();
        let mut ctx = StrategyContext {
            now,
            id: &slot.id,
            account: &slot.account,
            market: &self.market,
            state: &mut slot.state,
            actions: &mut actions,
        };
        f(slot.strategy.as_mut(), &mut ctx);
        for a in actions {
            let a = self.slots[i].misbehaviour.distort(a, &self.market);
            self.push(i, a, out);
        }
    }

    fn push(&mut self, i: usize, action: Action, out: &mut Vec<Outgoing>) {
        let stats = self.stats.entry(self.slots[i].id.clone()).or_default();
        match &action {
            Action::Submit(req) => {
                stats.submitted += 1;
                self.owners.insert(req.client_order_id.clone(), i);
                self.slots[i]
                    .state
                    .pending
                    .insert(req.client_order_id.clone(), req.clone());
                self.slots[i].state.last_order =
                    Some((req.instrument.clone(), req.client_order_id.clone()));
            }
            Action::Cancel { .. } | Action::CancelAll { .. } => stats.cancels += 1,
        }
        out.push(Outgoing {
            strategy: self.slots[i].id.clone(),
            account: self.slots[i].account.clone(),
            action,
        });
    }
}
