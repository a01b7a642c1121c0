//! Sinks: the same rows the embedded store keeps, forwarded to a real
//! time-series engine for desks that outgrow one machine.
//!
//! - [`questdb::QuestDbSink`]: QuestDB's line protocol over TCP (questdb-rs).
//! - [`influx::InfluxSink`]: line protocol over HTTP to InfluxDB 1.x or 2.x.
//! - [`postgres::PostgresSink`]: PostgreSQL with native daily partitions, or
//!   TimescaleDB hypertables when the extension is installed.
//!
//! [`Forwarder`] runs them in the background so the ingest path never waits
//! for a remote database. Money stays exact in PostgreSQL (`numeric(38,8)`);
//! line protocol has no decimal type, so there `DECIMAL` values become floats
//! parsed from their exact decimal text: that is where exactness ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::schema::TableSchema;

mod columns;
mod forwarder;
pub mod influx;
mod lines;
pub mod postgres;
pub mod questdb;

pub use forwarder::{Forwarder, ForwarderOptions, ForwarderStats};

/// A destination for table batches.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A name for logs and metrics.
    fn name(&self) -> &str;
    /// Writes one batch of `table` (its columns follow `table`); returns the rows written.
    async fn write(&self, table: &TableSchema, batch: &RecordBatch) -> Result<u64, SinkError>;

    /// Periodic housekeeping at `now` (ns), e.g. dropping expired partitions.
    async fn maintain(&self, _now: i64) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Why a sink could not write or be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is unusable.
    #[error("sink configuration: {0}")]
    Config(String),
    /// The batch does not match its table schema.
    #[error("table {table}: {message}")]
    Batch {
        /// Table.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP request failed before an answer.
    #[error("{sink}: request failed: {}", with_causes(.error))]
    Request {
        /// Sink name.
        sink: String,
        /// The client's error.
        error: reqwest::Error,
    },
    /// The server answered with a non-2xx status.
    #[error("{sink}: HTTP {status}: {body}")]
    Status {
        /// Sink name.
        sink: String,
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// PostgreSQL refused a statement or the connection failed.
    #[error("{sink}: {context}: {error}")]
    Postgres {
        /// Sink name.
        sink: String,
        /// What was being done.
        context: String,
        /// The driver's error.
        error: sqlx::Error,
    },
    /// The QuestDB client failed.
    #[error("{sink}: {error}")]
    QuestDb {
        /// Sink name.
        sink: String,
        /// The client's error.
        error: ::questdb::Error,
    },
}

/// An error and its causes, `: `-separated (reqwest hides the cause otherwise).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// One `[[marketdata.sinks]]` entry, selected by `kind`; each kind's
/// settings refuse unknown keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// `kind = "questdb"`.
    Questdb(questdb::QuestDbConfig),
    /// `kind = "influxdb"`.
    Influxdb(influx::InfluxConfig),
    /// `kind = "postgres"`.
    Postgres(postgres::PostgresConfig),
}

/// Builds the configured sinks. Settings are checked now; connections are
/// made on first use, so a server that is down does not stop the process.
pub async fn build(configs: &[SinkConfig]) -> Result<Vec<Arc<dyn Sink>>, SinkError> {
    let mut out: Vec<Arc<dyn Sink>> = Vec::with_capacity(configs.len());
    for c in configs {
        out.push(match c {
            SinkConfig::Questdb(c) => Arc::new(questdb::QuestDbSink::new(c.clone())?),
            SinkConfig::Influxdb(c) => Arc::new(influx::InfluxSink::new(c.clone())?),
            SinkConfig::Postgres(c) => Arc::new(postgres::PostgresSink::new(c.clone())?),
        });
    }
    Ok(out)
}

/// `Duration` as humantime text (`"10s"`, `"7days"`).
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A table-to-`Duration` map as humantime text, for retention settings.
pub(crate) mod duration_map_text {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            m.iter()
                .map(|(k, d)| (k, humantime::format_duration(*d).to_string())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k.clone(), d))
                    .map_err(|e| serde::de::Error::custom(format!("retention.{k}: {e}")))
            })
            .collect()
    }
}
