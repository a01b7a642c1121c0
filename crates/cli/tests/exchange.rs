//! The exchange process end to end: orders over HTTP, `kill -9` under load,
//! restart. No acknowledged order or fill may be lost, and a book must come
//! back exactly as it was.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Proc;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[exchange.journal]
snapshot_every = 300

[[exchange.accounts]]
id = "alice"
balances = { USDT = "100000000", BTC = "10000" }

[[exchange.accounts]]
id = "bob"
balances = { USDT = "100000000", BTC = "10000" }
"#;

fn start(dir: &std::path::Path) -> Proc {
    let data = dir.join("data");
    Proc::start(
        &["up"],
        &[
            ("TRADESTACK_DATA_DIR", data.to_str().unwrap()),
            // The load comes from one address.
            ("TRADESTACK_EXCHANGE__ORDERS_PER_10S", "1000000"),
            ("TRADESTACK_EXCHANGE__WEIGHT_PER_MINUTE", "100000000"),
        ],
        dir,
    )
}

/// An acknowledged order: its id, owner, and what the ack said.
#[derive(Clone, Debug)]
struct Ack {
    id: u64,
    account: String,
    status: String,
    filled: String,
}

/// Places orders from `clients` tasks until the server stops answering.
async fn load(url: String, clients: u64, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0u64.. {
                let buy = (i + c) % 2 == 0;
                let account = if buy { "alice" } else { "bob" };
                // Prices overlap, so some orders trade and some rest.
                let price = 50_000 + ((i * 7 + c * 3) % 21) as i64 - 10;
                let body = json!({
                    "account": account,
                    "instrument": "BTC-USDT",
                    "side": if buy { "buy" } else { "sell" },
                    "order_type": "limit",
                    "price": price.to_string(),
                    "quantity": format!("0.{:03}", 1 + (i % 50)),
                });
                let Ok(r) = http
                    .post(format!("{url}/api/v1/orders"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status().as_u16() != 201 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let o = &v["order"];
                acks.lock().unwrap().push(Ack {
                    id: o["id"].as_u64().unwrap(),
                    account: account.to_string(),
                    status: o["status"].as_str().unwrap().to_string(),
                    filled: o["filled"].as_str().unwrap().to_string(),
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn qty(s: &str) -> f64 {
    // Only compared for ordering; exactness is not needed here.
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_kill_9_and_books_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tradestack.toml"), CONFIG).unwrap();
    let mut total_acked = 0;
    for round in 0..3u64 {
        let mut proc = start(dir.path());
        let url = proc.url("exchange").to_string();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let loader = tokio::spawn(load(url.clone(), 4, acks.clone()));
        // Kill at a different point each round, mid-stream.
        tokio::time::sleep(Duration::from_millis(400 + round * 350)).await;
        proc.kill9();
        let _ = loader.await;
        let acks = acks.lock().unwrap().clone();
        assert!(
            acks.len() > 20,
            "round {round}: only {} orders acknowledged",
            acks.len()
        );
        total_acked += acks.len();

        let proc = start(dir.path());
        let url = proc.url("exchange").to_string();
        // History for closed orders is written asynchronously after replay:
        // give it until a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut missing = Vec::new();
        for a in &acks {
            let (status, o) = loop {
                let (status, o) = get(&format!(
                    "{url}/api/v1/orders/{}?account={}",
                    a.id, a.account
                ))
                .await;
                if status == 200 || std::time::Instant::now() > deadline {
                    break (status, o);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if status != 200 {
                missing.push(a.id);
                continue;
            }
            // Never less filled than acknowledged; a final state never changes.
            assert!(
                qty(o["filled"].as_str().unwrap()) >= qty(&a.filled),
                "order {} went back from {} to {}",
                a.id,
                a.filled,
                o["filled"]
            );
            if matches!(a.status.as_str(), "filled" | "cancelled" | "expired") {
                assert_eq!(o["status"].as_str().unwrap(), a.status, "order {}", a.id);
            }
        }
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged orders lost: {missing:?}"
        );
        eprintln!(
            "round {round}: {} acknowledged orders all recovered",
            acks.len()
        );
        drop(proc);
    }

    // A quiet book, killed and restarted, comes back identical.
    let mut proc = start(dir.path());
    let url = proc.url("exchange").to_string();
    let (_, before) = get(&format!("{url}/api/v1/book/BTC-USDT?depth=5000")).await;
    let mut balances: HashMap<&str, Value> = HashMap::new();
    for a in ["alice", "bob"] {
        balances.insert(
            a,
            get(&format!("{url}/api/v1/accounts/{a}/balances")).await.1,
        );
    }
    assert!(
        !before["bids"].as_array().unwrap().is_empty()
            || !before["asks"].as_array().unwrap().is_empty()
    );
    proc.kill9();
    let proc = start(dir.path());
    let url = proc.url("exchange").to_string();
    let (_, after) = get(&format!("{url}/api/v1/book/BTC-USDT?depth=5000")).await;
    assert_eq!(before, after, "book after restart");
    for a in ["alice", "bob"] {
        assert_eq!(
            balances[a],
            get(&format!("{url}/api/v1/accounts/{a}/balances")).await.1,
            "{a}'s balances after restart"
        );
    }
    eprintln!(
        "{total_acked} acknowledged orders over 3 crashes; book and balances identical after a 4th"
    );
}
