//! The built-in scenarios run and pass; a run is reproducible byte for byte
//! from its seed; expectations can fail; invalid files name the field.

use tradestack_chaos::{Scenario, builtin, report, run};

fn scenario(name: &str) -> Scenario {
    Scenario::from_yaml(builtin::get(name).unwrap()).unwrap()
}

fn passes(name: &str) {
    let s = scenario(name);
    let r = run(&s, s.seed, |_| {}, |_| {}).unwrap();
    assert!(r.passed, "{name} failed:\n{}", report::markdown(&r));
    let v = &r.validation;
    assert!(v.disagreements.is_empty(), "{name}: {:?}", v.disagreements);
    assert!(v.positions_checked > 0 && v.balances_checked > 0, "{v:?}");
}

#[test]
fn strategy_malfunction_passes() {
    passes("strategy-malfunction");
    let s = scenario("strategy-malfunction");
    let r = run(&s, s.seed, |_| {}, |_| {}).unwrap();
    let c = &r.correlation;
    assert!(c.missed.is_empty() && c.false_positives.is_empty(), "{c:?}");
    assert_eq!(c.detected_bps, 10_000);
    assert_eq!(c.rules_exercised, vec!["order_rate".to_string()]);
}

#[test]
fn market_crash_passes() {
    passes("market-crash");
}

#[test]
fn exchange_downtime_passes() {
    passes("exchange-downtime");
}

#[test]
fn settlement_failure_passes() {
    passes("settlement-failure");
}

#[test]
fn feed_disruption_passes() {
    passes("feed-disruption");
}

#[test]
fn stablecoin_depeg_passes() {
    passes("stablecoin-depeg");
}

#[test]
fn the_same_seed_gives_a_byte_identical_report() {
    let s = scenario("strategy-malfunction");
    let a = report::json(&run(&s, 77, |_| {}, |_| {}).unwrap());
    let b = report::json(&run(&s, 77, |_| {}, |_| {}).unwrap());
    assert_eq!(a, b);
    let c = report::json(&run(&s, 78, |_| {}, |_| {}).unwrap());
    assert_ne!(a, c, "another seed, another run");
    // The fields come in a stable order.
    let keys: Vec<&str> = [
        "\"scenario\"",
        "\"seed\"",
        "\"duration\"",
        "\"passed\"",
        "\"expectations\"",
        "\"injections\"",
    ]
    .into_iter()
    .collect();
    let positions: Vec<usize> = keys.iter().map(|k| a.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn an_expectation_that_does_not_hold_fails_the_run() {
    let yaml = builtin::get("strategy-malfunction").unwrap().replace(
        "state: HALTED, after: runaway, within: 10s",
        "state: HALTED, after: runaway, within: 1s",
    );
    let s = Scenario::from_yaml(&yaml).unwrap();
    let r = run(&s, s.seed, |_| {}, |_| {}).unwrap();
    assert!(!r.passed);
    let failed: Vec<_> = r.expectations.iter().filter(|o| !o.passed).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].expectation.contains("HALTED"), "{failed:?}");
    // The HTML page stands alone: no scripts, no external references.
    let html = report::html(&r);
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "no external files"
    );
}

#[test]
fn invalid_files_name_the_field() {
    let base = "name: x\ndescription: y\nseed: 1\nduration: 1h\n";
    let cases = [
        (format!("{base}colour: red\n"), "colour"),
        (
            format!("{base}steps:\n  - at: 5m\n    clear: nope\n"),
            "steps[0].clear",
        ),
        (
            format!("{base}steps:\n  - at: 2h\n    inject: {{ id: a, kind: exchange_outage }}\n"),
            "steps[0].at",
        ),
        (
            format!(
                "{base}steps:\n  - at: 5m\n    inject: {{ id: a, kind: strategy, strategy: ghost, misbehaviour: {{ mode: stuck }} }}\n"
            ),
            "steps[0].inject.strategy",
        ),
        (
            format!("{base}steps:\n  - at: 5m\n    inject: {{ id: a, kind: earthquake }}\n"),
            "steps[0].inject",
        ),
        (
            format!(
                "{base}expect:\n  - {{ kind: alert, rule: drawdown, after: nothing, within: 1m }}\n"
            ),
            "expect[0].after",
        ),
        ("name: x\nseed: one\n".to_string(), "seed"),
    ];
    for (yaml, field) in cases {
        let e = Scenario::from_yaml(&yaml).expect_err(&yaml);
        assert_eq!(e.field, field, "{yaml}\n{e}");
    }
}
