//! Structured logging and OpenTelemetry trace export through `tracing`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs and traces leave the process.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `service.name` on exported spans.
    pub service: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
    /// A tracing filter directive (`RUST_LOG` takes precedence when set).
    pub level: String,
    /// OTLP/HTTP endpoint base (e.g. `http://collector:4318`), if traces are exported.
    pub otlp_endpoint: Option<String>,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive is invalid.
    #[error("invalid log level {0:?}: {1}")]
    Filter(String, String),
    /// The OTLP exporter could not be built.
    #[error("cannot build OTLP exporter for {0}: {1}")]
    Otlp(String, String),
}

/// Keeps the trace pipeline alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops trace export now.
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The OTLP/HTTP traces URL for a base endpoint, as the OpenTelemetry spec
/// defines for `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn traces_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.ends_with("/v1/traces") {
        b.to_string()
    } else {
        format!("{b}/v1/traces")
    }
}

/// Logs go to stderr so that stdout carries only command output.
/// Installs the global subscriber (once per process; later calls only return a
/// guard) and, with an endpoint, the OTLP trace exporter and the W3C
/// trace-context propagator.
pub fn init(settings: &LogSettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| TelemetryError::Filter(v, e.to_string()))?
        }
        _ => EnvFilter::try_new(&settings.level)
            .map_err(|e| TelemetryError::Filter(settings.level.clone(), e.to_string()))?,
    };

    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let url = traces_url(endpoint);
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .build()
                .map_err(|e| TelemetryError::Otlp(url, e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service.clone())
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("tradestack"))
    });

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    // A second init in one process (tests, embedded runs) keeps the first subscriber.
    let _ = if settings.json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
