//! The registry HTTP API: bad input gets a 400 naming the field; Redis backing is shared.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tradestack_cache::Cache;
use tradestack_kernel::{Clock, RealClock};
use tradestack_registry::{Registry, api};

fn memory_registry() -> Registry {
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let cache: Arc<dyn Cache> = Arc::new(tradestack_cache::MemoryCache::new(clock.clone()));
    Registry::new(cache, clock, Duration::from_secs(15))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn bad_registrations_get_400_naming_the_field() {
    let app = api::router(memory_registry());
    let cases = [
        (r#"{"Name": "x", "Address": "h", "Port": 1"#, "body"),
        (r#"not json"#, "body"),
        ("", "body"),
        (r#"{"Address": "h", "Port": 1}"#, "Name"),
        (
            r#"{"Name": "x", "Address": "h", "Port": 1, "Colour": "red"}"#,
            "Colour",
        ),
        (r#"{"Name": "x", "Address": "h", "Port": "eighty"}"#, "Port"),
        (r#"{"Name": "x", "Address": "h", "Port": 70000}"#, "Port"),
        (r#"{"Name": "x", "Address": "h", "Port": 0}"#, "Port"),
        (
            r#"{"Name": "x", "Address": "h", "Port": 1, "Check": {"TTL": "soon"}}"#,
            "Check.TTL",
        ),
        (
            r#"{"Name": "x", "Address": "h", "Port": 1, "Check": {"Interval": "5s"}}"#,
            "Check.Interval",
        ),
        (r#"{"Name": "", "Address": "h", "Port": 1}"#, "Name"),
    ];
    for (body, field) in cases {
        let (status, json) = call(&app, "PUT", "/v1/agent/service/register", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
        assert_eq!(json["error"], "invalid_request");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing was stored by any of them.
    let (status, json) = call(&app, "GET", "/v1/agent/services", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, serde_json::json!({}));
}

#[tokio::test]
async fn register_heartbeat_lookup_deregister() {
    let app = api::router(memory_registry());
    let body = r#"{"ID": "ex-1", "Name": "exchange", "Address": "127.0.0.1", "Port": 8081, "Meta": {"version": "0.1.0"}, "Check": {"TTL": "10s"}}"#;
    let (status, json) = call(&app, "PUT", "/v1/agent/service/register", body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["Status"], "passing");
    let (status, _) = call(
        &app,
        "PUT",
        "/v1/agent/check/fail/service:ex-1?note=db%20down",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, healthy) = call(&app, "GET", "/v1/health/service/exchange", "").await;
    assert_eq!(healthy, serde_json::json!([]));
    let (_, all) = call(&app, "GET", "/v1/health/service/exchange?passing=false", "").await;
    assert_eq!(all[0]["Output"], "db down");
    let (status, json) = call(&app, "GET", "/v1/health/service/exchange?passing=maybe", "").await;
    assert_eq!(
        (status, json["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("passing"))
    );
    let (status, _) = call(&app, "PUT", "/v1/agent/check/pass/service:nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, "PUT", "/v1/agent/service/deregister/ex-1", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, "GET", "/v1/agent/service/ex-1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn redis_backed_registries_share_entries_and_survive_restart() {
    let Some(url) = tradestack_testkit::redis() else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let prefix = tradestack_testkit::unique_name("ts");
    let open = || async {
        let cache = tradestack_cache::connect(&url, clock.clone())
            .await
            .unwrap();
        Registry::new(
            cache.namespace(&prefix),
            clock.clone(),
            Duration::from_secs(15),
        )
    };
    let a = open().await;
    let b = open().await;
    let reg = tradestack_registry::Registration {
        id: Some("risk-1".into()),
        name: "risk".into(),
        address: "127.0.0.1".into(),
        port: 9001,
        tags: vec![],
        meta: Default::default(),
        check: None,
    };
    a.register(reg).await.unwrap();
    assert_eq!(b.get("risk-1").await.unwrap().unwrap().port, 9001);
    // A "restarted" registry (new connection) still sees it.
    drop(a);
    let c = open().await;
    assert_eq!(c.list().await.unwrap().len(), 1);
    // Keys live under registry:services:* (inside the test's own prefix).
    let raw = tradestack_cache::connect(&url, clock.clone())
        .await
        .unwrap();
    let keys = raw
        .keys(&format!("{prefix}:registry:services:"))
        .await
        .unwrap();
    assert_eq!(keys, vec![format!("{prefix}:registry:services:risk-1")]);
    c.deregister("risk-1").await.unwrap();
}
