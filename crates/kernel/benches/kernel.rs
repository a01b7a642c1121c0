//! Scheduler throughput: events per second through `Simulation` with trivial components.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tradestack_kernel::{Component, Context, EventLog, Nanos, Simulation, UnixNanos};

/// Events per measured iteration.
const EVENTS: u64 = 100_000;

/// On every event, schedules the next one exactly 1 µs later (one event in flight).
struct Ticker;

impl Component<u64> for Ticker {
    fn on_event(&mut self, event: &u64, ctx: &mut Context<'_, u64>) {
        ctx.schedule_after(Nanos::MICROSECOND, black_box(*event) + 1);
    }
}

/// Re-schedules every event `pending` µs later, keeping `pending` events in the queue.
struct Recycler {
    delay: Nanos,
}

impl Component<u64> for Recycler {
    fn on_event(&mut self, event: &u64, ctx: &mut Context<'_, u64>) {
        ctx.schedule_after(self.delay, black_box(*event) + 1);
    }
}

/// Same as `Recycler` but with a random delay, so new events land all over the heap.
struct RandomRecycler;

impl Component<u64> for RandomRecycler {
    fn on_event(&mut self, event: &u64, ctx: &mut Context<'_, u64>) {
        let delay = ctx.rng().gen_range(1i64..2_000_000);
        ctx.schedule_after(Nanos(delay), black_box(*event) + 1);
    }
}

/// A simulation with `pending` events spread over the first `pending` µs.
fn seeded_sim<C: Component<u64>>(component: C, pending: u64) -> Simulation<u64> {
    let mut sim = Simulation::new(1, UnixNanos::ZERO);
    sim.add_component(component);
    for i in 0..pending {
        sim.schedule_after(Nanos(i as i64 * 1_000), i);
    }
    sim
}

/// Runs exactly `EVENTS` dispatches.
fn run_events(sim: &mut Simulation<u64>) {
    for _ in 0..EVENTS {
        let _ = black_box(sim.step());
    }
}

fn bench_scheduler(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler");
    group.throughput(Throughput::Elements(EVENTS));

    group.bench_function("one_pending_run_for", |b| {
        let mut sim = seeded_sim(Ticker, 1);
        b.iter(|| {
            // 100k events 1 µs apart = 100 ms of simulated time.
            let out = sim.run_for(Nanos(EVENTS as i64 * 1_000));
            black_box(out)
        });
    });

    group.bench_function("one_pending_step", |b| {
        let mut sim = seeded_sim(Ticker, 1);
        b.iter(|| run_events(&mut sim));
    });

    group.bench_function("pending_1000", |b| {
        let mut sim = seeded_sim(
            Recycler {
                delay: Nanos(1_000 * 1_000),
            },
            1_000,
        );
        b.iter(|| run_events(&mut sim));
    });

    group.bench_function("pending_1000_random_delay", |b| {
        let mut sim = seeded_sim(RandomRecycler, 1_000);
        b.iter(|| run_events(&mut sim));
    });

    group.bench_function("pending_1000_logged", |b| {
        let mut sim = seeded_sim(
            Recycler {
                delay: Nanos(1_000 * 1_000),
            },
            1_000,
        )
        .with_event_log(EventLog::hash_only());
        b.iter(|| run_events(&mut sim));
    });

    group.finish();
}

criterion_group!(benches, bench_scheduler);
criterion_main!(benches);
