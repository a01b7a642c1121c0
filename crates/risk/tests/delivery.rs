//! Alert delivery against a real local HTTP receiver that records every
//! request and answers from a script.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tradestack_config::ConfigDuration;
use tradestack_model::{Alert, Severity, UnixNanos};
use tradestack_risk::delivery::DEFAULT_TOKEN_ENV;
use tradestack_risk::{
    AlertChange, AlertmanagerTarget, DeliveryConfig, DeliveryError, Notifier, Receiver,
    RetryPolicy, TelegramTarget,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Server {
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Answers for the next requests, in order; then 200 `{"ok":true}`.
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    State(s): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    s.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, text) = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, r#"{"ok":true,"result":{}}"#.to_string()));
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
}

/// A receiver on 127.0.0.1:0; returns its base URL.
async fn serve(script: &[(u16, &str)]) -> (String, Server) {
    let server = Server::default();
    server
        .script
        .lock()
        .unwrap()
        .extend(script.iter().map(|(c, b)| (*c, b.to_string())));
    let app = Router::new().fallback(record).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), server)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 6,
        initial_backoff: ConfigDuration::from_millis(10),
        max_backoff: ConfigDuration::from_millis(50),
        timeout: ConfigDuration::from_secs(5),
    }
}

fn alertmanager(url: &str) -> DeliveryConfig {
    DeliveryConfig {
        alertmanager: vec![AlertmanagerTarget {
            url: url.to_string(),
            min_severity: Severity::Warning,
            generator_url: None,
        }],
        retry: fast_retry(),
        ..DeliveryConfig::default()
    }
}

fn telegram(base_url: &str, token_env: &str) -> DeliveryConfig {
    DeliveryConfig {
        telegram: vec![TelegramTarget {
            base_url: base_url.to_string(),
            chat_id: "-1001234".to_string(),
            token_env: token_env.to_string(),
            min_severity: Severity::Warning,
        }],
        retry: fast_retry(),
        ..DeliveryConfig::default()
    }
}

fn alert(severity: Severity, resolved: bool) -> Alert {
    Alert {
        rule: "drawdown".into(),
        severity,
        subject: "strat-mm".into(),
        message: "drawdown 1200.5 USD, limit 1000".into(),
        value: "1200.5".parse().unwrap(),
        threshold: "1000".parse().unwrap(),
        // 2026-01-01T00:00:00.250Z, resolved a minute later.
        first_seen: UnixNanos(1_767_225_600_250_000_000),
        last_seen: UnixNanos(1_767_225_660_000_000_000),
        resolved,
    }
}

fn fired(severity: Severity) -> AlertChange {
    AlertChange::Fired(alert(severity, false))
}

fn resolved(severity: Severity) -> AlertChange {
    AlertChange::Resolved(alert(severity, true))
}

async fn drain(n: &Notifier) {
    assert!(n.flush(DEADLINE).await, "queues did not drain: {n:?}");
}

#[tokio::test]
async fn alertmanager_gets_fired_then_resolved() {
    let (url, server) = serve(&[]).await;
    // A trailing slash on the base URL is harmless.
    let n = Notifier::start(&alertmanager(&format!("{url}/")), None).unwrap();
    assert_eq!(n.send(&fired(Severity::Critical)), 1);
    assert_eq!(n.send(&resolved(Severity::Critical)), 1);
    drain(&n).await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/v2/alerts");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let labels = json!({
        "alertname": "drawdown",
        "rule": "drawdown",
        "severity": "critical",
        "subject": "strat-mm",
        "service": "risk",
    });
    let annotations = json!({
        "summary": "drawdown 1200.5 USD, limit 1000",
        "value": "1200.5",
        "threshold": "1000",
    });
    assert_eq!(
        reqs[0].body,
        json!([{
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-01-01T00:00:00.250Z",
        }])
    );
    assert_eq!(
        reqs[1].body,
        json!([{
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-01-01T00:00:00.250Z",
            "endsAt": "2026-01-01T00:01:00.000Z",
        }])
    );
    let stats = n.stats(Receiver::Alertmanager);
    assert_eq!((stats.delivered, stats.failed, stats.retries), (2, 0, 0));
}

#[tokio::test]
async fn telegram_token_from_the_environment_reaches_the_path() {
    let (url, server) = serve(&[]).await;
    let var = "TRADESTACK_TEST_DELIVERY_TG_TOKEN_PATH";
    // SAFETY: the variable name is unique to this test; no other thread reads it.
    unsafe { std::env::set_var(var, "123456:AAbb-cc_DD") };
    let n = Notifier::start(&telegram(&url, var), None).unwrap();
    n.send(&fired(Severity::Critical));
    n.send(&resolved(Severity::Critical));
    drain(&n).await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/bot123456:AAbb-cc_DD/sendMessage");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body["chat_id"], "-1001234");
        assert!(r.body.get("parse_mode").is_none());
    }
    assert_eq!(
        reqs[0].body["text"],
        "🔴 FIRING [critical] drawdown on strat-mm: drawdown 1200.5 USD, limit 1000 \
         (value 1200.5 / threshold 1000)"
    );
    assert_eq!(
        reqs[1].body["text"],
        "✅ RESOLVED [critical] drawdown on strat-mm: drawdown 1200.5 USD, limit 1000 \
         (value 1200.5 / threshold 1000)"
    );
    assert_eq!(n.stats(Receiver::Telegram).delivered, 2);
}

#[tokio::test]
async fn retries_on_503_until_delivered_and_counts_them() {
    let (url, server) = serve(&[(503, "unavailable"), (503, "unavailable")]).await;
    let metrics = tradestack_telemetry::Metrics::new("risk", "test");
    let n = Notifier::start(&alertmanager(&url), Some(&metrics)).unwrap();
    n.send(&fired(Severity::Warning));
    drain(&n).await;

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    assert_eq!(reqs[0].body[0]["labels"]["severity"], "warning");
    let stats = n.stats(Receiver::Alertmanager);
    assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 0, 2));

    let text = metrics.encode_prometheus();
    for line in [
        r#"risk_alert_deliveries_total{receiver="alertmanager",outcome="delivered"} 1"#,
        r#"risk_alert_delivery_retries_total{receiver="alertmanager"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let (url, server) = serve(&[(400, r#"{"error":"bad alert"}"#)]).await;
    let n = Notifier::start(&alertmanager(&url), None).unwrap();
    n.send(&fired(Severity::Critical));
    drain(&n).await;

    assert_eq!(server.requests().len(), 1);
    let stats = n.stats(Receiver::Alertmanager);
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 1, 0));
}

#[tokio::test]
async fn telegram_400_fails_and_429_waits_then_retries() {
    let var = "TRADESTACK_TEST_DELIVERY_TG_TOKEN_429";
    // SAFETY: the variable name is unique to this test; no other thread reads it.
    unsafe { std::env::set_var(var, "42:token") };
    let (url, server) = serve(&[
        (
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        ),
        (
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ),
    ])
    .await;
    let n = Notifier::start(&telegram(&url, var), None).unwrap();
    n.send(&fired(Severity::Critical));
    n.send(&resolved(Severity::Critical));
    drain(&n).await;

    // The first alert: 400, given up. The second: 429, then delivered.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert!(reqs[1].body["text"].as_str().unwrap().starts_with("✅"));
    assert_eq!(reqs[2].body, reqs[1].body);
    let stats = n.stats(Receiver::Telegram);
    assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 1, 1));
}

#[tokio::test]
async fn connection_refused_is_retried_until_out_of_attempts() {
    // Bind then drop: nothing listens on this port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = alertmanager(&format!("http://{addr}"));
    config.retry.attempts = 3;
    let n = Notifier::start(&config, None).unwrap();
    n.send(&fired(Severity::Critical));
    drain(&n).await;
    let stats = n.stats(Receiver::Alertmanager);
    assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 1, 2));
}

#[tokio::test]
async fn a_missing_token_variable_fails_start_naming_it() {
    let var = "TRADESTACK_TEST_DELIVERY_TG_TOKEN_NEVER_SET";
    let err = Notifier::start(&telegram("http://127.0.0.1:9", var), None).unwrap_err();
    assert!(matches!(err, DeliveryError::Token { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(var), "{msg}");
    assert!(
        msg.starts_with("risk.delivery.telegram[0].token_env"),
        "{msg}"
    );

    let empty = "TRADESTACK_TEST_DELIVERY_TG_TOKEN_EMPTY";
    // SAFETY: the variable name is unique to this test; no other thread reads it.
    unsafe { std::env::set_var(empty, "") };
    let msg = Notifier::start(&telegram("http://127.0.0.1:9", empty), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(empty) && msg.contains("empty"), "{msg}");
}

#[tokio::test]
async fn a_bad_url_fails_start_naming_the_key() {
    let msg = Notifier::start(&alertmanager("localhost:9093"), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("risk.delivery.alertmanager[0].url: "),
        "{msg}"
    );
}

#[tokio::test]
async fn min_severity_filters_info_out() {
    let (url, server) = serve(&[]).await;
    let n = Notifier::start(&alertmanager(&url), None).unwrap();
    assert_eq!(n.send(&fired(Severity::Info)), 0);
    assert_eq!(n.send(&fired(Severity::Warning)), 1);
    drain(&n).await;

    // Queues are FIFO: once the warning is in, an info alert would be too.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].body[0]["labels"]["severity"], "warning");
}

#[test]
fn the_configuration_reads_from_risk_delivery() {
    let c: tradestack_risk::RiskConfig = toml::from_str(
        r#"
        [delivery]
        retry = { attempts = 3, initial_backoff = "100ms" }
        [[delivery.alertmanager]]
        url = "http://127.0.0.1:9093"
        min_severity = "critical"
        [[delivery.telegram]]
        chat_id = "@desk"
        "#,
    )
    .unwrap();
    let d = &c.delivery;
    assert_eq!(d.alertmanager[0].min_severity, Severity::Critical);
    assert_eq!(d.telegram[0].token_env, DEFAULT_TOKEN_ENV);
    assert_eq!(d.telegram[0].base_url, "https://api.telegram.org");
    assert_eq!(d.retry.attempts, 3);
    assert_eq!(d.retry.initial_backoff, ConfigDuration::from_millis(100));
    assert_eq!(d.retry.max_backoff, ConfigDuration::from_secs(10));
    assert_eq!(d.validate(), Ok(()));
    assert_eq!(
        tradestack_risk::RiskConfig::default().delivery,
        DeliveryConfig::default()
    );
}

#[test]
fn start_needs_a_runtime() {
    let err = Notifier::start(&DeliveryConfig::default(), None).unwrap_err();
    assert!(matches!(err, DeliveryError::NoRuntime), "{err:?}");
}

#[tokio::test]
async fn refresh_repeats_firing_alerts_to_alertmanager_only() {
    let (am_url, am) = serve(&[]).await;
    let (tg_url, tg) = serve(&[]).await;
    let var = "TRADESTACK_TEST_DELIVERY_TG_TOKEN_REFRESH";
    // SAFETY: the variable name is unique to this test; no other thread reads it.
    unsafe { std::env::set_var(var, "42:refresh") };
    let mut config = alertmanager(&am_url);
    config.telegram = telegram(&tg_url, var).telegram;
    let n = Notifier::start(&config, None).unwrap();
    n.send(&fired(Severity::Critical));
    drain(&n).await;
    // One still firing, one resolved: only the firing one is repeated.
    let queued = n.refresh(&[
        alert(Severity::Critical, false),
        alert(Severity::Critical, true),
    ]);
    assert_eq!(queued, 1);
    drain(&n).await;
    let repeated = am.requests();
    assert_eq!(repeated.len(), 2, "{repeated:#?}");
    assert_eq!(repeated[1].body, repeated[0].body);
    assert!(repeated[1].body[0].get("endsAt").is_none());
    assert_eq!(
        tg.requests().len(),
        1,
        "chat receivers hear of each change once"
    );
}
