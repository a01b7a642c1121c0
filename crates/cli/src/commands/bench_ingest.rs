//! `tradestack bench ingest`: line-protocol ingest end to end, from this
//! process into a running server.
//!
//! The command generates N lines of trades up front, in memory (a seeded
//! random walk per symbol: `symbol` and `side` tags, `price` and `quantity`
//! floats, a `trade_id` integer, nanosecond timestamps 1 ms apart), then
//! sends the same lines to each target given, one target after the other:
//!
//! - `--ilp tcp://HOST:PORT`: our line protocol over TCP, the lines split
//!   into `--connections` contiguous parts sent in parallel;
//! - `--http URL`: our `/write?precision=n`, `--batch` lines per request,
//!   `--connections` requests in flight;
//! - `--influx URL`: InfluxDB 1.x `/write?db=bench&precision=ns`, the same
//!   batches and concurrency (the database is created first).
//!
//! Each target gets its own new table (measurement), named after the run, so
//! runs never mix; the names have the same length, so every target gets the
//! same bytes but for the name. Timing starts with the first byte sent. "Sent" stops when
//! the last byte is written (TCP) or the last request is answered (HTTP);
//! "visible" stops when a `count` over the table returns N: for us, the lines
//! are then in the write-ahead log (under the server's fsync policy) and
//! answer queries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Options of the ingest benchmark.
pub struct IngestBench {
    /// Lines to send to each target.
    pub lines: usize,
    /// Our line protocol over TCP, `tcp://host:port`.
    pub ilp: Option<String>,
    /// Our HTTP `/write`, e.g. `http://127.0.0.1:8700`.
    pub http: Option<String>,
    /// Where the TCP target's rows are counted: our HTTP API.
    pub query_url: String,
    /// InfluxDB 1.x, e.g. `http://127.0.0.1:8086`.
    pub influx: Option<String>,
    /// Lines per HTTP request.
    pub batch: usize,
    /// Parallel TCP connections, and HTTP requests in flight.
    pub connections: usize,
    /// Longest wait for the lines to become visible.
    pub timeout: Duration,
}

/// The symbols the generated trades cycle through, with starting prices.
const SYMBOLS: [(&str, f64); 8] = [
    ("BTC-USDT", 43_000.0),
    ("ETH-USDT", 2_300.0),
    ("SOL-USDT", 98.0),
    ("BNB-USDT", 310.0),
    ("XRP-USDT", 0.62),
    ("ADA-USDT", 0.55),
    ("DOGE-USDT", 0.09),
    ("LTC-USDT", 72.0),
];

/// 2026-01-05T00:00:00Z: the first trade's timestamp.
const START_NS: i64 = 1_767_571_200_000_000_000;
/// Time between two trades.
const STEP_NS: i64 = 1_000_000;

/// The generated input for one target: the lines and where each batch ends.
struct Input {
    bytes: Bytes,
    /// Byte offsets of line boundaries every `batch` lines, from 0 to the end.
    batches: Vec<usize>,
}

impl Input {
    fn batch(&self, i: usize) -> Bytes {
        self.bytes.slice(self.batches[i]..self.batches[i + 1])
    }

    fn batch_count(&self) -> usize {
        self.batches.len() - 1
    }
}

/// splitmix64: a small, seeded generator, so every target gets the same lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` trades lines into `measurement`, cut into batches of `batch` lines.
fn generate(measurement: &str, n: usize, batch: usize) -> Input {
    use std::io::Write;
    let mut rng = Rng(0x5EED);
    let mut prices: Vec<f64> = SYMBOLS.iter().map(|(_, p)| *p).collect();
    let mut out = Vec::with_capacity(n * (measurement.len() + 96));
    let mut batches = vec![0];
    for i in 0..n {
        let s = (rng.next() % SYMBOLS.len() as u64) as usize;
        // A random walk of ±5 bp per trade.
        prices[s] *= 1.0 + (rng.unit() - 0.5) * 0.001;
        let side = if rng.next() & 1 == 0 { "buy" } else { "sell" };
        let quantity = 0.0001 + rng.unit() * 2.0;
        let decimals = if prices[s] < 1.0 { 5 } else { 2 };
        writeln!(
            out,
            "{measurement},symbol={},side={side} price={:.*},quantity={quantity:.4},trade_id={}i {}",
            SYMBOLS[s].0,
            decimals,
            prices[s],
            i + 1,
            START_NS + i as i64 * STEP_NS
        )
        .expect("writing to memory");
        if (i + 1) % batch == 0 || i + 1 == n {
            batches.push(out.len());
        }
    }
    Input {
        bytes: Bytes::from(out),
        batches,
    }
}

/// One target's figures.
struct Outcome {
    target: String,
    sent: Duration,
    visible: Duration,
}

/// Runs the benchmark against every target given and prints a table.
pub async fn ingest(opts: IngestBench) -> anyhow::Result<()> {
    if opts.ilp.is_none() && opts.http.is_none() && opts.influx.is_none() {
        bail!("no target: give --ilp tcp://HOST:PORT, --http URL and/or --influx URL");
    }
    let n = opts.lines.max(1);
    let batch = opts.batch.max(1);
    let connections = opts.connections.max(1);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let client = reqwest::Client::new();
    let mut outcomes = Vec::new();
    println!(
        "ingest: {n} trades lines per target, {connections} connection(s), HTTP batches of {batch} lines"
    );

    if let Some(ilp) = &opts.ilp {
        let table = format!("bench_trades_{run}_tcp");
        let input = generate(&table, n, batch);
        print_input("TCP", &table, &input);
        let addr = ilp
            .strip_prefix("tcp://")
            .with_context(|| format!("--ilp {ilp}: expected tcp://HOST:PORT"))?
            .trim_end_matches('/')
            .to_string();
        let base = opts.query_url.trim_end_matches('/').to_string();
        let started = Instant::now();
        send_tcp(&addr, &input, connections).await?;
        let sent = started.elapsed();
        wait_visible(opts.timeout, || our_count(&client, &base, &table), n).await?;
        outcomes.push(Outcome {
            target: format!("tradestack TCP {ilp}"),
            sent,
            visible: started.elapsed(),
        });
    }

    if let Some(http) = &opts.http {
        let base = http.trim_end_matches('/').to_string();
        let table = format!("bench_trades_{run}_htp");
        let input = generate(&table, n, batch);
        print_input("HTTP", &table, &input);
        let url = format!("{base}/write?precision=n");
        let started = Instant::now();
        send_http(&client, &url, &input, connections).await?;
        let sent = started.elapsed();
        wait_visible(opts.timeout, || our_count(&client, &base, &table), n).await?;
        outcomes.push(Outcome {
            target: format!("tradestack HTTP {base}"),
            sent,
            visible: started.elapsed(),
        });
    }

    if let Some(influx) = &opts.influx {
        let base = influx.trim_end_matches('/').to_string();
        let r = client
            .post(format!("{base}/query"))
            .query(&[("q", "CREATE DATABASE bench")])
            .send()
            .await
            .with_context(|| format!("cannot reach InfluxDB at {base}"))?;
        if !r.status().is_success() {
            bail!(
                "InfluxDB {base}: CREATE DATABASE bench answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        let measurement = format!("bench_trades_{run}_ifx");
        let input = generate(&measurement, n, batch);
        print_input("InfluxDB", &measurement, &input);
        let url = format!("{base}/write?db=bench&precision=ns");
        let started = Instant::now();
        send_http(&client, &url, &input, connections).await?;
        let sent = started.elapsed();
        wait_visible(
            opts.timeout,
            || influx_count(&client, &base, &measurement),
            n,
        )
        .await?;
        outcomes.push(Outcome {
            target: format!("InfluxDB HTTP {base}"),
            sent,
            visible: started.elapsed(),
        });
    }

    let width = outcomes
        .iter()
        .map(|o| o.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!();
    println!(
        "{:<width$}  {:>10}  {:>8}  {:>12}  {:>9}  {:>12}",
        "target", "lines", "sent s", "sent lines/s", "visible s", "vis. lines/s"
    );
    for o in &outcomes {
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "{:<width$}  {:>10}  {:>8.3}  {:>12}  {:>9.3}  {:>12}",
            o.target,
            n,
            o.sent.as_secs_f64(),
            thousands(rate(o.sent)),
            o.visible.as_secs_f64(),
            thousands(rate(o.visible))
        );
    }
    if let Some(influx) = outcomes.iter().find(|o| o.target.starts_with("InfluxDB")) {
        for o in outcomes
            .iter()
            .filter(|o| o.target.starts_with("tradestack"))
        {
            // Over TCP, "sent" is only the kernel taking the bytes.
            let acked = if o.target.starts_with("tradestack HTTP") {
                format!(
                    "{:.2}x acknowledged, ",
                    influx.sent.as_secs_f64() / o.sent.as_secs_f64()
                )
            } else {
                String::new()
            };
            println!(
                "{} against InfluxDB: {acked}{:.2}x visible",
                o.target,
                influx.visible.as_secs_f64() / o.visible.as_secs_f64()
            );
        }
    }
    Ok(())
}

fn print_input(target: &str, table: &str, input: &Input) {
    let lines_total = input.bytes.iter().filter(|&&b| b == b'\n').count();
    println!(
        "  {target}: table {table}, {} MB, {:.1} bytes/line",
        input.bytes.len() / 1_000_000,
        input.bytes.len() as f64 / lines_total.max(1) as f64
    );
}

/// `v` with thousands separators, rounded to a whole number.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Splits the lines into `connections` contiguous parts (at batch
/// boundaries) and writes each over its own connection; returns once every
/// byte is written and every connection closed its sending side.
async fn send_tcp(addr: &str, input: &Input, connections: usize) -> anyhow::Result<()> {
    let parts = connections.min(input.batch_count()).max(1);
    let per = input.batch_count().div_ceil(parts);
    let mut tasks = Vec::new();
    for p in 0..parts {
        let from = input.batches[(p * per).min(input.batch_count())];
        let to = input.batches[((p + 1) * per).min(input.batch_count())];
        if from == to {
            continue;
        }
        let bytes = input.bytes.slice(from..to);
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to line protocol at tcp://{addr}"))?;
        stream.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await?
            .with_context(|| format!("sending line protocol to tcp://{addr}"))?;
    }
    Ok(())
}

/// Posts every batch to `url`, `connections` requests in flight; fails on
/// the first refused batch.
async fn send_http(
    client: &reqwest::Client,
    url: &str,
    input: &Input,
    connections: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let batches: Arc<Vec<Bytes>> =
        Arc::new((0..input.batch_count()).map(|i| input.batch(i)).collect());
    let mut tasks = Vec::new();
    for _ in 0..connections.min(batches.len()).max(1) {
        let (client, url, next, batches) = (
            client.clone(),
            url.to_string(),
            next.clone(),
            batches.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = batches.get(i) else {
                    return anyhow::Ok(());
                };
                let r = client
                    .post(&url)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(body.clone())
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                if !r.status().is_success() {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    bail!(
                        "{url}: batch {i} answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Polls `count` until it reaches `n`, for at most `timeout`.
async fn wait_visible<F, Fut>(timeout: Duration, mut count: F, n: usize) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<u64>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let c = count().await?;
        if c.is_some_and(|c| c >= n as u64) {
            return Ok(());
        }
        last = c.or(last);
        if Instant::now() >= deadline {
            bail!(
                "only {} of {n} lines visible after {:?}",
                last.unwrap_or(0),
                timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rows in our `table`, or none while the table does not exist yet.
async fn our_count(
    client: &reqwest::Client,
    base: &str,
    table: &str,
) -> anyhow::Result<Option<u64>> {
    let r = client
        .get(format!("{base}/exec"))
        .query(&[("query", format!("SELECT count(*) FROM {table}"))])
        .send()
        .await
        .with_context(|| format!("cannot reach {base}/exec"))?;
    if r.status() == reqwest::StatusCode::BAD_REQUEST {
        // The table is created by the first batch stored.
        return Ok(None);
    }
    if !r.status().is_success() {
        bail!("{base}/exec answered {}", r.status());
    }
    let v: Value = r.json().await.context("reading the /exec answer")?;
    Ok(v["dataset"][0][0].as_u64())
}

/// Points in InfluxDB's `measurement` (its `trade_id` field), or none while
/// it has none.
async fn influx_count(
    client: &reqwest::Client,
    base: &str,
    measurement: &str,
) -> anyhow::Result<Option<u64>> {
    let r = client
        .get(format!("{base}/query"))
        .query(&[
            ("db", "bench"),
            (
                "q",
                &format!("SELECT count(trade_id) FROM \"{measurement}\""),
            ),
        ])
        .send()
        .await
        .with_context(|| format!("cannot reach InfluxDB at {base}"))?;
    if !r.status().is_success() {
        bail!("InfluxDB {base}/query answered {}", r.status());
    }
    let v: Value = r.json().await.context("reading InfluxDB's answer")?;
    Ok(v["results"][0]["series"][0]["values"][0][1].as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_parse_and_batch() {
        let input = generate("t", 25, 10);
        assert_eq!(input.batch_count(), 3);
        let text = std::str::from_utf8(&input.bytes).unwrap();
        assert_eq!(text.lines().count(), 25);
        assert!(text.starts_with("t,symbol="), "{text}");
        let last = input.batch(2);
        assert_eq!(last.iter().filter(|&&b| b == b'\n').count(), 5);
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }
}
