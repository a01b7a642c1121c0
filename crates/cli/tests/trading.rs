//! The strategy, risk and custodian services in `tradestack up`, with the
//! market simulator's agents trading against a market maker: positions
//! reconcile with the exchange's fills, a manual halt (CLI) and a runaway
//! strategy (risk rule) both cancel every order, custody reconciles after
//! settlement, and a `kill -9` in the middle of settling settles nothing
//! twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Proc, get_json, until};
use serde_json::{Value, json};

fn start(dir: &std::path::Path, extra: &str) -> Proc {
    std::fs::write(
        dir.join("tradestack.toml"),
        format!("{}\n{extra}", common::DESK),
    )
    .unwrap();
    let data = dir.join("data");
    Proc::start(
        &["up"],
        &[
            ("TRADESTACK_DATA_DIR", data.to_str().unwrap()),
            ("TRADESTACK_MARKETDATA__SIMULATE", "true"),
        ],
        dir,
    )
}

fn dec(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Exact decimal strings → i128 units of 1e-8.
fn raw(v: &Value) -> i128 {
    let s = v.as_str().unwrap();
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<8}");
    let n: i128 = format!("{int}{frac}").parse().unwrap();
    if neg { -n } else { n }
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn open_orders(exchange: &str) -> usize {
    get_json(&format!("{exchange}/api/v1/orders?account=desk-mm"))
        .await
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_risk_and_custody_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let (alertmanager, received) = common::receiver().await;
    let proc = start(
        dir.path(),
        &format!(
            "[[risk.delivery.alertmanager]]\nurl = \"{alertmanager}\"\n\
             [risk.delivery.retry]\ninitial_backoff = \"50ms\"\n"
        ),
    );
    let (exchange, strategy, risk, custodian) = (
        proc.url("exchange").to_string(),
        proc.url("strategy").to_string(),
        proc.url("risk").to_string(),
        proc.url("custodian").to_string(),
    );

    // The agents trade with the market maker.
    until(120, "market-maker fills", || async {
        let s = get_json(&format!("{strategy}/api/v1/strategies")).await;
        (s[0]["stats"]["fills"].as_u64()? >= 5).then_some(())
    })
    .await;

    // Custody chaos: BTC settlements fail, custody reports the break, and
    // the risk monitor raises settlement_break; retried, it resolves.
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{custodian}/api/v1/custody/chaos"))
        .json(&json!({"fail": [{"asset": "BTC"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    until(60, "the settlement_break alert", || async {
        let a = get_json(&format!("{risk}/api/v1/risk/alerts?active=true")).await;
        a.as_array()?
            .iter()
            .any(|a| a["rule"] == "settlement_break" && a["subject"] == "desk-mm BTC")
            .then_some(())
    })
    .await;
    http.put(format!("{custodian}/api/v1/custody/chaos"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let failed: Vec<u64> = get_json(&format!("{custodian}/api/v1/custody/instructions"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"]["status"] == "failed")
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert!(!failed.is_empty());
    for id in &failed {
        let r = http
            .post(format!(
                "{custodian}/api/v1/custody/instructions/{id}/retry"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    until(30, "settlement_break resolved", || async {
        let a = get_json(&format!("{risk}/api/v1/risk/alerts")).await;
        a.as_array()?
            .iter()
            .any(|a| a["rule"] == "settlement_break" && a["resolved"] == true)
            .then_some(())
    })
    .await;

    // A manual halt through the CLI: every order cancelled, none refilled.
    let (ok, out) = cli(&[
        "risk",
        "halt",
        "--account",
        "desk-mm",
        "--strategy",
        "mm-btc",
        "--reason",
        "test",
        "--user",
        "tester",
        "--url",
        &risk,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("ACTIVE -> HALTED"), "{out}");
    until(10, "the halted strategy's orders cancelled", || async {
        (open_orders(&exchange).await == 0).then_some(())
    })
    .await;
    let states = get_json(&format!("{risk}/api/v1/risk/states")).await;
    assert_eq!(states["restricted"][0][1], "HALTED");
    assert_eq!(states["audit"][0]["by"], "manual");
    assert_eq!(states["audit"][0]["user"], "tester");
    let (ok, out) = cli(&["risk", "states", "--url", &risk]);
    assert!(
        ok && out.contains("desk-mm/mm-btc") && out.contains("HALTED"),
        "{out}"
    );

    // Positions equal the sum of the exchange's fills, exactly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fills = get_json(&format!(
        "{exchange}/api/v1/fills?account=desk-mm&limit=1000"
    ))
    .await;
    let fills = fills.as_array().unwrap();
    let mut qty: i128 = 0;
    for f in fills {
        let q = raw(&f["quantity"]);
        qty += if f["side"] == "buy" { q } else { -q };
    }
    let positions = get_json(&format!("{strategy}/api/v1/positions?strategy=mm-btc")).await;
    let p = &positions[0];
    assert_eq!(raw(&p["quantity"]), qty, "position vs fills");
    assert_eq!(p["fills"].as_u64().unwrap() as usize, fills.len());
    // The risk service's own view, built from the bus, agrees.
    let risk_positions = get_json(&format!("{risk}/api/v1/risk/positions")).await;
    assert_eq!(risk_positions[0]["quantity"], p["quantity"]);
    assert_eq!(risk_positions[0]["realized_pnl"], p["realized_pnl"]);

    // After T+0 settlement, custody equals the exchange, with no break.
    let report = until(20, "a clean reconciliation", || async {
        let r = get_json(&format!("{custodian}/api/v1/custody/reconciliation")).await;
        (r["breaks"].as_array()?.is_empty() && r["ts"].as_i64()? > 0).then_some(r)
    })
    .await;
    assert!(report["breaks"].as_array().unwrap().is_empty());
    let balances = get_json(&format!("{exchange}/api/v1/accounts/desk-mm/balances")).await;
    let custody = get_json(&format!(
        "{custodian}/api/v1/custody/balances?account=desk-mm"
    ))
    .await;
    let mut held: BTreeMap<String, i128> = BTreeMap::new();
    for w in custody.as_array().unwrap() {
        *held.entry(w["asset"].as_str().unwrap().into()).or_default() += raw(&w["balance"]);
    }
    for b in balances.as_array().unwrap() {
        let total = raw(&b["free"]) + raw(&b["locked"]);
        assert_eq!(
            held[b["asset"].as_str().unwrap()],
            total,
            "custody vs exchange: {b}"
        );
    }

    // Resume, then make it run away: the risk monitor halts it by rule.
    let (ok, out) = cli(&[
        "risk",
        "resume",
        "--account",
        "desk-mm",
        "--strategy",
        "mm-btc",
        "--url",
        &risk,
    ]);
    assert!(ok && out.contains("HALTED -> ACTIVE"), "{out}");
    let r = reqwest::Client::new()
        .put(format!("{strategy}/api/v1/strategies/mm-btc/misbehaviour"))
        .json(&json!({"mode": "runaway_loop", "instrument": "BTC-USDT",
            "start_per_second": 10, "double_every": 1_000_000_000u64, "max_per_second": 400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let states = until(30, "the runaway strategy HALTED by rule", || async {
        let s = get_json(&format!("{risk}/api/v1/risk/states")).await;
        let last = s["audit"].as_array()?.last()?.clone();
        (last["by"] == "rule" && last["to"] == "HALTED").then_some(s)
    })
    .await;
    assert_eq!(
        states["audit"].as_array().unwrap().last().unwrap()["rule"],
        "order_rate"
    );
    until(10, "the runaway's orders cancelled", || async {
        (open_orders(&exchange).await == 0).then_some(())
    })
    .await;
    let alerts = get_json(&format!("{risk}/api/v1/risk/alerts")).await;
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "order_rate"
                && a["severity"] == "critical"
                && a["subject"] == "desk-mm/mm-btc"
                && dec(&a["value"]) > dec(&a["threshold"])),
        "{alerts}"
    );
    // The alert reached Alertmanager in its API v2 format.
    until(20, "the alert at the Alertmanager receiver", || async {
        let got = received.lock().unwrap().clone();
        got.iter()
            .flat_map(|b| b.as_array().cloned().unwrap_or_default())
            .find(|a| {
                a["labels"]["alertname"] == "order_rate"
                    && a["labels"]["severity"] == "critical"
                    && a["labels"]["subject"] == "desk-mm/mm-btc"
                    && a["startsAt"].is_string()
            })
    })
    .await;
    let metrics = reqwest::get(format!("{risk}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"risk_alerts_total{rule="order_rate",severity="critical"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"risk_trading_state{account="desk-mm",strategy="mm-btc"} 2"#));
    let metrics = reqwest::get(format!("{strategy}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"trading_orders_total{strategy="mm-btc",outcome="gated_halted"}"#));
    assert!(metrics.contains(r#"trading_pnl{strategy="mm-btc",account="desk-mm",instrument="BTC-USDT",asset="USDT",kind="realized"}"#));
    // A bad manual change names the field.
    let r = reqwest::Client::new()
        .post(format!("{risk}/api/v1/risk/states"))
        .json(&json!({"account": "desk-mm", "state": "FROZEN", "user": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "state", "{body}");
}

/// Settled amounts per instruction id, from the custodian's stored audit trail.
async fn settlements(custodian: &str) -> BTreeMap<u64, usize> {
    let audit = get_json(&format!("{custodian}/api/v1/custody/audit")).await;
    let mut n = BTreeMap::new();
    for r in audit.as_array().unwrap() {
        if r["action"] == "instruction.settled" {
            *n.entry(r["detail"]["reference"].as_u64().unwrap())
                .or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_settlement_settles_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), "");
    let custodian = proc.url("custodian").to_string();
    let before = until(120, "settlements before the crash", || async {
        let s = settlements(&custodian).await;
        (s.len() >= 6).then_some(s)
    })
    .await;
    // Fills keep arriving and settling every 100 ms: the kill lands mid-cycle.
    proc.kill9();

    let proc = start(dir.path(), "");
    let (exchange, risk, custodian) = (
        proc.url("exchange").to_string(),
        proc.url("risk").to_string(),
        proc.url("custodian").to_string(),
    );
    // Trade some more after the restart, then stop trading.
    until(60, "settlements after the restart", || async {
        let s = settlements(&custodian).await;
        (s.len() > before.len() + 2).then_some(())
    })
    .await;
    let (ok, out) = cli(&[
        "risk",
        "halt",
        "--account",
        "desk-mm",
        "--url",
        &risk,
        "--reason",
        "quiesce",
    ]);
    assert!(ok, "{out}");
    until(10, "orders cancelled", || async {
        (open_orders(&exchange).await == 0).then_some(())
    })
    .await;

    // Every instruction settled once, and custody equals the exchange and
    // the fills: a double settlement would show as a custody break.
    let report = until(30, "a clean reconciliation", || async {
        let r = get_json(&format!("{custodian}/api/v1/custody/reconciliation")).await;
        let settled = get_json(&format!("{custodian}/api/v1/custody/instructions")).await;
        let pending = settled
            .as_array()?
            .iter()
            .any(|i| i["status"]["status"] != "settled");
        (!pending && r["breaks"].as_array()?.is_empty()).then_some(r)
    })
    .await;
    assert!(report["breaks"].as_array().unwrap().is_empty());
    let after = settlements(&custodian).await;
    assert!(after.values().all(|&n| n == 1), "settled twice: {after:?}");
    let instructions = get_json(&format!("{custodian}/api/v1/custody/instructions")).await;
    let ids: Vec<u64> = instructions
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), ids);
    for (id, _) in before {
        assert!(after.contains_key(&id), "instruction {id} lost");
    }
}
