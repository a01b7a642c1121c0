//! Same seed, same inputs => byte-identical event log; different seed => different log.

use serde::Serialize;
use tradestack_kernel::{
    Component, ComponentId, Context, EventLog, Nanos, Simulation, StopReason, UnixNanos,
};

/// Event type for the market-ish toy world.
#[derive(Clone, Debug, Serialize)]
enum Ev {
    /// A price tick (integer ticks, never f64).
    Tick { px: i64, qty: u64 },
    /// An order from a trader to the venue.
    Order { trader: u32, id: u64, px: i64 },
    /// A fill back to a trader.
    Fill { id: u64, px: i64 },
    /// A trader's own wake-up timer.
    Wake(u32),
}

/// Emits ticks with random gaps and random prices.
struct Feed {
    px: i64,
}

impl Component<Ev> for Feed {
    fn on_start(&mut self, ctx: &mut Context<'_, Ev>) {
        ctx.schedule_after(
            Nanos::MILLISECOND,
            Ev::Tick {
                px: self.px,
                qty: 1,
            },
        );
    }

    fn on_event(&mut self, event: &Ev, ctx: &mut Context<'_, Ev>) {
        if let Ev::Tick { .. } = event {
            self.px += ctx.rng().gen_range(-3i64..=3);
            let qty = ctx.rng().gen_range(1u64..100);
            let gap = Nanos(ctx.rng().gen_range(1_000i64..5_000_000));
            ctx.schedule_after(gap, Ev::Tick { px: self.px, qty });
        }
    }
}

/// Reacts to ticks with random orders and random wake-ups; sends orders to the venue only.
struct Trader {
    id: u32,
    venue: ComponentId,
    next_order: u64,
    fills: u64,
}

impl Component<Ev> for Trader {
    fn on_event(&mut self, event: &Ev, ctx: &mut Context<'_, Ev>) {
        match event {
            Ev::Tick { px, .. } if ctx.rng().chance(1, 4) => {
                self.next_order += 1;
                let latency = Nanos(ctx.rng().gen_range(10_000i64..200_000));
                let order = Ev::Order {
                    trader: self.id,
                    id: self.next_order,
                    px: *px + ctx.rng().gen_range(-2i64..=2),
                };
                ctx.send_after(self.venue, latency, order);
                if ctx.rng().chance(1, 10) {
                    let after = Nanos(ctx.rng().gen_range(1i64..1_000_000));
                    ctx.set_timer(after, Ev::Wake(self.id));
                }
            }
            Ev::Fill { .. } => self.fills += 1,
            _ => {}
        }
    }
}

/// Fills every order after a random delay, broadcasting the fill.
struct Venue;

impl Component<Ev> for Venue {
    fn on_event(&mut self, event: &Ev, ctx: &mut Context<'_, Ev>) {
        if let Ev::Order { id, px, .. } = event {
            let delay = Nanos(ctx.rng().gen_range(0i64..50_000));
            ctx.schedule_after(delay, Ev::Fill { id: *id, px: *px });
        }
    }
}

/// Runs the toy world for 10 simulated seconds and returns (hash, log bytes, dispatched).
fn run(seed: u64) -> ([u8; 32], Vec<u8>, u64) {
    let mut sim = Simulation::new(seed, UnixNanos::from_secs(1_700_000_000))
        .with_event_log(EventLog::with_bytes());
    sim.add_component(Feed { px: 10_000 });
    // The venue's id is known in advance: components are numbered in registration order.
    let venue = ComponentId::from_index(3);
    for id in 0..2 {
        sim.add_component(Trader {
            id,
            venue,
            next_order: 0,
            fills: 0,
        });
    }
    assert_eq!(sim.add_component(Venue), venue);
    let out = sim.run_for(Nanos::from_secs(10)).expect("run");
    assert_eq!(out.reason, StopReason::TimeReached);
    let log = sim.take_event_log().expect("log attached");
    let bytes = log.bytes().expect("bytes kept").to_vec();
    (log.hash(), bytes, out.dispatched)
}

#[test]
fn same_seed_same_log_hash_and_bytes() {
    let (h1, b1, n1) = run(42);
    let (h2, b2, n2) = run(42);
    assert!(n1 > 1_000, "the scenario should be busy, got {n1} events");
    assert_eq!(n1, n2);
    assert_eq!(h1, h2);
    assert_eq!(b1, b2);
}

#[test]
fn different_seed_different_log_hash() {
    let (h1, b1, _) = run(42);
    let (h2, b2, _) = run(43);
    assert_ne!(h1, h2);
    assert_ne!(b1, b2);
}

#[test]
fn hash_only_log_matches_byte_log() {
    let (hash_with_bytes, _, _) = run(7);
    let mut sim = Simulation::new(7, UnixNanos::from_secs(1_700_000_000))
        .with_event_log(EventLog::hash_only());
    sim.add_component(Feed { px: 10_000 });
    let venue = ComponentId::from_index(3);
    for id in 0..2 {
        sim.add_component(Trader {
            id,
            venue,
            next_order: 0,
            fills: 0,
        });
    }
    sim.add_component(Venue);
    sim.run_for(Nanos::from_secs(10)).expect("run");
    assert_eq!(sim.log_hash(), Some(hash_with_bytes));
    assert!(sim.event_log().is_some_and(|l| l.bytes().is_none()));
}

#[test]
fn stepping_and_running_give_the_same_log() {
    let build = || {
        let mut sim = Simulation::new(99, UnixNanos::ZERO).with_event_log(EventLog::hash_only());
        sim.add_component(Feed { px: 500 });
        sim
    };
    let mut a = build();
    a.run_until(UnixNanos::from_secs(1)).expect("run");
    let mut b = build();
    while b.dispatched() < a.dispatched() {
        b.step().expect("step");
    }
    assert_eq!(a.log_hash(), b.log_hash());
}

#[test]
fn component_state_is_reachable_after_the_run() {
    let mut sim = Simulation::new(5, UnixNanos::ZERO);
    sim.add_component(Feed { px: 100 });
    let trader = sim.add_component(Trader {
        id: 0,
        venue: ComponentId::from_index(2),
        next_order: 0,
        fills: 0,
    });
    sim.add_component(Venue);
    sim.run_for(Nanos::from_secs(5)).expect("run");
    let t = sim.component::<Trader>(trader).expect("a Trader");
    assert!(t.next_order > 0);
    // Every order is filled within 250 µs of being placed, so almost all are filled.
    assert!(
        t.fills + 2 >= t.next_order,
        "{} fills for {} orders",
        t.fills,
        t.next_order
    );
    assert!(
        sim.component::<Venue>(trader).is_none(),
        "wrong type gives None"
    );
}

/// Receives everything and does nothing.
struct Sink;

impl<E: 'static> Component<E> for Sink {
    fn on_event(&mut self, _event: &E, _ctx: &mut Context<'_, E>) {}
}

#[test]
fn log_records_follow_the_documented_layout() {
    let t = UnixNanos(1_234);
    let mut sim = Simulation::new(1, UnixNanos::ZERO).with_event_log(EventLog::with_bytes());
    let target = sim.add_component(Sink);
    sim.schedule_at(t, 7u8);
    sim.send_at(target, t, 42);
    sim.run_to_completion().expect("run");
    let mut want = Vec::new();
    // time | seq | target (u64::MAX = broadcast) | len | postcard payload
    want.extend_from_slice(&1_234i64.to_le_bytes());
    want.extend_from_slice(&0u64.to_le_bytes());
    want.extend_from_slice(&u64::MAX.to_le_bytes());
    want.extend_from_slice(&1u32.to_le_bytes());
    want.push(7);
    want.extend_from_slice(&1_234i64.to_le_bytes());
    want.extend_from_slice(&1u64.to_le_bytes());
    want.extend_from_slice(&0u64.to_le_bytes());
    want.extend_from_slice(&1u32.to_le_bytes());
    want.push(42);
    let log = sim.event_log().expect("log");
    assert_eq!(log.bytes(), Some(want.as_slice()));
    assert_eq!(log.records(), 2);
}

/// An event whose encoding always fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not encodable"))
    }
}

#[test]
fn encoding_failures_surface_as_errors() {
    let mut sim = Simulation::new(1, UnixNanos::ZERO).with_event_log(EventLog::hash_only());
    sim.add_component(Sink);
    sim.schedule_after(Nanos(1), Unencodable);
    let err = sim.run_to_completion();
    assert!(matches!(
        err,
        Err(tradestack_kernel::KernelError::Encode(_))
    ));
    // The simulation stays usable afterwards.
    let out = sim.run_to_completion().expect("nothing left to encode");
    assert_eq!(out.reason, StopReason::QueueEmpty);
}
