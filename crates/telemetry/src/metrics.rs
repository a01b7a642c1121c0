//! The metrics registry and the HTTP metrics every service exports.

use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::sync::Arc;

/// Latency buckets in seconds: 1 µs doubling to about 16.8 s (25 buckets),
/// so both nanosecond-scale engine work and slow HTTP calls resolve.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-6, 2.0, 25)
}

/// A histogram with [`latency_buckets`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Labels of `http_requests_total` and `http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route template (never the raw path, to bound cardinality).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of the build info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    service: String,
}

/// A process-wide metrics registry with the HTTP metrics pre-registered.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `http_request_duration_seconds{method,route,status}`.
    pub http_duration: Family<HttpLabels, Histogram>,
    /// `tradestack_ready{service}`: 1 when every readiness check passes.
    pub ready: Family<ServiceLabels, Gauge>,
}

/// Labels of per-service gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// The service's name.
    pub service: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with HTTP, build-info and process metrics for `service`.
    pub fn new(service: &str, version: &str) -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from request received to response headers sent",
            prometheus_client::registry::Unit::Seconds,
            http_duration.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
                service: service.to_string(),
            })
            .set(1);
        registry.register(
            "tradestack_build_info",
            "Always 1; labels carry the version and service name",
            build,
        );
        let ready = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "tradestack_ready",
            "1 when every readiness check of the service passes, else 0",
            ready.clone(),
        );
        registry.register_collector(Box::new(crate::process::ProcessCollector::new()));
        Metrics {
            registry: Arc::new(RwLock::new(registry)),
            http_requests,
            http_duration,
            ready,
        }
    }

    /// Registers a service's own metric. Names follow Prometheus conventions:
    /// base units, and counters are registered without `_total` (it is added).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().register(name, help, metric);
    }

    /// Registers a metric measured in seconds (the `_seconds` suffix is added).
    pub fn register_seconds(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().register_with_unit(
            name,
            help,
            prometheus_client::registry::Unit::Seconds,
            metric,
        );
    }

    /// Registers a metric measured in bytes (the `_bytes` suffix is added).
    pub fn register_bytes(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().register_with_unit(
            name,
            help,
            prometheus_client::registry::Unit::Bytes,
            metric,
        );
    }

    /// The registry in OpenMetrics text format.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry.read());
        out
    }

    /// The registry in the Prometheus 0.0.4 text format.
    pub fn encode_prometheus(&self) -> String {
        crate::exposition::openmetrics_to_prometheus(&self.encode_openmetrics())
    }
}
