//! Deterministic feed disruption: turns a clean, time-ordered stream of ticks into the kind of
//! stream a real feed delivers on a bad day, and logs every fault it injected.
//!
//! Faults, each driven by its own forked [`DetRng`] stream (so enabling one fault never shifts
//! the random numbers of another) and applied in this order to every input tick:
//!
//! 1. **Gaps**: ticks whose time is inside a gap window are dropped.
//! 2. **Stale prices**: inside a stale window a tick keeps its own timestamp but carries the
//!    market content of the last tick delivered before the window (a frozen feed).
//! 3. **Corruption**: with a probability, prices become ×10, zero, negative or garbled bits.
//! 4. **Latency**: delivery time is `ts + base + spike extras`, never earlier than the previous
//!    delivery (an ordered transport: a spike delays everything behind it too).
//! 5. **Duplicates**: with a probability the tick is delivered twice.
//! 6. **Reordering**: with a probability the tick is held back and delivered after the next
//!    1..=`max_distance` ticks (at the delivery time of the tick that releases it).
//!
//! Windows are either scheduled (`windows`, half-open `[start, end)` on the tick's time) or
//! random: at each tick outside a window, one starts with the configured probability and lasts
//! `duration` from that tick's time. Every tick gets a sequence number (`seq`, input order);
//! each delivery and each [`DisruptionRecord`] carries it, so an auditor can correlate what was
//! received with what was done.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tradestack_kernel::DetRng;
use tradestack_model::{Nanos, Price, Quote, Trade, UnixNanos};

/// A timestamped market-data tick the disruptor can manipulate.
pub trait Tick: Clone {
    /// The tick's own (venue) time.
    fn ts(&self) -> UnixNanos;
    /// Applies `f` to every price the tick carries.
    fn map_prices(&mut self, f: &mut dyn FnMut(Price) -> Price);
    /// Replaces the market content with `frozen`'s, keeping this tick's identity and time.
    fn freeze_like(&mut self, frozen: &Self);
    /// The tick's main price, for the audit log (a trade's price, a quote's bid).
    fn main_price(&self) -> Price;
}

impl Tick for Trade {
    fn ts(&self) -> UnixNanos {
        self.ts
    }
    fn map_prices(&mut self, f: &mut dyn FnMut(Price) -> Price) {
        self.price = f(self.price);
    }
    fn freeze_like(&mut self, frozen: &Self) {
        self.price = frozen.price;
        self.quantity = frozen.quantity;
        self.aggressor = frozen.aggressor;
    }
    fn main_price(&self) -> Price {
        self.price
    }
}

impl Tick for Quote {
    fn ts(&self) -> UnixNanos {
        self.ts
    }
    fn map_prices(&mut self, f: &mut dyn FnMut(Price) -> Price) {
        self.bid = f(self.bid);
        self.ask = f(self.ask);
    }
    fn freeze_like(&mut self, frozen: &Self) {
        self.bid = frozen.bid;
        self.bid_size = frozen.bid_size;
        self.ask = frozen.ask;
        self.ask_size = frozen.ask_size;
    }
    fn main_price(&self) -> Price {
        self.bid
    }
}

/// A half-open time window `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First nanosecond inside.
    pub start: UnixNanos,
    /// First nanosecond after.
    pub end: UnixNanos,
}

impl Window {
    /// True when `t` is inside.
    pub fn contains(&self, t: UnixNanos) -> bool {
        self.start <= t && t < self.end
    }
}

/// A fault active during windows: scheduled ones and randomly started ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowFault {
    /// Per tick outside a window, the chance that a random window starts at it.
    pub probability: f64,
    /// Length of a random window.
    pub duration: Nanos,
    /// Scheduled windows.
    pub windows: Vec<Window>,
}

/// Delivery latency: a constant plus spikes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyFault {
    /// Latency added to every tick.
    pub base: Nanos,
    /// Extra latency while a spike is on.
    pub extra: Nanos,
    /// When spikes are on.
    pub spikes: WindowFault,
}

/// Holding ticks back so later ones overtake them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReorderFault {
    /// Per tick, the chance it is held back.
    pub probability: f64,
    /// At most this many later ticks overtake it (>= 1 when enabled).
    pub max_distance: u32,
}

/// How a corrupted price is mangled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptionKind {
    /// Ten times the price (a misplaced decimal point).
    TimesTen,
    /// Zero.
    Zero,
    /// The negated price (at least one unit of the last place below zero).
    Negative,
    /// Random low bits flipped.
    Garbled,
    /// Moved `shift_bps` basis points up or down (a coin flip per tick):
    /// plausible-looking, so only a comparison with a reference catches it.
    Shifted,
}

/// Corrupting prices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorruptFault {
    /// Per tick, the chance its prices are corrupted.
    pub probability: f64,
    /// The kinds to choose from, uniformly (non-empty when enabled).
    pub kinds: Vec<CorruptionKind>,
    /// How far `shifted` moves a price, in basis points (1 to 9,999).
    pub shift_bps: i64,
}

/// All fault settings; the default injects nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisruptionConfig {
    /// Dropped ticks.
    pub gaps: WindowFault,
    /// Frozen prices.
    pub stale: WindowFault,
    /// Corrupted prices.
    pub corrupt: CorruptFault,
    /// Delivery latency and spikes.
    pub latency: LatencyFault,
    /// Per tick, the chance it is delivered twice.
    pub duplicate_probability: f64,
    /// Out-of-order delivery.
    pub reorder: ReorderFault,
}

/// Why a disruption configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DisruptionError {
    /// A probability outside [0, 1].
    #[error("`{0}` must be a probability in [0, 1]")]
    Probability(&'static str),
    /// A negative duration or an inverted window.
    #[error("`{0}` must not be negative (and windows must not end before they start)")]
    Negative(&'static str),
    /// A fault enabled without the parameters it needs.
    #[error("`{0}` is enabled but {1}")]
    Incomplete(&'static str, &'static str),
}

impl DisruptionConfig {
    /// Checks probabilities, durations and windows.
    pub fn validate(&self) -> Result<(), DisruptionError> {
        let prob = |name, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(DisruptionError::Probability(name))
            }
        };
        let window_fault = |name, w: &WindowFault| {
            prob(name, w.probability)?;
            if w.duration.0 < 0 || w.windows.iter().any(|x| x.end < x.start) {
                return Err(DisruptionError::Negative(name));
            }
            Ok(())
        };
        window_fault("gaps", &self.gaps)?;
        window_fault("stale", &self.stale)?;
        window_fault("latency.spikes", &self.latency.spikes)?;
        if self.latency.base.0 < 0 || self.latency.extra.0 < 0 {
            return Err(DisruptionError::Negative("latency"));
        }
        prob("corrupt.probability", self.corrupt.probability)?;
        if self.corrupt.probability > 0.0 && self.corrupt.kinds.is_empty() {
            return Err(DisruptionError::Incomplete("corrupt", "lists no kinds"));
        }
        if self.corrupt.kinds.contains(&CorruptionKind::Shifted)
            && !(1..10_000).contains(&self.corrupt.shift_bps)
        {
            return Err(DisruptionError::Incomplete(
                "corrupt.shift_bps",
                "must be 1 to 9999 when kinds lists shifted",
            ));
        }
        prob("duplicate_probability", self.duplicate_probability)?;
        prob("reorder.probability", self.reorder.probability)?;
        if self.reorder.probability > 0.0 && self.reorder.max_distance == 0 {
            return Err(DisruptionError::Incomplete("reorder", "max_distance is 0"));
        }
        Ok(())
    }
}

/// What was done to one input tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Dropped inside this gap window.
    Dropped {
        /// The gap.
        window: Window,
    },
    /// Market content replaced by that of input tick `frozen_seq`.
    Stale {
        /// The tick whose content was repeated.
        frozen_seq: u64,
    },
    /// Prices corrupted; `before`/`after` are the main price.
    Corrupted {
        /// How.
        kind: CorruptionKind,
        /// Main price before.
        before: Price,
        /// Main price after.
        after: Price,
    },
    /// Delivery delayed by a latency spike (on top of the base latency).
    Delayed {
        /// The spike's extra latency.
        extra: Nanos,
    },
    /// Delivered twice.
    Duplicated,
    /// Held back; this many later input ticks were delivered before it.
    Reordered {
        /// The number of distinct later input ticks delivered before it.
        overtaken_by: u32,
    },
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisruptionRecord {
    /// The input tick's sequence number (0-based input order).
    pub seq: u64,
    /// The input tick's own time.
    pub source_ts: UnixNanos,
    /// What was done.
    pub action: Action,
}

/// A tick as delivered to the consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered<T> {
    /// The input tick's sequence number.
    pub seq: u64,
    /// The (possibly altered) tick.
    pub tick: T,
    /// When the consumer receives it; never decreases along the output.
    pub deliver_at: UnixNanos,
    /// True for the second copy of a duplicated tick.
    pub duplicate: bool,
}

/// A tick held back for reordering.
#[derive(Clone, Debug)]
struct Held<T> {
    items: Vec<Delivered<T>>,
    /// Deliveries still to let pass.
    remaining: u32,
    /// Deliveries that did pass.
    overtaken_by: u32,
    source_ts: UnixNanos,
}

/// Per-fault random streams (fork ids are fixed so configurations stay comparable).
#[derive(Clone, Debug)]
struct Streams {
    gaps: DetRng,
    stale: DetRng,
    corrupt: DetRng,
    spikes: DetRng,
    duplicate: DetRng,
    reorder: DetRng,
}

/// The random-window state of one window fault.
#[derive(Clone, Debug, Default)]
struct WindowState {
    current: Option<Window>,
}

impl WindowState {
    /// The window `t` falls in, if any, possibly starting a random one at `t`.
    fn check(&mut self, fault: &WindowFault, rng: &mut DetRng, t: UnixNanos) -> Option<Window> {
        if let Some(w) = fault.windows.iter().find(|w| w.contains(t)) {
            return Some(*w);
        }
        if let Some(w) = self.current.filter(|w| w.contains(t)) {
            return Some(w);
        }
        if fault.probability > 0.0 && rng.next_f64() < fault.probability {
            let w = Window {
                start: t,
                end: t + fault.duration,
            };
            self.current = Some(w);
            // A zero-length window still covers the tick that started it.
            return Some(w);
        }
        None
    }
}

/// The deterministic feed-fault injector (see the module docs).
#[derive(Clone, Debug)]
pub struct Disruptor<T> {
    config: DisruptionConfig,
    rng: Streams,
    next_seq: u64,
    gap: WindowState,
    stale: WindowState,
    spike: WindowState,
    /// The last tick delivered unfrozen, the source of stale content.
    last_fresh: Option<(u64, T)>,
    last_deliver: UnixNanos,
    held: VecDeque<Held<T>>,
    log: Vec<DisruptionRecord>,
}

impl<T: Tick> Disruptor<T> {
    /// A disruptor whose random streams are forked from `rng`.
    pub fn new(config: DisruptionConfig, rng: &DetRng) -> Result<Self, DisruptionError> {
        config.validate()?;
        Ok(Disruptor {
            config,
            rng: Streams {
                gaps: rng.fork(1),
                stale: rng.fork(2),
                corrupt: rng.fork(3),
                spikes: rng.fork(4),
                duplicate: rng.fork(5),
                reorder: rng.fork(6),
            },
            next_seq: 0,
            gap: WindowState::default(),
            stale: WindowState::default(),
            spike: WindowState::default(),
            last_fresh: None,
            last_deliver: UnixNanos(i64::MIN),
            held: VecDeque::new(),
            log: Vec::new(),
        })
    }

    /// Runs a whole stream through a fresh disruptor: deliveries and the audit log.
    pub fn run(
        config: DisruptionConfig,
        rng: &DetRng,
        ticks: impl IntoIterator<Item = T>,
    ) -> Result<(Vec<Delivered<T>>, Vec<DisruptionRecord>), DisruptionError> {
        let mut d = Disruptor::new(config, rng)?;
        let mut out = Vec::new();
        for t in ticks {
            out.extend(d.push(t));
        }
        out.extend(d.finish());
        Ok((out, d.take_log()))
    }

    /// The audit log so far.
    pub fn log(&self) -> &[DisruptionRecord] {
        &self.log
    }

    /// Takes the audit log so far, leaving it empty.
    pub fn take_log(&mut self) -> Vec<DisruptionRecord> {
        std::mem::take(&mut self.log)
    }

    fn record(&mut self, seq: u64, source_ts: UnixNanos, action: Action) {
        self.log.push(DisruptionRecord {
            seq,
            source_ts,
            action,
        });
    }

    /// Feeds the next input tick (in time order); returns what is delivered now.
    pub fn push(&mut self, mut tick: T) -> Vec<Delivered<T>> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let ts = tick.ts();

        if let Some(window) = self.gap.check(&self.config.gaps, &mut self.rng.gaps, ts) {
            self.record(seq, ts, Action::Dropped { window });
            return Vec::new();
        }

        let frozen = self
            .stale
            .check(&self.config.stale, &mut self.rng.stale, ts)
            .and(self.last_fresh.as_ref().map(|(s, t)| (*s, t.clone())));
        match frozen {
            Some((frozen_seq, source)) => {
                tick.freeze_like(&source);
                self.record(seq, ts, Action::Stale { frozen_seq });
            }
            None => self.last_fresh = Some((seq, tick.clone())),
        }

        let corrupt = &self.config.corrupt;
        if corrupt.probability > 0.0 && self.rng.corrupt.next_f64() < corrupt.probability {
            let kind = corrupt.kinds[self.rng.corrupt.gen_range(0..corrupt.kinds.len())];
            let before = tick.main_price();
            let rng = &mut self.rng.corrupt;
            let shift = if kind == CorruptionKind::Shifted && rng.gen_range(0u64..2) == 0 {
                -corrupt.shift_bps
            } else {
                corrupt.shift_bps
            };
            tick.map_prices(&mut |p| corrupt_price(p, kind, shift, rng));
            let after = tick.main_price();
            self.record(
                seq,
                ts,
                Action::Corrupted {
                    kind,
                    before,
                    after,
                },
            );
        }

        let latency = &self.config.latency;
        let spiking = self
            .spike
            .check(&latency.spikes, &mut self.rng.spikes, ts)
            .is_some();
        let extra = if spiking { latency.extra } else { Nanos::ZERO };
        let deliver_at = (ts + latency.base + extra).max(self.last_deliver);
        if spiking && extra.0 > 0 {
            self.record(seq, ts, Action::Delayed { extra });
        }

        let p_dup = self.config.duplicate_probability;
        let duplicated = p_dup > 0.0 && self.rng.duplicate.next_f64() < p_dup;
        let mut items = vec![Delivered {
            seq,
            tick: tick.clone(),
            deliver_at,
            duplicate: false,
        }];
        if duplicated {
            self.record(seq, ts, Action::Duplicated);
            items.push(Delivered {
                seq,
                tick,
                deliver_at,
                duplicate: true,
            });
        }

        let reorder = &self.config.reorder;
        if reorder.probability > 0.0 && self.rng.reorder.next_f64() < reorder.probability {
            let distance = self.rng.reorder.gen_range(1..reorder.max_distance + 1);
            self.held.push_back(Held {
                items,
                remaining: distance,
                overtaken_by: 0,
                source_ts: ts,
            });
            return Vec::new();
        }
        let mut out = Vec::new();
        self.deliver(items, &mut out);
        out
    }

    /// Emits `items` and releases held ticks whose countdown they complete.
    fn deliver(&mut self, items: Vec<Delivered<T>>, out: &mut Vec<Delivered<T>>) {
        let Some(at) = items.first().map(|d| d.deliver_at) else {
            return;
        };
        self.last_deliver = at;
        out.extend(items);
        for h in &mut self.held {
            h.remaining -= 1;
            h.overtaken_by += 1;
        }
        // Release, in the order they were held, every tick whose countdown is over.
        while let Some(pos) = self.held.iter().position(|h| h.remaining == 0) {
            let h = self.held.remove(pos).expect("position is valid");
            self.release(h, at, out);
        }
    }

    fn release(&mut self, h: Held<T>, at: UnixNanos, out: &mut Vec<Delivered<T>>) {
        let seq = h.items[0].seq;
        self.record(
            seq,
            h.source_ts,
            Action::Reordered {
                overtaken_by: h.overtaken_by,
            },
        );
        // Still-held earlier ticks are overtaken by this one too.
        for other in &mut self.held {
            if other.items[0].seq < seq {
                other.overtaken_by += 1;
            }
        }
        // Never earlier than its own (possibly spiked) delivery time, never before the last one.
        let at = at.max(self.last_deliver).max(h.items[0].deliver_at);
        self.last_deliver = at;
        out.extend(h.items.into_iter().map(|mut d| {
            d.deliver_at = at;
            d
        }));
    }

    /// Ends the stream: releases every tick still held back.
    pub fn finish(&mut self) -> Vec<Delivered<T>> {
        let mut out = Vec::new();
        while let Some(h) = self.held.pop_front() {
            let at = self.last_deliver;
            self.release(h, at, &mut out);
        }
        out
    }
}

/// Mangles one price.
fn corrupt_price(p: Price, kind: CorruptionKind, shift_bps: i64, rng: &mut DetRng) -> Price {
    match kind {
        CorruptionKind::Shifted => {
            let moved = i128::from(p.raw()) * i128::from(10_000 + shift_bps) / 10_000;
            Price::from_raw(i64::try_from(moved).unwrap_or(i64::MAX))
        }
        CorruptionKind::TimesTen => Price::from_raw(p.raw().saturating_mul(10)),
        CorruptionKind::Zero => Price::ZERO,
        CorruptionKind::Negative => Price::from_raw(-p.raw().saturating_abs().max(1)),
        CorruptionKind::Garbled => {
            // Flip 1..=8 random bits among the low 48, so the value changes but stays plausible-
            // looking in magnitude (the way a bad byte in a wire message does).
            let mut raw = p.raw();
            for _ in 0..rng.gen_range(1u64..=8) {
                raw ^= 1i64 << rng.gen_range(0u64..48);
            }
            // Flips can cancel out; a corrupted price must differ.
            if raw == p.raw() {
                raw ^= 1;
            }
            Price::from_raw(raw)
        }
    }
}

#[cfg(test)]
mod tests;
