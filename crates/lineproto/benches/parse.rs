//! Parse rate (lines/s, one core) for realistic trading batches of 10k lines.
//!
//! Time is the benchmark thread's CPU time, not wall time: the machines this
//! runs on have two shared cores, and wall time there mostly measures whoever
//! else is compiling.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tradestack_lineproto::{Encoder, FieldValue, Line, ParseOptions, Precision, parse_batch};

const LINES: usize = 10_000;

/// CPU time consumed so far by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `routine` `iters` times and returns the CPU time it took.
fn cpu_timed<R>(iters: u64, mut routine: impl FnMut() -> R) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        black_box(routine());
    }
    thread_cpu_time() - start
}

fn trades() -> String {
    let mut s = String::new();
    for i in 0..LINES {
        let side = if i % 3 == 0 { "sell" } else { "buy" };
        let _ = writeln!(
            s,
            "trades,symbol=BTC-USDT,side={side} price={}.{},amount=0.{:04},id={}i {}",
            42_000 + i % 500,
            i % 10,
            1 + i % 9_000,
            123_456 + i,
            1_582_329_600_000_000_000u64 + i as u64 * 1_000_017
        );
    }
    s
}

fn quotes() -> String {
    let mut s = String::new();
    for i in 0..LINES {
        let bid = 2_950.0 + (i % 400) as f64 * 0.25;
        let _ = writeln!(
            s,
            "quotes,symbol=ETH-USDT,venue=binance bid={bid},ask={},bid_size={}.5,ask_size=0.{:03} {}",
            bid + 0.25,
            1 + i % 40,
            1 + i % 999,
            1_582_329_600_000_000_000u64 + i as u64 * 250_003
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let options = ParseOptions::new(Precision::Nanoseconds);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, batch) in [("trades_10k", trades()), ("quotes_10k", quotes())] {
        // Sanity: the batch is all good lines.
        let mut count = 0;
        assert!(parse_batch(batch.as_bytes(), &options, |_| count += 1).is_empty());
        assert_eq!(count, LINES);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_timed(iters, || {
                    let mut sum = 0.0;
                    let errors = parse_batch(black_box(batch.as_bytes()), &options, |line| {
                        if let Some((_, FieldValue::Float(v))) = line.fields.first() {
                            sum += v;
                        }
                    });
                    (sum, errors)
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(LINES as u64));
    let line = Line::new("trades")
        .with_tag("symbol", "BTC-USDT")
        .with_tag("side", "buy")
        .with_field("price", FieldValue::Float(42000.5))
        .with_field("amount", FieldValue::Float(0.0123))
        .with_field("id", FieldValue::Integer(123_456))
        .with_timestamp(1_582_329_600_000_000_000);
    let mut encoder = Encoder::new(Precision::Nanoseconds);
    group.bench_function("trades_10k", |b| {
        b.iter_custom(|iters| {
            cpu_timed(iters, || {
                encoder.clear();
                for _ in 0..LINES {
                    encoder.push(black_box(&line)).expect("valid line");
                }
                encoder.as_str().len()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
