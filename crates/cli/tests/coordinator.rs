//! A scenario run in real time against a running `tradestack up` through
//! the coordinator API (`tradestack scenario run FILE --target URL`): the
//! faults go in through the services' own hooks, the risk service detects
//! them, the expectations are judged, the audit service correlates the run
//! from the bus and exports its metrics.

mod common;

use std::time::{Duration, Instant};

use common::{Proc, get_json};
use serde_json::{Value, json};

/// The scenario: its header, the desk's strategies, its steps.
fn scenario() -> String {
    [HEAD, common::SCENARIO_DESK, STEPS].concat()
}

const HEAD: &str = r#"
name: live-smoke
description: Settlement failures, corrupted quotes and a runaway strategy against a running ecosystem.
seed: 11
duration: 40s
# As the running ecosystem has it (a live run uses the services' own
# configuration; this keeps the file runnable in simulated time too).
"#;

const STEPS: &str = r#"steps:
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
    let (alertmanager, _received) = common::receiver().await;
    // A second market maker misbehaves, so the first still has orders open
    // when the coordinator looks for lost ones.
    let config = format!(
        "{}\n[[strategies]]\nid = \"mm-eth\"\naccount = \"desk-eth\"\nkind = \"market_maker\"\n\
         instrument = \"ETH-USDT\"\nsize = \"0.1\"\nmax_inventory = \"2\"\nrefresh = \"500ms\"\n\
         [coordinator]\ntick = \"200ms\"\n\
         [[risk.delivery.alertmanager]]\nurl = \"{alertmanager}\"\n",
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
        let s = get_json(&format!("{strategy}/api/v1/strategies")).await;
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
        .json(&json!({"yaml": scenario().replace("duration: 40s", "duration: soon")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("duration"), "{body}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, scenario().replace("kind: strategy", "kind: meteor")).unwrap();
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
    std::fs::write(&file, scenario()).unwrap();
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
    while get_json(&format!("{coordinator}/api/v1/scenarios/runs"))
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
    let open = get_json(&format!("{strategy}/api/v1/orders?strategy=mm-btc")).await;
    assert!(!open.as_array().unwrap().is_empty(), "{open}");

    // The audit service saw the same run on the bus.
    let runs = get_json(&format!("{coordinator}/api/v1/scenarios/runs")).await;
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let a = get_json(&format!("{audit}/api/v1/audit/runs/{id}")).await;
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

    // Every tradestack metric a Grafana panel queries is exported by now
    // (after a run with alerts, halts, injections and ingest).
    let r = http
        .post(format!("{}/write", proc.url("marketdata")))
        .body("probe,host=a value=1i 1700000000000000000\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let metrics = reqwest::get(format!("{audit}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dashboards = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/dashboards"
    );
    let mut missing = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(dashboards).unwrap() {
        let path = entry.unwrap().path();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for expr in panel_exprs(&d) {
            for m in metric_names(&expr) {
                if is_external(&m) {
                    continue;
                }
                checked += 1;
                if !exported(&metrics, &m) {
                    missing.push(format!(
                        "{}: {m}",
                        path.file_name().unwrap().to_string_lossy()
                    ));
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(checked > 50, "only {checked} metric references found");
    assert!(missing.is_empty(), "queried but not exported: {missing:#?}");
}

/// Every PromQL `expr` of every panel (rows' panels included).
fn panel_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = d["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_string());
            }
        }
    }
    out
}

/// PromQL's aggregation operators, which may stand before `by (...)`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names in a PromQL expression: identifiers that are not
/// functions, keywords, label names, strings, durations or variables.
fn metric_names(expr: &str) -> Vec<String> {
    // Drop strings, label matchers, ranges, grouping clauses and variables.
    let mut s = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_str = false;
    for c in expr.chars() {
        match c {
            '"' => in_str = !in_str,
            _ if in_str => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => s.push(c),
        }
    }
    let keywords = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
    ];
    let chars: Vec<char> = s.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let call = j < chars.len() && chars[j] == '(';
            if AGGREGATIONS.contains(&word.as_str()) {
                // `sum by (...) (...)`: the operator, then maybe its grouping.
            } else if keywords.contains(&word.as_str()) {
                // The label list after by/without/on/ignoring/group_*.
                skip_group = call || (j < chars.len() && chars[j] == '(');
            } else if !call && !skip_group && !word.starts_with(|c: char| c.is_ascii_digit()) {
                names.push(word);
            }
            continue;
        }
        if c == ')' {
            skip_group = false;
        }
        if c.is_ascii_digit() {
            // Numbers and durations such as 5m.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Metrics from exporters, Prometheus itself or recording rules.
fn is_external(m: &str) -> bool {
    m == "up"
        || m.contains(':')
        || [
            "node_",
            "kafka_",
            "pg_",
            "redis_",
            "prometheus_",
            "alertmanager_",
        ]
        .iter()
        .any(|p| m.starts_with(p))
}

/// True when the exposition has a sample of `m`.
fn exported(exposition: &str, m: &str) -> bool {
    exposition.lines().any(|l| {
        !l.starts_with('#')
            && l.strip_prefix(m)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[test]
fn promql_metric_names_are_found() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket{service=~"$service"}[5m])))"#
        ),
        vec!["http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "sum(rate(http_requests_total{status=~\"5..\"}[$__rate_interval])) / ignoring(status) sum(rate(http_requests_total[5m])) > 0.05"
        ),
        vec!["http_requests_total", "http_requests_total"]
    );
    assert_eq!(
        metric_names("max by (rule) (risk_alerts_active) or vector(0)"),
        vec!["risk_alerts_active"]
    );
}
