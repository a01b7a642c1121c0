//! A scenario run in real time against a running `tradestack up` through
//! the coordinator API (`tradestack scenario run FILE --target URL`): the
//! faults go in through the services' own hooks, the risk service detects
//! them, the expectations are judged, the audit service correlates the run
//! from the bus and exports its metrics.

mod common;

use std::time::{Duration, Instant};

use common::Proc;
use serde_json::{Value, json};

const SCENARIO: &str = r#"
name: live-smoke
description: Settlement failures, corrupted quotes and a runaway strategy against a running ecosystem.
seed: 11
duration: 40s
# As the running ecosystem has it (a live run uses the services' own
# configuration; this keeps the file runnable in simulated time too).
strategies:
  - id: mm-btc
    account: desk-mm
    kind: market_maker
    instrument: BTC-USDT
    size: "0.01"
    max_inventory: "0.2"
  - id: mm-eth
    account: desk-eth
    kind: market_maker
    instrument: ETH-USDT
    size: "0.1"
    max_inventory: "2"
steps:
  - at: 2s
    inject: { id: settle, kind: settlement_failure, asset: BTC }
  - at: 2s
    inject: { id: garble, kind: feed_corruption, bps: 300 }
  - at: 9s
    clear: garble
  - at: 14s
    clear: settle
  - at: 16s
    inject:
      id: runaway
      kind: strategy
      strategy: mm-eth
      misbehaviour:
        mode: runaway_loop
        instrument: ETH-USDT
        start_per_second: 10
        double_every: 1000000000
        max_per_second: 400
  - at: 36s
    clear: runaway
expect:
  - { kind: alert, rule: market_data_deviation, after: garble, within: 6s }
  - { kind: alert, rule: settlement_break, after: settle, within: 12s }
  - { kind: reconciled, after: settle, within: 15s }
  - { kind: state, strategy: mm-eth, state: HALTED, after: runaway, within: 15s }
  - { kind: no_lost_orders }
"#;

async fn get(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

fn cli(args: Vec<String>) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(&args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_runs_in_real_time_against_a_running_ecosystem() {
    let dir = tempfile::tempdir().unwrap();
    // A second market maker misbehaves, so the first still has orders open
    // when the coordinator looks for lost ones.
    let config = format!(
        "{}\n[[strategies]]\nid = \"mm-eth\"\naccount = \"desk-eth\"\nkind = \"market_maker\"\n\
         instrument = \"ETH-USDT\"\nsize = \"0.1\"\nmax_inventory = \"2\"\nrefresh = \"500ms\"\n\
         [coordinator]\ntick = \"200ms\"\n",
        common::DESK
    );
    std::fs::write(dir.path().join("tradestack.toml"), config).unwrap();
    let data = dir.path().join("data");
    let proc = Proc::start(
        &["up"],
        &[
            ("TRADESTACK_DATA_DIR", data.to_str().unwrap()),
            ("TRADESTACK_MARKETDATA__SIMULATE", "true"),
            ("TRADESTACK_EXCHANGE__ADMIN_TOKEN", "test-admin"),
            ("TRADESTACK_RISK__RULES__FEED_DEVIATION_BPS", "100"),
        ],
        dir.path(),
    );
    let (coordinator, audit, strategy) = (
        proc.url("coordinator").to_string(),
        proc.url("audit").to_string(),
        proc.url("strategy").to_string(),
    );

    // The market maker trades with the agents before the faults begin.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = get(&format!("{strategy}/api/v1/strategies")).await;
        if s[0]["stats"]["fills"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no market-maker fills");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Bad requests name the field; a bad file is refused before anything runs.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{coordinator}/api/v1/scenarios/runs"))
        .json(&json!({"yaml": SCENARIO.replace("duration: 40s", "duration: soon")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("duration"), "{body}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, SCENARIO.replace("kind: strategy", "kind: meteor")).unwrap();
    let (code, out) = cli(vec![
        "scenario".into(),
        "run".into(),
        bad.to_string_lossy().into(),
        "--target".into(),
        coordinator.clone(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("steps[4].inject"), "{out}");

    let file = dir.path().join("live.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let reports = dir.path().join("reports");
    let args: Vec<String> = vec![
        "scenario".into(),
        "run".into(),
        file.to_string_lossy().into(),
        "--target".into(),
        coordinator.clone(),
        "--report".into(),
        reports.to_string_lossy().into(),
    ];
    let run = tokio::task::spawn_blocking(move || cli(args));

    // While it runs, a second run is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("{coordinator}/api/v1/scenarios/runs"))
        .await
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .post(format!("{coordinator}/api/v1/scenarios/runs"))
        .json(&json!({"name": "market-crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);

    let (code, out) = run.await.unwrap();
    assert_eq!(code, 0, "the live run failed:\n{out}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert!(report.get("errors").is_none(), "hooks failed: {report:#}");
    assert_eq!(report["injections"].as_array().unwrap().len(), 3);
    assert_eq!(report["correlation"]["detected_bps"], 10_000, "{report:#}");
    assert!(
        report["validation"]["disagreements"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{report:#}"
    );
    assert!(report["validation"]["positions_checked"].as_u64().unwrap() >= 1);
    // The lost-order check compared real orders: mm-btc still quotes.
    let open = get(&format!("{strategy}/api/v1/orders?strategy=mm-btc")).await;
    assert!(!open.as_array().unwrap().is_empty(), "{open}");

    // The audit service saw the same run on the bus.
    let runs = get(&format!("{coordinator}/api/v1/scenarios/runs")).await;
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let a = get(&format!("{audit}/api/v1/audit/runs/{id}")).await;
        if a["run"]["status"] == "passed" {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the audit never saw the end: {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seen["injections"].as_array().unwrap().len(), 3, "{seen}");
    assert!(
        seen["correlation"]["missed"].as_array().unwrap().is_empty(),
        "{seen}"
    );
    let metrics = reqwest::get(format!("{audit}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"scenario_expectations_total{outcome="passed"} 5"#),
        "{metrics}"
    );
    let detected = metrics
        .lines()
        .find(|l| l.starts_with("detection_latency_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(detected, Some(3), "{metrics}");
}
