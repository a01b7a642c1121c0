//! Matching engine: `tradestack-matching` against two peer crates, `matchcore`
//! 0.4 and `orderbook-rs` 0.15, on identical command streams in the same run.
//!
//! # Workload
//!
//! A seeded generator (splitmix64, no external RNG) builds, per mix, a book of
//! 1,000 resting GTC orders spread over several hundred price levels around a
//! fixed mid price, then a stream of commands. The generator drives our own
//! book as an oracle while it generates, so every cancel and move targets an
//! order that is resting at that point, and every aggressive order is sized
//! from the book it will meet. The book size is held near 1,000 orders: when
//! it drifts more than 50 orders from the target, a removing command becomes
//! a GTC refill (or a refill becomes a cancel). The realised mix is printed.
//!
//! Mixes (shares of commands before that correction):
//! - `exchange_core`: exchange-core's benchmark mix: 9% GTC, 3% IOC, 6% cancel,
//!   82% move (change the price of a resting order).
//! - `cancel_heavy`: 45% GTC, 5% IOC, 50% cancel.
//! - `sweep_heavy`: 80% GTC refills, 5% cancel, 10% IOC that sweeps 3–8
//!   levels, 5% market orders that sweep 3–8 levels.
//!
//! Every engine replays the same `Vec<Cmd>`, seed included, from an empty book;
//! an order's id is the index of the command that created it (matchcore
//! assigns ids that way itself, the other two accept any id). Prices are
//! integer ticks (0.01 for our instrument) and quantities integer lots (0.001).
//!
//! # Keeping the engines in step
//!
//! The engines differ in a few places (see `probe_semantics`, printed first),
//! so the generator only issues commands on which they agree:
//! - GTC refills never cross: they rest at a passive price.
//! - IOC and market orders are sized to fill completely within their limit
//!   (the limit of a sweep is the price of its last level). matchcore 0.4
//!   matches an incoming *limit* order without checking its limit price once
//!   it crosses (`match_order(.., None, ..)` in its submit and amend paths), so
//!   a marketable limit order larger than the liquidity inside its limit would
//!   trade through its limit there and leave the books different.
//! - A move that would cross is kept only if the order then fills completely
//!   within its new price; otherwise it is moved to one tick behind the best
//!   opposite price instead.
//! - No self-trade prevention (ours: `StpMode::None`; the peers' default).
//!
//! After each full run the final books (orders, levels, best bid and ask) and
//! the number of commands an engine refused are printed, to show the engines
//! really did the same work.
//!
//! # Move / amend
//!
//! - ours: `OrderBook::amend(id, None, Some(new_price), None, sink)`.
//! - matchcore: native amend, `CommandKind::Amend` with a `LimitOrderPatch`
//!   that sets the price.
//! - orderbook-rs: its modify API, `update_order(OrderUpdate::UpdatePrice)`,
//!   which is documented as a cancel-then-re-add inside the book.
//!
//! # What is measured
//!
//! 1. Printed first, once: for each mix and engine, a run over the whole
//!    stream (1M commands) counting heap allocations (a counting global
//!    allocator, switched on only for that run) and refused commands; then a
//!    second run over the same stream with `Instant::now()` around every
//!    command into an HDR histogram (p50, p99, p99.9, p99.99, max, in ns); the
//!    timer's own cost is printed too. Then, for our engine only, a fixed
//!    offered rate of 1M commands/s: a busy-wait schedule, each command
//!    preceded by a simple pre-trade risk check (size limit and a ±10% price
//!    collar around the last trade), latency measured from the command's
//!    *scheduled* start, so a late start counts (coordinated-omission
//!    correction). Before the latency runs and before the fixed-rate run, a
//!    2 s busy loop reading `Instant` prints how often and for how long the
//!    machine took the CPU away (scheduler, hypervisor, interrupts), since
//!    that, not the engine, sets the far tail on a shared machine.
//! 2. Criterion, per mix, the three engines side by side: one iteration is a
//!    fresh seeded book (set up outside the timing) and the first 100,000
//!    commands of the stream; throughput is in commands per second.
//!
//! Our engine writes events into one `Vec<BookEvent>` that is cleared before
//! every command. matchcore returns an outcome value per command, orderbook-rs
//! a `Result` (often an `Arc` of the order); both are dropped inside the timing.
//!
//! Set `MATCHING_BENCH_SKIP_REPORT=1` to run the Criterion part only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use hdrhistogram::Histogram;
use tradestack_matching::{BookConfig, BookEvent, NewOrder, OrderBook, StpMode};
use tradestack_model::{Instrument, OrderId, Price, Quantity, Side, TimeInForce, UnixNanos};

// ------------------------------------------------------------ allocation count

/// The system allocator, counting allocations while `COUNTING` is on.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn count_alloc() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

// ------------------------------------------------------------ workload

/// Mid price in ticks (1000.00 with a 0.01 tick).
const MID: u64 = 100_000;
/// Passive prices are 1..=RANGE ticks from the mid.
const RANGE: u64 = 560;
/// Largest price change of a move, in ticks.
const MAX_MOVE: u64 = 8;
/// Quantity of a GTC order: 1..=MAX_LOTS lots.
const MAX_LOTS: u64 = 20;
/// Resting orders in the seeded book, and the size the stream keeps.
const BOOK_ORDERS: usize = 1_000;
/// How far the book may drift from `BOOK_ORDERS` before the generator corrects.
const SLACK: usize = 50;
/// Commands per stream (latency and allocation runs).
const STREAM_OPS: usize = 1_000_000;
/// Commands per Criterion iteration (a prefix of the stream).
const CRITERION_OPS: usize = 100_000;

/// Our instrument: tick 0.01, lot 0.001, in raw 1e-8 units.
const TICK_RAW: i64 = 1_000_000;
const LOT_RAW: i64 = 100_000;

/// One command, engine-neutral. The order id of a submit is its sequence
/// number (its index in seed + stream).
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Gtc { side: Side, price: u64, qty: u64 },
    Ioc { side: Side, price: u64, qty: u64 },
    Market { side: Side, qty: u64 },
    Cancel { id: u64 },
    Move { id: u64, price: u64 },
}

const KINDS: [&str; 5] = ["gtc", "ioc", "market", "cancel", "move"];

impl Cmd {
    fn kind(&self) -> usize {
        match self {
            Cmd::Gtc { .. } => 0,
            Cmd::Ioc { .. } => 1,
            Cmd::Market { .. } => 2,
            Cmd::Cancel { .. } => 3,
            Cmd::Move { .. } => 4,
        }
    }
}

/// Shares, in per mille, of each kind of command a mix draws.
#[derive(Clone, Copy)]
struct Mix {
    name: &'static str,
    gtc: u32,
    ioc: u32,
    cancel: u32,
    moves: u32,
    ioc_sweep: u32,
    market_sweep: u32,
}

const MIXES: [Mix; 3] = [
    Mix {
        name: "exchange_core",
        gtc: 90,
        ioc: 30,
        cancel: 60,
        moves: 820,
        ioc_sweep: 0,
        market_sweep: 0,
    },
    Mix {
        name: "cancel_heavy",
        gtc: 450,
        ioc: 50,
        cancel: 500,
        moves: 0,
        ioc_sweep: 0,
        market_sweep: 0,
    },
    Mix {
        name: "sweep_heavy",
        gtc: 800,
        ioc: 0,
        cancel: 50,
        moves: 0,
        ioc_sweep: 100,
        market_sweep: 50,
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Draw {
    Gtc,
    Ioc,
    Cancel,
    Move,
    IocSweep,
    MarketSweep,
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn side(&mut self) -> Side {
        if self.next() & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }
}

/// A generated workload: the seed commands and the stream that follows.
struct Workload {
    mix: Mix,
    seed: Vec<Cmd>,
    stream: Vec<Cmd>,
    /// Commands of each kind in the stream.
    kinds: [u64; 5],
    /// Draws the book-size correction changed.
    corrected: u64,
    /// Resting orders / levels, sampled every 1,000 commands: min, mean, max.
    orders: (usize, f64, usize),
    levels: (usize, f64, usize),
    /// Spread in ticks, same samples.
    spread: (u64, f64, u64),
    /// Seeded book: orders and levels.
    seeded: (usize, usize),
}

/// Builds commands while replaying them on our book, which tells it which
/// orders rest and what liquidity an aggressive order will meet.
struct Generator {
    rng: Rng,
    book: Ours,
    live: Vec<u64>,
    pos: HashMap<u64, usize>,
    /// Orders per occupied level, keyed by (is bid, price ticks).
    occupied: HashMap<(bool, u64), u32>,
    seq: u64,
    out: Vec<Cmd>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng(seed),
            book: Ours::empty(),
            live: Vec::new(),
            pos: HashMap::new(),
            occupied: HashMap::new(),
            seq: 0,
            out: Vec::new(),
        }
    }

    fn add_live(&mut self, id: u64) {
        if !self.pos.contains_key(&id) {
            self.pos.insert(id, self.live.len());
            self.live.push(id);
        }
    }

    fn remove_live(&mut self, id: u64) {
        if let Some(i) = self.pos.remove(&id) {
            self.live.swap_remove(i);
            if let Some(&moved) = self.live.get(i) {
                self.pos.insert(moved, i);
            }
        }
    }

    /// Applies `cmd` to the oracle book and records it.
    fn push(&mut self, cmd: Cmd) {
        let ok = self.book.apply(self.seq, &cmd);
        assert!(ok, "generator produced a command our book refused: {cmd:?}");
        let events = std::mem::take(&mut self.book.sink);
        for ev in &events {
            match *ev {
                BookEvent::Rested { id, .. } => self.add_live(id.0),
                BookEvent::Trade(t) if t.maker_done => self.remove_live(t.maker.0),
                BookEvent::Cancelled { id, .. } | BookEvent::Expired { id, .. } => {
                    self.remove_live(id.0)
                }
                BookEvent::Amended {
                    id,
                    kept_priority: false,
                    ..
                } => self.remove_live(id.0),
                BookEvent::Delta(d) => {
                    let key = (d.side == Side::Buy, (d.price.raw() / TICK_RAW) as u64);
                    if d.orders == 0 {
                        self.occupied.remove(&key);
                    } else {
                        self.occupied.insert(key, d.orders);
                    }
                }
                _ => {}
            }
        }
        self.book.sink = events;
        self.out.push(cmd);
        self.seq += 1;
    }

    /// Opposite levels best first, as (price ticks, lots).
    fn levels(&self, side: Side) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.book.book.levels(side).map(|l| {
            (
                (l.price.raw() / TICK_RAW) as u64,
                (l.quantity.raw() / LOT_RAW) as u64,
            )
        })
    }

    fn best(&self, side: Side) -> Option<u64> {
        self.levels(side).next().map(|(p, _)| p)
    }

    /// A passive price for a new `side` order that does not cross: 1..=RANGE
    /// ticks from the mid, preferring a price with no level yet (up to three
    /// draws), which keeps the book spread over many levels.
    fn passive_price(&mut self, side: Side) -> u64 {
        let mut off = self.rng.range(1, RANGE);
        for _ in 0..2 {
            let p = match side {
                Side::Buy => MID - off,
                Side::Sell => MID + off,
            };
            if !self.occupied.contains_key(&(side == Side::Buy, p)) {
                break;
            }
            off = self.rng.range(1, RANGE);
        }
        match side {
            Side::Buy => {
                let p = MID - off;
                match self.best(Side::Sell) {
                    Some(ask) if p >= ask => ask - 1,
                    _ => p,
                }
            }
            Side::Sell => {
                let p = MID + off;
                match self.best(Side::Buy) {
                    Some(bid) if p <= bid => bid + 1,
                    _ => p,
                }
            }
        }
    }

    fn gtc(&mut self) -> Cmd {
        let side = self.rng.side();
        let price = self.passive_price(side);
        let qty = self.rng.range(1, MAX_LOTS);
        Cmd::Gtc { side, price, qty }
    }

    /// An aggressive order on `side` that reaches into the `depth`-th opposite
    /// level and fills completely there: (limit price, quantity).
    fn aggressive(&mut self, side: Side, min_depth: u64, max_depth: u64) -> Option<(u64, u64)> {
        let depth = self.rng.range(min_depth, max_depth) as usize;
        let levels: Vec<(u64, u64)> = self.levels(side.opposite()).take(depth).collect();
        let &(limit, last_qty) = levels.last()?;
        let before: u64 = levels[..levels.len() - 1].iter().map(|l| l.1).sum();
        let qty = before + self.rng.range(1, last_qty);
        Some((limit, qty))
    }

    fn pick_live(&mut self) -> Option<u64> {
        if self.live.is_empty() {
            return None;
        }
        let i = self.rng.below(self.live.len() as u64) as usize;
        Some(self.live[i])
    }

    fn cancel(&mut self) -> Option<Cmd> {
        self.pick_live().map(|id| Cmd::Cancel { id })
    }

    /// A price change of ±1..=MAX_MOVE ticks for a resting order. A new price
    /// that crosses is kept only if the order then fills completely within
    /// it; otherwise the order goes one tick behind the opposite best.
    fn move_cmd(&mut self) -> Option<Cmd> {
        let id = self.pick_live()?;
        let order = self.book.book.order(OrderId(id))?;
        let old = (order.price.raw() / TICK_RAW) as u64;
        let qty = (order.remaining.raw() / LOT_RAW) as u64;
        let d = self.rng.range(1, MAX_MOVE);
        let mut price = if self.rng.next() & 1 == 0 {
            old + d
        } else {
            old.saturating_sub(d).max(1)
        };
        if price == old {
            price = old + 1;
        }
        let side = order.side;
        let crosses = |p: u64, opp: u64| match side {
            Side::Buy => p >= opp,
            Side::Sell => p <= opp,
        };
        if let Some(opp) = self.best(side.opposite())
            && crosses(price, opp)
        {
            let within: u64 = self
                .levels(side.opposite())
                .take_while(|&(p, _)| crosses(price, p))
                .map(|l| l.1)
                .sum();
            if within < qty {
                price = match side {
                    Side::Buy => opp - 1,
                    Side::Sell => opp + 1,
                };
                if price == old {
                    price = match side {
                        Side::Buy => old - 1,
                        Side::Sell => old + 1,
                    };
                }
            }
        }
        Some(Cmd::Move { id, price })
    }

    fn draw(&mut self, mix: &Mix) -> Draw {
        let r = self.rng.below(1000) as u32;
        let table = [
            (mix.gtc, Draw::Gtc),
            (mix.ioc, Draw::Ioc),
            (mix.cancel, Draw::Cancel),
            (mix.moves, Draw::Move),
            (mix.ioc_sweep, Draw::IocSweep),
            (mix.market_sweep, Draw::MarketSweep),
        ];
        let mut acc = 0;
        for (share, d) in table {
            acc += share;
            if r < acc {
                return d;
            }
        }
        Draw::Gtc
    }

    fn next_cmd(&mut self, mix: &Mix, corrected: &mut u64) -> Cmd {
        let n = self.live.len();
        let mut d = self.draw(mix);
        let removes = matches!(
            d,
            Draw::Ioc | Draw::Cancel | Draw::IocSweep | Draw::MarketSweep
        );
        if n + SLACK < BOOK_ORDERS && removes {
            d = Draw::Gtc;
            *corrected += 1;
        } else if n > BOOK_ORDERS + SLACK && d == Draw::Gtc {
            d = Draw::Cancel;
            *corrected += 1;
        }
        let side = self.rng.side();
        let cmd = match d {
            Draw::Gtc => None,
            Draw::Cancel => self.cancel(),
            Draw::Move => self.move_cmd(),
            Draw::Ioc => {
                self.aggressive(side, 1, 2)
                    .map(|(price, qty)| Cmd::Ioc { side, price, qty })
            }
            Draw::IocSweep => {
                self.aggressive(side, 3, 8)
                    .map(|(price, qty)| Cmd::Ioc { side, price, qty })
            }
            Draw::MarketSweep => self
                .aggressive(side, 3, 8)
                .map(|(_, qty)| Cmd::Market { side, qty }),
        };
        cmd.unwrap_or_else(|| self.gtc())
    }

    fn level_count(&self) -> usize {
        self.book.book.levels(Side::Buy).count() + self.book.book.levels(Side::Sell).count()
    }
}

fn generate(mix: Mix, ops: usize) -> Workload {
    let mut g = Generator::new(0x5EED_0000 + mix.name.len() as u64);
    for _ in 0..BOOK_ORDERS {
        let cmd = g.gtc();
        g.push(cmd);
    }
    let seeded = (g.book.book.len(), g.level_count());
    let seed = std::mem::take(&mut g.out);
    let mut kinds = [0u64; 5];
    let mut corrected = 0;
    let (mut omin, mut osum, mut omax) = (usize::MAX, 0usize, 0usize);
    let (mut lmin, mut lsum, mut lmax) = (usize::MAX, 0usize, 0usize);
    let (mut smin, mut ssum, mut smax) = (u64::MAX, 0u64, 0u64);
    let mut samples = 0usize;
    g.out.reserve(ops);
    for i in 0..ops {
        let cmd = g.next_cmd(&mix, &mut corrected);
        kinds[cmd.kind()] += 1;
        g.push(cmd);
        if i % 1000 == 999 {
            let (o, l) = (g.book.book.len(), g.level_count());
            (omin, osum, omax) = (omin.min(o), osum + o, omax.max(o));
            (lmin, lsum, lmax) = (lmin.min(l), lsum + l, lmax.max(l));
            if let (Some(b), Some(a)) = (g.best(Side::Buy), g.best(Side::Sell)) {
                let s = a - b;
                (smin, ssum, smax) = (smin.min(s), ssum + s, smax.max(s));
            }
            samples += 1;
        }
    }
    let samples = samples.max(1) as f64;
    Workload {
        mix,
        seed,
        stream: g.out,
        kinds,
        corrected,
        orders: (omin, osum as f64 / samples, omax),
        levels: (lmin, lsum as f64 / samples, lmax),
        spread: (smin, ssum as f64 / samples, smax),
        seeded,
    }
}

// ------------------------------------------------------------ engines

/// Final state of a book, for the consistency check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BookState {
    orders: usize,
    bid_levels: usize,
    ask_levels: usize,
    /// (price ticks, lots).
    best_bid: Option<(u64, u64)>,
    best_ask: Option<(u64, u64)>,
}

trait Engine {
    const NAME: &'static str;
    fn empty() -> Self;
    /// Applies one command; false when the engine refused it.
    fn apply(&mut self, seq: u64, cmd: &Cmd) -> bool;
    fn state(&self) -> BookState;

    fn seeded(seed: &[Cmd]) -> Self
    where
        Self: Sized,
    {
        let mut e = Self::empty();
        for (i, cmd) in seed.iter().enumerate() {
            e.apply(i as u64, cmd);
        }
        e
    }
}

fn instrument() -> Instrument {
    Instrument::spot(
        "BENCH-USD",
        "BENCH",
        "USD",
        Price::from_raw(TICK_RAW),
        Quantity::from_raw(LOT_RAW),
    )
}

const NOW: UnixNanos = UnixNanos(1);

/// tradestack-matching.
struct Ours {
    book: OrderBook,
    sink: Vec<BookEvent>,
}

#[inline(always)]
fn our_price(ticks: u64) -> Price {
    Price::from_raw(ticks as i64 * TICK_RAW)
}

#[inline(always)]
fn our_limit(seq: u64, side: Side, price: u64, qty: u64) -> NewOrder {
    NewOrder::limit(
        seq,
        (seq % 1024) as u32 + 1,
        side,
        our_price(price),
        Quantity::from_raw(qty as i64 * LOT_RAW),
    )
    .with_stp(StpMode::None)
}

impl Engine for Ours {
    const NAME: &'static str = "tradestack";

    fn empty() -> Self {
        Ours {
            book: OrderBook::new(instrument(), BookConfig::default()),
            sink: Vec::with_capacity(256),
        }
    }

    #[inline]
    fn apply(&mut self, seq: u64, cmd: &Cmd) -> bool {
        let sink = &mut self.sink;
        sink.clear();
        match *cmd {
            Cmd::Gtc { side, price, qty } => {
                self.book
                    .submit(&our_limit(seq, side, price, qty), NOW, sink)
            }
            Cmd::Ioc { side, price, qty } => self.book.submit(
                &our_limit(seq, side, price, qty).with_tif(TimeInForce::Ioc),
                NOW,
                sink,
            ),
            Cmd::Market { side, qty } => {
                let o = NewOrder::market(
                    seq,
                    (seq % 1024) as u32 + 1,
                    side,
                    Quantity::from_raw(qty as i64 * LOT_RAW),
                )
                .with_stp(StpMode::None);
                self.book.submit(&o, NOW, sink)
            }
            Cmd::Cancel { id } => self.book.cancel(OrderId(id), None, sink),
            Cmd::Move { id, price } => {
                self.book
                    .amend(OrderId(id), None, Some(our_price(price)), None, sink)
            }
        }
        !matches!(sink.first(), Some(BookEvent::Rejected { .. }))
    }

    fn state(&self) -> BookState {
        let conv =
            |(p, q): (Price, Quantity)| ((p.raw() / TICK_RAW) as u64, (q.raw() / LOT_RAW) as u64);
        BookState {
            orders: self.book.len(),
            bid_levels: self.book.levels(Side::Buy).count(),
            ask_levels: self.book.levels(Side::Sell).count(),
            best_bid: self.book.best_bid().map(conv),
            best_ask: self.book.best_ask().map(conv),
        }
    }
}

/// matchcore 0.4.
struct Matchcore {
    book: matchcore::OrderBook,
}

#[inline(always)]
fn mc_side(side: Side) -> matchcore::Side {
    match side {
        Side::Buy => matchcore::Side::Buy,
        Side::Sell => matchcore::Side::Sell,
    }
}

#[inline(always)]
fn mc_limit(side: Side, price: u64, qty: u64, tif: matchcore::TimeInForce) -> matchcore::NewOrder {
    matchcore::NewOrder::Limit(matchcore::LimitOrder::new(
        matchcore::Price(price),
        matchcore::QuantityPolicy::Standard {
            quantity: matchcore::Quantity(qty),
        },
        matchcore::OrderFlags::new(mc_side(side), false, tif),
    ))
}

impl Engine for Matchcore {
    const NAME: &'static str = "matchcore";

    fn empty() -> Self {
        Matchcore {
            book: matchcore::OrderBook::new("BENCH-USD"),
        }
    }

    #[inline]
    fn apply(&mut self, seq: u64, cmd: &Cmd) -> bool {
        use matchcore::{
            AmendCmd, AmendPatch, CancelCmd, CommandKind, LimitOrderPatch, MarketOrder, OrderKind,
            SubmitCmd, TimeInForce as Tif,
        };
        let kind = match *cmd {
            Cmd::Gtc { side, price, qty } => CommandKind::Submit(SubmitCmd {
                order: mc_limit(side, price, qty, Tif::Gtc),
            }),
            Cmd::Ioc { side, price, qty } => CommandKind::Submit(SubmitCmd {
                order: mc_limit(side, price, qty, Tif::Ioc),
            }),
            Cmd::Market { side, qty } => CommandKind::Submit(SubmitCmd {
                order: matchcore::NewOrder::Market(MarketOrder::new(
                    matchcore::Quantity(qty),
                    mc_side(side),
                    false,
                )),
            }),
            Cmd::Cancel { id } => CommandKind::Cancel(CancelCmd {
                order_id: matchcore::OrderId(id),
                order_kind: OrderKind::Limit,
            }),
            Cmd::Move { id, price } => CommandKind::Amend(AmendCmd {
                order_id: matchcore::OrderId(id),
                patch: AmendPatch::Limit(
                    LimitOrderPatch::new().with_price(matchcore::Price(price)),
                ),
            }),
        };
        let command = matchcore::Command {
            meta: matchcore::CommandMeta {
                sequence_number: matchcore::SequenceNumber(seq),
                timestamp: matchcore::Timestamp(seq),
            },
            kind,
        };
        let outcome = self.book.execute(&command);
        matches!(outcome, matchcore::CommandOutcome::Applied(_))
    }

    fn state(&self) -> BookState {
        let conv = |(p, q): (matchcore::Price, matchcore::Quantity)| (p.0, q.0);
        let limit = self.book.limit();
        BookState {
            orders: limit.orders().len(),
            bid_levels: limit.bids().len(),
            ask_levels: limit.asks().len(),
            best_bid: self.book.best_bid().map(conv),
            best_ask: self.book.best_ask().map(conv),
        }
    }
}

/// orderbook-rs 0.15.
struct OrderbookRs {
    book: orderbook_rs::OrderBook<()>,
}

#[inline(always)]
fn obr_side(side: Side) -> orderbook_rs::Side {
    match side {
        Side::Buy => orderbook_rs::Side::Buy,
        Side::Sell => orderbook_rs::Side::Sell,
    }
}

impl Engine for OrderbookRs {
    const NAME: &'static str = "orderbook-rs";

    fn empty() -> Self {
        OrderbookRs {
            book: orderbook_rs::OrderBook::new("BENCH-USD"),
        }
    }

    #[inline]
    fn apply(&mut self, seq: u64, cmd: &Cmd) -> bool {
        use orderbook_rs::{Id, TimeInForce as Tif};
        let b = &self.book;
        match *cmd {
            Cmd::Gtc { side, price, qty } => b
                .add_limit_order(
                    Id::from_u64(seq),
                    u128::from(price),
                    qty,
                    obr_side(side),
                    Tif::Gtc,
                    None,
                )
                .is_ok(),
            Cmd::Ioc { side, price, qty } => b
                .add_limit_order(
                    Id::from_u64(seq),
                    u128::from(price),
                    qty,
                    obr_side(side),
                    Tif::Ioc,
                    None,
                )
                .is_ok(),
            Cmd::Market { side, qty } => b
                .submit_market_order(Id::from_u64(seq), qty, obr_side(side))
                .is_ok(),
            Cmd::Cancel { id } => matches!(b.cancel_order(Id::from_u64(id)), Ok(Some(_))),
            Cmd::Move { id, price } => matches!(
                b.update_order(pricelevel::OrderUpdate::UpdatePrice {
                    order_id: Id::from_u64(id),
                    new_price: pricelevel::Price::new(u128::from(price)),
                }),
                Ok(Some(_))
            ),
        }
    }

    fn state(&self) -> BookState {
        use orderbook_rs::Side as S;
        let b = &self.book;
        let top = |p: Option<u128>, s: S| {
            p.map(|p| (p as u64, b.visible_quantity_at_price(p, s).unwrap_or(0)))
        };
        BookState {
            orders: b.get_all_orders().len(),
            bid_levels: b.get_bt_bids().map_or(0, |m| m.len()),
            ask_levels: b.get_bt_asks().map_or(0, |m| m.len()),
            best_bid: top(b.best_bid(), S::Buy),
            best_ask: top(b.best_ask(), S::Sell),
        }
    }
}

// ------------------------------------------------------------ reports

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn fmt_pcts(h: &Histogram<u64>) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.value_at_quantile(0.9999),
        h.max()
    )
}

fn fmt_state(s: &BookState) -> String {
    let top = |t: Option<(u64, u64)>| t.map_or("-".to_string(), |(p, q)| format!("{q}@{p}"));
    format!(
        "orders {} levels {}+{} bid {} ask {}",
        s.orders,
        s.bid_levels,
        s.ask_levels,
        top(s.best_bid),
        top(s.best_ask)
    )
}

/// Runs the same tiny scenarios on each engine and prints the resulting books,
/// to show where their semantics differ.
fn probe_semantics() {
    fn probe<E: Engine>(cmds: &[Cmd]) -> (usize, BookState) {
        let mut e = E::empty();
        let refused = cmds
            .iter()
            .enumerate()
            .filter(|(i, c)| !e.apply(*i as u64, c))
            .count();
        (refused, e.state())
    }
    let asks = [
        Cmd::Gtc {
            side: Side::Sell,
            price: 1000,
            qty: 1,
        },
        Cmd::Gtc {
            side: Side::Sell,
            price: 1005,
            qty: 10,
        },
    ];
    let scenarios: [(&str, Cmd); 3] = [
        (
            "GTC buy 5 @1000 into asks 1@1000, 10@1005",
            Cmd::Gtc {
                side: Side::Buy,
                price: 1000,
                qty: 5,
            },
        ),
        (
            "IOC buy 5 @1000 into asks 1@1000, 10@1005",
            Cmd::Ioc {
                side: Side::Buy,
                price: 1000,
                qty: 5,
            },
        ),
        (
            "move ask 1@1000 to 1006 (price change)",
            Cmd::Move { id: 0, price: 1006 },
        ),
    ];
    println!("\n## Semantics probe (expected price-time result: trades stop at the limit)\n");
    for (label, cmd) in scenarios {
        let cmds = [asks[0], asks[1], cmd];
        println!("{label}:");
        for (name, (refused, state)) in [
            (Ours::NAME, probe::<Ours>(&cmds)),
            (Matchcore::NAME, probe::<Matchcore>(&cmds)),
            (OrderbookRs::NAME, probe::<OrderbookRs>(&cmds)),
        ] {
            println!("  {name:>12}: refused {refused}, {}", fmt_state(&state));
        }
    }
}

/// One run over the whole stream: allocations, refusals and the final book.
fn check_run<E: Engine>(w: &Workload) -> (BookState, usize, u64, u64, u64) {
    let mut e = E::seeded(&w.seed);
    let base = w.seed.len() as u64;
    let warm = w.stream.len() / 10;
    let mut refused = 0usize;
    let mut ops_with_alloc = 0u64;
    let mut steady_allocs = 0u64;
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for (i, cmd) in w.stream.iter().enumerate() {
        let before = allocs();
        if !e.apply(base + i as u64, cmd) {
            refused += 1;
        }
        let n = allocs() - before;
        if n > 0 {
            ops_with_alloc += 1;
            if i >= warm {
                steady_allocs += n;
            }
        }
    }
    COUNTING.store(false, Ordering::Relaxed);
    let total = allocs();
    let state = e.state();
    drop(e);
    (state, refused, total, ops_with_alloc, steady_allocs)
}

/// `Instant` around every command.
fn latency_run<E: Engine>(w: &Workload) -> (Histogram<u64>, Vec<Histogram<u64>>, f64) {
    let mut e = E::seeded(&w.seed);
    let base = w.seed.len() as u64;
    let mut all = histogram();
    let mut by_kind: Vec<Histogram<u64>> = (0..KINDS.len()).map(|_| histogram()).collect();
    let start = Instant::now();
    for (i, cmd) in w.stream.iter().enumerate() {
        let t0 = Instant::now();
        black_box(e.apply(base + i as u64, black_box(cmd)));
        let ns = t0.elapsed().as_nanos() as u64;
        all.saturating_record(ns.max(1));
        by_kind[cmd.kind()].saturating_record(ns.max(1));
    }
    let secs = start.elapsed().as_secs_f64();
    drop(e);
    (all, by_kind, w.stream.len() as f64 / secs)
}

/// Stand-in pre-trade risk: a size limit and a ±10% collar around the last
/// trade price (the mid before any trade).
#[inline]
fn risk_ok(book: &OrderBook, cmd: &Cmd) -> bool {
    let reference = book
        .last_trade_price()
        .map_or(MID, |p| (p.raw() / TICK_RAW) as u64);
    let collar = |p: u64| p.abs_diff(reference) * 10 <= reference;
    match *cmd {
        Cmd::Gtc { price, qty, .. } | Cmd::Ioc { price, qty, .. } => {
            qty <= 1_000_000 && collar(price)
        }
        Cmd::Market { qty, .. } => qty <= 1_000_000,
        Cmd::Move { price, .. } => collar(price),
        Cmd::Cancel { .. } => true,
    }
}

/// Our engine at a fixed offered rate, latency from the scheduled start.
fn fixed_rate_run(w: &Workload, period: Duration) -> (Histogram<u64>, u64, u64, f64) {
    let mut e = Ours::seeded(&w.seed);
    let base = w.seed.len() as u64;
    let mut h = histogram();
    let mut late = 0u64;
    let mut risk_refused = 0u64;
    let start = Instant::now() + Duration::from_millis(1);
    let mut sched = start;
    for (i, cmd) in w.stream.iter().enumerate() {
        let mut now = Instant::now();
        if now > sched {
            late += 1;
        }
        while now < sched {
            std::hint::spin_loop();
            now = Instant::now();
        }
        if risk_ok(&e.book, cmd) {
            black_box(e.apply(base + i as u64, cmd));
        } else {
            risk_refused += 1;
        }
        let ns = sched.elapsed().as_nanos() as u64;
        h.saturating_record(ns.max(1));
        sched += period;
    }
    let achieved = w.stream.len() as f64 / start.elapsed().as_secs_f64();
    (h, late, risk_refused, achieved)
}

fn timer_overhead() -> Histogram<u64> {
    let mut h = histogram();
    for _ in 0..1_000_000 {
        let t0 = Instant::now();
        let ns = black_box(t0).elapsed().as_nanos() as u64;
        h.saturating_record(ns.max(1));
    }
    h
}

/// Gaps between consecutive `Instant::now()` readings in a busy loop: the time
/// the machine (scheduler, hypervisor, interrupts) takes from a spinning thread.
fn platform_jitter(d: Duration) {
    let mut h = histogram();
    let (mut over_10us, mut over_1ms) = (0u64, 0u64);
    let mut lost = Duration::ZERO;
    let start = Instant::now();
    let mut prev = start;
    loop {
        let now = Instant::now();
        let gap = now - prev;
        h.saturating_record((gap.as_nanos() as u64).max(1));
        if gap > Duration::from_micros(10) {
            over_10us += 1;
            lost += gap;
        }
        if gap > Duration::from_millis(1) {
            over_1ms += 1;
        }
        if now - start >= d {
            break;
        }
        prev = now;
    }
    println!(
        "Platform jitter, busy loop reading Instant for {:?}: gap p50 {} ns, p99.99 {} ns, max {} ns; {} gaps > 10 us ({:.2}% of the time), {} gaps > 1 ms",
        d,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9999),
        h.max(),
        over_10us,
        100.0 * lost.as_secs_f64() / d.as_secs_f64(),
        over_1ms
    );
}

fn report(workloads: &[Workload]) {
    probe_semantics();

    println!("\n## Workloads\n");
    println!(
        "| mix | seeded orders / levels | stream | gtc | ioc | market | cancel | move | corrected draws | orders min/mean/max | levels min/mean/max | spread (ticks) min/mean/max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for w in workloads {
        let n = w.stream.len() as f64;
        let pct = |k: usize| format!("{:.1}%", 100.0 * w.kinds[k] as f64 / n);
        println!(
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {:.1}% | {} / {:.0} / {} | {} / {:.0} / {} | {} / {:.1} / {} |",
            w.mix.name,
            w.seeded.0,
            w.seeded.1,
            w.stream.len(),
            pct(0),
            pct(1),
            pct(2),
            pct(3),
            pct(4),
            100.0 * w.corrected as f64 / n,
            w.orders.0,
            w.orders.1,
            w.orders.2,
            w.levels.0,
            w.levels.1,
            w.levels.2,
            w.spread.0,
            w.spread.1,
            w.spread.2,
        );
    }

    println!();
    platform_jitter(Duration::from_secs(2));
    let t = timer_overhead();
    println!(
        "\nTimer overhead (Instant::now + elapsed, nothing between), ns: p50 {} p99 {} p99.99 {} max {}",
        t.value_at_quantile(0.5),
        t.value_at_quantile(0.99),
        t.value_at_quantile(0.9999),
        t.max()
    );

    let mut lat_rows = Vec::new();
    let mut kind_rows = Vec::new();
    println!("\n## Consistency and allocations (whole stream, fresh seeded book)\n");
    println!(
        "| mix | engine | refused | final book | allocations | per op | ops that allocated | allocations after the first 10% |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for w in workloads {
        macro_rules! engine {
            ($E:ty) => {{
                let (state, refused, total, ops_alloc, steady) = check_run::<$E>(w);
                println!(
                    "| {} | {} | {} | {} | {} | {:.3} | {} | {} |",
                    w.mix.name,
                    <$E>::NAME,
                    refused,
                    fmt_state(&state),
                    total,
                    total as f64 / w.stream.len() as f64,
                    ops_alloc,
                    steady
                );
                let (all, by_kind, rate) = latency_run::<$E>(w);
                lat_rows.push(format!(
                    "| {} | {} | {} | {:.2} |",
                    w.mix.name,
                    <$E>::NAME,
                    fmt_pcts(&all),
                    rate / 1e6
                ));
                let kinds: Vec<String> = by_kind
                    .iter()
                    .map(|h| {
                        if h.is_empty() {
                            "-".to_string()
                        } else {
                            format!(
                                "{} / {}",
                                h.value_at_quantile(0.5),
                                h.value_at_quantile(0.99)
                            )
                        }
                    })
                    .collect();
                kind_rows.push(format!(
                    "| {} | {} | {} |",
                    w.mix.name,
                    <$E>::NAME,
                    kinds.join(" | ")
                ));
            }};
        }
        engine!(Ours);
        engine!(Matchcore);
        engine!(OrderbookRs);
    }

    println!("\n## Per-command latency, Instant around each command (ns)\n");
    println!("| mix | engine | p50 | p99 | p99.9 | p99.99 | max | M cmd/s in this loop |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &lat_rows {
        println!("{r}");
    }
    println!("\n## Per-command latency by kind, p50 / p99 (ns)\n");
    println!("| mix | engine | {} |", KINDS.join(" | "));
    println!("|---|---|{}", "---|".repeat(KINDS.len()));
    for r in &kind_rows {
        println!("{r}");
    }

    println!();
    platform_jitter(Duration::from_secs(2));
    println!(
        "\n## tradestack at a fixed offered rate of 1M cmd/s, risk check + command, latency from scheduled start (ns)\n"
    );
    println!(
        "| mix | p50 | p99 | p99.9 | p99.99 | max | started late | risk refused | achieved M cmd/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for w in workloads {
        let (h, late, refused, achieved) = fixed_rate_run(w, Duration::from_nanos(1_000));
        println!(
            "| {} | {} | {} | {} | {:.3} |",
            w.mix.name,
            fmt_pcts(&h),
            late,
            refused,
            achieved / 1e6
        );
    }
    println!();
}

// ------------------------------------------------------------ criterion

fn bench_engine<E: Engine>(g: &mut BenchmarkGroup<'_, WallTime>, w: &Workload) {
    let ops = &w.stream[..CRITERION_OPS.min(w.stream.len())];
    let base = w.seed.len() as u64;
    g.bench_function(E::NAME, |b| {
        b.iter_batched_ref(
            || E::seeded(&w.seed),
            |e| {
                for (i, cmd) in ops.iter().enumerate() {
                    black_box(e.apply(base + i as u64, black_box(cmd)));
                }
            },
            BatchSize::PerIteration,
        )
    });
}

fn criterion_benches(c: &mut Criterion, workloads: &[Workload]) {
    for w in workloads {
        let mut g = c.benchmark_group(format!("matching_{}", w.mix.name));
        g.throughput(Throughput::Elements(
            CRITERION_OPS.min(w.stream.len()) as u64
        ));
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(20);
        g.warm_up_time(Duration::from_secs(2));
        g.measurement_time(Duration::from_secs(5));
        bench_engine::<Ours>(&mut g, w);
        bench_engine::<Matchcore>(&mut g, w);
        bench_engine::<OrderbookRs>(&mut g, w);
        g.finish();
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) or
    // with `--test`, Criterion runs each benchmark once: keep the report short.
    let args: Vec<String> = std::env::args().collect();
    let test_mode = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let list_mode = args.iter().any(|a| a == "--list");
    let ops = if test_mode { 20_000 } else { STREAM_OPS };
    let workloads: Vec<Workload> = MIXES.iter().map(|&m| generate(m, ops)).collect();
    let skip = std::env::var_os("MATCHING_BENCH_SKIP_REPORT").is_some_and(|v| v != "0");
    if !list_mode && !skip {
        report(&workloads);
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &workloads);
    c.final_summary();
}
