//! Spans reach an OTLP/HTTP endpoint when one is configured, and trace
//! context survives a trip through bus headers.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use std::sync::{Arc, Mutex};
use tradestack_telemetry::logging::{LogSettings, init};
use tradestack_telemetry::propagation::{Headers, continue_from_headers, inject_headers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_and_context_propagates() {
    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let sink = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                sink.lock().unwrap().push((ct, body.len()));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut guard = init(&LogSettings {
        service: "otlp-test".into(),
        json: true,
        level: "info".into(),
        otlp_endpoint: Some(format!("http://{addr}")),
    })
    .unwrap();

    let mut headers = Headers::new();
    let parent_trace = {
        let span = tracing::info_span!("publish");
        let _g = span.enter();
        inject_headers(&mut headers);
        headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.clone())
            .expect("traceparent injected")
    };
    // traceparent = version-traceid-spanid-flags
    let trace_id = parent_trace.split('-').nth(1).unwrap().to_string();
    let child = tracing::info_span!("consume");
    continue_from_headers(&child, &headers);
    let mut again = Headers::new();
    {
        let _g = child.enter();
        inject_headers(&mut again);
    }
    let child_trace = again
        .iter()
        .find(|(k, _)| k == "traceparent")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        child_trace.split('-').nth(1).unwrap(),
        trace_id,
        "the consumer continues the publisher's trace"
    );
    drop(child);

    // Shutdown flushes the batch exporter on its own thread.
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "no OTLP export arrived");
    assert!(
        got.iter()
            .all(|(ct, len)| ct == "application/x-protobuf" && *len > 0),
        "{got:?}"
    );
}
