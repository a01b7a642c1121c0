//! `tradestack bench exchange`: end-to-end order entry over loopback.
//!
//! Clients post limit orders to the native REST API over keep-alive
//! connections for a fixed time, as fast as the exchange acknowledges them
//! (each acknowledgement waits for the journal fsync). Half the orders cross,
//! so the run also matches and settles. A WebSocket client logged in as one of
//! the accounts measures how long an order takes from the request being sent
//! to its update arriving on the stream.
//!
//! Without `--url` the command starts its own exchange in this process, on a
//! temporary data directory with the journal on (`fsync = "always"`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Options of the exchange benchmark.
pub struct ExchangeBench {
    /// A running exchange, or none to start one here.
    pub url: Option<String>,
    /// Concurrent HTTP clients.
    pub connections: usize,
    /// How long to send orders.
    pub duration: Duration,
    /// The exchange's admin token (deposits); the local exchange has its own.
    pub admin_token: Option<String>,
}

/// Admin token of the exchange this command starts itself.
const LOCAL_ADMIN_TOKEN: &str = "bench-admin-token";

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";

/// Runs the benchmark and prints its figures. Against `--url`, the accounts
/// `bench-a` and `bench-b` are funded through the admin API (`--admin-token`).
pub async fn exchange(opts: ExchangeBench) -> anyhow::Result<()> {
    let (url, _guard) = match &opts.url {
        Some(u) => (u.trim_end_matches('/').to_string(), None),
        None => {
            let (url, guard) = local_exchange().await?;
            (url, Some(guard))
        }
    };
    let accounts = ["bench-a", "bench-b"];
    let http = reqwest::Client::new();
    let token = opts
        .admin_token
        .clone()
        .unwrap_or_else(|| LOCAL_ADMIN_TOKEN.to_string());
    for a in accounts {
        for (asset, amount) in [("USDT", "1000000000000"), ("BTC", "100000000")] {
            let r = http
                .post(format!("{url}/admin/accounts/{a}/deposits"))
                .bearer_auth(&token)
                .json(&json!({"asset": asset, "amount": amount}))
                .send()
                .await
                .context("cannot reach the exchange")?;
            if !r.status().is_success() {
                bail!("deposit failed: {}", r.text().await.unwrap_or_default());
            }
        }
    }

    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        60_000_000_000,
        3,
    )?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + opts.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.connections {
        let (url, hist, errors) = (url.clone(), hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
            let mut n = 0u64;
            while Instant::now() < deadline {
                let buy = (n + c as u64).is_multiple_of(2);
                // Prices straddle 50,000 so about half the orders cross.
                let price = 50_000 + ((n * 7 + c as u64 * 13) % 21) as i64 - 10;
                let body = json!({
                    "account": accounts[usize::from(!buy)],
                    "instrument": "BTC-USDT",
                    "side": if buy { "buy" } else { "sell" },
                    "order_type": "limit",
                    "time_in_force": if n.is_multiple_of(4) { "ioc" } else { "gtc" },
                    "price": price.to_string(),
                    "quantity": "0.001",
                });
                let t = Instant::now();
                let ok = http
                    .post(format!("{url}/api/v1/orders"))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201);
                if ok {
                    let _ = local.record(t.elapsed().as_nanos() as u64);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                n += 1;
            }
            hist.lock().add(&local).expect("same bounds");
        }));
    }
    let ws = tokio::spawn(ws_probe(url.clone(), deadline));
    let ws_entry: Vec<_> = (0..4)
        .map(|c| tokio::spawn(ws_orders(url.clone(), deadline, c)))
        .collect();
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let ws = ws.await??;
    let mut entry = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for t in ws_entry {
        entry.add(&t.await??)?;
    }
    let h = hist.lock();
    let us = |v: u64| v as f64 / 1_000.0;
    println!(
        "exchange over loopback: {} connections, {:.1} s, journal fsync per group commit",
        opts.connections,
        elapsed.as_secs_f64()
    );
    println!(
        "  REST orders acknowledged: {} ({:.0}/s), errors {}",
        h.len(),
        h.len() as f64 / elapsed.as_secs_f64(),
        errors.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "  REST latency µs: p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max())
    );
    println!(
        "  WebSocket orders acknowledged (4 connections): {} ({:.0}/s), latency µs: p50 {:.0}  p99 {:.0}  max {:.0}",
        entry.len(),
        entry.len() as f64 / elapsed.as_secs_f64(),
        us(entry.value_at_quantile(0.5)),
        us(entry.value_at_quantile(0.99)),
        us(entry.max())
    );
    println!(
        "  order request to WebSocket update µs ({} samples): p50 {:.0}  p99 {:.0}  max {:.0}",
        ws.len(),
        us(ws.value_at_quantile(0.5)),
        us(ws.value_at_quantile(0.99)),
        us(ws.max())
    );
    Ok(())
}

/// Places orders one at a time for a logged-in account and times each from
/// the request to its update on the WebSocket.
async fn ws_probe(url: String, deadline: Instant) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut ws = ws_login(&url, 0).await?;
    ws.send(Message::Text(
        json!({"op":"subscribe","channels":["orders"]})
            .to_string()
            .into(),
    ))
    .await?;
    let http = reqwest::Client::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let client_id = format!("probe-{n}");
        let body = json!({
            "account": "bench-probe", "instrument": "BTC-USDT", "side": "buy",
            "order_type": "limit", "time_in_force": "ioc", "price": "10000", "quantity": "0.001",
            "client_order_id": client_id,
        });
        let t = Instant::now();
        http.post(format!("{url}/api/v1/orders"))
            .json(&body)
            .send()
            .await?;
        let seen = wait_for(&mut ws, |v| {
            v["channel"] == "orders" && v["data"]["client_order_id"] == client_id.as_str()
        })
        .await;
        if seen {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(hist)
}

/// Logs in on the WebSocket and enters orders over it, one at a time,
/// timing each from sending to its acknowledgement.
async fn ws_orders(url: String, deadline: Instant, c: u64) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut ws = ws_login(&url, c + 1).await?;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let order = json!({
            "instrument": "BTC-USDT", "side": "buy", "order_type": "limit",
            "time_in_force": "ioc", "price": "10000", "quantity": "0.001",
        });
        let t = Instant::now();
        ws.send(Message::Text(
            json!({"op":"order","req_id":n,"order":order})
                .to_string()
                .into(),
        ))
        .await?;
        let acked = wait_for(&mut ws, |v| v["op"] == "order" && v["req_id"] == n).await;
        if acked {
            let _ = hist.record(t.elapsed().as_nanos() as u64);
        }
    }
    Ok(hist)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the WebSocket and logs in as the probe account; `salt` keeps
/// signatures of simultaneous logins distinct.
async fn ws_login(url: &str, salt: u64) -> anyhow::Result<Socket> {
    let ws_url = url.replacen("http", "ws", 1) + "/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .context("WebSocket connect")?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        + salt as i64;
    let sig = tradestack_exchange::binance::auth::sign(SECRET, &format!("timestamp={ts}"));
    let login = json!({"op": "login", "api_key": KEY, "timestamp": ts, "signature": sig});
    ws.send(Message::Text(login.to_string().into())).await?;
    Ok(ws)
}

/// Reads the socket until a message matches, for up to 5 s.
async fn wait_for(ws: &mut Socket, matches: impl Fn(&Value) -> bool) -> bool {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or(""))
                && matches(&v)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// Keeps the embedded exchange (and its temporary directory) alive.
pub struct LocalExchange {
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts an exchange in this process with a probe account that has an API key.
async fn local_exchange() -> anyhow::Result<(String, LocalExchange)> {
    let dir = tempfile::tempdir()?;
    let mut config = tradestack_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.log.level = "warn".into();
    let mut table = toml::Table::new();
    let accounts: toml::Value = toml::from_str::<toml::Table>(&format!(
        r#"accounts = [{{ id = "bench-probe", api_key = "{KEY}", api_secret = "{SECRET}", balances = {{ USDT = "1000000000" }} }}]"#
    ))?
    .remove("accounts")
    .context("accounts")?;
    table.insert("accounts".into(), accounts);
    table.insert(
        "admin_token".into(),
        toml::Value::String(LOCAL_ADMIN_TOKEN.into()),
    );
    // A throwaway exchange in a temporary directory: nothing is stored.
    table.insert("allow_plaintext_secrets".into(), toml::Value::Boolean(true));
    // Orders go unsigned: the bench measures order entry, not HMAC.
    table.insert("require_signatures".into(), toml::Value::Boolean(false));
    // The load comes from one address: no rate limits here.
    let unlimited = toml::Value::Integer(i64::from(u32::MAX));
    table.insert("weight_per_minute".into(), unlimited.clone());
    table.insert("orders_per_10s".into(), unlimited);
    config.exchange = table;
    let settings = tradestack_exchange::ExchangeSettings::from_table(&config.exchange)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tradestack_service::Runtime::build(config, "bench").await?;
    let svc = tradestack_exchange::ExchangeService::start(
        settings,
        dir.path(),
        rt.clock.clone(),
        &rt.metrics,
        rt.store.clone(),
        rt.bus.clone(),
        rt.config.seed,
    )?;
    let registry = tradestack_registry::Registry::new(
        rt.cache.clone(),
        rt.clock.clone(),
        rt.config.registry.ttl.as_std(),
    );
    let running = tradestack_service::start(
        &rt,
        Arc::new(svc),
        "127.0.0.1:0".parse()?,
        None,
        tradestack_service::RegistryLink::Local(registry),
    )
    .await?;
    let url = format!("http://{}", running.addr);
    // The runtime must outlive the benchmark: keep it in a task.
    let task = tokio::spawn(async move {
        let _rt = rt;
        let _ = running.task.await;
    });
    Ok((
        url,
        LocalExchange {
            _dir: dir,
            _task: task,
        },
    ))
}
