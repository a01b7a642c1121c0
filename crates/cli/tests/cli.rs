//! The `tradestack` binary end to end: `up`, `/health`, `/metrics` through
//! promtool, `status`, `health`, clean shutdown, config errors, and two
//! registry processes sharing Redis.

use std::process::{Command, Stdio};

mod common;

use common::{BIN, Proc};

fn tradestack(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tradestack");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("GET");
        let code = r.status().as_u16();
        (code, r.text().await.unwrap_or_default())
    })
}

fn promtool_check(metrics: &str) {
    let ok = Command::new("promtool").arg("--version").output().is_ok();
    if !ok {
        assert!(
            !tradestack_testkit::in_ci(),
            "CI=true and promtool is missing"
        );
        eprintln!("SKIPPED promtool check: promtool not installed");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported:\n{report}"
    );
}

#[test]
fn up_serves_health_metrics_status_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Proc::start(&["up"], &[], dir.path());
    let registry = up.url("registry").to_string();

    let (code, body) = get(&format!("{registry}/health"));
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(get(&format!("{registry}/livez")).0, 200);
    assert_eq!(get(&format!("{registry}/readyz")).0, 200);

    let (code, metrics) = get(&format!("{registry}/metrics"));
    assert_eq!(code, 200);
    for name in [
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
        "tradestack_build_info{",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            metrics.contains(name),
            "missing {name} in /metrics:\n{metrics}"
        );
    }
    promtool_check(&metrics);

    let reg = ["--registry", registry.as_str()];
    let (code, out, err) = tradestack(&[&["status"][..], &reg[..]].concat(), &[], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("registry")
            && out.contains("healthy")
            && out.contains(env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let (code, out, err) = tradestack(&[&["health"][..], &reg[..]].concat(), &[], dir.path());
    assert_eq!(code, 0, "{out}{err}");

    assert_eq!(up.interrupt(), 0, "Ctrl-C must exit 0");
    // After shutdown the required registry is gone: health fails.
    let (code, out, _) = tradestack(&[&["health"][..], &reg[..]].concat(), &[], dir.path());
    assert_ne!(code, 0, "{out}");
    // The embedded state store is a SQLite file in the data directory.
    assert!(dir.path().join("data/state.db").exists());
}

#[test]
fn invalid_configuration_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tradestack.toml"),
        "[registry]\nttl = \"soon\"\n",
    )
    .unwrap();
    let (code, out, err) = tradestack(&["up"], &[], dir.path());
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tradestack.toml") && err.contains("registry.ttl"),
        "{err}"
    );

    let (code, _, err) = tradestack(
        &["config", "show"],
        &[("TRADESTACK_BUS", "pigeon")],
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("TRADESTACK_BUS") && err.contains("pigeon"),
        "{err}"
    );

    let (code, _, err) = tradestack(
        &["serve", "nonsense"],
        &[],
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown service"), "{err}");
}

#[test]
fn config_show_redacts_secrets_and_version_prints() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = tradestack(
        &["config", "show"],
        &[(
            "TRADESTACK_POSTGRES__URL",
            "postgres://trader:hunter2@db/ts",
        )],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("postgres://trader:***@db/ts") && !out.contains("hunter2"),
        "{out}"
    );
    let (code, out, _) = tradestack(&["version"], &[], dir.path());
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("tradestack {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
}

#[test]
fn two_registry_processes_share_redis_and_survive_restart() {
    let Some(redis) = tradestack_testkit::redis() else {
        return;
    };
    // A database of its own keeps this test's registry:services:* keys apart.
    let url = format!("{}/11", redis.trim_end_matches('/'));
    let env = [
        ("TRADESTACK_CACHE", "redis"),
        ("TRADESTACK_REDIS__URL", url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut a = Proc::start(&["serve", "registry"], &env, dir.path());
    let b_dir = tempfile::tempdir().unwrap();
    let mut b = Proc::start(&["serve", "registry"], &env, b_dir.path());
    let (a_url, b_url) = (a.url("registry").to_string(), b.url("registry").to_string());
    let list = |u: &str| -> serde_json::Value {
        serde_json::from_str(&get(&format!("{u}/v1/agent/services")).1).unwrap()
    };
    // Each registry registered itself; both see both.
    let id_of = |u: &str| format!("registry-127.0.0.1-{}", u.rsplit(':').next().unwrap());
    let (a_id, b_id) = (id_of(&a_url), id_of(&b_url));
    let (la, lb) = (list(&a_url), list(&b_url));
    assert_eq!(la, lb);
    assert!(la.get(&a_id).is_some() && la.get(&b_id).is_some(), "{la}");
    // Stop B: its entry is removed (deregistered) for both. Stop A, restart it: entries in Redis remain
    // until their TTL, so a restarted registry still lists what is registered.
    assert_eq!(b.interrupt(), 0);
    let la = list(&a_url);
    assert!(la.get(&a_id).is_some() && la.get(&b_id).is_none(), "{la}");
    let a_port = a_url.rsplit(':').next().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An instance registered through A, with a long TTL, must outlive A's restart.
    let reg = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{a_url}/v1/agent/service/register"))
            .body(r#"{"ID": "risk-test-1", "Name": "risk", "Address": "127.0.0.1", "Port": 9, "Check": {"TTL": "1h"}}"#)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(reg.is_success());
    let kv_put = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{a_url}/v1/kv/shared/setting"))
            .body("42")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(kv_put.is_success());
    assert_eq!(a.interrupt(), 0);
    let listen = format!("127.0.0.1:{a_port}");
    let mut a2 = Proc::start(
        &["serve", "registry"],
        &[
            env[0],
            env[1],
            ("TRADESTACK_SERVICES__REGISTRY__LISTEN", listen.as_str()),
        ],
        dir.path(),
    );
    assert_eq!(
        get(&format!("{}/v1/kv/shared/setting", a2.url("registry"))).1,
        "42"
    );
    let after = list(a2.url("registry"));
    assert!(
        after.get("risk-test-1").is_some(),
        "entry lost across registry restart: {after}"
    );
    assert!(after.get(&a_id).is_some(), "{after}");
    rt.block_on(async {
        reqwest::Client::new()
            .put(format!(
                "{}/v1/agent/service/deregister/risk-test-1",
                a2.url("registry")
            ))
            .send()
            .await
            .unwrap()
    });
    let rt2 = rt.block_on(async {
        reqwest::Client::new()
            .delete(format!("{}/v1/kv/shared/setting", a2.url("registry")))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(rt2.is_success());
    assert_eq!(a2.interrupt(), 0);
}
