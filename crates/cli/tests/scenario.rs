//! `tradestack scenario`: list, show, validate with one-line errors (exit
//! 2), and run with exit 0 when every expectation holds and 1 otherwise,
//! writing the report folder.

mod common;

use std::process::Command;

fn tradestack(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_show_and_validate() {
    let (code, out, _) = tradestack(&["scenario", "list"]);
    assert_eq!(code, 0);
    for name in [
        "market-crash",
        "stablecoin-depeg",
        "exchange-downtime",
        "settlement-failure",
        "strategy-malfunction",
        "feed-disruption",
    ] {
        assert!(out.contains(name), "{out}");
    }
    let (code, yaml, _) = tradestack(&["scenario", "show", "stablecoin-depeg"]);
    assert_eq!(code, 0);
    assert!(yaml.contains("kind: depeg"), "{yaml}");

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, &yaml).unwrap();
    let (code, out, _) = tradestack(&["scenario", "validate", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        yaml.replace("target: \"0.92\"", "target: \"0.92\"\n      colour: red"),
    )
    .unwrap();
    let (code, _, err) = tradestack(&["scenario", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("steps[0].inject") && err.contains("colour"),
        "{err}"
    );

    let (code, _, err) = tradestack(&["scenario", "show", "no-such"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) =
        tradestack(&["scenario", "run", "strategy-malfunction", "--speed", "fast"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--speed"), "{err}");
}

#[test]
fn run_exits_0_when_every_expectation_holds_and_1_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let (code, out, err) = tradestack(&[
        "scenario",
        "run",
        "strategy-malfunction",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("PASSED"), "{out}");
    assert!(err.contains("inject runaway"), "live summary: {err}");
    for f in ["report.json", "report.md", "report.html"] {
        assert!(report.join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["seed"], 5005);

    let (_, yaml, _) = tradestack(&["scenario", "show", "strategy-malfunction"]);
    let strict = dir.path().join("strict.yaml");
    std::fs::write(
        &strict,
        yaml.replace(
            "within: 10s }\n  - { kind: no_lost",
            "within: 1s }\n  - { kind: no_lost",
        ),
    )
    .unwrap();
    let (code, out, _) = tradestack(&["scenario", "run", strict.to_str().unwrap(), "--seed", "9"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED") && out.contains("❌"), "{out}");
}
