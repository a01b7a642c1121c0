//! The market simulator in simulated time: the default agent population
//! (7 agents on each of the 5 spot pairs) trading on the exchange core for
//! one simulated hour per iteration, on one core.
//!
//! `cargo bench -p tradestack-marketdata --bench sim`; prints simulated
//! trades and commands per wall-clock second before Criterion's timing.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tradestack_exchange::ExchangeSettings;
use tradestack_marketdata::sim::{SimConfig, Simulation};
use tradestack_model::UnixNanos;

const START: i64 = 1_700_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn hour(seed: u64) -> (u64, u64) {
    let mut sim = Simulation::new(
        &SimConfig::default(),
        ExchangeSettings::default(),
        UnixNanos(START),
        seed,
    )
    .expect("default simulation");
    sim.run_until(UnixNanos(START + HOUR), |_, _| {});
    (sim.trades, sim.commands)
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let (trades, commands) = hour(1);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "one simulated hour: {trades} trades, {commands} commands in {secs:.3} s wall: \
         {:.0} trades/s, {:.0} commands/s, {:.0}x real time",
        trades as f64 / secs,
        commands as f64 / secs,
        3600.0 / secs
    );
    let mut g = c.benchmark_group("simulator");
    g.sample_size(10);
    g.bench_function("one_simulated_hour", |b| b.iter(|| hour(1)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
