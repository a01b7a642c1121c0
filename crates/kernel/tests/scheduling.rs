//! Ordering, timers, targeting, stopping and run semantics of `Simulation`.

use std::cell::RefCell;
use std::rc::Rc;

use tradestack_kernel::{
    Clock, Component, ComponentId, Context, KernelError, Nanos, Simulation, StopReason, TimerId,
    UnixNanos,
};

/// Shared record of (component name, time, event) deliveries.
type Seen = Rc<RefCell<Vec<(&'static str, UnixNanos, u32)>>>;

/// Records everything it receives.
struct Recorder {
    name: &'static str,
    seen: Seen,
}

impl Component<u32> for Recorder {
    fn on_event(&mut self, event: &u32, ctx: &mut Context<'_, u32>) {
        self.seen.borrow_mut().push((self.name, ctx.now(), *event));
    }
}

fn recorder(name: &'static str, seen: &Seen) -> Recorder {
    Recorder {
        name,
        seen: Rc::clone(seen),
    }
}

const T0: UnixNanos = UnixNanos::from_secs(1_000);

#[test]
fn ties_are_fifo_and_time_ordered() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("a", &seen));
    let t = T0 + Nanos::SECOND;
    // Interleave two timestamps; within each, insertion order must be kept.
    for i in 0..100u32 {
        let at = if i % 2 == 0 { t } else { t + Nanos(1) };
        sim.schedule_at(at, i);
    }
    sim.schedule_at(T0 + Nanos(5), 1_000);
    let out = sim.run_to_completion().expect("run");
    assert_eq!(out.reason, StopReason::QueueEmpty);
    assert_eq!(out.dispatched, 101);
    let got: Vec<u32> = seen.borrow().iter().map(|s| s.2).collect();
    let mut want = vec![1_000];
    want.extend((0..100).step_by(2));
    want.extend((1..100).step_by(2));
    assert_eq!(got, want);
}

#[test]
fn broadcast_reaches_components_in_registration_order() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    for name in ["first", "second", "third"] {
        sim.add_component(recorder(name, &seen));
    }
    sim.schedule_after(Nanos(10), 7);
    sim.schedule_after(Nanos(10), 8);
    sim.run_to_completion().expect("run");
    let got: Vec<(&str, u32)> = seen.borrow().iter().map(|s| (s.0, s.2)).collect();
    assert_eq!(
        got,
        [
            ("first", 7),
            ("second", 7),
            ("third", 7),
            ("first", 8),
            ("second", 8),
            ("third", 8)
        ]
    );
}

#[test]
fn targeted_events_reach_only_their_target() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("a", &seen));
    let b = sim.add_component(recorder("b", &seen));
    sim.send_at(b, T0 + Nanos(3), 9);
    // An id that names no component: the event is dispatched to nobody.
    sim.send_at(ComponentId::from_index(99), T0 + Nanos(4), 10);
    let out = sim.run_to_completion().expect("run");
    assert_eq!(out.dispatched, 2);
    assert_eq!(*seen.borrow(), vec![("b", T0 + Nanos(3), 9)]);
}

/// Sets timers from on_start and records when they fire.
struct TimerUser {
    fired: Vec<(UnixNanos, u32)>,
    cancel_me: Option<TimerId>,
    periodic: Option<TimerId>,
    periodic_left: u32,
}

impl TimerUser {
    fn new() -> Self {
        TimerUser {
            fired: Vec::new(),
            cancel_me: None,
            periodic: None,
            periodic_left: 5,
        }
    }
}

impl Component<u32> for TimerUser {
    fn on_start(&mut self, ctx: &mut Context<'_, u32>) {
        ctx.set_timer(Nanos::MILLISECOND, 1);
        ctx.set_timer_at(ctx.now() + Nanos(1_500_000), 2);
        let doomed = ctx.set_timer(Nanos::from_millis(2), 3);
        self.cancel_me = Some(doomed);
        self.periodic = Some(
            ctx.set_periodic_timer(Nanos::from_millis(10), 4)
                .expect("positive period"),
        );
    }

    fn on_event(&mut self, event: &u32, ctx: &mut Context<'_, u32>) {
        self.fired.push((ctx.now(), *event));
        match *event {
            1 => {
                // Cancel the 2 ms timer before it fires.
                if let Some(id) = self.cancel_me.take() {
                    assert!(ctx.is_timer_active(id));
                    assert!(ctx.cancel_timer(id));
                    assert!(!ctx.cancel_timer(id), "second cancel is a no-op");
                    assert!(!ctx.is_timer_active(id));
                }
            }
            4 => {
                self.periodic_left -= 1;
                if self.periodic_left == 0
                    && let Some(id) = self.periodic
                {
                    // Cancelling a periodic timer from inside its own firing.
                    assert!(ctx.cancel_timer(id));
                }
            }
            _ => {}
        }
    }
}

#[test]
fn timers_fire_at_exact_times_cancel_and_repeat() {
    let mut sim = Simulation::new(1, T0);
    let id = sim.add_component(TimerUser::new());
    let out = sim.run_to_completion().expect("run");
    assert_eq!(out.reason, StopReason::QueueEmpty);
    let user = sim.component::<TimerUser>(id).expect("TimerUser");
    let ms = Nanos::MILLISECOND;
    let mut want = vec![(T0 + ms, 1), (T0 + Nanos(1_500_000), 2)];
    for k in 1..=5 {
        want.push((T0 + Nanos::from_millis(10 * k), 4));
    }
    assert_eq!(user.fired, want, "timer 3 was cancelled and must not fire");
    assert_eq!(sim.now(), T0 + Nanos::from_millis(50));
    assert_eq!(sim.pending(), 0);
}

#[test]
fn one_shot_timer_is_inactive_after_firing() {
    let mut sim = Simulation::new(1, T0);
    sim.add_component(Recorder {
        name: "r",
        seen: Seen::default(),
    });
    let id = sim.set_timer(Nanos(10), 1);
    assert_eq!(sim.pending(), 1);
    sim.run_to_completion().expect("run");
    assert!(!sim.cancel_timer(id), "already fired");
}

#[test]
fn cancelled_timers_leave_the_queue_empty() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("r", &seen));
    // Enough cancellations to trigger heap compaction as well.
    let ids: Vec<TimerId> = (0..5_000)
        .map(|i| sim.set_timer(Nanos(1_000 + i64::from(i)), i))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if i % 1_000 != 0 {
            assert!(sim.cancel_timer(*id));
        }
    }
    assert_eq!(sim.pending(), 5);
    let out = sim.run_to_completion().expect("run");
    assert_eq!(out.dispatched, 5);
    let got: Vec<u32> = seen.borrow().iter().map(|s| s.2).collect();
    assert_eq!(got, [0, 1_000, 2_000, 3_000, 4_000]);
}

#[test]
fn periodic_timer_from_simulation_repeats_until_cancelled() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("r", &seen));
    let id = sim
        .set_periodic_timer(Nanos::SECOND, 0)
        .expect("positive period");
    let out = sim.run_for(Nanos::from_secs(10)).expect("run");
    assert_eq!(out.dispatched, 10);
    assert_eq!(out.reason, StopReason::TimeReached);
    let times: Vec<UnixNanos> = seen.borrow().iter().map(|s| s.1).collect();
    let want: Vec<UnixNanos> = (1..=10).map(|k| T0 + Nanos::from_secs(k)).collect();
    assert_eq!(times, want);
    assert!(sim.cancel_timer(id));
    let out = sim.run_for(Nanos::from_secs(10)).expect("run");
    assert_eq!(out.dispatched, 0);
    assert_eq!(sim.now(), T0 + Nanos::from_secs(20));
}

#[test]
fn non_positive_periods_are_rejected() {
    let mut sim: Simulation<u32> = Simulation::new(1, T0);
    assert!(matches!(
        sim.set_periodic_timer(Nanos::ZERO, 1),
        Err(KernelError::NonPositivePeriod(_))
    ));
    assert!(sim.set_periodic_timer(Nanos(-5), 1).is_err());
    assert_eq!(sim.pending(), 0);
}

#[test]
fn scheduling_in_the_past_clamps_to_now() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("r", &seen));
    sim.run_for(Nanos::SECOND).expect("run");
    let now = sim.now();
    sim.schedule_at(T0, 1);
    sim.schedule_after(Nanos(-100), 2);
    sim.run_to_completion().expect("run");
    assert_eq!(*seen.borrow(), vec![("r", now, 1), ("r", now, 2)]);
    assert_eq!(sim.now(), now);
}

/// Stops the run on the third event it sees.
struct Stopper {
    count: u32,
}

impl Component<u32> for Stopper {
    fn on_event(&mut self, _event: &u32, ctx: &mut Context<'_, u32>) {
        self.count += 1;
        if self.count == 3 {
            ctx.stop();
        }
    }
}

#[test]
fn stop_ends_the_run_after_the_current_event() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(Stopper { count: 0 });
    sim.add_component(recorder("after", &seen));
    for i in 0..10 {
        sim.schedule_after(Nanos(i64::from(i) * 100), i);
    }
    let out = sim.run_until(T0 + Nanos::SECOND).expect("run");
    assert_eq!(out.reason, StopReason::Stopped);
    assert_eq!(out.dispatched, 3);
    // The stopping event still reached the later component; the clock stays at its time.
    assert_eq!(seen.borrow().len(), 3);
    assert_eq!(sim.now(), T0 + Nanos(200));
    // A new run call resumes.
    let out = sim.run_until(T0 + Nanos::SECOND).expect("run");
    assert_eq!(out.reason, StopReason::TimeReached);
    assert_eq!(out.dispatched, 7);
    assert_eq!(sim.now(), T0 + Nanos::SECOND);
}

#[test]
fn run_until_includes_events_at_the_deadline_and_step_goes_one_by_one() {
    let seen = Seen::default();
    let mut sim = Simulation::new(1, T0);
    sim.add_component(recorder("r", &seen));
    sim.schedule_at(T0 + Nanos(10), 1);
    sim.schedule_at(T0 + Nanos(20), 2);
    sim.schedule_at(T0 + Nanos(30), 3);
    let out = sim.run_until(T0 + Nanos(20)).expect("run");
    assert_eq!(out.dispatched, 2);
    assert_eq!(sim.now(), T0 + Nanos(20));
    assert_eq!(sim.clock().now(), T0 + Nanos(20));
    assert_eq!(sim.step().expect("step"), Some(T0 + Nanos(30)));
    assert_eq!(sim.step().expect("step"), None);
    // Running "until" an earlier time neither dispatches nor moves the clock back.
    let out = sim.run_until(T0).expect("run");
    assert_eq!(out.dispatched, 0);
    assert_eq!(sim.now(), T0 + Nanos(30));
}

/// Schedules an event at its own current time from inside a handler.
struct SameTime {
    log: Vec<u32>,
}

impl Component<u32> for SameTime {
    fn on_event(&mut self, event: &u32, ctx: &mut Context<'_, u32>) {
        self.log.push(*event);
        if *event == 1 {
            // Runs after everything already queued for `now` (event 2), not before.
            ctx.schedule_at(ctx.now(), 3);
        }
    }
}

#[test]
fn events_scheduled_for_now_run_after_those_already_queued() {
    let mut sim = Simulation::new(1, T0);
    let id = sim.add_component(SameTime { log: Vec::new() });
    sim.schedule_at(T0 + Nanos(1), 1);
    sim.schedule_at(T0 + Nanos(1), 2);
    sim.run_to_completion().expect("run");
    let c = sim.component::<SameTime>(id).expect("SameTime");
    assert_eq!(c.log, [1, 2, 3]);
}

/// Checks that the clock it is handed never goes backwards, across many random events.
struct Monotonic {
    last: UnixNanos,
    n: u32,
}

impl Component<u32> for Monotonic {
    fn on_event(&mut self, _event: &u32, ctx: &mut Context<'_, u32>) {
        assert!(ctx.now() >= self.last);
        self.last = ctx.now();
        self.n += 1;
        if self.n < 10_000 {
            let d = ctx.rng().gen_range(-1_000i64..1_000_000);
            ctx.schedule_after(Nanos(d), 0);
        }
    }
}

#[test]
fn simulated_clock_never_moves_backwards() {
    let mut sim = Simulation::new(3, T0);
    let id = sim.add_component(Monotonic { last: T0, n: 0 });
    sim.schedule_after(Nanos::ZERO, 0);
    let clock = sim.clock().clone();
    let mut last = clock.now();
    while sim.step().expect("step").is_some() {
        assert!(clock.now() >= last);
        last = clock.now();
    }
    assert_eq!(sim.component::<Monotonic>(id).map(|m| m.n), Some(10_000));
    assert!(clock.set(T0).is_err(), "the clock refuses to go back");
}

/// Counts on_start calls.
struct Starter {
    starts: u32,
}

impl Component<u32> for Starter {
    fn on_start(&mut self, ctx: &mut Context<'_, u32>) {
        self.starts += 1;
        ctx.schedule_after(Nanos(1), 0);
    }

    fn on_event(&mut self, _event: &u32, _ctx: &mut Context<'_, u32>) {}
}

#[test]
fn on_start_runs_once_including_late_components() {
    let mut sim = Simulation::new(1, T0);
    let a = sim.add_component(Starter { starts: 0 });
    sim.run_to_completion().expect("run");
    sim.run_to_completion().expect("run");
    let b = sim.add_component(Starter { starts: 0 });
    assert_eq!(sim.pending(), 1, "late component started immediately");
    sim.run_to_completion().expect("run");
    assert_eq!(sim.component::<Starter>(a).map(|s| s.starts), Some(1));
    assert_eq!(sim.component::<Starter>(b).map(|s| s.starts), Some(1));
    assert_eq!(sim.dispatched(), 2);
}

/// Each instance records the first numbers of its own RNG stream.
struct Drawer {
    draws: Vec<u64>,
}

impl Component<u32> for Drawer {
    fn on_event(&mut self, _event: &u32, ctx: &mut Context<'_, u32>) {
        let x = ctx.rng().next_u64();
        self.draws.push(x);
    }
}

#[test]
fn components_get_independent_rng_streams() {
    let mut sim = Simulation::new(11, T0);
    let a = sim.add_component(Drawer { draws: Vec::new() });
    let b = sim.add_component(Drawer { draws: Vec::new() });
    for i in 0..4 {
        sim.schedule_after(Nanos(i), 0);
    }
    sim.run_to_completion().expect("run");
    let da = sim.component::<Drawer>(a).expect("a").draws.clone();
    let db = sim.component::<Drawer>(b).expect("b").draws.clone();
    assert_eq!(da.len(), 4);
    assert_ne!(da, db);
    // Component 0's stream is the root fork 0, whatever else happened in the run.
    let mut expected = sim.rng().fork(0);
    let want: Vec<u64> = (0..4).map(|_| expected.next_u64()).collect();
    assert_eq!(da, want);
}
