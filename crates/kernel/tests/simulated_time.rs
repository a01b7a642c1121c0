//! Long simulated spans run without sleeping and land on exact times.

use tradestack_kernel::{Clock, Component, Context, Nanos, RealClock, Simulation, UnixNanos};

/// Counts periodic ticks and checks each lands exactly on the grid.
struct GridCheck {
    start: UnixNanos,
    period: Nanos,
    ticks: i64,
}

impl Component<()> for GridCheck {
    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        ctx.set_periodic_timer(self.period, ())
            .expect("positive period");
    }

    fn on_event(&mut self, _event: &(), ctx: &mut Context<'_, ()>) {
        self.ticks += 1;
        let expected = UnixNanos(self.start.0 + self.ticks * self.period.0);
        assert_eq!(ctx.now(), expected, "tick {} off the grid", self.ticks);
    }
}

/// Runs `span` of simulated time with a periodic timer; returns the ticks seen.
fn simulate(span: Nanos, period: Nanos) -> i64 {
    let start = UnixNanos::from_secs(1_700_000_000);
    let mut sim = Simulation::new(1, start);
    let id = sim.add_component(GridCheck {
        start,
        period,
        ticks: 0,
    });
    let wall = RealClock;
    let t0 = wall.now();
    let out = sim.run_for(span).expect("run");
    let elapsed = wall.now() - t0;
    println!(
        "simulated {} with {} events in {:.3} ms of wall time",
        span,
        out.dispatched,
        elapsed.0 as f64 / 1e6
    );
    assert_eq!(
        sim.now(),
        start + span,
        "clock advanced by exactly the span"
    );
    assert_eq!(sim.clock().now(), start + span);
    let ticks = sim.component::<GridCheck>(id).map_or(0, |g| g.ticks);
    assert_eq!(i64::try_from(out.dispatched).ok(), Some(ticks));
    ticks
}

#[test]
fn a_simulated_hour_fires_every_second() {
    assert_eq!(simulate(Nanos::HOUR, Nanos::SECOND), 3_600);
}

#[test]
fn a_simulated_day_fires_every_100ms() {
    assert_eq!(simulate(Nanos::DAY, Nanos::from_millis(100)), 864_000);
}

#[test]
fn an_idle_day_is_a_single_jump() {
    let start = UnixNanos::ZERO;
    let mut sim: Simulation<()> = Simulation::new(1, start);
    let out = sim.run_for(Nanos::DAY).expect("run");
    assert_eq!(out.dispatched, 0);
    assert_eq!(sim.now(), start + Nanos::DAY);
}
