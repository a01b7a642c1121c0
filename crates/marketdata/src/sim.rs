//! The market simulator in simulated time: the reference process, the
//! agents and the exchange core in one deterministic loop.
//!
//! Time advances from event to event (agent wake-ups and reference steps),
//! never by the wall clock, so a day runs in well under a second and the
//! same seed always gives the same trades.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};
use tradestack_exchange::{Command, Exchange, ExchangeEvent, ExchangeSettings};
use tradestack_kernel::DetRng;
use tradestack_model::{
    AccountId, Amount, AssetCode, Instrument, InstrumentId, Nanos, Price, Quantity, UnixNanos,
};

use crate::agents::{Agent, AgentConfig, AgentKind, MarketView};
use crate::reference::{ReferenceConfig, ReferenceError, ReferenceProcess};

/// The simulator's configuration: `[marketdata.simulator]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Reference-price step.
    pub step: Nanos,
    /// The reference assets and their correlation.
    pub reference: ReferenceConfig,
    /// The agents.
    pub agents: Vec<AgentConfig>,
    /// What each agent account is funded with, per asset, at the start.
    pub funding: Amount,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            step: Nanos(1_000_000_000),
            reference: ReferenceConfig::default(),
            agents: default_population(),
            funding: Amount::from_raw(1_000_000_000 * 100_000_000),
        }
    }
}

fn q(s: &str) -> Quantity {
    s.parse().expect("a valid quantity literal")
}

/// A population per spot instrument: two market makers, noise, momentum
/// and value traders.
pub fn default_population() -> Vec<AgentConfig> {
    let mut out = Vec::new();
    let books: [(&str, &str, &str); 5] = [
        ("BTC-USDT", "0.5", "0.001"),
        ("ETH-USDT", "5", "0.01"),
        ("SOL-USDT", "100", "0.1"),
        ("USDT-USD", "50000", "10"),
        ("USDC-USDT", "50000", "10"),
    ];
    for (instrument, size, small) in books {
        let id = InstrumentId::new(instrument);
        let account = |role: &str, n: u32| format!("sim-{role}-{n}-{instrument}").as_str().into();
        for (n, half_spread) in [(1u32, 2i64), (2, 5)] {
            out.push(AgentConfig {
                account: account("mm", n),
                instrument: id.clone(),
                every: Nanos(2_000_000_000 + i64::from(n) * 500_000_000),
                kind: AgentKind::MarketMaker {
                    half_spread_bps: half_spread,
                    levels: 5,
                    level_step_bps: 3,
                    size: q(size),
                    max_inventory: Quantity(q(size).0 * 20),
                },
            });
        }
        for n in 1..=3 {
            out.push(AgentConfig {
                account: account("noise", n),
                instrument: id.clone(),
                every: Nanos(700_000_000 + i64::from(n) * 300_000_000),
                kind: AgentKind::Noise {
                    max_size: Quantity(q(size).0 / 2),
                    per_mille: 400,
                },
            });
        }
        out.push(AgentConfig {
            account: account("momentum", 1),
            instrument: id.clone(),
            every: Nanos(5_000_000_000),
            kind: AgentKind::Momentum {
                lookback: 12,
                threshold_bps: 15,
                size: q(small),
            },
        });
        out.push(AgentConfig {
            account: account("value", 1),
            instrument: id.clone(),
            every: Nanos(3_000_000_000),
            kind: AgentKind::Value {
                threshold_bps: 8,
                noise_bps: 3,
                size: q(size),
            },
        });
    }
    out
}

/// Simulator errors.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The reference configuration is invalid.
    #[error("reference: {0}")]
    Reference(#[from] ReferenceError),
    /// An agent trades an instrument the exchange does not list.
    #[error("agent {account}: unknown instrument {instrument}")]
    UnknownInstrument {
        /// Agent account.
        account: String,
        /// Instrument.
        instrument: String,
    },
}

/// Where an instrument's fair value comes from.
#[derive(Clone, Debug)]
struct Pricing {
    instrument: InstrumentId,
    base: AssetCode,
    base_ref: Option<InstrumentId>,
    quote_ref: Option<InstrumentId>,
    tick: Price,
    lot: Quantity,
}

/// What an agent's view needs from the exchange: the touch and what the
/// agent holds of the base asset.
#[derive(Clone, Debug)]
pub struct BookState {
    /// Best bid.
    pub best_bid: Option<(Price, Quantity)>,
    /// Best ask.
    pub best_ask: Option<(Price, Quantity)>,
    /// The agent's total balance of the base asset.
    pub held: Amount,
}

/// Reads an agent's [`BookState`] off the exchange.
pub fn book_state(
    ex: &Exchange,
    instrument: &InstrumentId,
    account: &AccountId,
    base: &AssetCode,
) -> BookState {
    let book = ex.book(instrument);
    BookState {
        best_bid: book.and_then(|b| b.best_bid()),
        best_ask: book.and_then(|b| b.best_ask()),
        held: ex.ledger().get(account, base).total(),
    }
}

/// The agents, their schedule and how their instruments are priced; shared
/// by the simulated-time [`Simulation`] and the live driver.
pub struct Population {
    agents: Vec<Agent>,
    pricing: Vec<Pricing>,
    agent_pricing: Vec<usize>,
    funding: Amount,
    rng: DetRng,
    wakes: BinaryHeap<Reverse<(i64, usize)>>,
}

impl Population {
    /// The configured agents on the exchange's `instruments`, first waking
    /// at random times within their interval after `start`.
    pub fn new<'a>(
        config: &SimConfig,
        instruments: impl Iterator<Item = &'a Instrument> + Clone,
        reference: &ReferenceProcess,
        start: UnixNanos,
        rng: &DetRng,
    ) -> Result<Population, SimError> {
        let symbols: Vec<InstrumentId> = reference.symbols().cloned().collect();
        let reference_of = |asset: &AssetCode| -> Option<InstrumentId> {
            if asset.as_str() == "USD" {
                return None;
            }
            let id = InstrumentId::new(format!("{}-USD", asset.as_str()));
            symbols.contains(&id).then_some(id)
        };
        let mut pricing: Vec<Pricing> = Vec::new();
        let mut agent_pricing = Vec::new();
        for a in &config.agents {
            let i = match pricing.iter().position(|p| p.instrument == a.instrument) {
                Some(i) => i,
                None => {
                    let inst = instruments
                        .clone()
                        .find(|i| i.id == a.instrument)
                        .ok_or_else(|| SimError::UnknownInstrument {
                            account: a.account.to_string(),
                            instrument: a.instrument.to_string(),
                        })?;
                    pricing.push(Pricing {
                        instrument: inst.id.clone(),
                        base: inst.base.clone(),
                        base_ref: reference_of(&inst.base),
                        quote_ref: reference_of(&inst.quote),
                        tick: inst.tick_size,
                        lot: inst.lot_size,
                    });
                    pricing.len() - 1
                }
            };
            agent_pricing.push(i);
        }
        let mut wakes = BinaryHeap::new();
        let mut jitter = rng.fork(2);
        for (i, a) in config.agents.iter().enumerate() {
            let first = start.0 + jitter.gen_range(0..a.every.0.max(1));
            wakes.push(Reverse((first, i)));
        }
        Ok(Population {
            agents: config.agents.iter().cloned().map(Agent::new).collect(),
            pricing,
            agent_pricing,
            funding: config.funding,
            rng: rng.fork(3),
            wakes,
        })
    }

    /// Deposits that fund every agent in both assets of its instrument.
    pub fn funding_commands<'a>(
        &self,
        instruments: impl Iterator<Item = &'a Instrument> + Clone,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        for a in &self.agents {
            if let Some(inst) = instruments.clone().find(|i| i.id == a.config.instrument) {
                for asset in [&inst.base, &inst.quote] {
                    out.push(Command::Deposit {
                        account: a.config.account.clone(),
                        asset: asset.clone(),
                        amount: self.funding,
                    });
                }
            }
        }
        out
    }

    /// The time of the next wake-up.
    pub fn next_wake(&self) -> Option<i64> {
        self.wakes.peek().map(|r| r.0.0)
    }

    /// The next agent due by `until`, rescheduled for its next wake-up.
    pub fn pop_due(&mut self, until: i64) -> Option<usize> {
        if self.next_wake()? > until {
            return None;
        }
        let Reverse((at, i)) = self.wakes.pop()?;
        let every = self.agents[i].config.every.0.max(1);
        self.wakes.push(Reverse((at + every, i)));
        Some(i)
    }

    /// Agent `i`'s instrument, account and base asset (what [`book_state`] needs).
    pub fn subject(&self, i: usize) -> (InstrumentId, AccountId, AssetCode) {
        let p = &self.pricing[self.agent_pricing[i]];
        (
            p.instrument.clone(),
            self.agents[i].config.account.clone(),
            p.base.clone(),
        )
    }

    /// Wakes agent `i` with what the exchange shows it; appends its commands.
    pub fn wake(
        &mut self,
        i: usize,
        now: UnixNanos,
        reference: &ReferenceProcess,
        state: &BookState,
        out: &mut Vec<Command>,
    ) {
        let p = &self.pricing[self.agent_pricing[i]];
        let Some(fair) = fair(reference, p) else {
            return;
        };
        let view = MarketView {
            now,
            reference: fair,
            best_bid: state.best_bid,
            best_ask: state.best_ask,
            tick: p.tick,
            lot: p.lot,
            inventory: i64::try_from(state.held.0 - self.funding.0).unwrap_or(0),
        };
        self.agents[i].wake(&view, &mut self.rng, out);
    }

    /// Market makers pull (or restore) their quotes.
    pub fn withdraw_liquidity(&mut self, withdrawn: bool) {
        for a in &mut self.agents {
            if matches!(a.config.kind, AgentKind::MarketMaker { .. }) {
                a.withdrawn = withdrawn;
            }
        }
    }
}

/// The fair value of an instrument from the reference process, on its tick.
fn fair(reference: &ReferenceProcess, p: &Pricing) -> Option<Price> {
    let value = |r: &Option<InstrumentId>| match r {
        None => Some(100_000_000i128),
        Some(id) => reference.price(id).map(|p| i128::from(p.0)),
    };
    let (b, q) = (value(&p.base_ref)?, value(&p.quote_ref)?);
    if q <= 0 {
        return None;
    }
    let raw = b * 100_000_000 / q;
    let tick = i128::from(p.tick.0.max(1));
    i64::try_from((raw + tick / 2) / tick * tick)
        .ok()
        .map(Price)
}

/// The running simulation.
pub struct Simulation {
    /// The exchange core the agents trade on.
    pub exchange: Exchange,
    /// The reference prices.
    pub reference: ReferenceProcess,
    /// The agents.
    pub population: Population,
    now: UnixNanos,
    step: Nanos,
    next_step: UnixNanos,
    cmds: Vec<Command>,
    events: Vec<ExchangeEvent>,
    /// Public trades so far.
    pub trades: u64,
    /// Commands applied so far.
    pub commands: u64,
    /// The venue is down: agents still wake, but nothing they send arrives.
    pub halted: bool,
}

impl Simulation {
    /// A simulation starting at `start`, seeded with `seed`.
    pub fn new(
        config: &SimConfig,
        exchange: ExchangeSettings,
        start: UnixNanos,
        seed: u64,
    ) -> Result<Simulation, SimError> {
        let rng = DetRng::new(seed);
        let reference = ReferenceProcess::new(&config.reference, start, &rng.fork(1))?;
        let mut ex = Exchange::new(exchange);
        let instruments: Vec<Instrument> = ex.instruments().cloned().collect();
        let population = Population::new(config, instruments.iter(), &reference, start, &rng)?;
        let mut out = Vec::new();
        for cmd in population.funding_commands(instruments.iter()) {
            let _ = ex.apply(&cmd, start, &mut out);
        }
        Ok(Simulation {
            exchange: ex,
            reference,
            population,
            now: start,
            step: Nanos(config.step.0.max(1)),
            next_step: start,
            cmds: Vec::new(),
            events: Vec::new(),
            trades: 0,
            commands: 0,
            halted: false,
        })
    }

    /// Simulated time now.
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// Runs until `until`, calling `sink` with every exchange event and its time.
    pub fn run_until(&mut self, until: UnixNanos, mut sink: impl FnMut(UnixNanos, &ExchangeEvent)) {
        self.run_until_owned(until, |t, e| sink(t, &e));
    }

    /// [`Simulation::run_until`], handing each event over instead of lending it.
    pub fn run_until_owned(
        &mut self,
        until: UnixNanos,
        mut sink: impl FnMut(UnixNanos, ExchangeEvent),
    ) {
        loop {
            let next_wake = self.population.next_wake().unwrap_or(i64::MAX);
            let next = next_wake.min(self.next_step.0);
            if next > until.0 {
                break;
            }
            self.now = UnixNanos(next);
            if self.next_step.0 <= next_wake {
                if self.next_step.0 > self.reference.now().0 {
                    self.reference
                        .step(Nanos(self.next_step.0 - self.reference.now().0));
                }
                self.next_step = UnixNanos(self.next_step.0 + self.step.0);
                continue;
            }
            let i = self.population.pop_due(next).expect("an agent is due");
            let (instrument, account, base) = self.population.subject(i);
            let state = book_state(&self.exchange, &instrument, &account, &base);
            self.cmds.clear();
            self.population
                .wake(i, self.now, &self.reference, &state, &mut self.cmds);
            if self.halted {
                continue;
            }
            for cmd in std::mem::take(&mut self.cmds) {
                self.events.clear();
                let _ = self.exchange.apply(&cmd, self.now, &mut self.events);
                self.commands += 1;
                for e in self.events.drain(..) {
                    if matches!(e, ExchangeEvent::Trade(_)) {
                        self.trades += 1;
                    }
                    sink(self.now, e);
                }
            }
        }
        self.now = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, minutes: i64) -> (u64, Vec<String>) {
        let start = UnixNanos(1_700_000_000_000_000_000);
        let mut sim = Simulation::new(
            &SimConfig::default(),
            ExchangeSettings::default(),
            start,
            seed,
        )
        .unwrap();
        let mut prints = Vec::new();
        sim.run_until(UnixNanos(start.0 + minutes * 60_000_000_000), |_, e| {
            if let ExchangeEvent::Trade(t) = e {
                prints.push(format!("{} {} {}", t.instrument, t.price, t.quantity));
            }
        });
        (sim.trades, prints)
    }

    #[test]
    fn agents_trade_and_the_same_seed_gives_the_same_trades() {
        let (n, a) = run(7, 10);
        assert!(n > 100, "only {n} trades in 10 simulated minutes");
        for inst in ["BTC-USDT", "ETH-USDT", "SOL-USDT", "USDT-USD", "USDC-USDT"] {
            assert!(a.iter().any(|p| p.starts_with(inst)), "no trades on {inst}");
        }
        let (_, b) = run(7, 10);
        assert_eq!(a, b);
        let (_, c) = run(8, 10);
        assert_ne!(a, c);
    }

    #[test]
    fn exchange_prices_follow_the_reference() {
        let start = UnixNanos(1_700_000_000_000_000_000);
        let mut sim =
            Simulation::new(&SimConfig::default(), ExchangeSettings::default(), start, 3).unwrap();
        let mut last = None;
        sim.run_until(UnixNanos(start.0 + 3_600_000_000_000), |_, e| {
            if let ExchangeEvent::Trade(t) = e
                && t.instrument.as_str() == "BTC-USDT"
            {
                last = Some(t.price);
            }
        });
        let btc = InstrumentId::new("BTC-USD");
        let usdt = InstrumentId::new("USDT-USD");
        let fair = i128::from(sim.reference.price(&btc).unwrap().0) * 100_000_000
            / i128::from(sim.reference.price(&usdt).unwrap().0);
        let last = i128::from(last.expect("BTC traded").0);
        let gap_bps = (last - fair).abs() * 10_000 / fair;
        assert!(
            gap_bps < 50,
            "last trade {last} is {gap_bps} bps from fair {fair}"
        );
    }

    #[test]
    fn withdrawn_makers_pull_their_quotes_and_restore_them() {
        let start = UnixNanos(1_700_000_000_000_000_000);
        let config = SimConfig::default();
        let mut sim = Simulation::new(&config, ExchangeSettings::default(), start, 5).unwrap();
        let makers: Vec<AccountId> = config
            .agents
            .iter()
            .filter(|a| matches!(a.kind, AgentKind::MarketMaker { .. }))
            .map(|a| a.account.clone())
            .collect();
        assert!(!makers.is_empty());
        let resting = |sim: &Simulation| {
            makers
                .iter()
                .map(|a| sim.exchange.open_orders(a, None).len())
                .sum::<usize>()
        };
        let minute = 60_000_000_000;
        sim.run_until(UnixNanos(start.0 + 5 * minute), |_, _| {});
        assert!(resting(&sim) > 0, "makers quote");
        sim.population.withdraw_liquidity(true);
        sim.run_until(UnixNanos(start.0 + 7 * minute), |_, _| {});
        assert_eq!(resting(&sim), 0, "withdrawn makers keep no orders");
        sim.population.withdraw_liquidity(false);
        sim.run_until(UnixNanos(start.0 + 9 * minute), |_, _| {});
        assert!(resting(&sim) > 0, "makers quote again");
    }
}
