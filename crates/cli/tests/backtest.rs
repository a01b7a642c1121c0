//! `tradestack backtest` end to end: the report folder, and one-line errors.

use std::path::PathBuf;
use std::process::Command;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn tradestack() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradestack"));
    // No configuration file from the environment.
    c.env_remove("TRADESTACK_CONFIG")
        .current_dir(std::env::temp_dir());
    c
}

#[test]
fn writes_the_report_folder_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = tradestack()
        .args(["backtest", "--strategy", "ma_crossover", "--data"])
        .arg(data("binance/FTX_BTC-PERP_2021-12-31_2022-02-01_1m.csv"))
        .args([
            "--set",
            "instrument=BTC-PERP",
            "--set",
            "fast=5",
            "--set",
            "slow=30",
            "--set",
            "size=0.5",
            "--from",
            "2022-01-03T00:00:00Z",
            "--to",
            "2022-01-04T00:00:00Z",
            "--report",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("backtest ma_crossover (ma_crossover)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2022-01-03T00:00:00Z to 2022-01-03T23:59:00Z"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["events"], 1440);
    assert!(report["fills"].as_u64().unwrap() > 0, "{report}");
    for key in [
        "pnl",
        "max_drawdown",
        "sharpe",
        "turnover",
        "fill_ratio_bps",
        "fees",
        "equity",
    ] {
        assert!(report.get(key).is_some(), "no {key}");
    }
    let svg = std::fs::read_to_string(dir.path().join("pnl.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
    assert!(stdout.starts_with(&summary));
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let cases: [(&[&str], &str); 3] = [
        (&["--strategy", "nope"], "unknown variant `nope`"),
        (
            &[
                "--strategy",
                "market_maker",
                "--set",
                "instrument=ETH-USDT",
                "--set",
                "size=1",
                "--set",
                "max_inventory=1",
            ],
            "the data has no ETH-USDT; it has ADA-BTC",
        ),
        (
            &[
                "--strategy",
                "market_maker",
                "--set",
                "instrument=ADA-BTC",
                "--set",
                "size=1",
                "--set",
                "max_inventory=1",
                "--from",
                "yesterday",
            ],
            "--from yesterday",
        ),
    ];
    for (args, expected) in cases {
        let out = tradestack()
            .arg("backtest")
            .args(args)
            .arg("--data")
            .arg(data("binance/ADABTC-1m-2021-11-27.csv"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
