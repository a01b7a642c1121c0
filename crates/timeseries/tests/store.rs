//! The store end to end in one process: writes, SQL, restart from the log,
//! flush to Parquet, pruning, compaction and retention.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use tradestack_lineproto::Precision;
use tradestack_timeseries::{QueryEngine, Store, StoreConfig};

const DAY: i64 = 86_400_000_000_000;
const T0: i64 = 1_582_329_600_000_000_000; // 2020-02-22T00:00:00Z

fn config() -> StoreConfig {
    StoreConfig {
        compact_min_files: 3,
        ..StoreConfig::default()
    }
}

async fn scalar_i64(engine: &QueryEngine, sql: &str) -> i64 {
    let r = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = &r.batches[0];
    b.column(0).as_primitive::<Int64Type>().value(0)
}

fn lines(n: usize, start: i64, step: i64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "trades,symbol=BTC-USDT,side=buy price={}.5,quantity=0.01 {}\n",
                40_000 + i,
                start + i as i64 * step
            )
        })
        .collect()
}

#[tokio::test]
async fn writes_survive_restart_flush_and_compaction_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), config()).unwrap();
        let out = store
            .write_lines(
                lines(100, T0, 1_000_000_000).as_bytes(),
                Precision::Nanoseconds,
                0,
                false,
            )
            .unwrap();
        assert_eq!((out.accepted, out.errors.len()), (100, 0));
        let engine = QueryEngine::new(store.clone());
        assert_eq!(
            scalar_i64(&engine, "SELECT count(*) FROM trades").await,
            100
        );
        // Exact decimals through SQL.
        let r = engine.sql("SELECT sum(price) FROM trades").await.unwrap();
        let sum = r.batches[0]
            .column(0)
            .as_primitive::<Decimal128Type>()
            .value(0);
        // sum of (40000 + i + 0.5) for i in 0..100, at 8 decimals.
        assert_eq!(sum, (4_000_000 + 4_950 + 50) * 100_000_000);
    }
    // Reopened from the log alone.
    let store = Store::open(dir.path(), config()).unwrap();
    let engine = QueryEngine::new(store.clone());
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM trades").await,
        100
    );
    let report = store.flush().unwrap();
    assert_eq!(report.flushed_rows, 100);
    assert_eq!(store.mem_rows(), 0);
    // More writes on two more days, then flushes: three files on day 0.
    for k in 1..3 {
        store
            .write_lines(
                lines(10, T0 + k * 1_000, 1).as_bytes(),
                Precision::Nanoseconds,
                0,
                false,
            )
            .unwrap();
        store.flush().unwrap();
    }
    store
        .write_lines(
            lines(5, T0 + DAY, 1).as_bytes(),
            Precision::Nanoseconds,
            0,
            false,
        )
        .unwrap();
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM trades").await,
        125
    );
    drop(engine);
    drop(store);
    // Reopened: Parquet files plus the log's tail, nothing twice.
    let store = Store::open(dir.path(), config()).unwrap();
    let engine = QueryEngine::new(store.clone());
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM trades").await,
        125
    );
    assert_eq!(store.files("trades").len(), 3);
    let report = store.maintain(T0 + 2 * DAY).unwrap();
    assert_eq!(report.flushed_rows, 5);
    assert_eq!(report.files_compacted, 3);
    let files = store.files("trades");
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM trades").await,
        125
    );
    drop(engine);
    drop(store);
    let store = Store::open(dir.path(), config()).unwrap();
    let engine = QueryEngine::new(store.clone());
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM trades").await,
        125
    );
    // Time filters prune whole files.
    let snap = store.snapshot("trades", T0 + DAY, T0 + DAY + 10).unwrap();
    assert_eq!(snap.files.len(), 1);
    assert_eq!(
        scalar_i64(
            &engine,
            "SELECT count(*) FROM trades WHERE timestamp >= '2020-02-23T00:00:00Z'"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn bad_lines_are_refused_one_by_one_and_schemas_grow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let input = b"cpu,host=a usage=1.5 1\n\
                  cpu,host=a usage=oops 2\n\
                  cpu,host=b usage=2.5,cores=8i 3\n\
                  cpu,host=c usage=\"text\" 4\n\
                  cpu,host=d usage=3.5 5\n";
    let out = store
        .write_lines(input, Precision::Nanoseconds, 0, false)
        .unwrap();
    assert_eq!(out.accepted, 3);
    let lines: Vec<usize> = out.errors.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![2, 4], "{:?}", out.errors);
    assert!(out.errors[1].1.contains("usage"), "{}", out.errors[1].1);
    let engine = QueryEngine::new(store.clone());
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM cpu").await, 3);
    assert_eq!(
        scalar_i64(&engine, "SELECT count(cores) FROM cpu").await,
        1,
        "the new column is null in the older rows"
    );
    // Stop at the first error: only what came before is stored.
    let out = store
        .write_lines(
            b"cpu,host=e usage=1 6\nbroken\ncpu,host=f usage=1 7\n",
            Precision::Nanoseconds,
            0,
            true,
        )
        .unwrap();
    assert_eq!((out.accepted, out.errors.len()), (1, 1));
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM cpu").await, 4);
}

#[tokio::test]
async fn retention_drops_old_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    store
        .write_lines(
            format!("signals,source=s,symbol=X,name=z value=1 {T0}\nsignals,source=s,symbol=X,name=z value=2 {}\n", T0 + 100 * DAY).as_bytes(),
            Precision::Nanoseconds,
            0,
            false,
        )
        .unwrap();
    let report = store.maintain(T0 + 100 * DAY).unwrap();
    assert_eq!(report.files_expired, 1, "{report:?}");
    let engine = QueryEngine::new(store.clone());
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM signals").await, 1);
}

#[tokio::test]
async fn bad_sql_reports_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let engine = QueryEngine::new(store);
    let err = engine.sql("SELECT * FROM").await.err().unwrap();
    assert!(!err.message.is_empty());
    let err = engine.sql("SELECT nope FROM trades").await.err().unwrap();
    assert!(err.message.contains("nope"), "{}", err.message);
}

#[tokio::test]
async fn files_are_sorted_by_symbol_then_time_in_prunable_row_groups() {
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::parquet::file::statistics::Statistics;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    // 150,000 trades 1 ms apart, the two symbols interleaved.
    let n = 150_000usize;
    let body: String = (0..n)
        .map(|i| {
            let symbol = if i % 2 == 0 { "BTC-USDT" } else { "ETH-USDT" };
            format!(
                "trades,symbol={symbol},side=buy price={}.5,quantity=0.01 {}\n",
                1_000 + i,
                T0 + i as i64 * 1_000_000
            )
        })
        .collect();
    let out = store
        .write_lines(body.as_bytes(), Precision::Nanoseconds, 0, false)
        .unwrap();
    assert_eq!((out.accepted, out.errors.len()), (n, 0));
    store.flush().unwrap();
    let files = store.files("trades");
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].min_ts, files[0].max_ts),
        (T0, T0 + (n as i64 - 1) * 1_000_000)
    );

    let file = std::fs::File::open(dir.path().join(&files[0].path)).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = reader.metadata().clone();
    // 65,536 rows a group: BTC fills group 0, ETH group 2, group 1 has both.
    assert_eq!(meta.num_row_groups(), 3);
    let symbol_idx = reader
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "symbol")
        .unwrap();
    let range = |g: usize| match meta.row_group(g).column(symbol_idx).statistics() {
        Some(Statistics::ByteArray(s)) => (
            String::from_utf8(s.min_opt().unwrap().data().to_vec()).unwrap(),
            String::from_utf8(s.max_opt().unwrap().data().to_vec()).unwrap(),
        ),
        other => panic!("symbol statistics: {other:?}"),
    };
    assert_eq!(range(0), ("BTC-USDT".into(), "BTC-USDT".into()));
    assert_eq!(range(1), ("BTC-USDT".into(), "ETH-USDT".into()));
    assert_eq!(range(2), ("ETH-USDT".into(), "ETH-USDT".into()));

    // Every row, in (symbol, timestamp) order.
    let mut rows: Vec<(String, i64)> = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let symbols = batch.column_by_name("symbol").unwrap().as_string::<i32>();
        let ts = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        for i in 0..batch.num_rows() {
            rows.push((symbols.value(i).to_string(), ts.value(i)));
        }
    }
    assert_eq!(rows.len(), n);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "not sorted");

    let engine = QueryEngine::new(store.clone());
    assert_eq!(
        scalar_i64(
            &engine,
            "SELECT count(*) FROM trades WHERE symbol = 'ETH-USDT'"
        )
        .await,
        75_000
    );
}
