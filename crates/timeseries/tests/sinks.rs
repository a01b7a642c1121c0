//! Sinks against real servers: PostgreSQL, InfluxDB 1.x, and the QuestDB
//! client against our own QuestDB-compatible line-protocol TCP ingest.
//!
//! A test whose server is not running prints `SKIPPED ...` and passes,
//! except under `CI=true` (where `.ci/run` starts the servers): there it fails.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use futures::FutureExt;
use tradestack_timeseries::metrics::IngestMetrics;
use tradestack_timeseries::schema::builtin_tables;
use tradestack_timeseries::sinks::influx::{InfluxConfig, InfluxSink};
use tradestack_timeseries::sinks::postgres::{PostgresConfig, PostgresSink};
use tradestack_timeseries::sinks::questdb::{QuestDbConfig, QuestDbSink};
use tradestack_timeseries::sinks::{
    Forwarder, ForwarderOptions, ForwarderStats, Sink, SinkConfig, SinkError, build,
};
use tradestack_timeseries::{BatchBuilder, QueryEngine, Store, StoreConfig, TableSchema, Value};

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
/// 2024-03-01T00:00:00Z.
const D1: i64 = 1_709_251_200_000_000_000;
const ROWS: i64 = 20;
/// First price, 42000.12345678, in 10^-8 units.
const P0: i128 = 4_200_012_345_678;
/// Price step, 0.01000001.
const STEP: i128 = 1_000_001;

/// Skips locally, fails under `CI=true`.
fn skip(msg: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {msg}"
    );
    eprintln!("SKIPPED {msg}");
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn price(i: i64) -> i128 {
    P0 + STEP * i128::from(i)
}

/// Sum of every price, exact.
fn price_sum() -> i128 {
    (0..ROWS).map(price).sum()
}

fn price_text(i: i64) -> String {
    let p = price(i);
    let frac = format!("{:08}", p % 100_000_000);
    format!("{}.{}", p / 100_000_000, frac.trim_end_matches('0'))
}

/// `ROWS` trades an hour apart from 12:00 on D1: 12 rows on D1, 8 on D2.
fn trades() -> (TableSchema, RecordBatch) {
    let mut b = BatchBuilder::new(builtin_tables().remove(0));
    for i in 0..ROWS {
        b.push_row(
            D1 + 12 * HOUR + i * HOUR,
            [
                (
                    "symbol",
                    Value::Str(if i % 2 == 0 { "BTC-USDT" } else { "ETH-USDT" }),
                    true,
                ),
                ("venue", Value::Str("sim"), true),
                (
                    "side",
                    Value::Str(if i % 3 == 0 { "sell" } else { "buy" }),
                    true,
                ),
                ("price", Value::Decimal(price(i)), false),
                (
                    "quantity",
                    Value::Decimal(1_000_000 * i128::from(i + 1)),
                    false,
                ),
                ("trade_id", Value::Long(i), false),
            ],
        )
        .unwrap();
    }
    let batch = b.finish();
    (b.schema().clone(), batch)
}

const TRICKY: &str = "a,b \"quoted\"\nsecond line\n\\.\nend\r\n";

// ---------------------------------------------------------------- PostgreSQL

fn pg_url() -> String {
    std::env::var("TRADESTACK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[tokio::test]
async fn postgres_copies_exact_numerics_into_daily_partitions() {
    let url = pg_url();
    let admin = match sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(p) => p,
        Err(e) => return skip(&format!("PostgreSQL at {url} unreachable: {e}")),
    };
    let schema = unique("sinks");
    let outcome = AssertUnwindSafe(postgres_checks(&url, &schema, &admin))
        .catch_unwind()
        .await;
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn postgres_checks(url: &str, schema: &str, admin: &sqlx::PgPool) {
    let sink = PostgresSink::new(PostgresConfig {
        url: url.into(),
        schema: schema.into(),
        retention: BTreeMap::from([("trades".to_string(), Duration::from_secs(86_400))]),
        ..PostgresConfig::default()
    })
    .unwrap();
    // TimescaleDB is not installed on the test machines, so this exercises
    // native declarative partitioning; the hypertable path is not run here.
    assert!(
        !sink.timescale().await.unwrap(),
        "timescaledb is installed: this test expects native partitioning"
    );
    let (table, batch) = trades();
    assert_eq!(sink.write(&table, &batch).await.unwrap(), ROWS as u64);

    let q = format!("\"{schema}\".\"trades\"");
    let (count, sum): (i64, String) =
        sqlx::query_as(&format!("SELECT count(*), sum(price)::text FROM {q}"))
            .fetch_one(admin)
            .await
            .unwrap();
    assert_eq!(count, ROWS);
    let want = price_sum();
    assert_eq!(
        sum,
        format!("{}.{:08}", want / 100_000_000, want % 100_000_000)
    );
    let first: String =
        sqlx::query_scalar(&format!("SELECT price::text FROM {q} WHERE trade_id = 0"))
            .fetch_one(admin)
            .await
            .unwrap();
    assert_eq!(first, "42000.12345678");

    let parts = partitions(admin, schema).await;
    assert_eq!(parts, ["trades_p20240301", "trades_p20240302"]);
    let per_day: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT tableoid::regclass::text, count(*) FROM {q} GROUP BY 1 ORDER BY 1"
    ))
    .fetch_all(admin)
    .await
    .unwrap();
    assert_eq!(
        per_day.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [12, 8],
        "{per_day:?}"
    );

    // New columns later: ALTER TABLE ADD COLUMN, and COPY escaping.
    let mut b = BatchBuilder::new(table);
    let ts_ns = D1 + DAY + 20 * HOUR + 123_456_789;
    b.push_row(
        D1 + DAY + 20 * HOUR,
        [
            ("symbol", Value::Str("BTC-USDT"), true),
            ("trade_id", Value::Long(100), false),
            ("note", Value::Str(TRICKY), false),
            ("big", Value::ULong(u64::MAX), false),
            ("seen", Value::Timestamp(ts_ns), false),
            ("ok", Value::Bool(true), false),
        ],
    )
    .unwrap();
    b.push_row(
        D1 + DAY + 21 * HOUR,
        [
            ("trade_id", Value::Long(101), false),
            ("note", Value::Str(""), false),
        ],
    )
    .unwrap();
    b.push_row(
        D1 + DAY + 22 * HOUR,
        [("trade_id", Value::Long(102), false)],
    )
    .unwrap();
    let batch = b.finish();
    assert_eq!(sink.write(b.schema(), &batch).await.unwrap(), 3);

    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'trades' ORDER BY ordinal_position",
    )
    .bind(schema)
    .fetch_all(admin)
    .await
    .unwrap();
    let cols: Vec<String> = cols.iter().map(|(c, t)| format!("{c}:{t}")).collect();
    assert_eq!(
        cols,
        [
            "timestamp:timestamp with time zone",
            "symbol:text",
            "venue:text",
            "side:text",
            "price:numeric",
            "quantity:numeric",
            "trade_id:bigint",
            "note:text",
            "big:numeric",
            "seen:timestamp with time zone",
            "ok:boolean",
        ]
    );
    type Row = (Option<String>, Option<String>, Option<i64>, Option<bool>);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT note, big::text, (extract(epoch FROM seen) * 1000000)::bigint, ok \
         FROM {q} WHERE trade_id >= 100 ORDER BY trade_id"
    ))
    .fetch_all(admin)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                Some(TRICKY.to_string()),
                Some("18446744073709551615".to_string()),
                // Nanoseconds truncated to PostgreSQL's microseconds.
                Some(ts_ns / 1000),
                Some(true)
            ),
            (Some(String::new()), None, None, None),
            (None, None, None, None),
        ]
    );

    // Retention: with a day to keep, at D3 01:00 the whole of D1 is older
    // than the cutoff (D2 01:00) and D2 is not.
    let dropped = sink.expire(D1 + 2 * DAY + HOUR).await.unwrap();
    assert_eq!(dropped, ["trades_p20240301"]);
    assert_eq!(partitions(admin, schema).await, ["trades_p20240302"]);
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {q}"))
        .fetch_one(admin)
        .await
        .unwrap();
    assert_eq!(count, 8 + 3);
    // A write for the dropped day creates its partition again.
    let (table, batch) = trades();
    assert_eq!(sink.write(&table, &batch).await.unwrap(), ROWS as u64);
    assert_eq!(
        partitions(admin, schema).await,
        ["trades_p20240301", "trades_p20240302"]
    );
    eprintln!(
        "postgres: {ROWS} rows in 2 daily partitions, exact sum {sum}, ALTER, COPY escaping and expiry checked in schema {schema}"
    );
}

async fn partitions(pool: &sqlx::PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_namespace n ON n.oid = p.relnamespace \
         WHERE n.nspname = $1 AND p.relname = 'trades' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

// ------------------------------------------------------------ InfluxDB 1.x

fn influx_url() -> String {
    std::env::var("TRADESTACK_TEST_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

/// Runs an InfluxQL statement; returns the CSV answer.
async fn influxql(base: &str, db: &str, q: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/query"))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .header("Accept", "application/csv")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "{q}: {status} {body}");
    body
}

#[tokio::test]
async fn influxdb_v1_receives_every_row_with_decimal_text_floats() {
    let base = influx_url();
    match reqwest::get(format!("{base}/ping")).await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            return skip(&format!(
                "InfluxDB at {base}: /ping answered {}",
                r.status()
            ));
        }
        Err(e) => return skip(&format!("InfluxDB at {base} unreachable: {e}")),
    }
    let db = unique("sinks");
    influxql(&base, "", &format!("CREATE DATABASE \"{db}\"")).await;
    let outcome = AssertUnwindSafe(influx_checks(&base, &db))
        .catch_unwind()
        .await;
    influxql(&base, "", &format!("DROP DATABASE \"{db}\"")).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn influx_checks(base: &str, db: &str) {
    let sink = InfluxSink::new(InfluxConfig {
        url: base.into(),
        database: Some(db.into()),
        // Small requests, so one batch takes several.
        batch_lines: 7,
        ..InfluxConfig::default()
    })
    .unwrap();
    let (table, batch) = trades();
    assert_eq!(sink.write(&table, &batch).await.unwrap(), ROWS as u64);

    let count = influxql(base, db, "SELECT count(\"price\") FROM \"trades\"").await;
    assert!(
        count.lines().nth(1).unwrap().ends_with(&format!(",{ROWS}")),
        "{count}"
    );
    // Each price arrives as the float printed from its exact decimal text.
    let prices = influxql(base, db, "SELECT \"price\" FROM \"trades\" ORDER BY time").await;
    let got: Vec<&str> = prices
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    let want: Vec<String> = (0..ROWS).map(price_text).collect();
    assert_eq!(got, want, "{prices}");
    let tags = influxql(
        base,
        db,
        "SHOW TAG VALUES FROM \"trades\" WITH KEY = \"symbol\"",
    )
    .await;
    assert!(
        tags.contains("BTC-USDT") && tags.contains("ETH-USDT"),
        "{tags}"
    );

    // InfluxDB 1.x has no unsigned integers: a ULONG goes as `i`. A row
    // with only tags has no field and is skipped.
    let mut b = BatchBuilder::new(TableSchema::new("extras"));
    b.push_row(
        D1,
        [
            ("symbol", Value::Str("BTC-USDT"), true),
            ("big", Value::ULong(7), false),
            ("note", Value::Str(TRICKY), false),
        ],
    )
    .unwrap();
    b.push_row(D1 + 1, [("symbol", Value::Str("ETH-USDT"), true)])
        .unwrap();
    let batch = b.finish();
    assert_eq!(sink.write(b.schema(), &batch).await.unwrap(), 1);
    assert_eq!(sink.skipped(), 1);
    let extras = influxql(base, db, "SELECT \"big\" FROM \"extras\"").await;
    assert!(extras.lines().nth(1).unwrap().ends_with(",7"), "{extras}");

    // A database that does not exist: the status and body come back.
    let missing = InfluxSink::new(InfluxConfig {
        url: base.into(),
        database: Some(format!("{db}_missing")),
        ..InfluxConfig::default()
    })
    .unwrap();
    let (table, batch) = trades();
    match missing.write(&table, &batch).await {
        Err(SinkError::Status { status, body, .. }) => {
            assert_eq!(status, 404, "{body}");
            assert!(body.contains("database not found"), "{body}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    eprintln!(
        "influxdb: {ROWS} trades in 3 requests, prices as exact decimal text, ULONG as i, a tag-only row skipped, 404 reported (database {db})"
    );
}

// ------------------------------------------------------------------ QuestDB

/// Our store behind our line-protocol TCP listener on a free port.
async fn tcp_store() -> (tempfile::TempDir, Store, u16) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let clock: Arc<dyn tradestack_kernel::Clock> = Arc::new(tradestack_kernel::RealClock::new());
    tokio::spawn(tradestack_timeseries::tcp::serve(
        listener,
        store.clone(),
        clock,
        IngestMetrics::default(),
    ));
    (dir, store, port)
}

async fn wait_for_count(engine: &QueryEngine, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = match engine.sql(sql).await {
            Ok(r) if !r.batches.is_empty() => {
                r.batches[0].column(0).as_primitive::<Int64Type>().value(0)
            }
            _ => -1,
        };
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// No QuestDB server here: this checks the questdb-rs client's wire format
// against our QuestDB-compatible ingest, not a real QuestDB.
#[tokio::test]
async fn questdb_client_rows_arrive_in_our_tcp_ingest() {
    let (_dir, store, port) = tcp_store().await;
    let sink = QuestDbSink::new(QuestDbConfig {
        name: None,
        conf: format!("tcp::addr=127.0.0.1:{port};"),
    })
    .unwrap();
    let (table, batch) = trades();
    assert_eq!(sink.write(&table, &batch).await.unwrap(), ROWS as u64);
    let mut b = BatchBuilder::new(TableSchema::new("notes"));
    b.push_row(
        D1,
        [
            ("symbol", Value::Str("BTC USDT,x=y"), true),
            ("note", Value::Str("a, \"quoted\" note"), false),
            ("n", Value::Long(-3), false),
            ("ok", Value::Bool(false), false),
        ],
    )
    .unwrap();
    let notes = b.finish();
    assert_eq!(sink.write(b.schema(), &notes).await.unwrap(), 1);

    let engine = QueryEngine::new(store.clone());
    wait_for_count(&engine, "SELECT count(*) FROM trades", ROWS).await;
    wait_for_count(&engine, "SELECT count(*) FROM notes", 1).await;
    // Floats printed from the exact decimal text read back as the same decimals.
    let r = engine.sql("SELECT sum(price) FROM trades").await.unwrap();
    let sum = r.batches[0]
        .column(0)
        .as_primitive::<Decimal128Type>()
        .value(0);
    assert_eq!(sum, price_sum());
    wait_for_count(
        &engine,
        "SELECT count(*) FROM trades WHERE symbol = 'ETH-USDT' AND side = 'buy' AND venue = 'sim'",
        (0..ROWS).filter(|i| i % 2 == 1 && i % 3 != 0).count() as i64,
    )
    .await;
    wait_for_count(
        &engine,
        "SELECT count(*) FROM notes WHERE symbol = 'BTC USDT,x=y' AND note = 'a, \"quoted\" note' AND n = -3 AND NOT ok",
        1,
    )
    .await;
    eprintln!(
        "questdb-rs -> our TCP ingest: {ROWS} trades with exact sum, escaped symbol and string"
    );
}

// ---------------------------------------------------------------- Forwarder

#[tokio::test]
async fn forwarder_delivers_in_the_background() {
    let (_dir, store, port) = tcp_store().await;
    let sinks = build(&[SinkConfig::Questdb(QuestDbConfig {
        name: Some("local".into()),
        conf: format!("tcp::addr=127.0.0.1:{port};"),
    })])
    .await
    .unwrap();
    assert_eq!(sinks[0].name(), "local");
    let fwd = Forwarder::spawn(sinks);
    for _ in 0..3 {
        let (table, batch) = trades();
        fwd.forward(table, batch);
    }
    let stats = fwd.shutdown().await;
    assert_eq!(
        stats,
        ForwarderStats {
            rows: 3 * ROWS as u64,
            dropped: 0,
            failed: 0
        }
    );
    let engine = QueryEngine::new(store);
    wait_for_count(&engine, "SELECT count(*) FROM trades", 3 * ROWS).await;
    eprintln!("forwarder: 3 batches delivered in the background: {stats:?}");
}

#[tokio::test]
async fn forwarder_drops_when_full_and_gives_up_after_retries() {
    // A port nobody listens on: every connect is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sink = QuestDbSink::new(QuestDbConfig {
        name: None,
        conf: format!("tcp::addr=127.0.0.1:{port};"),
    })
    .unwrap();
    let fwd = Forwarder::with_options(
        vec![Arc::new(sink)],
        ForwarderOptions {
            capacity: 1,
            retries: 2,
            backoff: Duration::from_millis(5),
        },
    );
    // The test runtime has one thread: the worker cannot take anything off
    // its queue before this test awaits, so one batch fits and four are dropped.
    let started = Instant::now();
    for _ in 0..5 {
        let (table, batch) = trades();
        fwd.forward(table, batch);
    }
    assert!(started.elapsed() < Duration::from_secs(1), "forward waited");
    assert_eq!(fwd.dropped(), 4);
    // The queued batch fails three times (connection refused), then is given up.
    let stats = fwd.shutdown().await;
    assert_eq!(
        stats,
        ForwarderStats {
            rows: 0,
            dropped: 4,
            failed: 1
        }
    );
    eprintln!("forwarder with an unreachable sink: {stats:?}");
}

// ------------------------------------------------------------- configuration

#[derive(serde::Deserialize)]
struct Root {
    marketdata: MarketData,
}

#[derive(serde::Deserialize)]
struct MarketData {
    sinks: Vec<SinkConfig>,
}

#[tokio::test]
async fn sink_configs_read_from_toml_and_build() {
    let text = r#"
        [[marketdata.sinks]]
        kind = "questdb"
        conf = "tcp::addr=127.0.0.1:9009;"

        [[marketdata.sinks]]
        kind = "influxdb"
        url = "http://127.0.0.1:8086"
        database = "market"
        batch_lines = 5000
        timeout = "5s"

        [[marketdata.sinks]]
        kind = "influxdb"
        name = "influx2"
        url = "http://127.0.0.1:8086"
        org = "desk"
        bucket = "market"
        token = "secret"

        [[marketdata.sinks]]
        kind = "postgres"
        url = "postgres://postgres@127.0.0.1:5432/test"
        schema = "market"
        retention = { trades = "30days", quotes = "7d" }
        compress_after = "2d"
    "#;
    let root: Root = toml::from_str(text).unwrap();
    let sinks = build(&root.marketdata.sinks).await.unwrap();
    let names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["questdb", "influxdb", "influx2", "postgres"]);
    match &root.marketdata.sinks[3] {
        SinkConfig::Postgres(c) => {
            assert_eq!(c.retention["trades"], Duration::from_secs(30 * 86_400));
            assert_eq!(c.max_connections, 4);
        }
        other => panic!("{other:?}"),
    }
    // Unknown settings and kinds are refused.
    let typo =
        "[[marketdata.sinks]]\nkind = \"postgres\"\nurl = \"postgres://x\"\nschemas = \"m\"\n";
    let err = toml::from_str::<Root>(typo).err().expect("typo refused");
    assert!(err.to_string().contains("schemas"), "{err}");
    assert!(toml::from_str::<Root>("[[marketdata.sinks]]\nkind = \"kdb\"\n").is_err());
    // An InfluxDB sink needs a database or a bucket.
    let none = SinkConfig::Influxdb(InfluxConfig::default());
    assert!(matches!(build(&[none]).await, Err(SinkError::Config(_))));
}

#[tokio::test]
async fn influx_connection_errors_say_why() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sink = InfluxSink::new(InfluxConfig {
        url: format!("http://127.0.0.1:{port}"),
        database: Some("market".into()),
        ..InfluxConfig::default()
    })
    .unwrap();
    let (table, batch) = trades();
    let err = sink.write(&table, &batch).await.unwrap_err();
    assert!(matches!(err, SinkError::Request { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}
