//! In-process bus: publish-to-deliver throughput and latency.
//!
//! - `same_thread`: publish a batch then drain it, on one core (the kernel's pattern).
//! - `cross_thread`: a producer thread and a consumer thread (the service pattern).
//! - latency: a paced producer stamps each message; the consumer records
//!   publish-to-deliver time in an HDR histogram (p50, p99, p99.9 printed).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tradestack_bus::Topic;
use tradestack_bus::envelope::Delivery;
use tradestack_bus::memory::MemoryBus;
use tradestack_model::{EventId, UnixNanos};

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Tick {
    sent_ns: u64,
    price: i64,
    qty: i64,
}

const BATCH: u64 = 100_000;

fn delivery(i: u64, sent_ns: u64) -> Delivery<Tick> {
    Delivery::new(
        EventId(u128::from(i)),
        None,
        Vec::new(),
        UnixNanos(i as i64),
        Tick {
            sent_ns,
            price: i as i64,
            qty: 1,
        },
    )
}

fn same_thread(c: &mut Criterion) {
    let bus = MemoryBus::with_capacity(BATCH as usize);
    let topic = Topic::<Tick>::new("ticks");
    let mut rx = bus.subscribe(&topic, None).unwrap();
    let tx = bus.publisher(&topic).unwrap();
    let mut out = Vec::with_capacity(BATCH as usize);
    let mut g = c.benchmark_group("bus_memory");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("same_thread_publish_drain", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                tx.try_publish(delivery(i, 0)).unwrap();
            }
            out.clear();
            rx.drain_into(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("bus_memory");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("cross_thread_publish_deliver", |b| {
        b.iter(|| {
            let bus = MemoryBus::with_capacity(1 << 16);
            let topic = Topic::<Tick>::new("ticks");
            let mut rx = bus.subscribe(&topic, None).unwrap();
            let tx = bus.publisher(&topic).unwrap();
            let consumer = std::thread::spawn(move || {
                let mut n = 0u64;
                let mut sum = 0i64;
                while n < BATCH {
                    match rx.try_recv() {
                        Some(d) => {
                            sum += d.msg.price;
                            n += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                sum
            });
            let mut i = 0;
            while i < BATCH {
                if tx.try_publish(delivery(i, 0)).is_ok() {
                    i += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            black_box(consumer.join().unwrap())
        })
    });
    g.finish();
}

/// Publish-to-deliver latency at a paced rate, reported from an HDR histogram.
fn latency(_c: &mut Criterion) {
    const N: u64 = 200_000;
    let bus = MemoryBus::with_capacity(1 << 16);
    let topic = Topic::<Tick>::new("ticks");
    let mut rx = bus.subscribe(&topic, None).unwrap();
    let tx = bus.publisher(&topic).unwrap();
    let origin = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        let mut n = 0;
        while n < N {
            if let Some(d) = rx.try_recv() {
                let now = origin.elapsed().as_nanos() as u64;
                h.record(now.saturating_sub(d.msg.sent_ns).max(1)).unwrap();
                n += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        h
    });
    // One message every 1 µs (1M msg/s offered).
    let period = Duration::from_micros(1);
    for i in 0..N {
        let due = origin + period * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let sent = origin.elapsed().as_nanos() as u64;
        while tx.try_publish(delivery(i, sent)).is_err() {
            std::hint::spin_loop();
        }
    }
    let h = consumer.join().unwrap();
    println!(
        "bus_memory/latency_1M_per_s: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns ({} samples)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    );
}

criterion_group!(benches, same_thread, cross_thread, latency);
criterion_main!(benches);
