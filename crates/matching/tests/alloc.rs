//! The book does not allocate per operation once warm: a counting global
//! allocator watches a long mixed command stream. This file holds a single
//! test so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tradestack_matching::{BookConfig, BookEvent, NewOrder, OrderBook, StpMode};
use tradestack_model::{Instrument, OrderId, Price, Quantity, Side, TimeInForce, UnixNanos};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// splitmix64: a seeded stream for the command mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One pass of the mix: GTC, IOC, cancel and move, keeping about `target`
/// orders resting. Returns the ids still live.
fn drive(
    book: &mut OrderBook,
    rng: &mut Rng,
    live: &mut Vec<u64>,
    next_id: &mut u64,
    ops: usize,
    sink: &mut Vec<BookEvent>,
) {
    const TICK: i64 = 1_000_000;
    let mid = 100 * 100_000_000i64;
    for _ in 0..ops {
        sink.clear();
        let roll = rng.below(100);
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let offset = rng.below(400) as i64 + 1;
        let price = match side {
            Side::Buy => mid - offset * TICK,
            Side::Sell => mid + offset * TICK,
        };
        let qty = Quantity::from_raw((rng.below(20) as i64 + 1) * 100_000);
        if (roll < 30 || live.len() < 800) && live.len() < 1_200 {
            let id = *next_id;
            *next_id += 1;
            let o = NewOrder::limit(id, (id % 7) as u32, side, Price::from_raw(price), qty)
                .with_stp(StpMode::None);
            book.submit(&o, UnixNanos(0), sink);
            if book.order(OrderId(id)).is_some() {
                live.push(id);
            }
        } else if roll < 40 {
            // Crosses the spread: trades and removes makers.
            let id = *next_id;
            *next_id += 1;
            let cross = match side {
                Side::Buy => mid + 50 * TICK,
                Side::Sell => mid - 50 * TICK,
            };
            let o = NewOrder::limit(id, 99, side, Price::from_raw(cross), qty)
                .with_tif(TimeInForce::Ioc)
                .with_stp(StpMode::None);
            book.submit(&o, UnixNanos(0), sink);
        } else if roll < 60 || live.len() >= 1_200 {
            let i = rng.below(live.len() as u64) as usize;
            let id = live.swap_remove(i);
            book.cancel(OrderId(id), None, sink);
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let id = live[i];
            if let Some(o) = book.order(OrderId(id)) {
                let step = (rng.below(5) as i64 + 1) * TICK;
                let to = match o.side {
                    Side::Buy => (o.price.raw() - step).max(mid - 400 * TICK),
                    Side::Sell => (o.price.raw() + step).min(mid + 400 * TICK),
                };
                book.amend(OrderId(id), None, Some(Price::from_raw(to)), None, sink);
            }
        }
        // Drop ids that traded away, so `live` tracks the book.
        if rng.below(64) == 0 {
            live.retain(|&id| book.order(OrderId(id)).is_some());
        }
    }
}

#[test]
fn steady_state_operations_do_not_allocate() {
    let ins = Instrument::spot(
        "BTC-USDT",
        "BTC",
        "USDT",
        Price::from_raw(1_000_000),
        Quantity::from_raw(100_000),
    );
    let mut book = OrderBook::with_capacity(ins, BookConfig::default(), 8_192);
    let mut rng = Rng(42);
    let mut live = Vec::with_capacity(16_384);
    let mut next_id = 1;
    let mut sink = Vec::with_capacity(4_096);
    // Warm up: the arena, level vectors and id map reach their working size.
    drive(
        &mut book,
        &mut rng,
        &mut live,
        &mut next_id,
        200_000,
        &mut sink,
    );
    live.retain(|&id| book.order(OrderId(id)).is_some());
    let resting = book.len();
    assert!(
        resting > 300,
        "the mix should keep a deep book, got {resting}"
    );

    COUNTING.store(true, Ordering::SeqCst);
    drive(
        &mut book,
        &mut rng,
        &mut live,
        &mut next_id,
        200_000,
        &mut sink,
    );
    COUNTING.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    eprintln!("200000 operations on a book of about {resting} orders: {allocs} allocations");
    assert_eq!(allocs, 0, "allocations in steady state");
}
