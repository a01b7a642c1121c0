//! The Binance-compatible API end to end: ccxt's unmodified `binance` class
//! (examples/ccxt_binance.py), and signatures, timestamps, replays, bad
//! parameters and rate limits with Binance's error codes.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Proc;
use serde_json::Value;

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Proc {
    common::start_example(dir, extra)
}

fn ccxt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import ccxt"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "python3 with ccxt not found (pip install ccxt; .ci/run installs it)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {msg}"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

#[test]
fn ccxt_binance_class_trades_against_tradestack() {
    if !ccxt_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path(), &[]);
    let out = Command::new("python3")
        .arg(example("ccxt_binance.py"))
        .args(["--url", proc.url("exchange")])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "ccxt example failed");
    assert!(stdout.contains("all ccxt checks passed"));
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn sign(query: &str) -> String {
    tradestack_exchange::binance::auth::sign("maker-secret", query)
}

async fn call(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(k) = key {
        r = r.header("X-MBX-APIKEY", k);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_timestamps_replays_and_bad_parameters_get_binance_errors() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(
        dir.path(),
        &[("TRADESTACK_EXCHANGE__WEIGHT_PER_MINUTE", "200")],
    );
    let base = proc.url("exchange").to_string();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let code = |v: &Value| v["code"].as_i64().unwrap_or(0);
    // Public: unknown symbol, missing parameter.
    let (s, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/depth?symbol=NOPE"),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (400, -1121));
    let (s, _, v) = call(get.clone(), &format!("{base}/api/v3/depth"), None).await;
    assert_eq!((s, code(&v)), (400, -1102));
    assert!(v["msg"].as_str().unwrap().contains("'symbol'"));

    // Signed: a good order first.
    let q = format!(
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.1&price=50000&timestamp={}",
        now_ms()
    );
    let url = format!("{base}/api/v3/order?{q}&signature={}", sign(&q));
    let (s, _, v) = call(post.clone(), &url, Some("maker-key")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "NEW");
    // The same request again is a replay.
    let (s, _, v) = call(post.clone(), &url, Some("maker-key")).await;
    assert_eq!((s, code(&v)), (400, -1022), "{v}");
    // A wrong signature, an unknown key, no key.
    let q = format!("symbol=BTCUSDT&timestamp={}", now_ms());
    let (s, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/openOrders?{q}&signature={}", "00".repeat(32)),
        Some("maker-key"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, -1022));
    let (s, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/openOrders?{q}&signature={}", sign(&q)),
        Some("who"),
    )
    .await;
    assert_eq!((s, code(&v)), (401, -2015));
    let (s, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/openOrders?{q}&signature={}", sign(&q)),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (401, -2014));
    // An old timestamp.
    let q = format!("symbol=BTCUSDT&timestamp={}", now_ms() - 60_000);
    let (s, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/openOrders?{q}&signature={}", sign(&q)),
        Some("maker-key"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, -1021));
    // Bad order parameters: off tick, negative quantity, bad side, missing price.
    for (params, want) in [
        (
            "side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.1&price=50000.001",
            -1013,
        ),
        (
            "side=SELL&type=LIMIT&timeInForce=GTC&quantity=-1&price=50000",
            -1100,
        ),
        (
            "side=UP&type=LIMIT&timeInForce=GTC&quantity=1&price=50000",
            -1117,
        ),
        ("side=SELL&type=LIMIT&timeInForce=GTC&quantity=1", -1102),
        ("side=SELL&type=ICEBERG&quantity=1", -1116),
    ] {
        let q = format!("symbol=BTCUSDT&{params}&timestamp={}", now_ms());
        let (s, _, v) = call(
            post.clone(),
            &format!("{base}/api/v3/order?{q}&signature={}", sign(&q)),
            Some("maker-key"),
        )
        .await;
        assert_eq!((s, code(&v)), (400, want), "{params}: {v}");
    }
    // Nothing of that was stored: one open order.
    let q = format!("symbol=BTCUSDT&timestamp={}", now_ms());
    let (_, _, v) = call(
        get.clone(),
        &format!("{base}/api/v3/openOrders?{q}&signature={}", sign(&q)),
        Some("maker-key"),
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // Rate limit: 200 weight per minute here; exchangeInfo weighs 20.
    let mut limited = None;
    for _ in 0..15 {
        let (s, retry, v) = call(get.clone(), &format!("{base}/api/v3/exchangeInfo"), None).await;
        if s == 429 {
            limited = Some((retry, code(&v)));
            break;
        }
    }
    let (retry, c) = limited.expect("a 429 within 15 heavy requests");
    assert_eq!(c, -1003);
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)], stdin: Option<&str>| {
        use std::io::Write;
        let mut cmd = Command::new(common::BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, key, _) = run(&["exchange", "new-key"], &[], None);
    assert_eq!((code, key.len()), (0, 64));
    let (code, sealed, _) = run(
        &["exchange", "seal-secret"],
        &[("TRADESTACK_EXCHANGE__SECRETS_KEY", &key)],
        Some("desk-secret\n"),
    );
    assert_eq!(code, 0);
    assert!(sealed.starts_with("v1:") && !sealed.contains("desk-secret"));

    // Plain text without the development switch: exit 2, one line, the key named.
    std::fs::write(
        dir.path().join("tradestack.toml"),
        "[[exchange.accounts]]\nid = \"desk\"\napi_key = \"desk-key\"\napi_secret = \"desk-secret\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["config", "show"], &[], None);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("exchange.accounts[0].api_secret"), "{err}");

    // Sealed: opened with the key from the environment, and it signs.
    std::fs::write(
        dir.path().join("tradestack.toml"),
        format!("[[exchange.accounts]]\nid = \"desk\"\napi_key = \"desk-key\"\napi_secret_sealed = \"{sealed}\"\nbalances = {{ USDT = \"1000\" }}\n"),
    )
    .unwrap();
    let (code, _, err) = run(&["config", "show"], &[], None);
    assert_eq!(code, 2, "no key to open it: {err}");
    let data = dir.path().join("data");
    let proc = Proc::start(
        &["up"],
        &[
            ("TRADESTACK_DATA_DIR", data.to_str().unwrap()),
            ("TRADESTACK_EXCHANGE__SECRETS_KEY", &key),
        ],
        dir.path(),
    );
    let base = proc.url("exchange").to_string();
    let q = format!("timestamp={}", now_ms());
    let sig = tradestack_exchange::binance::auth::sign("desk-secret", &q);
    let (status, _, v) = call(
        reqwest::Method::GET,
        &format!("{base}/api/v3/account?{q}&signature={sig}"),
        Some("desk-key"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["balances"][0]["free"], "1000");
}
