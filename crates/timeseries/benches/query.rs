//! SQL over the time-series store, on Parquet.
//!
//! Workload: 10,000,000 trades in the built-in `trades` table (exact
//! `DECIMAL(38,8)` price and quantity, `symbol`, `venue` and `side`
//! symbols, a `trade_id`), 4 symbols over 10 UTC days (2026-01-05 to
//! 2026-01-14), 1,000,000 trades a day about 86 ms apart, the symbol of
//! each trade drawn at random (about 250,000 trades per symbol and day),
//! prices a random walk per symbol. The rows go in through
//! `Store::commit` in batches of 100,000, and each day is flushed to
//! Parquet before the next one is written: one file per day, ten files,
//! nothing left in memory. Setup takes tens of seconds and is not timed.
//!
//! Timed, through `QueryEngine::sql` (planning included, results collected):
//! - `bars_1m_one_day`: one day of 1-minute OHLCV bars for one symbol
//!   (`date_bin`, `first_value`/`last_value` ordered by time, `max`, `min`,
//!   `sum`), filtered on the designated timestamp, so only that day's file
//!   is read: 1,440 bars out of about 250,000 trades. Throughput counts the
//!   rows of the day's file (1,000,000).
//! - `full_scan_aggregate`: count, sum of quantity and max of price per
//!   symbol over all 10,000,000 rows. Throughput counts all rows.
//!
//! Before timing, the bars are checked once: 1,440 of them, trade counts
//! and volume summing exactly to that symbol's day as generated, and the
//! days whose files the plan reads are printed. After Criterion, the bars
//! query is timed again (median of 15) without its time filter, and with
//! DataFusion's Parquet filter pushdown on, for comparison.
//!
//! `cargo bench -p tradestack-timeseries --bench query`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use tradestack_timeseries::{QueryEngine, Store, StoreConfig, Value};
use tradestack_wal::FsyncPolicy;

const DAY: i64 = 86_400_000_000_000;
/// 2026-01-05T00:00:00Z.
const T0: i64 = 1_767_571_200_000_000_000;
const DAYS: i64 = 10;
const PER_DAY: i64 = 1_000_000;
const BATCH: i64 = 100_000;
const SYMBOLS: [&str; 4] = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT"];
/// Starting prices, in 10^-8 units.
const START_PRICES: [i128; 4] = [
    43_000 * 100_000_000,
    2_300 * 100_000_000,
    98 * 100_000_000,
    310 * 100_000_000,
];
/// The day and symbol the bars query asks for.
const QUERY_DAY: i64 = 3;
const QUERY_SYMBOL: usize = 0;

const BARS_SQL: &str = "SELECT date_bin(INTERVAL '1 minute', timestamp) AS minute, \
     first_value(price ORDER BY timestamp) AS open, max(price) AS high, \
     min(price) AS low, last_value(price ORDER BY timestamp) AS close, \
     sum(quantity) AS volume, count(*) AS trades \
     FROM trades \
     WHERE symbol = 'BTC-USDT' \
     AND timestamp >= '2026-01-08T00:00:00Z' AND timestamp < '2026-01-09T00:00:00Z' \
     GROUP BY minute ORDER BY minute";

const SCAN_SQL: &str =
    "SELECT symbol, count(*), sum(quantity), max(price) FROM trades GROUP BY symbol";

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
}

/// What the generator wrote for the queried symbol and day.
struct Expected {
    trades: i64,
    volume: i128,
}

/// Writes the workload into `store`, flushing each day to Parquet.
fn fill(store: &Store) -> Expected {
    let mut rng = Rng(42);
    let mut prices = START_PRICES;
    let mut expected = Expected {
        trades: 0,
        volume: 0,
    };
    let spacing = DAY / PER_DAY;
    let mut trade_id = 0i64;
    for day in 0..DAYS {
        let day_start = T0 + day * DAY;
        for chunk in 0..PER_DAY / BATCH {
            let mut b = store.builder("trades").expect("trades table");
            for k in 0..BATCH {
                let i = chunk * BATCH + k;
                let r = rng.next();
                let s = (r % 4) as usize;
                // ±10 bp steps; quantity 0.00000001 to about 2.
                let step = ((r >> 8) % 21) as i128 - 10;
                prices[s] += prices[s] * step / 100_000;
                let quantity = ((r >> 16) % 200_000_000) as i128 + 1;
                let ts = day_start + i * spacing + ((r >> 40) as i64 % spacing);
                trade_id += 1;
                if day == QUERY_DAY && s == QUERY_SYMBOL {
                    expected.trades += 1;
                    expected.volume += quantity;
                }
                b.push_row(
                    ts,
                    [
                        ("symbol", Value::Str(SYMBOLS[s]), true),
                        ("venue", Value::Str("tradestack"), true),
                        (
                            "side",
                            Value::Str(if r & 1 == 0 { "buy" } else { "sell" }),
                            true,
                        ),
                        ("price", Value::Decimal(prices[s]), false),
                        ("quantity", Value::Decimal(quantity), false),
                        ("trade_id", Value::Long(trade_id), false),
                    ],
                )
                .expect("row fits the trades table");
            }
            store.commit(vec![b]).expect("commit");
        }
        store.flush().expect("flush to parquet");
    }
    expected
}

fn rows(r: &tradestack_timeseries::QueryResult) -> usize {
    r.batches.iter().map(|b| b.num_rows()).sum()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        // Setup speed only: the log is deleted by each day's flush anyway.
        fsync: FsyncPolicy::Never,
        flush_rows: usize::MAX,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config).expect("open store");
    let started = Instant::now();
    let expected = fill(&store);
    let files = store.files("trades");
    let bytes: u64 = files
        .iter()
        .map(|f| {
            std::fs::metadata(dir.path().join(&f.path))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    println!(
        "setup: {} trades in {} Parquet files ({} MB) in {:.1} s; {} in memory",
        DAYS * PER_DAY,
        files.len(),
        bytes / 1_000_000,
        started.elapsed().as_secs_f64(),
        store.mem_rows()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = QueryEngine::new(store.clone());

    // Check the bars once.
    let t = Instant::now();
    let bars = rt.block_on(engine.sql(BARS_SQL)).expect("bars query");
    let first = t.elapsed();
    assert_eq!(rows(&bars), 1_440, "one bar per minute");
    let (mut trades, mut volume) = (0i64, 0i128);
    for b in &bars.batches {
        let v = b.column(5).as_primitive::<Decimal128Type>();
        let n = b.column(6).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            volume += v.value(i);
            trades += n.value(i);
        }
    }
    assert_eq!(trades, expected.trades, "trades in the bars");
    assert_eq!(volume, expected.volume, "volume in the bars");
    println!(
        "bars: 1440 bars from {} trades, volume exact; first run {:.1} ms",
        expected.trades,
        first.as_secs_f64() * 1e3
    );
    // Which files the bars query reads.
    let plan = rt
        .block_on(engine.sql(&format!("EXPLAIN {BARS_SQL}")))
        .expect("explain");
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan.batches)
        .expect("format plan")
        .to_string();
    // Files appear as `.../<day>/<n>.parquet`, possibly with a byte range.
    let mut read: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter_map(|w| w.find(".parquet").map(|end| &w[..end]))
        .filter_map(|w| w.rsplit('/').nth(1))
        .collect();
    read.sort_unstable();
    read.dedup();
    println!("bars: the plan reads the files of {read:?}");
    let scan = rt.block_on(engine.sql(SCAN_SQL)).expect("scan query");
    let total: i64 = scan
        .batches
        .iter()
        .flat_map(|b| {
            let n = b.column(1).as_primitive::<Int64Type>().clone();
            (0..n.len()).map(move |i| n.value(i))
        })
        .sum();
    assert_eq!(total, DAYS * PER_DAY, "every row scanned");

    let mut g = c.benchmark_group("query");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(PER_DAY as u64));
    g.bench_function("bars_1m_one_day", |b| {
        b.iter(|| rt.block_on(engine.sql(BARS_SQL)).expect("bars"))
    });
    g.throughput(Throughput::Elements((DAYS * PER_DAY) as u64));
    g.bench_function("full_scan_aggregate", |b| {
        b.iter(|| rt.block_on(engine.sql(SCAN_SQL)).expect("scan"))
    });
    g.finish();

    // Outside Criterion, for comparison: the bars without the time filter
    // (every day's file is read), and with DataFusion's Parquet filter
    // pushdown (decode the other columns only where `symbol` matches), on
    // a second engine so the timed one keeps the store's settings.
    let all_days = BARS_SQL.replace(
        "AND timestamp >= '2026-01-08T00:00:00Z' AND timestamp < '2026-01-09T00:00:00Z' ",
        "",
    );
    println!(
        "bars without the time filter (10 days, 14,400 bars): median {:.1} ms",
        median_ms(&rt, &engine, &all_days)
    );
    let pushdown = QueryEngine::new(store.clone());
    rt.block_on(pushdown.sql("SET datafusion.execution.parquet.pushdown_filters = true"))
        .expect("set pushdown_filters");
    println!(
        "bars with parquet.pushdown_filters = true: median {:.1} ms",
        median_ms(&rt, &pushdown, BARS_SQL)
    );
    println!(
        "full scan with parquet.pushdown_filters = true: median {:.1} ms",
        median_ms(&rt, &pushdown, SCAN_SQL)
    );
}

/// Median wall time of 15 runs of `sql`, in milliseconds.
fn median_ms(rt: &tokio::runtime::Runtime, engine: &QueryEngine, sql: &str) -> f64 {
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(engine.sql(sql)).expect("query");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

criterion_group!(benches, bench);
criterion_main!(benches);
