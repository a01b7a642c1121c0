//! Telemetry shared by every tradestack service: structured logs and
//! OpenTelemetry traces through `tracing`, and Prometheus metrics through
//! `prometheus-client`.
//!
//! - [`logging::init`] installs the subscriber once per process (human or JSON
//!   output, plus OTLP trace export when an endpoint is configured).
//! - [`Metrics`] is a process-wide registry; services register their own
//!   metrics into it and the HTTP layer exposes it at `/metrics`.
//! - [`http::track`] is the axum middleware that counts requests, times them
//!   and continues the caller's trace from its `traceparent` header.
//! - [`propagation`] carries trace context across HTTP and the message bus.

pub mod exposition;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod propagation;

pub use metrics::{HttpLabels, Metrics, latency_buckets};
