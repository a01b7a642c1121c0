//! The multi-process deployment, without Docker: every service as its own
//! `tradestack serve` process, wired through the real PostgreSQL, Redis and
//! Kafka (tansu). A scenario runs across them through the coordinator; the
//! risk service is killed (`kill -9`) and restarted while it runs; then the
//! registry, the health endpoints, the order flow and the audit report must
//! all be right.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, SERVICES, get_json, listen_var, until};
use serde_json::json;

static SEEDED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The scenario: its header, the desk's strategies, its steps.
fn scenario() -> String {
    [HEAD, common::SCENARIO_DESK, STEPS].concat()
}

const HEAD: &str = r#"
name: deployment-smoke
description: A runaway strategy, detected by a risk service that was just killed and restarted.
seed: 5
duration: 30s
"#;

const STEPS: &str = r#"steps:
  - at: 10s
    inject:
      id: runaway
      kind: strategy
      strategy: mm-eth
      misbehaviour:
        mode: runaway_loop
        instrument: ETH-USDT
        start_per_second: 10
        double_every: 1000000000
        max_per_second: 200
  - at: 26s
    clear: runaway
expect:
  - { kind: state, strategy: mm-eth, state: HALTED, after: runaway, within: 15s }
  - { kind: no_lost_orders }
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(pg: &str, redis: &str, kafka: &str, prefix: &str, ports: &[(&str, u16)]) -> String {
    let port = |n: &str| ports.iter().find(|(s, _)| *s == n).unwrap().1;
    let mut c = format!(
        r#"state = "postgres"
cache = "redis"
bus = "kafka"

[postgres]
url = "{pg}"

[redis]
url = "{redis}"

[kafka]
brokers = "{kafka}"
topic_prefix = "{prefix}."
group_prefix = "{prefix}"

[registry]
url = "http://127.0.0.1:{reg}"
required = ["registry", "exchange", "risk", "strategy"]

[exchange]
admin_token = "ops-token"
allow_plaintext_secrets = true
require_signatures = false

[[exchange.accounts]]
id = "desk-mm"
api_key = "mm-key"
api_secret = "mm-secret"

[[exchange.accounts]]
id = "desk-eth"
api_key = "eth-key"
api_secret = "eth-secret"

[trading]
venue = "remote"

[trading.remote]
url = "http://127.0.0.1:{ex}"
admin_token = "ops-token"

[[trading.remote.credentials]]
account = "desk-mm"
api_key = "mm-key"
api_secret = "mm-secret"

[[trading.remote.credentials]]
account = "desk-eth"
api_key = "eth-key"
api_secret = "eth-secret"

[[strategies]]
id = "mm-btc"
account = "desk-mm"
kind = "market_maker"
instrument = "BTC-USDT"
size = "0.01"
max_inventory = "0.2"
refresh = "500ms"

[[strategies]]
id = "mm-eth"
account = "desk-eth"
kind = "market_maker"
instrument = "ETH-USDT"
size = "0.1"
max_inventory = "2"
refresh = "500ms"

[risk.rules]
runaway_orders_per_second = 20
runaway_for = "2s"

[custody]
step_every = "200ms"
reconcile_every = "1s"

[coordinator]
tick = "200ms"
admin_token = "ops-token"
"#,
        reg = port("registry"),
        ex = port("exchange"),
    );
    for (name, p) in ports {
        c.push_str(&format!(
            "\n[services.{name}]\nlisten = \"127.0.0.1:{p}\"\n"
        ));
    }
    c
}

fn serve(dir: &Path, name: &str, ports: &[(&str, u16)]) -> Proc {
    let data = dir.join(format!("data-{name}"));
    // The helper binds every service to port 0; this deployment needs its own ports back.
    let listen: Vec<(String, String)> = ports
        .iter()
        .map(|(s, p)| (listen_var(s), format!("127.0.0.1:{p}")))
        .collect();
    let mut env: Vec<(&str, &str)> = listen
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("TRADESTACK_DATA_DIR", data.to_str().unwrap()));
    Proc::start(&["serve", name], &env, dir)
}

/// Empties one Redis database (RESP over a plain socket).
fn flush_redis(url: &str, db: u32) {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "SELECT {db}\r\nFLUSHDB\r\n").unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).matches("+OK").count().ge(&2) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "redis closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

fn cli(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .env("TRADESTACK_CONFIG", "tradestack.toml")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Trades against the BTC market maker until its fills pass `above`;
/// returns them. Wide resting orders on both books give the market makers
/// a mid to quote around (new levels each round, until the market-data
/// gateway, following the book deltas on Kafka, has seen both sides); a
/// taker then lifts the market maker's ask.
async fn mm_fills_above(exchange: &str, strategy: &str, above: u64) -> u64 {
    let http = reqwest::Client::new();
    until(60, "a fill of the market maker", || {
        let http = http.clone();
        async move {
            let n = SEEDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for (instrument, side, price) in [
                ("BTC-USDT", "buy", 38_000 + n),
                ("BTC-USDT", "sell", 42_000 - n),
                ("ETH-USDT", "buy", 2_300 + n),
                ("ETH-USDT", "sell", 2_700 - n),
            ] {
                let _ = http
                    .post(format!("{exchange}/api/v1/orders"))
                    .json(
                        &json!({"account": "seed", "instrument": instrument, "side": side,
                        "order_type": "limit", "quantity": "0.1", "price": price.to_string()}),
                    )
                    .send()
                    .await;
            }
            let _ = http
                .post(format!("{exchange}/api/v1/orders"))
                .json(
                    &json!({"account": "taker", "instrument": "BTC-USDT", "side": "buy",
                    "order_type": "market", "quantity": "0.01"}),
                )
                .send()
                .await;
            let s = get_json(&format!("{strategy}/api/v1/strategies")).await;
            let mm = s.as_array()?.iter().find(|v| v["id"] == "mm-btc")?;
            let fills = mm["stats"]["fills"].as_u64()?;
            (fills > above).then_some(fills)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_as_processes_survive_a_restart_mid_scenario() {
    let (Some(pg_admin), Some(redis), Some(kafka)) = (
        tradestack_testkit::postgres(),
        tradestack_testkit::redis(),
        tradestack_testkit::kafka(),
    ) else {
        return;
    };
    use sqlx::Connection;
    let db = tradestack_testkit::unique_name("ts_deploy").to_lowercase();
    let mut admin = sqlx::PgConnection::connect(&pg_admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let pg = format!("{}/{db}", pg_admin.rsplit_once('/').unwrap().0);
    // A Redis database of its own, emptied, keeps the registry's keys apart.
    flush_redis(&redis, 13);
    let redis = format!("{}/13", redis.trim_end_matches('/'));
    let prefix = tradestack_testkit::unique_name("deploy");

    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(&str, u16)> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    std::fs::write(
        dir.path().join("tradestack.toml"),
        config(&pg, &redis, &kafka, &prefix, &ports),
    )
    .unwrap();
    let mut procs: Vec<(&str, Proc)> = Vec::new();
    for name in SERVICES {
        procs.push((name, serve(dir.path(), name, &ports)));
    }
    let url = |name: &str| {
        let p = ports.iter().find(|(s, _)| *s == name).unwrap().1;
        format!("http://127.0.0.1:{p}")
    };

    // Every service registers and is ready.
    let registry = url("registry");
    until(60, "every service ready in the registry", || async {
        let (code, out) = cli(dir.path(), &["infra", "validate", "--target", &registry]);
        (code == 0).then_some(out)
    })
    .await;

    // Order flow: wide resting orders give the market makers a mid to
    // quote around; a taker then lifts the market maker's ask.
    let exchange = url("exchange");
    let http = reqwest::Client::new();
    for (account, asset, amount) in [
        ("taker", "USDT", "10000000"),
        ("seed", "USDT", "10000000"),
        ("seed", "BTC", "10"),
        ("seed", "ETH", "100"),
    ] {
        let r = http
            .post(format!("{exchange}/admin/accounts/{account}/deposits"))
            .bearer_auth("ops-token")
            .json(&json!({"asset": asset, "amount": amount}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let strategy = url("strategy");
    let before = mm_fills_above(&exchange, &strategy, 0).await;
    // The scenario across the processes, with the risk service killed and restarted.
    let file = dir.path().join("smoke.yaml");
    std::fs::write(&file, scenario()).unwrap();
    let coordinator = url("coordinator");
    let run_dir = dir.path().to_path_buf();
    let (file_s, coord_s) = (file.to_string_lossy().to_string(), coordinator.clone());
    let run = tokio::task::spawn_blocking(move || {
        cli(
            &run_dir,
            &["scenario", "run", &file_s, "--target", &coord_s],
        )
    });
    until(20, "the run to start", || async {
        let runs = get_json(&format!("{coordinator}/api/v1/scenarios/runs")).await;
        (!runs.as_array()?.is_empty()).then_some(())
    })
    .await;
    let i = procs.iter().position(|(n, _)| *n == "risk").unwrap();
    procs[i].1.kill9();
    procs[i].1 = serve(dir.path(), "risk", &ports);
    let (code, out) = run.await.unwrap();
    assert_eq!(code, 0, "the scenario failed across processes:\n{out}");

    // Afterwards: the registry, every health endpoint, the order flow, the audit's view.
    let (code, out) = cli(dir.path(), &["infra", "validate", "--target", &registry]);
    assert_eq!(code, 0, "{out}");
    for name in SERVICES {
        let h = get_json(&format!("{}/health", url(name))).await;
        assert_eq!(h["status"], "healthy", "{name}: {h}");
        assert_eq!(h["engines"]["bus"], "kafka", "{name}: {h}");
    }
    let after = mm_fills_above(&exchange, &strategy, before).await;
    let audit = url("audit");
    let runs = get_json(&format!("{audit}/api/v1/audit/runs")).await;
    let id = runs[0]["run"].as_str().unwrap().to_string();
    let seen = until(20, "the audit to see the run end", || async {
        let a = get_json(&format!("{audit}/api/v1/audit/runs/{id}")).await;
        (a["run"]["status"] == "passed").then_some(a)
    })
    .await;
    assert!(
        seen["correlation"]["missed"].as_array().unwrap().is_empty(),
        "{seen}"
    );
    // The audit reads the fills from Kafka: once it has them all, its
    // positions agree with the strategy service's.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(&format!("{audit}/api/v1/audit/validation")).await;
        if v["fills"].as_u64().unwrap_or(0) >= after
            && v["disagreements"].as_array().is_some_and(|d| d.is_empty())
        {
            assert!(v["positions_checked"].as_u64().unwrap_or(0) >= 1, "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit's positions never agreed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop(procs);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .ok();
}
