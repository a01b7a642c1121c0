//! The market-data service through a running `tradestack up`: line protocol
//! over HTTP and TCP, QuestDB's official client, SQL and CSV export, CSV
//! import, the exchange's trades recorded, and acknowledged writes
//! surviving `kill -9`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{BIN, Proc};
use serde_json::{Value, json};

fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Proc {
    let data = dir.join("data");
    let mut env = vec![("TRADESTACK_DATA_DIR", data.to_str().unwrap())];
    env.extend_from_slice(extra);
    Proc::start(&["up"], &env, dir)
}

fn tcp_addr(p: &Proc) -> String {
    p.url("ilp").trim_start_matches("tcp://").to_string()
}

async fn exec(base: &str, sql: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}/exec"))
        .query(&[("query", sql)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn count(base: &str, sql: &str) -> i64 {
    let (s, v) = exec(base, sql).await;
    assert_eq!(s, 200, "{sql}: {v}");
    v["dataset"][0][0].as_i64().unwrap_or_else(|| panic!("{v}"))
}

/// Polls until `sql` counts at least `want`, or gives up after 20 s. The
/// table may not exist until the first rows arrive.
async fn wait_count(base: &str, sql: &str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = exec(base, sql).await;
        let n = if status == 200 {
            v["dataset"][0][0].as_i64().unwrap_or(0)
        } else {
            0
        };
        if n >= want || Instant::now() > deadline {
            assert_eq!(status, 200, "{sql}: {v}");
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_over_http_and_tcp_then_sql_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path(), &[]);
    let base = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/ping")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // InfluxDB 1.x path, seconds: one bad line among good ones.
    let body = "cpu,host=a,region=eu usage=0.5,cores=8i 1582329600\n\
                cpu,host=b usage=oops 1582329601\n\
                cpu,host=c usage=1.5,up=true,note=\"a, \\\"quoted\\\" note\" 1582329602\n\
                cpu,host=d usage=2.5 1582329603\n";
    let r = http
        .post(format!("{base}/write?db=x&precision=s"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid");
    assert_eq!(v["line"], 2, "{v}");
    assert!(v["errorId"].is_string() && v["message"].is_string(), "{v}");
    assert_eq!(v["accepted"], 3);
    assert_eq!(count(&base, "SELECT count(*) FROM cpu").await, 3);

    // InfluxDB 2.x path, milliseconds.
    let r = http
        .post(format!("{base}/api/v2/write?org=o&bucket=b&precision=ms"))
        .body("cpu,host=e usage=3.5 1582329604000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = http
        .post(format!("{base}/write?precision=fortnights"))
        .body("cpu usage=1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "precision", "{v}");

    // TCP: what precedes a bad line is kept, then the server hangs up.
    let mut s = std::net::TcpStream::connect(tcp_addr(&proc)).unwrap();
    s.write_all(
        b"cpu,host=f usage=4.5 1582329605000000000\n\
          cpu,host=g usage=5.5 1582329606000000000\n\
          cpu,host=h usage= 1582329607000000000\n\
          cpu,host=i usage=6.5 1582329608000000000\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let closed = std::io::Read::read(&mut s, &mut buf);
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the server closes the connection"
    );
    assert_eq!(wait_count(&base, "SELECT count(*) FROM cpu", 6).await, 6);
    assert_eq!(
        count(&base, "SELECT count(*) FROM cpu WHERE host = 'i'").await,
        0
    );

    // QuestDB's /exec shape, with limit.
    let (status, v) = exec(
        &base,
        "SELECT host, usage, cores, up, note, timestamp FROM cpu ORDER BY timestamp",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let types: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "SYMBOL",
            "DOUBLE",
            "LONG",
            "BOOLEAN",
            "VARCHAR",
            "TIMESTAMP"
        ]
    );
    assert_eq!(v["timestamp"], 5);
    assert_eq!(v["count"], 6);
    assert_eq!(
        v["dataset"][0],
        json!(["a", 0.5, 8, null, null, "2020-02-22T00:00:00.000000Z"])
    );
    assert_eq!(v["dataset"][1][4], "a, \"quoted\" note");
    let r = http
        .get(format!("{base}/exec"))
        .query(&[
            ("query", "SELECT host FROM cpu ORDER BY timestamp"),
            ("limit", "2,4"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["dataset"], json!([["d"], ["e"]]));

    // Bad SQL: 400 with the query, the error and a position.
    let (status, v) = exec(&base, "SELECT * FROM cpu WHERE").await;
    assert_eq!(status, 400);
    assert_eq!(v["query"], "SELECT * FROM cpu WHERE");
    assert!(v["error"].is_string() && v["position"].is_u64(), "{v}");
    let (status, v) = exec(&base, "SELECT * FROM no_such_table").await;
    assert_eq!(status, 400, "{v}");

    // CSV export.
    let csv = http
        .get(format!("{base}/exp"))
        .query(&[(
            "query",
            "SELECT host, note FROM cpu WHERE host IN ('a','c') ORDER BY host",
        )])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv,
        "\"host\",\"note\"\r\na,\r\nc,\"a, \"\"quoted\"\" note\"\r\n"
    );

    // CSV import over HTTP and through the CLI, then `tradestack query`.
    let r = http
        .post(format!("{base}/imp?name=fx"))
        .header("content-type", "text/csv")
        .body("timestamp,pair,rate\n2020-02-22T00:00:00Z,EURUSD,1.08\nnot-a-time,GBPUSD,1.3\n1582329601000,USDJPY,111.5\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["rows_imported"].as_u64(), v["rows_rejected"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["errors"][0]["line"], 3, "{v}");
    let file = dir.path().join("more_fx.csv");
    let mut text = String::from("timestamp,pair,rate\n");
    for i in 0..5000 {
        text.push_str(&format!("{},X{i},1.{i}\n", 1_582_329_700_000i64 + i));
    }
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "import",
            file.to_str().unwrap(),
            "--table",
            "fx",
            "--url",
            &base,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 5000 rows into fx"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = std::process::Command::new(BIN)
        .args([
            "query",
            "SELECT pair, rate FROM fx WHERE pair = 'EURUSD'",
            "--url",
            &base,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("EURUSD") && table.contains("1.08") && table.contains("(1 row)"),
        "{table}"
    );
    let out = std::process::Command::new(BIN)
        .args(["query", "SELEC nonsense", "--url", &base])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn python_has_questdb() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import questdb.ingress"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = "python3 with the `questdb` package is missing (pip install questdb)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {msg}"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questdb_official_client_over_http_and_tcp() {
    if !python_has_questdb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path(), &[]);
    let base = proc.url("marketdata").to_string();
    let http_conf = format!("http::addr={};", base.trim_start_matches("http://"));
    let tcp_conf = format!("tcp::addr={};", tcp_addr(&proc));
    let script = r#"
import sys
from questdb.ingress import Sender, TimestampNanos
conf, table = sys.argv[1], sys.argv[2]
with Sender.from_conf(conf) as s:
    for i in range(1000):
        s.row(table, symbols={"symbol": "BTC-USDT", "side": "buy" if i % 2 else "sell"},
              columns={"price": 42000.25 + i, "amount": 0.001 * (i + 1), "id": i, "maker": i % 3 == 0, "venue": "q"},
              at=TimestampNanos(1582329600000000000 + i * 1000))
    s.flush()
"#;
    for (conf, table) in [(&http_conf, "qdb_http"), (&tcp_conf, "qdb_tcp")] {
        let out = std::process::Command::new("python3")
            .args(["-c", script, conf, table])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{conf}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n = wait_count(&base, &format!("SELECT count(*) FROM {table}"), 1000).await;
        assert_eq!(n, 1000, "{table}");
        let (_, v) = exec(
            &base,
            &format!("SELECT sum(id), min(price), count(*) FILTER (WHERE maker) FROM {table}"),
        )
        .await;
        assert_eq!(
            v["dataset"][0],
            json!([499500, 42000.25, 334]),
            "{table}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_trades_quotes_and_bars_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tradestack-ccxt.toml");
    std::fs::copy(example, dir.path().join("tradestack.toml")).unwrap();
    let proc = start(dir.path(), &[]);
    let ex = proc.url("exchange").to_string();
    let md = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();
    let order = |account: &str, side: &str, price: &str| {
        json!({"account": account, "instrument": "BTC-USDT", "side": side, "order_type": "limit",
               "price": price, "quantity": "0.25"})
    };
    for (account, side, price) in [
        ("maker", "sell", "42000.5"),
        ("maker", "buy", "41990"),
        ("taker", "buy", "42000.5"),
    ] {
        let r = http
            .post(format!("{ex}/api/v1/orders"))
            .json(&order(account, side, price))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let sql = "SELECT count(*) FROM trades WHERE symbol = 'BTC-USDT' AND venue = 'tradestack'";
    assert_eq!(wait_count(&md, sql, 1).await, 1);
    let (_, v) = exec(&md, "SELECT price, quantity, side FROM trades").await;
    assert_eq!(v["dataset"][0], json!([42000.5, 0.25, "buy"]), "{v}");
    // The 1 s bar closes once its second is over.
    let sql = "SELECT count(*) FROM bars WHERE symbol = 'BTC-USDT' AND period = '1s'";
    assert_eq!(wait_count(&md, sql, 1).await, 1);
    let r: Value = http
        .get(format!("{md}/api/v1/bars?symbol=BTC-USDT&interval=1s"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r[0]["close"], "42000.5", "{r}");
    assert_eq!(r[0]["trades"], 1, "{r}");
    // The book after the trade: 41990 bid, nothing offered.
    let sql = "SELECT count(*) FROM quotes WHERE symbol = 'BTC-USDT'";
    assert!(wait_count(&md, sql, 1).await >= 1);
    // And the book's levels, once a second while it changes.
    let sql = "SELECT count(*) FROM book_snapshots WHERE symbol = 'BTC-USDT' AND side = 'bid'";
    assert!(wait_count(&md, sql, 1).await >= 1);
    let (_, v) = exec(
        &md,
        "SELECT level, price, quantity FROM book_snapshots WHERE side = 'bid' ORDER BY timestamp DESC LIMIT 1",
    )
    .await;
    assert_eq!(v["dataset"][0], json!([0, 41990, 0.25]), "{v}");
    let r = http
        .get(format!("{md}/api/v1/bars?interval=1s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "symbol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_lines_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Every write is fsynced before it is acknowledged.
    let env = [("TRADESTACK_MARKETDATA__STORE__FSYNC", "always")];
    let mut proc = start(dir.path(), &env);
    let base = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();
    let mut acked = 0i64;
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut batch = 0i64;
    while Instant::now() < deadline {
        let body: String = (0..100)
            .map(|i| {
                format!(
                    "ticks,src=t v={i}i {}\n",
                    1_600_000_000_000_000_000 + batch * 100 + i
                )
            })
            .collect();
        batch += 1;
        let r = http
            .post(format!("{base}/write"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        acked += 100;
    }
    proc.kill9();
    let proc = start(dir.path(), &env);
    let base = proc.url("marketdata").to_string();
    assert_eq!(count(&base, "SELECT count(*) FROM ticks").await, acked);
    assert_eq!(
        count(&base, "SELECT count(DISTINCT timestamp) FROM ticks").await,
        acked,
        "nothing stored twice"
    );
}

fn shared_data(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

/// Data rows of a CSV file with a header.
fn csv_rows(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count() as i64
}

/// Sends a request with an optional JSON body; the status and the JSON answer (null if none).
async fn call(
    http: &reqwest::Client,
    verb: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let req = match verb {
        "put" => http.put(url),
        "post" => http.post(url),
        _ => http.delete(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn feed_status(md: &str) -> Value {
    reqwest::get(format!("{md}/api/v1/feed/disruption"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_files_replay_onto_the_feed_with_faults_injected() {
    let trades = shared_data("tardis/binance-futures_BTCUSDT_2020-02-22_trades.csv");
    let klines = shared_data("binance/ADABTC-1m-2021-11-27.csv");
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path(), &[]);
    let md = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();

    // Every trade gets a ×10 price on the feed, and each fault is counted.
    let (status, v) = call(
        &http,
        "put",
        format!("{md}/api/v1/feed/disruption"),
        Some(json!({"corrupt": {"probability": 1.0, "kinds": ["times_ten"]}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &http,
        "put",
        format!("{md}/api/v1/feed/disruption"),
        Some(json!({"duplicate_probability": 3})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "duplicate_probability", "{v}");

    // The CLI replays both files in simulated time and follows the job.
    let out = std::process::Command::new(BIN)
        .args(["replay", "--url", &md, "--speed", "max"])
        .arg(&trades)
        .arg(&klines)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n_trades = csv_rows(&trades);
    let n_bars = std::fs::read_to_string(&klines).unwrap().lines().count() as i64;
    assert!(
        stdout.contains(&format!(
            "replayed {} events from 2 file(s); 0 row(s) skipped",
            n_trades + n_bars
        )),
        "{stdout}"
    );
    // Recorded under their own venues, with bars built from the replayed trades.
    let sql = "SELECT count(*) FROM trades WHERE venue = 'binance-futures'";
    assert_eq!(wait_count(&md, sql, n_trades).await, n_trades);
    let sql = "SELECT count(*) FROM bars WHERE venue = 'binance' AND symbol = 'ADA-BTC' AND period = '1m'";
    assert_eq!(wait_count(&md, sql, n_bars).await, n_bars);
    let sql = "SELECT count(*) FROM bars WHERE venue = 'binance-futures' AND period = '1m'";
    assert!(wait_count(&md, sql, 1).await >= 1);
    // The store keeps the truth; the feed delivered the corrupted prices.
    let (_, v) = exec(
        &md,
        "SELECT max(price) FROM trades WHERE venue = 'binance-futures'",
    )
    .await;
    assert!(v["dataset"][0][0].as_f64().unwrap() < 20_000.0, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = feed_status(&md).await;
        if s["delivered"].as_i64() >= Some(n_trades + n_bars) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status["faults"]["corrupted"],
        json!(n_trades + n_bars),
        "{status}"
    );
    assert_eq!(status["delivered"], json!(n_trades + n_bars), "{status}");

    // Bad requests name the field; a bad speed fails in the CLI before any request.
    let (status, v) = call(
        &http,
        "post",
        format!("{md}/api/v1/replays"),
        Some(json!({"files": ["/no/such/file.csv"]})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "files[0]", "{v}");
    let out = std::process::Command::new(BIN)
        .args(["replay", "--url", &md, "--speed", "fast"])
        .arg(&trades)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--speed"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_hooks_steer_the_live_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path(), &[("TRADESTACK_MARKETDATA__SIMULATE", "true")]);
    let md = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();
    let overlays = format!("{md}/api/v1/simulator/overlays");
    let sim = || async {
        let v: Value = reqwest::get(format!("{md}/api/v1/simulator"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    let price = |v: &Value, s: &str| -> f64 { v["prices"][s].as_str().unwrap().parse().unwrap() };
    let before = sim().await;
    let (btc, usdt) = (price(&before, "BTC-USD"), price(&before, "USDT-USD"));
    // An instant −15 % shock on every floating asset, and USDT to 0.92 at once.
    let (status, v) = call(
        &http,
        "post",
        overlays.clone(),
        Some(json!({"kind": "shock", "duration": 0, "change": -0.15})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let shock = v;
    let depeg = json!({"kind": "depeg", "asset": "USDT-USD", "target": "0.92",
                       "decline": 0, "recovery": 3_600_000_000_000i64});
    let (status, v) = call(&http, "post", overlays.clone(), Some(depeg)).await;
    assert_eq!(status, 201, "{v}");
    let after = sim().await;
    let ratio = price(&after, "BTC-USD") / btc;
    // The shock, plus at most a second of diffusion.
    assert!((0.80..0.90).contains(&ratio), "BTC {btc} -> {after}");
    assert!(price(&after, "USDT-USD") < 0.93, "USDT {usdt} -> {after}");
    // A finished shock is part of the price path; the depeg is still active.
    assert_eq!(after["overlays"].as_array().unwrap().len(), 1, "{after}");
    let (status, v) = call(
        &http,
        "delete",
        format!("{md}/api/v1/simulator/overlays/{}", shock["id"]),
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    // A volatility regime lasts until cleared.
    let (status, v) = call(
        &http,
        "post",
        overlays.clone(),
        Some(json!({"kind": "vol_regime", "vol_factor": 3.0})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let regime = v;
    assert_eq!(sim().await["overlays"].as_array().unwrap().len(), 2);
    let (status, v) = call(
        &http,
        "delete",
        format!("{md}/api/v1/simulator/overlays/{}", regime["id"]),
        None,
    )
    .await;
    assert_eq!(status, 204, "{v}");
    let (status, v) = call(
        &http,
        "delete",
        format!("{md}/api/v1/simulator/overlays/999"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = call(
        &http,
        "put",
        format!("{md}/api/v1/simulator/liquidity"),
        Some(json!({"withdrawn": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let s = sim().await;
    assert_eq!(s["liquidity_withdrawn"], true);
    assert_eq!(s["overlays"].as_array().unwrap().len(), 1, "{s}");
    // Bad overlays name the field.
    let (status, v) = call(
        &http,
        "post",
        overlays.clone(),
        Some(json!({"kind": "shock", "duration": 0})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "change", "{v}");
    let (status, v) = call(
        &http,
        "post",
        overlays.clone(),
        Some(json!({"kind": "shock", "duration": 0, "change": -0.1, "assets": ["NOPE-USD"]})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "assets", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rows_are_forwarded_to_a_configured_sink() {
    let Some(influx) = tradestack_testkit::require_server(
        "InfluxDB 1.x",
        "TRADESTACK_TEST_INFLUX_URL",
        "http://127.0.0.1:8086",
    ) else {
        return;
    };
    let db = tradestack_testkit::unique_name("e2e_sink");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{influx}/query"))
        .query(&[("q", format!("CREATE DATABASE {db}"))])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tradestack.toml"),
        format!(
            "[[marketdata.sinks]]\nkind = \"influxdb\"\nurl = \"{influx}\"\ndatabase = \"{db}\"\n"
        ),
    )
    .unwrap();
    let proc = start(dir.path(), &[]);
    let md = proc.url("marketdata").to_string();
    let body: String = (0..50)
        .map(|i| {
            format!(
                "sensor,host=h{} value={i}i {}\n",
                i % 3,
                1_700_000_000_000_000_000i64 + i
            )
        })
        .collect();
    let r = http
        .post(format!("{md}/write"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Stored here, and forwarded in the background.
    assert_eq!(wait_count(&md, "SELECT count(*) FROM sensor", 50).await, 50);
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v: Value = http
            .get(format!("{influx}/query"))
            .query(&[
                ("db", db.as_str()),
                ("q", "SELECT count(value), sum(value) FROM sensor"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let row = &v["results"][0]["series"][0]["values"][0];
        if row[1] == json!(50) || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = http
        .post(format!("{influx}/query"))
        .query(&[("q", format!("DROP DATABASE {db}"))])
        .send()
        .await;
    let row = &v["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1], json!(50), "{v}");
    assert_eq!(row[2], json!((0..50).sum::<i64>()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_candles_come_back_from_the_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tradestack-ccxt.toml");
    std::fs::copy(example, dir.path().join("tradestack.toml")).unwrap();
    // A minute recorded ten minutes ago, as the recorder would have stored it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let minute_ms = (now_ms / 60_000 - 10) * 60_000;
    let mut proc = start(dir.path(), &[]);
    let md = proc.url("marketdata").to_string();
    let line = format!(
        "bars,symbol=BTC-USDT,venue=tradestack,period=1m open=42000.5,high=42100,low=41900.25,\
         close=42050,volume=1.5,quote_volume=63075.75,trades=7i,vwap=42050.5 {}\n",
        minute_ms * 1_000_000
    );
    let r = reqwest::Client::new()
        .post(format!("{md}/write"))
        .body(line)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
    assert_eq!(proc.interrupt(), 0);

    let proc = start(dir.path(), &[]);
    let ex = proc.url("exchange").to_string();
    let url = format!("{ex}/api/v3/klines?symbol=BTCUSDT&interval=1m");
    let deadline = Instant::now() + Duration::from_secs(10);
    let klines = loop {
        let v: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let k = &klines[0];
    assert_eq!(k[0], json!(minute_ms), "{klines}");
    assert_eq!(
        [&k[1], &k[2], &k[3], &k[4], &k[5]],
        [
            &json!("42000.5"),
            &json!("42100"),
            &json!("41900.25"),
            &json!("42050"),
            &json!("1.5")
        ],
        "{klines}"
    );
    assert_eq!(k[8], json!(7), "{klines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_confined_to_the_configured_directories() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let klines = allowed.join("ADABTC-1m-2021-11-27.csv");
    std::fs::copy(shared_data("binance/ADABTC-1m-2021-11-27.csv"), &klines).unwrap();
    std::fs::write(
        dir.path().join("tradestack.toml"),
        format!(
            "[marketdata]\nreplay_dirs = [{:?}]\n",
            allowed.display().to_string()
        ),
    )
    .unwrap();
    let proc = start(dir.path(), &[]);
    let md = proc.url("marketdata").to_string();
    let http = reqwest::Client::new();
    let outside = shared_data("tardis/binance-futures_BTCUSDT_2020-02-22_trades.csv");
    let (status, v) = call(
        &http,
        "post",
        format!("{md}/api/v1/replays"),
        Some(json!({"files": [klines, outside]})),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["field"], "files[1]", "{v}");
    let (status, v) = call(
        &http,
        "post",
        format!("{md}/api/v1/replays"),
        Some(json!({"files": [klines]})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
}
