//! [`RealTimeDriver`]: runs the same [`Component`]s against the wall clock.
//!
//! Instead of jumping the clock, the driver blocks until the next event is due. While
//! blocked it listens on a channel, so other threads can feed events in through an
//! [`Injector`] (market data, user commands) and wake it early. Nothing here is
//! deterministic, by nature; the component code is the same as in simulation.
//!
//! Timing precision is that of the OS timed wait (typically tens of microseconds late);
//! components see the real time of dispatch in [`crate::Context::now`], which is never earlier
//! than the event's scheduled time and never moves backwards, even if the wall clock does.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};

use serde::Serialize;
use tradestack_model::{Nanos, UnixNanos};

use crate::clock::{Clock, RealClock};
use crate::engine::{BROADCAST, Engine};
use crate::error::KernelError;
use crate::log::{EventLog, LogState, encode_postcard};
use crate::scheduler::{
    Component, ComponentId, RunOutcome, StopReason, TimerId, after, check_period, downcast_mut,
    downcast_ref,
};

/// A message from another thread to the driver.
enum Inbound<E> {
    Event { target: usize, event: E },
    Stop,
}

/// Thread-safe handle for feeding events into a [`RealTimeDriver`] from other threads.
pub struct Injector<E> {
    tx: Sender<Inbound<E>>,
}

impl<E> Clone for Injector<E> {
    fn clone(&self) -> Self {
        Injector {
            tx: self.tx.clone(),
        }
    }
}

impl<E> Injector<E> {
    /// Queues `event` for every component, stamped with the time the driver receives it.
    pub fn send(&self, event: E) -> Result<(), KernelError> {
        self.tx
            .send(Inbound::Event {
                target: BROADCAST,
                event,
            })
            .map_err(|_| KernelError::DriverGone)
    }

    /// Queues `event` for one component only.
    pub fn send_to(&self, target: ComponentId, event: E) -> Result<(), KernelError> {
        self.tx
            .send(Inbound::Event {
                target: target.0,
                event,
            })
            .map_err(|_| KernelError::DriverGone)
    }

    /// Asks the driver to return from its current (or next) run call as soon as it receives
    /// this; events already received but not yet dispatched stay queued for the next run.
    pub fn stop(&self) -> Result<(), KernelError> {
        self.tx
            .send(Inbound::Stop)
            .map_err(|_| KernelError::DriverGone)
    }
}

/// Runs components in real time: same queue, timers and dispatch as [`crate::Simulation`],
/// but waits for the wall clock instead of jumping it.
///
/// Components need not be `Send`, so build the driver on the thread that will run it and
/// talk to it from elsewhere through an [`Injector`].
pub struct RealTimeDriver<E> {
    engine: Engine<E>,
    clock: Arc<dyn Clock>,
    tx: Sender<Inbound<E>>,
    rx: Receiver<Inbound<E>>,
}

impl<E: 'static> RealTimeDriver<E> {
    /// A driver on the wall clock; `seed` feeds the components' random streams.
    pub fn new(seed: u64) -> Self {
        Self::with_clock(seed, Arc::new(RealClock))
    }

    /// A driver on any clock that advances by itself (e.g. a shifted or scaled wall clock).
    pub fn with_clock(seed: u64, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel();
        RealTimeDriver {
            engine: Engine::new(seed, clock.now()),
            clock,
            tx,
            rx,
        }
    }

    /// A handle other threads can use to send events or stop the driver.
    pub fn injector(&self) -> Injector<E> {
        Injector {
            tx: self.tx.clone(),
        }
    }

    /// Registers a component; components receive broadcast events in registration order.
    pub fn add_component<C: Component<E>>(&mut self, component: C) -> ComponentId {
        self.sync_now();
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

    /// The driver's notion of now: the clock reading, never earlier than a previous one.
    pub fn now(&mut self) -> UnixNanos {
        self.sync_now()
    }

    /// Delivers `event` to every component at time `t` (clamped to now).
    pub fn schedule_at(&mut self, t: UnixNanos, event: E) {
        self.sync_now();
        self.engine.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` to every component after `delay`.
    pub fn schedule_after(&mut self, delay: Nanos, event: E) {
        let t = after(self.sync_now(), delay);
        self.engine.core.schedule(t, BROADCAST, event);
    }

    /// Delivers `event` only to `target` after `delay`.
    pub fn send_after(&mut self, target: ComponentId, delay: Nanos, event: E) {
        let t = after(self.sync_now(), delay);
        self.engine.core.schedule(t, target.0, event);
    }

    /// One-shot timer broadcasting `event` after `delay`.
    pub fn set_timer(&mut self, delay: Nanos, event: E) -> TimerId {
        let t = after(self.sync_now(), delay);
        self.engine.core.set_timer(t, 0, BROADCAST, event)
    }

    /// Periodic timer broadcasting `event` every `period`, first at `now + period`.
    pub fn set_periodic_timer(&mut self, period: Nanos, event: E) -> Result<TimerId, KernelError> {
        check_period(period)?;
        let t = after(self.sync_now(), period);
        Ok(self.engine.core.set_timer(t, period.0, BROADCAST, event))
    }

    /// Cancels a timer; returns whether it was still active.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.engine.core.cancel_timer(id)
    }

    /// Live events and timers waiting in the queue (injected events not yet received excluded).
    pub fn pending(&self) -> usize {
        self.engine.core.pending()
    }

    /// Total events delivered since the driver was created.
    pub fn dispatched(&self) -> u64 {
        self.engine.dispatched
    }

    /// Runs until the wall clock reaches `until`, dispatching events as they fall due.
    pub fn run_until(&mut self, until: UnixNanos) -> Result<RunOutcome, KernelError> {
        self.run_inner(Some(until))
    }

    /// [`RealTimeDriver::run_until`] `now + duration`.
    pub fn run_for(&mut self, duration: Nanos) -> Result<RunOutcome, KernelError> {
        let until = after(self.sync_now(), duration);
        self.run_inner(Some(until))
    }

    /// Runs until the queue is empty (injected events that already arrived included) or stop.
    pub fn run_to_completion(&mut self) -> Result<RunOutcome, KernelError> {
        self.run_inner(None)
    }

    /// The event log, if one is attached.
    pub fn event_log(&self) -> Option<&EventLog> {
        self.engine.log.as_ref().map(|l| &l.log)
    }

    /// SHA-256 of the event log so far, if one is attached.
    pub fn log_hash(&self) -> Option<[u8; 32]> {
        self.event_log().map(EventLog::hash)
    }

    /// Reads the clock and moves the engine's `now` forward to it (never backwards).
    fn sync_now(&mut self) -> UnixNanos {
        let t = self.clock.now();
        if t > self.engine.core.now {
            self.engine.core.now = t;
        }
        self.engine.core.now
    }

    /// Applies one inbound message; returns `true` for a stop request.
    fn accept(&mut self, msg: Inbound<E>) -> bool {
        match msg {
            Inbound::Event { target, event } => {
                let now = self.sync_now();
                self.engine.core.schedule(now, target, event);
                false
            }
            Inbound::Stop => true,
        }
    }

    /// Blocks for at most `wait`, handling one inbound message if it arrives; `true` = stop.
    fn wait(&mut self, wait: Nanos) -> bool {
        match self.rx.recv_timeout(wait.to_std()) {
            Ok(msg) => self.accept(msg),
            // Disconnection cannot happen (we hold a sender); treat it like a timeout.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Shared run loop; `until == None` means run until the queue is empty.
    fn run_inner(&mut self, until: Option<UnixNanos>) -> Result<RunOutcome, KernelError> {
        self.sync_now();
        self.engine.start();
        let before = self.engine.dispatched;
        let result = self.dispatch_until(until);
        // A stop request applies to one run call only, whichever way it ended.
        self.engine.core.stop = false;
        Ok(RunOutcome {
            dispatched: self.engine.dispatched - before,
            reason: result?,
        })
    }

    /// Dispatches due events, blocking (on the inbound channel) until the next one is due.
    fn dispatch_until(&mut self, until: Option<UnixNanos>) -> Result<StopReason, KernelError> {
        loop {
            if self.engine.core.stop {
                return Ok(StopReason::Stopped);
            }
            // Take in everything that arrived, without blocking, before looking at the queue.
            let mut stop = false;
            while let Ok(msg) = self.rx.try_recv() {
                stop |= self.accept(msg);
            }
            if stop {
                return Ok(StopReason::Stopped);
            }
            let now = self.sync_now();
            match self.engine.peek_live() {
                Some(t) if until.is_none_or(|u| t <= u.0) => {
                    if t <= now.0 {
                        self.engine.dispatch_next(now.0, |_| now)?;
                    } else if self.wait(Nanos(t.saturating_sub(now.0))) {
                        return Ok(StopReason::Stopped);
                    }
                }
                _ => match until {
                    None => return Ok(StopReason::QueueEmpty),
                    Some(u) if now >= u => return Ok(StopReason::TimeReached),
                    Some(u) => {
                        if self.wait(Nanos(u.0.saturating_sub(now.0))) {
                            return Ok(StopReason::Stopped);
                        }
                    }
                },
            }
        }
    }
}

impl<E: Serialize + 'static> RealTimeDriver<E> {
    /// Attaches (or replaces) the event log; the hash of a real-time run is not reproducible,
    /// but the bytes are useful as a journal.
    pub fn set_event_log(&mut self, log: EventLog) {
        self.engine.log = Some(LogState {
            log,
            encode: encode_postcard::<E>,
            buf: Vec::with_capacity(64),
        });
    }
}
