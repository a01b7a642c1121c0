//! WebSocket streams: a book rebuilt from snapshot + deltas equals the REST
//! book; trades, ticker and private order/fill/balance updates arrive; bad
//! subscriptions get errors.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Proc;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn start(dir: &std::path::Path) -> Proc {
    common::start_example(dir, &[])
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["op"] != "ping" {
                return v;
            }
        }
    }
}

async fn order(base: &str, account: &str, side: &str, price: &str, qty: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/orders"))
        .json(&json!({"account": account, "instrument": "BTC-USDT", "side": side, "order_type": "limit", "price": price, "quantity": qty}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_rebuild_the_book_and_carry_private_updates() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path());
    let base = proc.url("exchange").to_string();
    order(&base, "maker", "sell", "50100", "1").await;
    let ws_url = base.replace("http://", "ws://") + "/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();

    // Private channels need a login.
    ws.send(Message::Text(
        json!({"op": "subscribe", "channels": ["orders"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["message"], "log in first");
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let sig = tradestack_exchange::binance::auth::sign("taker-secret", &format!("timestamp={ts}"));
    ws.send(Message::Text(
        json!({"op": "login", "api_key": "taker-key", "timestamp": ts, "signature": sig})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["account"], "taker");

    ws.send(Message::Text(json!({"op": "subscribe", "channels": ["book.BTC-USDT", "trades.BTC-USDT", "orders", "fills", "balances", "book.NOPE", "weather"]}).to_string().into())).await.unwrap();
    let mut book: Option<Value> = None;
    let mut errors = 0;
    for _ in 0..8 {
        let v = next(&mut ws).await;
        if v["type"] == "snapshot" {
            book = Some(v);
        } else if v["op"] == "error" {
            errors += 1;
        }
    }
    assert_eq!(errors, 2, "unknown instrument and unknown channel");
    let snap = book.expect("a book snapshot");
    assert_eq!(snap["asks"][0]["price"], "50100");

    // Activity: the taker buys part; the maker adds and cancels.
    order(&base, "taker", "buy", "50100", "0.4").await;
    order(&base, "maker", "buy", "49900", "2").await;
    order(&base, "maker", "sell", "50200", "3").await;

    // Rebuild the book from the snapshot and the deltas.
    let mut bids: std::collections::BTreeMap<String, String> = Default::default();
    let mut asks: std::collections::BTreeMap<String, String> = Default::default();
    for l in snap["asks"].as_array().unwrap() {
        asks.insert(
            l["price"].as_str().unwrap().into(),
            l["quantity"].as_str().unwrap().into(),
        );
    }
    let mut seq = snap["seq"].as_u64().unwrap();
    let (mut trades, mut fills, mut orders, mut balances) = (0, 0, 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        else {
            break;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["channel"].as_str().unwrap_or("") {
            "book.BTC-USDT" => {
                let s = v["seq"].as_u64().unwrap();
                assert_eq!(s, seq + 1, "no gap in book deltas");
                seq = s;
                let side = if v["side"] == "bid" {
                    &mut bids
                } else {
                    &mut asks
                };
                let price = v["price"].as_str().unwrap().to_string();
                if v["quantity"] == "0" {
                    side.remove(&price);
                } else {
                    side.insert(price, v["quantity"].as_str().unwrap().into());
                }
            }
            "trades.BTC-USDT" => trades += 1,
            "fills" => {
                assert_eq!(v["data"]["account"], "taker");
                fills += 1;
            }
            "orders" => {
                assert_eq!(
                    v["data"]["account"], "taker",
                    "only the logged-in account's orders"
                );
                orders += 1;
            }
            "balances" => balances += 1,
            _ => {}
        }
    }
    assert_eq!(trades, 1);
    assert_eq!(fills, 1);
    assert!(orders >= 1 && balances >= 1);
    let rest: Value = reqwest::get(format!("{base}/api/v1/book/BTC-USDT?depth=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["seq"].as_u64().unwrap(), seq);
    let side = |v: &Value| -> std::collections::BTreeMap<String, String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["price"].as_str().unwrap().into(),
                    l["quantity"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(side(&rest["bids"]), bids);
    assert_eq!(side(&rest["asks"]), asks);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("websocket_clients 1"),
        "gauge counts this client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perpetual_positions_over_the_native_api() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path());
    let base = proc.url("exchange").to_string();
    let http = reqwest::Client::new();
    for (account, side) in [("maker", "sell"), ("taker", "buy")] {
        let r = http
            .post(format!("{base}/api/v1/orders"))
            .json(&json!({"account": account, "instrument": "BTC-USDT-PERP", "side": side, "order_type": "limit", "price": "50000", "quantity": "0.5"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let p: Value = http
        .get(format!("{base}/api/v1/accounts/taker/positions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p[0]["instrument"], "BTC-USDT-PERP");
    assert_eq!(p[0]["quantity"], "0.5");
    assert_eq!(p[0]["margin"], "2500");
    let p: Value = http
        .get(format!("{base}/api/v1/accounts/maker/positions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p[0]["quantity"], "-0.5");
    // Not a symbol of the spot-compatible API.
    let r: Value = http
        .get(format!("{base}/api/v3/depth?symbol=BTCUSDTPERP"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["code"], -1121);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_and_covers_the_native_api() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path());
    let base = proc.url("exchange").to_string();
    let spec: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: std::collections::BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/api/v1/instruments",
        "/api/v1/book/{instrument}",
        "/api/v1/trades/{instrument}",
        "/api/v1/candles/{instrument}",
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/fills",
        "/api/v1/accounts/{account}/balances",
        "/api/v1/accounts/{account}/positions",
        "/admin/accounts/{account}/deposits",
        "/admin/accounts/{account}/withdrawals",
        "/admin/chaos",
        "/admin/chaos/{id}",
    ] {
        assert!(paths.contains(p), "{p} is missing from /openapi.json");
        // Every documented path answers (not 404 for the route itself).
        let concrete = p
            .replace("{instrument}", "BTC-USDT")
            .replace("{account}", "maker")
            .replace("{id}", "1");
        let status = reqwest::get(format!("{base}{concrete}"))
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(status != 404 || p.contains("{id}"), "{p} answered 404");
    }
    let docs = reqwest::get(format!("{base}/docs"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/openapi.json"));
    // A real validator, when present (CI installs it).
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let validator = std::process::Command::new("python3")
        .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
        .arg(&file)
        .output()
        .unwrap();
    if String::from_utf8_lossy(&validator.stderr).contains("ModuleNotFoundError") {
        let msg = "openapi-spec-validator not installed (pip install openapi-spec-validator)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {msg}"
        );
        eprintln!("SKIPPED validation: {msg}");
    } else {
        assert!(
            validator.status.success(),
            "{}",
            String::from_utf8_lossy(&validator.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_requests_signed_with_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let proc = common::start_example(
        dir.path(),
        &[
            ("TRADESTACK_EXCHANGE__REQUIRE_SIGNATURES", "true"),
            ("TRADESTACK_EXCHANGE__ORDERS_PER_10S", "3"),
        ],
    );
    let base = proc.url("exchange").to_string();
    let http = reqwest::Client::new();
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let body = json!({"account": "maker", "instrument": "BTC-USDT", "side": "sell", "order_type": "limit", "price": "50000", "quantity": "0.1"}).to_string();
    let signed = |ts: i64, key: &str, secret: &str, body: &str| {
        let sig =
            tradestack_exchange::auth::sign_request(secret, ts, "POST", "/api/v1/orders", body);
        http.post(format!("{base}/api/v1/orders"))
            .header("content-type", "application/json")
            .header("x-ts-apikey", key)
            .header("x-ts-timestamp", ts.to_string())
            .header("x-ts-signature", sig)
            .body(body.to_string())
    };
    // Unsigned: refused when signatures are required.
    let r = http
        .post(format!("{base}/api/v1/orders"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "x-ts-apikey");
    // Signed by the owner: accepted; the same request again is a replay.
    let ts = now();
    assert_eq!(
        signed(ts, "maker-key", "maker-secret", &body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    let r = signed(ts, "maker-key", "maker-secret", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "replayed");
    // A wrong secret, an old timestamp, another account's key.
    assert_eq!(
        signed(now(), "maker-key", "nope", &body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let r = signed(now() - 60_000, "maker-key", "maker-secret", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "x-ts-timestamp");
    let r = signed(now(), "taker-key", "taker-secret", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "taker's key cannot trade for maker"
    );
    // Order rate per key: 3 per 10 s here. Seven quick orders put more than
    // three in one window even if they straddle a window boundary.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = signed(now(), "maker-key", "maker-secret", &body)
            .send()
            .await
            .unwrap();
        statuses.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(statuses.contains(&(429, true)), "{statuses:?}");
    assert!(statuses.iter().filter(|s| s.0 == 201).count() <= 6);
    // Public endpoints need no signature.
    assert_eq!(
        http.get(format!("{base}/api/v1/book/BTC-USDT"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_entered_and_cancelled_over_the_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path());
    let base = proc.url("exchange").to_string();
    let ws_url = base.replace("http://", "ws://") + "/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    let order = json!({"instrument": "BTC-USDT", "side": "sell", "order_type": "limit", "price": "50000", "quantity": "0.2"});
    ws.send(send(json!({"op": "order", "req_id": 1, "order": order})))
        .await
        .unwrap();
    let v = next(&mut ws).await;
    assert_eq!(
        (v["op"].as_str(), v["error"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let sig = tradestack_exchange::binance::auth::sign("maker-secret", &format!("timestamp={ts}"));
    ws.send(send(
        json!({"op": "login", "api_key": "maker-key", "timestamp": ts, "signature": sig}),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["account"], "maker");
    ws.send(send(json!({"op": "order", "req_id": 2, "order": order})))
        .await
        .unwrap();
    let v = next(&mut ws).await;
    assert_eq!(v["req_id"], 2, "{v}");
    assert_eq!(v["order"]["status"], "new");
    assert_eq!(v["order"]["account"], "maker");
    let id = v["order"]["id"].as_u64().unwrap();
    // Bad input names the field; an account in the body is refused.
    let mut bad = order.clone();
    bad["price"] = json!("50000.001");
    ws.send(send(json!({"op": "order", "req_id": 3, "order": bad})))
        .await
        .unwrap();
    let v = next(&mut ws).await;
    assert_eq!(
        (v["error"].as_str(), v["field"].as_str()),
        (Some("off_tick"), Some("price"))
    );
    let mut other = order.clone();
    other["account"] = json!("taker");
    ws.send(send(json!({"op": "order", "req_id": 4, "order": other})))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await["field"], "order.account");
    ws.send(send(
        json!({"op": "cancel", "req_id": 5, "instrument": "BTC-USDT", "id": id}),
    ))
    .await
    .unwrap();
    let v = next(&mut ws).await;
    assert_eq!(
        (v["op"].as_str(), v["order"]["status"].as_str()),
        (Some("cancel"), Some("cancelled"))
    );
}
