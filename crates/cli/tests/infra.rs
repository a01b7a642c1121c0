//! `tradestack infra`: readiness of a running deployment as a table, and a
//! backup restored into a fresh data directory giving back the same
//! journal, time series and state store.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Proc;
use serde_json::Value;

fn cli(dir: &Path, data: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .env("TRADESTACK_DATA_DIR", data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn up(dir: &Path, data: &Path, simulate: bool) -> Proc {
    Proc::start(
        &["up"],
        &[
            ("TRADESTACK_DATA_DIR", data.to_str().unwrap()),
            (
                "TRADESTACK_MARKETDATA__SIMULATE",
                if simulate { "true" } else { "false" },
            ),
        ],
        dir,
    )
}

async fn sql_count(base: &str, sql: &str) -> i64 {
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/exec"))
        .query(&[("query", sql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["dataset"][0][0].as_i64().unwrap_or(-1)
}

/// Every file under `dir` but the SQLite database, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.db")
            {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// What a restarted deployment answers from its data.
async fn answers(p: &Proc) -> (i64, Value, Value) {
    let md = p.url("marketdata");
    let ex = p.url("exchange");
    let trades = sql_count(md, "SELECT count(*) FROM trades").await;
    let book: Value = reqwest::get(format!("{ex}/api/v1/trades/BTC-USDT?limit=50"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fills: Value = reqwest::get(format!(
        "{ex}/api/v1/fills?account=sim-mm-1-BTC-USDT&limit=50"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    (trades, book, fills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_prints_readiness_and_a_backup_restores_into_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let mut p = up(dir.path(), &data, true);
    let registry = p.url("registry").to_string();
    let md = p.url("marketdata").to_string();

    let (code, out) = cli(
        dir.path(),
        &data,
        &["infra", "validate", "--target", &registry],
    );
    assert_eq!(code, 0, "{out}");
    for name in [
        "registry",
        "exchange",
        "marketdata",
        "risk",
        "strategy",
        "custodian",
        "coordinator",
        "audit",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with('✅') && l.contains(name)),
            "{name}: {out}"
        );
    }
    let (code, out) = cli(
        dir.path(),
        &data,
        &["infra", "validate", "--target", "http://127.0.0.1:9"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains('❌'), "{out}");
    // Without a Docker engine the compose commands say so.
    let (code, out) = cli(dir.path(), &data, &["infra", "status"]);
    if code == 2 {
        assert!(out.to_lowercase().contains("docker"), "{out}");
    }

    // The simulator trades; the recorder keeps the trades.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql_count(&md, "SELECT count(*) FROM trades").await < 20 {
        assert!(Instant::now() < deadline, "no trades recorded");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A backup while everything runs restores cleanly too.
    let (code, online) = cli(
        dir.path(),
        &data,
        &["infra", "backup", "--out", backups.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{online}");
    assert_eq!(p.interrupt(), 0);

    let (code, out) = cli(
        dir.path(),
        &data,
        &["infra", "backup", "--out", backups.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let archive = out.trim().lines().last().unwrap().to_string();
    assert!(
        archive.ends_with(".tar.gz") && archive != online.trim(),
        "{archive}"
    );

    // Restored into a fresh directory: the same files, byte for byte.
    let fresh = dir.path().join("fresh");
    let (code, out) = cli(dir.path(), &fresh, &["infra", "restore", &archive]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(files(&data), files(&fresh));
    assert!(fresh.join("state.db").exists());
    let fresh_online = dir.path().join("fresh-online");
    let (code, out) = cli(
        dir.path(),
        &fresh_online,
        &["infra", "restore", online.trim()],
    );
    assert_eq!(code, 0, "{out}");

    // Not over existing data, and not from a damaged archive.
    let (code, out) = cli(dir.path(), &fresh, &["infra", "restore", &archive]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not empty"), "{out}");
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    let damaged = dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged, bytes).unwrap();
    let (code, out) = cli(
        dir.path(),
        &dir.path().join("other"),
        &["infra", "restore", damaged.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");

    // Both directories answer the same: journal, time series and state store.
    let original = up(dir.path(), &data, false);
    let before = answers(&original).await;
    drop(original);
    let restored = up(dir.path(), &fresh, false);
    let after = answers(&restored).await;
    assert!(before.0 >= 20, "{before:?}");
    assert_eq!(before, after);
}
