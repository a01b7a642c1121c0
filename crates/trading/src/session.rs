//! Strategies trading on the in-process exchange core beside the market
//! simulator's agents, in simulated time.
//!
//! One deterministic loop: the next instant is the earliest of an agent
//! wake-up and a strategy timer. The simulator runs up to it; the events it
//! produced (orders, fills, trades, book changes) reach the engine at that
//! instant, with new tops of book as quotes and closed bars from the
//! trades; what the strategies answer is applied to the exchange at the
//! same instant, and the events of that are fed back until nothing is
//! left. The same seed gives the same run, event for event.

use std::collections::BTreeMap;

use tradestack_exchange::{Command, ExchangeEvent, ExchangeSettings, OrderRef, PlaceOrder};
use tradestack_marketdata::bars::{BarBuilder, BarConfig, BarError};
use tradestack_marketdata::sim::{SimConfig, SimError, Simulation};
use tradestack_model::{
    AccountId, Amount, Instrument, InstrumentId, Nanos, Price, Quantity, Quote, StrategyId,
    UnixNanos,
};

use crate::engine::{EngineError, Outgoing, StrategyEngine};
use crate::gate::{Open, OrderGate};
use crate::misbehaviour::Misbehaviour;
use crate::strategies::StrategyConfig;
use crate::strategy::Action;

/// Session errors.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The simulator refused its configuration.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A strategy could not be registered.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The bar intervals are invalid.
    #[error(transparent)]
    Bars(#[from] BarError),
    /// A strategy trades an instrument the exchange does not list.
    #[error("strategy {strategy}: unknown instrument {instrument}")]
    UnknownInstrument {
        /// The strategy.
        strategy: String,
        /// The instrument.
        instrument: String,
    },
}

/// What a session starts with.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The market simulator (reference process and agents).
    pub sim: SimConfig,
    /// The exchange.
    pub exchange: ExchangeSettings,
    /// The strategies.
    pub strategies: Vec<StrategyConfig>,
    /// What each strategy account is given, in every asset of the
    /// instruments listed, at the start.
    pub funding: Amount,
    /// Bar intervals delivered to strategies (default: 1m).
    pub bar_intervals: Vec<Nanos>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sim: SimConfig::default(),
            exchange: ExchangeSettings::default(),
            strategies: Vec::new(),
            funding: Amount::from_units(10_000_000),
            bar_intervals: vec![Nanos::MINUTE],
        }
    }
}

/// Faults a scenario switches on in a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionFaults {
    /// The venue is down: every strategy request fails as unreachable
    /// (after [`OUTAGE_TIMEOUT`]) and the agents cannot trade.
    pub outage: bool,
    /// Quotes reach the strategies this late (0: at once).
    pub feed_delay: Nanos,
    /// Every other quote reaches the strategies with both prices moved by
    /// this many basis points, up and down in turn (0: none).
    pub corrupt_bps: i64,
}

/// How long a request to a venue that is down takes to fail.
pub const OUTAGE_TIMEOUT: Nanos = Nanos(5_000_000_000);

/// Best bid and ask (price, size) of a book.
type Top = (Option<(Price, Quantity)>, Option<(Price, Quantity)>);

/// Counters of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Strategy commands applied to the exchange.
    pub strategy_commands: u64,
    /// Strategy commands the exchange refused.
    pub refused: u64,
    /// Strategy orders the pre-trade gate refused.
    pub gated: u64,
    /// Engine steps (instants with something to do).
    pub steps: u64,
}

/// The simulator, its exchange and the strategy engine, in one loop, with
/// a pre-trade gate `G` in the order path.
pub struct Session<G: OrderGate = Open> {
    /// The market simulator and its exchange core.
    pub sim: Simulation,
    /// The strategies.
    pub engine: StrategyEngine,
    /// The pre-trade gate.
    pub gate: G,
    bars: BarBuilder,
    tops: BTreeMap<InstrumentId, Top>,
    now: UnixNanos,
    /// Counters.
    pub stats: SessionStats,
    /// Faults switched on.
    pub faults: SessionFaults,
    /// Quotes held back by a feed delay, with when they are due.
    delayed: std::collections::VecDeque<(UnixNanos, Quote)>,
    /// Venue round trips (time, ok, latency), kept when `track_venue` is set.
    venue_results: Vec<(UnixNanos, bool, Nanos)>,
    /// Keep venue round trips for [`Session::take_venue_results`].
    pub track_venue: bool,
    /// Quotes seen while corrupting, for the alternation.
    corrupted: u64,
    /// The exchange events of one step, kept to reuse the allocation.
    scratch: Vec<(UnixNanos, ExchangeEvent)>,
}

impl Session<Open> {
    /// A session at `start`, seeded with `seed`, with no pre-trade gate.
    pub fn new(
        config: &SessionConfig,
        start: UnixNanos,
        seed: u64,
    ) -> Result<Session, SessionError> {
        Session::with_gate(config, start, seed, Open)
    }
}

impl<G: OrderGate> Session<G> {
    /// A session at `start`, seeded with `seed`, orders passing `gate`:
    /// strategy accounts funded, strategies registered and started.
    pub fn with_gate(
        config: &SessionConfig,
        start: UnixNanos,
        seed: u64,
        gate: G,
    ) -> Result<Session<G>, SessionError> {
        let mut sim = Simulation::new(&config.sim, config.exchange.clone(), start, seed)?;
        let instruments: Vec<Instrument> = sim.exchange.instruments().cloned().collect();
        let mut engine = StrategyEngine::new(instruments.iter());
        let assets = tradestack_model::assets_of(&instruments);
        let mut funded: Vec<AccountId> = Vec::new();
        for s in &config.strategies {
            for id in s.params.instruments() {
                if !instruments.iter().any(|i| i.id == id) {
                    return Err(SessionError::UnknownInstrument {
                        strategy: s.id.to_string(),
                        instrument: id.to_string(),
                    });
                }
            }
            engine.add(s.id.clone(), s.account.clone(), s.params.build())?;
            if !funded.contains(&s.account) {
                funded.push(s.account.clone());
                let mut ignored = Vec::new();
                for asset in &assets {
                    let cmd = Command::Deposit {
                        account: s.account.clone(),
                        asset: asset.clone(),
                        amount: config.funding,
                    };
                    let _ = sim.exchange.apply(&cmd, start, &mut ignored);
                }
            }
        }
        let bars = BarBuilder::new(&BarConfig {
            intervals: config.bar_intervals.clone(),
            ..BarConfig::default()
        })?;
        let mut session = Session {
            sim,
            engine,
            gate,
            bars,
            tops: BTreeMap::new(),
            now: start,
            stats: SessionStats::default(),
            faults: SessionFaults::default(),
            delayed: Default::default(),
            venue_results: Vec::new(),
            track_venue: false,
            corrupted: 0,
            scratch: Vec::new(),
        };
        session.sync_reference();
        let out = session.engine.start(start);
        session.execute(out, &mut |_, _| {});
        Ok(session)
    }

    /// Simulated time now.
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// Switches a strategy's misbehaviour now.
    pub fn set_misbehaviour(
        &mut self,
        id: &StrategyId,
        mode: Option<Misbehaviour>,
    ) -> Result<(), EngineError> {
        self.engine.set_misbehaviour(id, mode, self.now)
    }

    /// Runs until `until`, calling `observe` with every exchange event (of
    /// agents and strategies alike) and its time.
    pub fn run_until(
        &mut self,
        until: UnixNanos,
        mut observe: impl FnMut(UnixNanos, &ExchangeEvent),
    ) {
        loop {
            let wake = self.sim.population.next_wake().map(UnixNanos);
            let timer = self.engine.next_timer();
            let quote = self.delayed.front().map(|(t, _)| *t);
            let next = [wake, timer, quote].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else {
                break;
            };
            let next = next.max(self.now);
            self.stats.steps += 1;
            let mut events = std::mem::take(&mut self.scratch);
            self.sim.run_until_owned(next, |t, e| events.push((t, e)));
            self.now = next;
            self.sync_reference();
            self.deliver(events.drain(..), &mut observe);
            self.scratch = events;
            while let Some((_, q)) = self.delayed.front().filter(|(t, _)| *t <= next).cloned() {
                self.delayed.pop_front();
                let out = self.engine.on_quote(&q, next);
                self.execute(out, &mut observe);
            }
            let out = self.engine.fire_timers(next);
            self.execute(out, &mut observe);
            for b in self.bars.advance_to(next) {
                let out = self.engine.on_bar(b.bar(), next);
                self.execute(out, &mut observe);
            }
        }
        self.sim.run_until(until, |t, e| observe(t, e));
        self.now = until;
    }

    /// The kill switch: cancels every open order of one strategy now.
    pub fn cancel_strategy_orders(
        &mut self,
        id: &StrategyId,
        mut observe: impl FnMut(UnixNanos, &ExchangeEvent),
    ) {
        let out = self.engine.cancel_all_of(id);
        self.execute(out, &mut observe);
    }

    /// A quote as a corrupting feed delivers it: every other one moved
    /// `corrupt_bps` up, then down, deterministically.
    fn corrupt(&mut self, mut q: Quote) -> Quote {
        let bps = self.faults.corrupt_bps;
        if bps == 0 {
            return q;
        }
        self.corrupted += 1;
        let sign: i128 = match self.corrupted % 4 {
            1 => 1,
            3 => -1,
            _ => return q,
        };
        let shift = |p: Price| {
            let raw = i128::from(p.raw());
            i64::try_from(raw + sign * raw * i128::from(bps) / 10_000).map_or(p, Price::from_raw)
        };
        q.bid = shift(q.bid);
        q.ask = shift(q.ask);
        q
    }

    /// The venue round trips since the last call (with `track_venue` set).
    pub fn take_venue_results(&mut self) -> Vec<(UnixNanos, bool, Nanos)> {
        std::mem::take(&mut self.venue_results)
    }

    /// Switches faults; the agents stop trading while the venue is down.
    pub fn set_faults(&mut self, faults: SessionFaults) {
        self.faults = faults;
        self.sim.halted = faults.outage;
    }

    /// Stops the strategies: `on_stop`, then their orders are cancelled.
    pub fn stop(&mut self, mut observe: impl FnMut(UnixNanos, &ExchangeEvent)) {
        let out = self.engine.stop(self.now);
        self.execute(out, &mut observe);
    }

    fn sync_reference(&mut self) {
        let prices: Vec<(InstrumentId, Price)> = self
            .sim
            .reference
            .symbols()
            .filter_map(|s| self.sim.reference.price(s).map(|p| (s.clone(), p)))
            .collect();
        for (s, p) in prices {
            self.engine.on_reference(&s, p);
        }
    }

    /// Hands events to the engine, with quotes for changed tops and bars
    /// for trades; executes what the strategies answer.
    fn deliver(
        &mut self,
        events: impl IntoIterator<Item = (UnixNanos, ExchangeEvent)>,
        observe: &mut impl FnMut(UnixNanos, &ExchangeEvent),
    ) {
        let mut touched: Vec<InstrumentId> = Vec::new();
        for (t, mut e) in events {
            self.attribute(&mut e);
            let e = &e;
            observe(t, e);
            match e {
                ExchangeEvent::Book { instrument, .. } if !touched.contains(instrument) => {
                    touched.push(instrument.clone());
                }
                ExchangeEvent::Trade(trade) => {
                    if let Ok(closed) = self.bars.on_trade(trade) {
                        for b in closed {
                            let out = self.engine.on_bar(b.bar(), self.now);
                            self.execute(out, observe);
                        }
                    }
                }
                _ => {}
            }
            let out = self.engine.on_exchange_event(e, self.now);
            self.execute(out, observe);
        }
        for instrument in touched {
            self.quote_if_changed(&instrument, observe);
        }
    }

    /// Names the strategy on its orders' and fills' events, as the bus carries them.
    fn attribute(&self, e: &mut ExchangeEvent) {
        match e {
            ExchangeEvent::Order(o) if o.strategy.is_none() => {
                o.strategy = self.engine.owner(&o.client_order_id).cloned();
            }
            ExchangeEvent::Fill(f) if f.strategy.is_none() => {
                f.strategy = self.engine.owner(&f.client_order_id).cloned();
            }
            _ => {}
        }
    }

    fn quote_if_changed(
        &mut self,
        instrument: &InstrumentId,
        observe: &mut impl FnMut(UnixNanos, &ExchangeEvent),
    ) {
        let book = self.sim.exchange.book(instrument);
        let top = (
            book.and_then(|b| b.best_bid()),
            book.and_then(|b| b.best_ask()),
        );
        if self.tops.get(instrument) == Some(&top) {
            return;
        }
        self.tops.insert(instrument.clone(), top);
        if let (Some((bid, bid_size)), Some((ask, ask_size))) = top {
            let quote = Quote {
                instrument: instrument.clone(),
                bid,
                bid_size,
                ask,
                ask_size,
                ts: self.now,
            };
            let quote = self.corrupt(quote);
            if self.faults.feed_delay.0 > 0 {
                self.delayed
                    .push_back((self.now + self.faults.feed_delay, quote));
                return;
            }
            let out = self.engine.on_quote(&quote, self.now);
            self.execute(out, observe);
        }
    }

    /// Applies strategy actions to the exchange and feeds back the events.
    fn execute(&mut self, out: Vec<Outgoing>, observe: &mut impl FnMut(UnixNanos, &ExchangeEvent)) {
        if out.is_empty() {
            return;
        }
        for o in out {
            if self.gate.check(&o, self.now, &self.engine).is_err() {
                self.stats.gated += 1;
                if let Action::Submit(req) = &o.action {
                    let out = self.engine.on_refused(&req.client_order_id, self.now);
                    self.execute(out, observe);
                }
                continue;
            }
            if self.faults.outage {
                self.stats.refused += 1;
                if self.track_venue {
                    self.venue_results.push((self.now, false, OUTAGE_TIMEOUT));
                }
                if let Action::Submit(req) = &o.action {
                    let out = self.engine.on_refused(&req.client_order_id, self.now);
                    self.execute(out, observe);
                }
                continue;
            }
            if self.track_venue {
                self.venue_results.push((self.now, true, Nanos(0)));
            }
            let cmd = to_command(&o);
            self.stats.strategy_commands += 1;
            let mut events = Vec::new();
            if self
                .sim
                .exchange
                .apply(&cmd, self.now, &mut events)
                .is_err()
            {
                self.stats.refused += 1;
                if let Action::Submit(req) = &o.action {
                    let out = self.engine.on_refused(&req.client_order_id, self.now);
                    self.execute(out, observe);
                }
            }
            let now = self.now;
            self.deliver(events.into_iter().map(move |e| (now, e)), observe);
        }
    }
}

/// The exchange command for a strategy's action.
pub fn to_command(o: &Outgoing) -> Command {
    match &o.action {
        Action::Submit(req) => Command::Place(PlaceOrder {
            account: o.account.clone(),
            instrument: req.instrument.clone(),
            client_order_id: Some(req.client_order_id.clone()),
            side: req.side,
            order_type: req.order_type,
            time_in_force: req.time_in_force,
            price: req.price,
            stop_price: None,
            quantity: req.quantity,
            expire_at: None,
            stp: None,
        }),
        Action::Cancel {
            instrument,
            client_order_id,
        } => Command::Cancel {
            account: o.account.clone(),
            instrument: instrument.clone(),
            order: OrderRef::Client(client_order_id.clone()),
        },
        Action::CancelAll { instrument } => Command::CancelAll {
            account: o.account.clone(),
            instrument: instrument.clone(),
        },
    }
}
