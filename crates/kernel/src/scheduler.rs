//! The deterministic discrete-event simulator: [`Simulation`], [`Component`] and [`Context`].
//!
//! Events are ordered by `(time, sequence)`, where the sequence number is assigned when the
//! event is scheduled, so simultaneous events run first-in first-out and every run with the
//! same seed and inputs dispatches the same events in the same order. The clock jumps straight
//! to each event's time; nothing sleeps.

use std::any::Any;

use serde::Serialize;
use tradestack_model::{Nanos, UnixNanos};

use crate::clock::SimClock;
use crate::engine::{BROADCAST, Core, Engine};
use crate::error::KernelError;
use crate::log::{EventLog, LogState, encode_postcard};
use crate::rng::DetRng;

/// Index of a component inside one simulation or driver (registration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(pub(crate) usize);

impl ComponentId {
    /// The id the `index`-th registered component will get (ids are registration indices).
    pub const fn from_index(index: usize) -> Self {
        ComponentId(index)
    }

    /// The registration index (0 for the first component).
    pub const fn index(self) -> usize {
        self.0
    }
}

/// Handle to a timer; stays unique even after its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub(crate) index: usize,
    pub(crate) generation: u64,
}

/// Why a run call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No events are left in the queue.
    QueueEmpty,
    /// The requested end time was reached (the clock now reads exactly that time).
    TimeReached,
    /// A component called [`Context::stop`] (or an injector asked the driver to stop).
    Stopped,
}

/// Summary of one run call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// Events delivered during this call (cancelled timers are not counted).
    pub dispatched: u64,
    /// Why the call returned.
    pub reason: StopReason,
}

/// A unit of behaviour driven by events. The same code runs in [`Simulation`] and in
/// [`crate::RealTimeDriver`]; it must take time and randomness only from its [`Context`].
pub trait Component<E>: Any {
    /// Handles one event; `ctx.now()` is the event's time.
    fn on_event(&mut self, event: &E, ctx: &mut Context<'_, E>);

    /// Called once before the first event (or when added to an already started run).
    fn on_start(&mut self, _ctx: &mut Context<'_, E>) {}
}

/// What a component may do while handling an event: read time, draw random numbers,
/// schedule events and timers, and stop the run.
///
/// Scheduling rules: a time earlier than `now()` is clamped to `now()`; negative delays are
/// treated as zero; times saturate at `i64::MAX`. An event scheduled for `now()` runs after
/// everything already queued for `now()`.
pub struct Context<'a, E> {
    core: &'a mut Core<E>,
    me: usize,
}

impl<'a, E> Context<'a, E> {
    #[inline]
    pub(crate) fn new(core: &'a mut Core<E>, me: usize) -> Self {
        Context { core, me }
    }

    /// Current time (the time of the event being handled).
    #[inline]
    pub fn now(&self) -> UnixNanos {
        self.core.now
    }

    /// The id of the component being called.
    #[inline]
    pub fn me(&self) -> ComponentId {
        ComponentId(self.me)
    }

    /// This component's own random stream (forked from the run seed by component index).
    #[inline]
    pub fn rng(&mut self) -> &mut DetRng {
        // Every registered component has a stream, pushed in Engine::add_component.
        &mut self.core.rngs[self.me]
    }

    /// Delivers `event` to every component at time `t`.
    #[inline]
    pub fn schedule_at(&mut self, t: UnixNanos, event: E) {
        self.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` to every component after `delay`.
    #[inline]
    pub fn schedule_after(&mut self, delay: Nanos, event: E) {
        let t = after(self.core.now, delay);
        self.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` only to `target` at time `t`.
    #[inline]
    pub fn send_at(&mut self, target: ComponentId, t: UnixNanos, event: E) {
        self.core.schedule(t, target.0, event);
    }

    /// Delivers `event` only to `target` after `delay`.
    #[inline]
    pub fn send_after(&mut self, target: ComponentId, delay: Nanos, event: E) {
        let t = after(self.core.now, delay);
        self.core.schedule(t, target.0, event);
    }

    /// One-shot timer delivering `event` to this component after `delay`.
    pub fn set_timer(&mut self, delay: Nanos, event: E) -> TimerId {
        let t = after(self.core.now, delay);
        self.core.set_timer(t, 0, self.me, event)
    }

    /// One-shot timer delivering `event` to this component at time `t`.
    pub fn set_timer_at(&mut self, t: UnixNanos, event: E) -> TimerId {
        self.core.set_timer(t, 0, self.me, event)
    }

    /// Timer delivering `event` to this component every `period`, first at `now + period`.
    pub fn set_periodic_timer(&mut self, period: Nanos, event: E) -> Result<TimerId, KernelError> {
        check_period(period)?;
        let t = after(self.core.now, period);
        Ok(self.core.set_timer(t, period.0, self.me, event))
    }

    /// Cancels a timer; returns `false` if it already fired (one-shot) or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.cancel_timer(id)
    }

    /// Whether a timer is still going to fire.
    pub fn is_timer_active(&self, id: TimerId) -> bool {
        self.core.is_timer_active(id)
    }

    /// Ends the current run call once the current event has reached every recipient.
    pub fn stop(&mut self) {
        self.core.stop = true;
    }

    /// Live events and timers waiting in the queue.
    pub fn pending(&self) -> usize {
        self.core.pending()
    }
}

/// `now + delay`, with negative delays treated as zero and saturation at the end of time.
#[inline]
pub(crate) fn after(now: UnixNanos, delay: Nanos) -> UnixNanos {
    UnixNanos(now.0.saturating_add(delay.0.max(0)))
}

/// Rejects periods that would keep a timer firing without time moving forward.
pub(crate) fn check_period(period: Nanos) -> Result<(), KernelError> {
    if period.0 <= 0 {
        return Err(KernelError::NonPositivePeriod(period));
    }
    Ok(())
}

/// Downcasts a boxed component to its concrete type.
pub(crate) fn downcast_ref<E: 'static, C: Component<E>>(c: &dyn Component<E>) -> Option<&C> {
    let any: &dyn Any = c;
    any.downcast_ref::<C>()
}

/// Mutable counterpart of [`downcast_ref`].
pub(crate) fn downcast_mut<E: 'static, C: Component<E>>(
    c: &mut dyn Component<E>,
) -> Option<&mut C> {
    let any: &mut dyn Any = c;
    any.downcast_mut::<C>()
}

/// A deterministic discrete-event simulation over events of type `E`.
///
/// Owns a [`SimClock`], a seeded [`DetRng`], a queue ordered by `(time, seq)` and a list of
/// components. Events scheduled without a target go to every component in registration
/// order; timers set by a component go only to that component; timers set on the
/// `Simulation` itself are broadcast. Scheduling in the past clamps to the current time.
pub struct Simulation<E> {
    engine: Engine<E>,
    clock: SimClock,
    seed: u64,
}

impl<E: 'static> Simulation<E> {
    /// A simulation starting at `start` whose randomness derives entirely from `seed`.
    pub fn new(seed: u64, start: UnixNanos) -> Self {
        Simulation {
            engine: Engine::new(seed, start),
            clock: SimClock::new(start),
            seed,
        }
    }

    /// Registers a component; components receive broadcast events in registration order.
    pub fn add_component<C: Component<E>>(&mut self, component: C) -> ComponentId {
        self.engine.add_component(Box::new(component))
    }

    /// Borrows a registered component as its concrete type.
    pub fn component<C: Component<E>>(&self, id: ComponentId) -> Option<&C> {
        self.engine.component(id).and_then(downcast_ref::<E, C>)
    }

    /// Mutably borrows a registered component as its concrete type.
    pub fn component_mut<C: Component<E>>(&mut self, id: ComponentId) -> Option<&mut C> {
        self.engine.component_mut(id).and_then(downcast_mut::<E, C>)
    }

    /// Number of registered components.
    pub fn component_count(&self) -> usize {
        self.engine.component_count()
    }

    /// Current simulated time.
    pub fn now(&self) -> UnixNanos {
        self.engine.core.now
    }

    /// The simulation's clock, to hand to code that needs a [`crate::Clock`].
    ///
    /// Only the simulation should move it; advancing it from outside desynchronises the run.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// The seed this simulation was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The root random stream, for setup code outside components.
    pub fn rng(&mut self) -> &mut DetRng {
        &mut self.engine.core.root_rng
    }

    /// Delivers `event` to every component at time `t` (clamped to now).
    pub fn schedule_at(&mut self, t: UnixNanos, event: E) {
        self.engine.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` to every component after `delay`.
    pub fn schedule_after(&mut self, delay: Nanos, event: E) {
        let t = after(self.now(), delay);
        self.engine.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` only to `target` at time `t` (clamped to now).
    pub fn send_at(&mut self, target: ComponentId, t: UnixNanos, event: E) {
        self.engine.core.schedule(t, target.0, event);
    }

    /// Delivers `event` only to `target` after `delay`.
    pub fn send_after(&mut self, target: ComponentId, delay: Nanos, event: E) {
        let t = after(self.now(), delay);
        self.engine.core.schedule(t, target.0, event);
    }

    /// One-shot timer broadcasting `event` after `delay`.
    pub fn set_timer(&mut self, delay: Nanos, event: E) -> TimerId {
        let t = after(self.now(), delay);
        self.engine.core.set_timer(t, 0, BROADCAST, event)
    }

    /// Periodic timer broadcasting `event` every `period`, first at `now + period`.
    pub fn set_periodic_timer(&mut self, period: Nanos, event: E) -> Result<TimerId, KernelError> {
        check_period(period)?;
        let t = after(self.now(), period);
        Ok(self.engine.core.set_timer(t, period.0, BROADCAST, event))
    }

    /// Cancels a timer; returns whether it was still active.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.engine.core.cancel_timer(id)
    }

    /// Live events and timers waiting in the queue.
    pub fn pending(&self) -> usize {
        self.engine.core.pending()
    }

    /// Total events delivered since the simulation was created.
    pub fn dispatched(&self) -> u64 {
        self.engine.dispatched
    }

    /// Calls every component's `on_start` (done automatically by the first step or run).
    pub fn start(&mut self) {
        self.engine.start();
    }

    /// Dispatches the next event, if any, and returns its time (stop requests are ignored).
    pub fn step(&mut self) -> Result<Option<UnixNanos>, KernelError> {
        self.engine.start();
        self.engine.core.stop = false;
        let clock = &self.clock;
        let t = self.engine.dispatch_next(i64::MAX, |t| {
            let t = UnixNanos(t);
            clock.advance_to(t);
            t
        })?;
        Ok(t.map(UnixNanos))
    }

    /// Dispatches every event due at or before `until`, then sets the clock to `until`.
    ///
    /// If a component stops the run, the clock stays at the stopping event's time. A time
    /// before now dispatches nothing and leaves the clock alone.
    pub fn run_until(&mut self, until: UnixNanos) -> Result<RunOutcome, KernelError> {
        self.run_inner(Some(until))
    }

    /// [`Simulation::run_until`] `now + duration`.
    pub fn run_for(&mut self, duration: Nanos) -> Result<RunOutcome, KernelError> {
        let until = after(self.now(), duration);
        self.run_inner(Some(until))
    }

    /// Dispatches until the queue is empty or a component stops the run.
    ///
    /// Never returns while a periodic timer is active, unless something calls stop.
    pub fn run_to_completion(&mut self) -> Result<RunOutcome, KernelError> {
        self.run_inner(None)
    }

    /// The shared run loop; `until == None` means no time limit.
    fn run_inner(&mut self, until: Option<UnixNanos>) -> Result<RunOutcome, KernelError> {
        self.engine.start();
        let before = self.engine.dispatched;
        let result = self.dispatch_until(until);
        // A stop request applies to one run call only, whichever way it ended.
        self.engine.core.stop = false;
        let reason = result?;
        if let (StopReason::TimeReached, Some(u)) = (reason, until)
            && u > self.engine.core.now
        {
            self.engine.core.now = u;
            self.clock.advance_to(u);
        }
        Ok(RunOutcome {
            dispatched: self.engine.dispatched - before,
            reason,
        })
    }

    /// The hot loop: jump the clock to each due event and dispatch it.
    fn dispatch_until(&mut self, until: Option<UnixNanos>) -> Result<StopReason, KernelError> {
        // A stop requested in on_start ends the first run immediately.
        if self.engine.core.stop {
            return Ok(StopReason::Stopped);
        }
        let limit = until.map_or(i64::MAX, |u| u.0);
        let clock = &self.clock;
        loop {
            let dispatched = self.engine.dispatch_next(limit, |t| {
                let t = UnixNanos(t);
                clock.advance_to(t);
                t
            })?;
            if dispatched.is_none() {
                return Ok(if until.is_some() {
                    StopReason::TimeReached
                } else {
                    StopReason::QueueEmpty
                });
            }
            if self.engine.core.stop {
                return Ok(StopReason::Stopped);
            }
        }
    }

    /// The event log, if one is attached.
    pub fn event_log(&self) -> Option<&EventLog> {
        self.engine.log.as_ref().map(|l| &l.log)
    }

    /// Detaches and returns the event log; later events are no longer recorded.
    pub fn take_event_log(&mut self) -> Option<EventLog> {
        self.engine.log.take().map(|l| l.log)
    }

    /// SHA-256 of the event log so far, if one is attached.
    pub fn log_hash(&self) -> Option<[u8; 32]> {
        self.event_log().map(EventLog::hash)
    }
}

impl<E: Serialize + 'static> Simulation<E> {
    /// Attaches `log`: from now on every dispatched event is postcard-encoded and recorded.
    pub fn with_event_log(mut self, log: EventLog) -> Self {
        self.set_event_log(log);
        self
    }

    /// Attaches (or replaces) the event log.
    pub fn set_event_log(&mut self, log: EventLog) {
        self.engine.log = Some(LogState {
            log,
            encode: encode_postcard::<E>,
            buf: Vec::with_capacity(64),
        });
    }
}
