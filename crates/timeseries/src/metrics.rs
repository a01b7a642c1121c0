//! Ingest metrics in Prometheus conventions.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::store::WriteOutcome;

/// Labels of the line counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `tcp`, `http` or `import`.
    pub transport: String,
    /// `accepted` or `rejected`.
    pub outcome: String,
}

/// Counters of what arrived and how it went.
#[derive(Clone, Default)]
pub struct IngestMetrics {
    /// `ingest_lines_total{transport,outcome}`.
    pub lines: Family<IngestLabels, Counter>,
    /// `ingest_tcp_connections`: open line-protocol connections.
    pub tcp_connections: Gauge,
    /// `timeseries_memory_rows`: rows not yet in Parquet.
    pub memory_rows: Gauge,
    /// `timeseries_flushed_rows_total`.
    pub flushed_rows: Counter,
}

impl IngestMetrics {
    /// Registers the metrics.
    pub fn register(&self, m: &tradestack_telemetry::Metrics) {
        m.register(
            "ingest_lines",
            "Line-protocol lines received, by transport and outcome",
            self.lines.clone(),
        );
        m.register(
            "ingest_tcp_connections",
            "Open line-protocol TCP connections",
            self.tcp_connections.clone(),
        );
        m.register(
            "timeseries_memory_rows",
            "Rows held in memory, not yet flushed to Parquet",
            self.memory_rows.clone(),
        );
        m.register(
            "timeseries_flushed_rows",
            "Rows flushed to Parquet",
            self.flushed_rows.clone(),
        );
    }

    /// Counts one write's lines.
    pub fn record(&self, transport: &str, outcome: &WriteOutcome) {
        let count = |label: &str, n: usize| {
            if n > 0 {
                self.lines
                    .get_or_create(&IngestLabels {
                        transport: transport.to_string(),
                        outcome: label.to_string(),
                    })
                    .inc_by(n as u64);
            }
        };
        count("accepted", outcome.accepted);
        count("rejected", outcome.errors.len());
    }
}
