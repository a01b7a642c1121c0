//! Machinery shared by [`crate::Simulation`] and [`crate::RealTimeDriver`]: the event queue,
//! the timer table, per-component RNG streams and dispatch. How time advances is left to the
//! two drivers.

use tradestack_model::UnixNanos;

use crate::error::KernelError;
use crate::log::LogState;
use crate::queue::EventQueue;
use crate::rng::DetRng;
use crate::scheduler::{Component, ComponentId, Context, TimerId};

/// Target value meaning "deliver to every component".
pub(crate) const BROADCAST: usize = usize::MAX;

/// Below this many cancelled-but-queued timers the heap is never compacted.
const COMPACT_MIN_STALE: usize = 1024;

/// One queued item; its `(time, seq)` key lives in the [`EventQueue`].
pub(crate) struct Pending<E> {
    target: usize,
    payload: Payload<E>,
}

/// What a queue entry carries.
enum Payload<E> {
    /// A one-off event, owned by the queue.
    Event(E),
    /// A timer; the event lives in the timer table so it can be cancelled or repeated.
    Timer { index: usize, generation: u64 },
}

/// An entry popped from the queue and ready for delivery.
enum Ready<E> {
    /// A one-off event.
    Event(E),
    /// A timer's event, taken out of its slot for the duration of the delivery.
    Timer {
        index: usize,
        generation: u64,
        event: E,
        period: i64,
    },
}

/// A slot in the timer table; `generation` changes whenever the slot is freed, which
/// invalidates any [`TimerId`] and queue entry that still points at the old occupant.
struct TimerSlot<E> {
    generation: u64,
    state: TimerState<E>,
}

/// Whether a timer slot is in use.
enum TimerState<E> {
    Free,
    Active {
        /// `None` only while the timer's event is being delivered.
        event: Option<E>,
        /// Zero for one-shot timers.
        period: i64,
        /// Whether a queue entry for this timer is in the heap (false while firing).
        queued: bool,
    },
}

/// Scheduling state a [`Context`] may touch while components run.
pub(crate) struct Core<E> {
    pub(crate) now: UnixNanos,
    queue: EventQueue<Pending<E>>,
    /// Queue entries of cancelled timers, still in the heap until popped or compacted.
    stale: usize,
    timers: Vec<TimerSlot<E>>,
    free_timers: Vec<usize>,
    /// One independent stream per component, forked from the root by component index.
    pub(crate) rngs: Vec<DetRng>,
    pub(crate) root_rng: DetRng,
    pub(crate) stop: bool,
}

impl<E> Core<E> {
    fn new(seed: u64, now: UnixNanos) -> Self {
        Core {
            now,
            queue: EventQueue::new(),
            stale: 0,
            timers: Vec::new(),
            free_timers: Vec::new(),
            rngs: Vec::new(),
            root_rng: DetRng::new(seed),
            stop: false,
        }
    }

    /// Queues an entry; times before `now` are clamped to `now` (time never runs backwards).
    #[inline]
    fn push(&mut self, time: i64, target: usize, payload: Payload<E>) {
        self.queue
            .push(time.max(self.now.0), Pending { target, payload });
    }

    /// Queues a one-off event for `target` (or [`BROADCAST`]) at `time`.
    #[inline]
    pub(crate) fn schedule(&mut self, time: UnixNanos, target: usize, event: E) {
        self.push(time.0, target, Payload::Event(event));
    }

    /// Creates a timer firing at `time`, then every `period` ns if `period > 0`.
    pub(crate) fn set_timer(
        &mut self,
        time: UnixNanos,
        period: i64,
        target: usize,
        event: E,
    ) -> TimerId {
        let state = TimerState::Active {
            event: Some(event),
            period,
            queued: true,
        };
        let index = match self.free_timers.pop() {
            Some(i) => i,
            None => {
                self.timers.push(TimerSlot {
                    generation: 0,
                    state: TimerState::Free,
                });
                self.timers.len() - 1
            }
        };
        let generation = match self.timers.get_mut(index) {
            Some(slot) => {
                slot.state = state;
                slot.generation
            }
            // Unreachable: the index was just taken from the table or the free list.
            None => 0,
        };
        self.push(time.0, target, Payload::Timer { index, generation });
        TimerId { index, generation }
    }

    /// Cancels a timer; returns whether it was still active.
    pub(crate) fn cancel_timer(&mut self, id: TimerId) -> bool {
        let Some(slot) = self.timers.get_mut(id.index) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        let TimerState::Active { queued, .. } = slot.state else {
            return false;
        };
        if queued {
            // Lazy deletion: the heap entry is skipped when it surfaces.
            self.stale += 1;
        }
        self.free_slot(id.index);
        self.maybe_compact();
        true
    }

    /// Whether `id` refers to a timer that has not fired (one-shot) or been cancelled.
    pub(crate) fn is_timer_active(&self, id: TimerId) -> bool {
        self.timers.get(id.index).is_some_and(|s| {
            s.generation == id.generation && matches!(s.state, TimerState::Active { .. })
        })
    }

    fn free_slot(&mut self, index: usize) {
        if let Some(slot) = self.timers.get_mut(index) {
            slot.state = TimerState::Free;
            slot.generation = slot.generation.wrapping_add(1);
            self.free_timers.push(index);
        }
    }

    /// Drops cancelled entries when they make up most of the heap, so mass cancellation
    /// (e.g. order timeouts) cannot grow memory without bound. Order is unaffected.
    fn maybe_compact(&mut self) {
        if self.stale >= COMPACT_MIN_STALE && self.stale * 2 > self.queue.len() {
            let timers = &self.timers;
            self.queue.retain(|p| match p.payload {
                Payload::Event(_) => true,
                Payload::Timer { index, generation } => timer_live(timers, index, generation),
            });
            self.stale = 0;
        }
    }

    /// Live (not cancelled) entries in the queue.
    pub(crate) fn pending(&self) -> usize {
        self.queue.len().saturating_sub(self.stale)
    }
}

/// Whether a queue entry for timer (`index`, `generation`) should still fire.
#[inline]
fn timer_live<E>(timers: &[TimerSlot<E>], index: usize, generation: u64) -> bool {
    timers
        .get(index)
        .is_some_and(|s| s.generation == generation && matches!(s.state, TimerState::Active { .. }))
}

/// Components plus scheduling state plus optional log: everything except the clock policy.
pub(crate) struct Engine<E> {
    pub(crate) core: Core<E>,
    components: Vec<Box<dyn Component<E>>>,
    pub(crate) log: Option<LogState<E>>,
    started: bool,
    pub(crate) dispatched: u64,
}

impl<E: 'static> Engine<E> {
    pub(crate) fn new(seed: u64, now: UnixNanos) -> Self {
        Engine {
            core: Core::new(seed, now),
            components: Vec::new(),
            log: None,
            started: false,
            dispatched: 0,
        }
    }

    /// Registers a component; it gets the RNG stream `root.fork(index)`.
    pub(crate) fn add_component(&mut self, component: Box<dyn Component<E>>) -> ComponentId {
        let index = self.components.len();
        self.components.push(component);
        self.core.rngs.push(self.core.root_rng.fork(index as u64));
        if self.started {
            self.start_one(index);
        }
        ComponentId(index)
    }

    pub(crate) fn component(&self, id: ComponentId) -> Option<&dyn Component<E>> {
        self.components.get(id.0).map(|c| &**c)
    }

    pub(crate) fn component_mut(&mut self, id: ComponentId) -> Option<&mut dyn Component<E>> {
        match self.components.get_mut(id.0) {
            Some(c) => Some(&mut **c),
            None => None,
        }
    }

    pub(crate) fn component_count(&self) -> usize {
        self.components.len()
    }

    /// Calls `on_start` on every component once, in registration order.
    pub(crate) fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        for index in 0..self.components.len() {
            self.start_one(index);
        }
    }

    fn start_one(&mut self, index: usize) {
        if let Some(c) = self.components.get_mut(index) {
            c.on_start(&mut Context::new(&mut self.core, index));
        }
    }

    /// Time of the earliest live entry, discarding cancelled timers that reached the top
    /// (the real-time driver needs it to know how long to wait).
    #[inline]
    pub(crate) fn peek_live(&mut self) -> Option<i64> {
        loop {
            let (time, top) = self.core.queue.peek()?;
            let live = match top.payload {
                Payload::Event(_) => true,
                Payload::Timer { index, generation } => {
                    timer_live(&self.core.timers, index, generation)
                }
            };
            if live {
                return Some(time);
            }
            self.core.queue.pop();
            self.core.stale = self.core.stale.saturating_sub(1);
        }
    }

    /// Pops and delivers the earliest live entry if it is due at or before `limit`.
    ///
    /// `clock_at(event_time)` moves the driver's clock and returns the `now` components see;
    /// it runs before delivery so any clock handle a component holds is already current.
    /// Returns the event time, or `None` if nothing is due.
    #[inline]
    pub(crate) fn dispatch_next(
        &mut self,
        limit: i64,
        clock_at: impl FnOnce(i64) -> UnixNanos,
    ) -> Result<Option<i64>, KernelError> {
        // Peeking at the heap node alone (no payload access) keeps the common path short;
        // liveness of timers is checked after the pop, where the payload is in hand anyway.
        let (time, seq, target, ready) = loop {
            match self.core.queue.peek_time() {
                Some(t) if t <= limit => {}
                _ => return Ok(None),
            }
            let Some((time, seq, Pending { target, payload })) = self.core.queue.pop() else {
                return Ok(None);
            };
            match payload {
                Payload::Event(event) => break (time, seq, target, Ready::Event(event)),
                Payload::Timer { index, generation } => match self.take_timer(index, generation) {
                    Some((event, period)) => {
                        let timer = Ready::Timer {
                            index,
                            generation,
                            event,
                            period,
                        };
                        break (time, seq, target, timer);
                    }
                    // Cancelled: its stale entry is gone now.
                    None => self.core.stale = self.core.stale.saturating_sub(1),
                },
            }
        };
        let now = clock_at(time);
        if now > self.core.now {
            self.core.now = now;
        }
        self.dispatched += 1;
        match ready {
            Ready::Event(event) => self.deliver(time, seq, target, &event)?,
            Ready::Timer {
                index,
                generation,
                event,
                period,
            } => {
                let result = self.deliver(time, seq, target, &event);
                // Re-arm or free the timer even if logging failed, so the table stays consistent.
                self.finish_timer(index, generation, event, period, time, target);
                result?;
            }
        }
        Ok(Some(time))
    }

    /// Takes a live timer's event out of its slot for delivery, with its period.
    #[inline]
    fn take_timer(&mut self, index: usize, generation: u64) -> Option<(E, i64)> {
        match self.core.timers.get_mut(index) {
            Some(TimerSlot {
                generation: g,
                state:
                    TimerState::Active {
                        event,
                        period,
                        queued,
                    },
            }) if *g == generation => {
                *queued = false;
                event.take().map(|e| (e, *period))
            }
            _ => None,
        }
    }

    /// After a timer fired: re-arm it if periodic and not cancelled meanwhile, else free it.
    fn finish_timer(
        &mut self,
        index: usize,
        generation: u64,
        event: E,
        period: i64,
        fired_at: i64,
        target: usize,
    ) {
        let core = &mut self.core;
        let Some(slot) = core.timers.get_mut(index) else {
            return;
        };
        if slot.generation != generation {
            // Cancelled (and maybe reused) during delivery: the event is simply dropped.
            return;
        }
        let TimerState::Active {
            event: stored,
            queued,
            ..
        } = &mut slot.state
        else {
            return;
        };
        // Next firing is computed from the scheduled time, not from `now`, so periods don't drift.
        match fired_at.checked_add(period) {
            Some(next) if period > 0 => {
                *stored = Some(event);
                *queued = true;
                core.push(next, target, Payload::Timer { index, generation });
            }
            _ => core.free_slot(index),
        }
    }

    /// Logs the event (if logging is on) and hands it to its target or to every component.
    #[inline]
    fn deliver(
        &mut self,
        time: i64,
        seq: u64,
        target: usize,
        event: &E,
    ) -> Result<(), KernelError> {
        if let Some(log) = &mut self.log {
            let t = (target != BROADCAST).then_some(target as u64);
            log.record(UnixNanos(time), seq, t, event)?;
        }
        let core = &mut self.core;
        if target == BROADCAST {
            for (index, c) in self.components.iter_mut().enumerate() {
                c.on_event(event, &mut Context::new(core, index));
            }
        } else if let Some(c) = self.components.get_mut(target) {
            // An id from another simulation is out of range: the event reaches no one.
            c.on_event(event, &mut Context::new(core, target));
        }
        Ok(())
    }
}
