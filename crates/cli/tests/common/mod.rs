//! Helpers shared by the binary's end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tradestack");

/// A desk for the end-to-end tests: a market maker on BTC-USDT, a runaway
/// rule that trips in seconds, and custody cycling fast.
pub const DESK: &str = r#"
[[strategies]]
id = "mm-btc"
account = "desk-mm"
kind = "market_maker"
instrument = "BTC-USDT"
size = "0.01"
max_inventory = "0.2"
half_spread_bps = 1
refresh = "500ms"

[risk.rules]
runaway_orders_per_second = 20
runaway_for = "2s"

[custody]
step_every = "100ms"
reconcile_every = "500ms"
"#;

/// The scenario `strategies:` block of the desk the live tests run: a
/// market maker on BTC-USDT and one on ETH-USDT.
pub const SCENARIO_DESK: &str = r#"strategies:
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
"#;

/// Every service, as `tradestack serve` names them.
pub const SERVICES: &[&str] = &[
    "registry",
    "exchange",
    "marketdata",
    "audit",
    "risk",
    "strategy",
    "custodian",
    "coordinator",
];

/// A running `tradestack` process and the endpoints it printed.
pub struct Proc {
    /// The child process.
    pub child: Child,
    /// (service, url) pairs from its endpoint table.
    pub urls: Vec<(String, String)>,
}

/// The variable setting where `service` listens.
pub fn listen_var(service: &str) -> String {
    format!("TRADESTACK_SERVICES__{}__LISTEN", service.to_uppercase())
}

impl Proc {
    /// Starts `tradestack <args>` and waits for its endpoint table.
    pub fn start(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new(BIN);
        for s in SERVICES {
            cmd.env(listen_var(s), "127.0.0.1:0");
        }
        cmd.args(args)
            .current_dir(dir)
            .env("TRADESTACK_MARKETDATA__ILP_LISTEN", "127.0.0.1:0")
            // The tests' books hold only their own orders.
            .env("TRADESTACK_MARKETDATA__SIMULATE", "false")
            .env("TRADESTACK_LOG__LEVEL", "warn")
            // Most tests drive the native API unsigned; the signature tests
            // turn the (default) check back on.
            .env("TRADESTACK_EXCHANGE__REQUIRE_SIGNATURES", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tradestack");
        let stdout = child.stdout.take().expect("stdout");
        let mut urls = Vec::new();
        let started = Instant::now();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            if line.starts_with("Press Ctrl-C") {
                break;
            }
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(url)) = (parts.next(), parts.next())
                && (url.starts_with("http://") || url.starts_with("tcp://"))
            {
                urls.push((name.to_string(), url.to_string()));
            }
        }
        eprintln!("ready after {:?}", started.elapsed());
        assert!(!urls.is_empty(), "no endpoints printed");
        Proc { child, urls }
    }

    pub fn url(&self, name: &str) -> &str {
        &self
            .urls
            .iter()
            .find(|(n, _)| n == name)
            .expect("service listed")
            .1
    }

    pub fn interrupt(&mut self) -> i32 {
        // SIGINT is what Ctrl-C sends.
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "did not stop within 20 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failed assertion must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tradestack up` in `dir` with the two API-key accounts of
/// `examples/tradestack-ccxt.toml`, its data under `dir/data`, plus `extra`
/// environment.
pub fn start_example(dir: &std::path::Path, extra: &[(&str, &str)]) -> Proc {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tradestack-ccxt.toml");
    std::fs::copy(example, dir.join("tradestack.toml")).expect("copy the example configuration");
    let data = dir.join("data");
    let mut env = vec![("TRADESTACK_DATA_DIR", data.to_str().expect("utf-8 path"))];
    env.extend_from_slice(extra);
    Proc::start(&["up"], &env, dir)
}

pub type Received = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A local Alertmanager stand-in that records every `POST /api/v2/alerts` body.
pub async fn receiver() -> (String, Received) {
    let got: Received = Default::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// A database of its own on the test PostgreSQL server, dropped by [`TempDb::drop_now`].
pub struct TempDb {
    /// Its URL.
    pub url: String,
    name: String,
    admin: String,
}

impl TempDb {
    /// Creates a fresh database named after `prefix`.
    pub async fn create(admin: &str, prefix: &str) -> TempDb {
        use sqlx::Connection;
        let name = tradestack_testkit::unique_name(prefix).to_lowercase();
        let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        TempDb {
            url,
            name,
            admin: admin.to_string(),
        }
    }

    /// Drops it, with any connection still open.
    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c)
            .await;
        }
    }
}

/// GETs `url`, which must answer 2xx, as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

/// Polls `f` until it returns Some, for up to `secs`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
