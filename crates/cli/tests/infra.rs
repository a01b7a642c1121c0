//! `tradestack infra`: readiness of a running deployment as a table, and a
//! backup restored into a fresh data directory giving back the same
//! journal, time series and state store.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Proc;
use serde_json::Value;

/// Where a deployment keeps its data: a directory, and a PostgreSQL
/// database for the state store (SQLite in the directory when `None`).
struct Site {
    data: PathBuf,
    db: Option<String>,
}

impl Site {
    fn env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![("TRADESTACK_DATA_DIR", self.data.to_str().unwrap())];
        if let Some(url) = &self.db {
            env.extend([
                ("TRADESTACK_STATE", "postgres"),
                ("TRADESTACK_POSTGRES__URL", url),
            ]);
        }
        env
    }
}

fn cli(dir: &Path, site: &Site, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .current_dir(dir)
        .envs(site.env())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn up(dir: &Path, site: &Site, simulate: bool) -> Proc {
    let mut env = site.env();
    env.push((
        "TRADESTACK_MARKETDATA__SIMULATE",
        if simulate { "true" } else { "false" },
    ));
    Proc::start(&["up"], &env, dir)
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

/// A fingerprint of every table of a PostgreSQL database: name, rows and a
/// digest of their contents.
async fn pg_tables(url: &str) -> Vec<(String, i64, String)> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    let mut out = Vec::new();
    for t in tables {
        let row = sqlx::query(&format!(
            "SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        out.push((t, row.get(0), row.get(1)));
    }
    out
}

/// Backs `original` up while it runs and again once stopped, restores into
/// `fresh` (and the online one into `fresh_online`), checks the refusals,
/// and compares what both answer.
async fn round_trip(dir: &Path, original: &Site, fresh: &Site, fresh_online: &Site) {
    let backups = dir.join("backups");
    let mut p = up(dir, original, true);
    let md = p.url("marketdata").to_string();
    // The simulator trades; the recorder keeps the trades.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql_count(&md, "SELECT count(*) FROM trades").await < 20 {
        assert!(Instant::now() < deadline, "no trades recorded");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A backup while everything runs restores cleanly too.
    let out_dir = backups.to_str().unwrap();
    let (code, online) = cli(dir, original, &["infra", "backup", "--out", out_dir]);
    assert_eq!(code, 0, "{online}");
    assert_eq!(p.interrupt(), 0);

    let (code, out) = cli(dir, original, &["infra", "backup", "--out", out_dir]);
    assert_eq!(code, 0, "{out}");
    let archive = out.trim().lines().last().unwrap().to_string();
    assert!(
        archive.ends_with(".tar.gz") && archive != online.trim(),
        "{archive}"
    );

    // Restored into a fresh directory: the same files, byte for byte, and
    // the same state store.
    let (code, out) = cli(dir, fresh, &["infra", "restore", &archive]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(files(&original.data), files(&fresh.data));
    match (&original.db, &fresh.db) {
        (Some(a), Some(b)) => {
            let (a, b) = (pg_tables(a).await, pg_tables(b).await);
            assert!(a.iter().any(|(_, rows, _)| *rows > 0), "{a:?}");
            assert_eq!(a, b);
        }
        _ => assert!(fresh.data.join("state.db").exists()),
    }
    let (code, out) = cli(dir, fresh_online, &["infra", "restore", online.trim()]);
    assert_eq!(code, 0, "{out}");

    // Not over existing data, and not from a damaged archive.
    let (code, out) = cli(dir, fresh, &["infra", "restore", &archive]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not empty"), "{out}");
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    let damaged = dir.join("damaged.tar.gz");
    std::fs::write(&damaged, bytes).unwrap();
    let other = Site {
        data: dir.join("other"),
        db: fresh.db.clone(),
    };
    let (code, out) = cli(
        dir,
        &other,
        &["infra", "restore", damaged.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");

    // Both answer the same: journal, time series and state store.
    let before = answers(&up(dir, original, false)).await;
    let after = answers(&up(dir, fresh, false)).await;
    assert!(before.0 >= 20, "{before:?}");
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_prints_readiness_of_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        data: dir.path().join("data"),
        db: None,
    };
    let p = up(dir.path(), &site, false);
    let registry = p.url("registry").to_string();
    let (code, out) = cli(
        dir.path(),
        &site,
        &["infra", "validate", "--target", &registry],
    );
    assert_eq!(code, 0, "{out}");
    for name in common::SERVICES {
        assert!(
            out.lines().any(|l| l.starts_with('✅') && l.contains(name)),
            "{name}: {out}"
        );
    }
    let (code, out) = cli(
        dir.path(),
        &site,
        &["infra", "validate", "--target", "http://127.0.0.1:9"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains('❌'), "{out}");
    // Without a Docker engine the compose commands say so.
    let (code, out) = cli(dir.path(), &site, &["infra", "status"]);
    if code == 2 {
        assert!(out.to_lowercase().contains("docker"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let site = |name: &str| Site {
        data: dir.path().join(name),
        db: None,
    };
    round_trip(
        dir.path(),
        &site("data"),
        &site("fresh"),
        &site("fresh-online"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_restores_into_a_fresh_database() {
    let Some(admin) = tradestack_testkit::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = Vec::new();
    for _ in 0..3 {
        dbs.push(common::TempDb::create(&admin, "ts_backup").await);
    }
    let site = |name: &str, db: &common::TempDb| Site {
        data: dir.path().join(name),
        db: Some(db.url.clone()),
    };
    round_trip(
        dir.path(),
        &site("data", &dbs[0]),
        &site("fresh", &dbs[1]),
        &site("fresh-online", &dbs[2]),
    )
    .await;
    for db in dbs {
        db.drop_now().await;
    }
}
