//! HTTP middleware: request metrics and trace continuation.

use crate::metrics::{HttpLabels, Metrics};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// Axum middleware (use with `middleware::from_fn_with_state(metrics, track)`):
/// counts and times every request by method, route template and status, and
/// runs the handler in a span that continues the caller's `traceparent`.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("http", otel.name = %format!("{method} {route}"), http.method = %method, http.route = %route, http.status = tracing::field::Empty);
    crate::propagation::continue_from_http(&span, req.headers());
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.status", status);
    let labels = HttpLabels {
        method,
        route,
        status,
    };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_duration
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}
