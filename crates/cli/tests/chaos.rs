//! Chaos hooks on a running exchange: latency, injected errors, rejects,
//! outages (API and streams), frozen market data, partial fills, expiry.

mod common;

use std::time::{Duration, Instant};

use common::Proc;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn start(dir: &std::path::Path) -> Proc {
    common::start_example(dir, &[("TRADESTACK_EXCHANGE__ADMIN_TOKEN", TOKEN)])
}

const TOKEN: &str = "chaos-test-token";

async fn inject(base: &str, fault: Value, duration: Option<&str>) -> Value {
    let mut body = json!({ "fault": fault });
    if let Some(d) = duration {
        body["duration"] = json!(d);
    }
    let r = reqwest::Client::new()
        .post(format!("{base}/admin/chaos"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

async fn clear(base: &str) {
    reqwest::Client::new()
        .delete(format!("{base}/admin/chaos"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
}

async fn order(base: &str, account: &str, side: &str, price: &str, qty: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/orders"))
        .json(&json!({"account": account, "instrument": "BTC-USDT", "side": side, "order_type": "limit", "price": price, "quantity": qty}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_act_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let proc = start(dir.path());
    let base = proc.url("exchange").to_string();
    let http = reqwest::Client::new();

    // The admin API needs the token.
    let r = http
        .get(format!("{base}/admin/chaos"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let transfer = |kind: &str, token: &str, amount: &str| {
        http.post(format!("{base}/admin/accounts/maker/{kind}"))
            .bearer_auth(token)
            .json(&json!({"asset": "USDT", "amount": amount}))
            .send()
    };
    assert_eq!(
        transfer("deposits", "wrong", "1")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        transfer("withdrawals", TOKEN, "1")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let r = transfer("withdrawals", TOKEN, "99999999").await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "more than the balance");

    // Bad fault definitions name the field.
    let r = http
        .post(format!("{base}/admin/chaos"))
        .bearer_auth(TOKEN)
        .json(&json!({"fault": {"errors": {"endpoint": "/", "status": 418, "rate_bps": 100}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["field"],
        "fault.errors.status"
    );

    // Latency on one endpoint only.
    inject(
        &base,
        json!({"latency": {"endpoint": "/api/v1/book", "delay_ms": 300}}),
        None,
    )
    .await;
    let t = Instant::now();
    http.get(format!("{base}/api/v1/book/BTC-USDT"))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    clear(&base).await;

    // Errors: Binance-shaped on the compatible API.
    inject(
        &base,
        json!({"errors": {"endpoint": "/api/v3/ping", "status": 503, "rate_bps": 10000}}),
        None,
    )
    .await;
    let r = http
        .get(format!("{base}/api/v3/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], -1001);
    assert_eq!(
        http.get(format!("{base}/api/v3/time"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    clear(&base).await;

    // Rejects: nothing is entered.
    inject(&base, json!({"reject": {"rate_bps": 10000}}), None).await;
    let (status, v) = order(&base, "maker", "sell", "50000", "1").await;
    assert_eq!((status, v["error"].as_str()), (400, Some("venue_reject")));
    clear(&base).await;
    let open: Value = http
        .get(format!("{base}/api/v1/orders?account=maker"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open.as_array().unwrap().len(), 0);

    // Partial fills: an order crossing 1 BTC of liquidity fills half.
    order(&base, "maker", "sell", "50000", "1").await;
    inject(&base, json!({"partial_fills": {"bps": 5000}}), None).await;
    let (_, v) = order(&base, "taker", "buy", "50000", "1").await;
    assert_eq!(v["order"]["filled"], "0.5", "{v}");
    clear(&base).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, v) = order(&base, "taker", "buy", "50000", "0.5").await;
    assert_eq!(
        v["order"]["filled"], "0.5",
        "full fills again after clearing: {v}"
    );

    // Freeze: no book deltas while frozen, a resync when it ends.
    let ws_url = base.replace("http://", "ws://") + "/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"op": "subscribe", "channels": ["book.BTC-USDT"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    inject(&base, json!("freeze"), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Drain the subscription's snapshot.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {}
    order(&base, "maker", "sell", "51000", "1").await;
    let mut during = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
        during.push(serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap());
    }
    assert!(
        !during.iter().any(|v| v["type"] == "delta"),
        "no deltas while frozen: {during:?}"
    );
    clear(&base).await;
    let mut after = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(800), ws.next()).await {
        after.push(serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap());
    }
    assert!(after.iter().any(|v| v["op"] == "resync"), "{after:?}");
    let snap = after
        .iter()
        .find(|v| v["type"] == "snapshot")
        .expect("a fresh snapshot");
    assert!(
        snap["asks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["price"] == "51000")
    );

    // Outage with streams: the socket is cut, the API answers 503.
    inject(&base, json!({"outage": {"websocket": true}}), Some("1s")).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(m)) if m.is_close() => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the stream was cut");
    assert_eq!(
        http.get(format!("{base}/api/v1/instruments"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );
    assert!(
        tokio_tungstenite::connect_async(&ws_url).await.is_err(),
        "new streams refused"
    );
    // It expires by itself.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let active: Value = http
        .get(format!("{base}/admin/chaos"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active.as_array().unwrap().len(), 0);
    assert_eq!(
        http.get(format!("{base}/api/v1/instruments"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
