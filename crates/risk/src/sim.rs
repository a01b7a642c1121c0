//! The risk monitor watching a [`Session`] in simulated time, as the risk
//! service watches the bus: it sees every exchange event, the quotes and
//! reference prices, runs its rules on its cadence, and pulls the kill
//! switch on the strategies it halts.

use tradestack_exchange::ExchangeEvent;
use tradestack_model::{Instrument, InstrumentId, StrategyId, UnixNanos};
use tradestack_trading::session::SessionError;
use tradestack_trading::{Session, SessionConfig};

use crate::alerts::AlertChange;
use crate::config::RiskConfig;
use crate::monitor::RiskMonitor;
use crate::state::{TradingState, Transition};

/// What a risked session reports as it runs.
#[derive(Clone, Debug)]
pub enum RiskEvent<'a> {
    /// An exchange event (strategies' orders and fills named), lent: most
    /// observers only count them, and copying every book change costs.
    Exchange(&'a ExchangeEvent),
    /// An alert fired or resolved.
    Alert(AlertChange),
    /// A trading state changed.
    Transition(Transition),
}

/// A session with the risk monitor as its pre-trade gate and watcher.
pub struct RiskedSession {
    /// The session; its gate is the monitor.
    pub session: Session<RiskMonitor>,
}

impl RiskedSession {
    /// A session at `start` with `seed`, watched by a monitor with `risk`.
    pub fn new(
        config: &SessionConfig,
        risk: RiskConfig,
        start: UnixNanos,
        seed: u64,
    ) -> Result<RiskedSession, SessionError> {
        let instruments: Vec<Instrument> = config.exchange.instruments.clone();
        let mut monitor = RiskMonitor::new(risk, instruments.iter(), start);
        for s in &config.strategies {
            monitor.register(s.id.clone(), s.account.clone());
        }
        let mut session = Session::with_gate(config, start, seed, monitor)?;
        session.track_venue = true;
        Ok(RiskedSession { session })
    }

    /// The monitor.
    pub fn monitor(&self) -> &RiskMonitor {
        &self.session.gate
    }

    /// The monitor, to change states by hand.
    pub fn monitor_mut(&mut self) -> &mut RiskMonitor {
        &mut self.session.gate
    }

    /// Runs until `until`, evaluating the rules on their cadence.
    pub fn run_until(&mut self, until: UnixNanos, mut observe: impl FnMut(UnixNanos, &RiskEvent)) {
        loop {
            let t = self.session.gate.next_evaluation().min(until);
            // The gate hears the chunk's fills and market-data times after
            // the chunk, in order; only the fills are copied for it.
            let mut fills = Vec::new();
            let mut seen: Vec<(InstrumentId, UnixNanos)> = Vec::new();
            self.session.run_until(t, |at, e| {
                match e {
                    ExchangeEvent::Fill(f) => fills.push((f.clone(), at)),
                    ExchangeEvent::Trade(tr) => note(&mut seen, &tr.instrument, at),
                    ExchangeEvent::Book { instrument, .. } => note(&mut seen, instrument, at),
                    _ => {}
                }
                observe(at, &RiskEvent::Exchange(e));
            });
            for (f, at) in &fills {
                self.session.gate.on_fill(f, *at);
            }
            // With the feed delayed, the monitor sees market data as the
            // strategies do (the quotes), not straight from the venue.
            if self.session.faults.feed_delay.0 == 0 {
                for (instrument, at) in &seen {
                    self.session.gate.on_market_data(instrument, *at);
                }
            }
            for (at, ok, latency) in self.session.take_venue_results() {
                self.session.gate.on_venue_result(at, ok, latency);
            }
            let quotes: Vec<_> = self
                .session
                .engine
                .market()
                .quotes
                .values()
                .cloned()
                .collect();
            for q in &quotes {
                self.session.gate.on_quote(q);
            }
            let refs: Vec<_> = self
                .session
                .engine
                .market()
                .reference
                .iter()
                .map(|(i, p)| (i.clone(), *p))
                .collect();
            for (i, p) in refs {
                self.session.gate.on_reference(&i, p);
            }
            if t < self.session.gate.next_evaluation() {
                if t >= until {
                    break;
                }
                continue;
            }
            let ev = self.session.gate.evaluate(t);
            for a in ev.alerts {
                observe(t, &RiskEvent::Alert(a));
            }
            for tr in ev.transitions {
                self.enforce(&tr, &mut observe);
                observe(t, &RiskEvent::Transition(tr));
            }
            if t >= until {
                break;
            }
        }
    }

    /// Cancels the orders of the strategies a transition restricts.
    fn enforce(&mut self, tr: &Transition, observe: &mut impl FnMut(UnixNanos, &RiskEvent)) {
        if tr.to == TradingState::Active {
            return;
        }
        let targets: Vec<StrategyId> = match &tr.subject.strategy {
            Some(s) => vec![s.clone()],
            None => self
                .session
                .engine
                .strategies()
                .filter(|(_, a)| **a == tr.subject.account)
                .map(|(s, _)| s.clone())
                .collect(),
        };
        for s in targets {
            self.session
                .cancel_strategy_orders(&s, |at, e| observe(at, &RiskEvent::Exchange(e)));
        }
    }
}

/// Keeps the latest time market data was seen per instrument.
fn note(seen: &mut Vec<(InstrumentId, UnixNanos)>, instrument: &InstrumentId, at: UnixNanos) {
    match seen.iter_mut().find(|(i, _)| i == instrument) {
        Some((_, t)) => *t = (*t).max(at),
        None => seen.push((instrument.clone(), at)),
    }
}
