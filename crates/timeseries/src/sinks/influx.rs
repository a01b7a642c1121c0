//! InfluxDB 1.x and 2.x over HTTP line protocol.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{Sink, SinkError, duration_text, lines};
use crate::schema::TableSchema;

/// `kind = "influxdb"`: give `database` for InfluxDB 1.x (`/write`), or
/// `org`, `bucket` and `token` for 2.x (`/api/v2/write`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// Name in logs; defaults to `influxdb`.
    pub name: Option<String>,
    /// Base URL, e.g. `http://127.0.0.1:8086` (plain HTTP: no TLS client is built in).
    pub url: String,
    /// 1.x: the database.
    pub database: Option<String>,
    /// 1.x: the retention policy (the database's default when absent).
    pub retention_policy: Option<String>,
    /// 1.x: user, when authentication is on.
    pub username: Option<String>,
    /// 1.x: password, when authentication is on.
    pub password: Option<String>,
    /// 2.x: the organisation.
    pub org: Option<String>,
    /// 2.x: the bucket.
    pub bucket: Option<String>,
    /// 2.x: the API token (`Authorization: Token ...`).
    pub token: Option<String>,
    /// Lines per request.
    pub batch_lines: usize,
    /// Timeout of one request.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

impl Default for InfluxConfig {
    fn default() -> InfluxConfig {
        InfluxConfig {
            name: None,
            url: "http://127.0.0.1:8086".into(),
            database: None,
            retention_policy: None,
            username: None,
            password: None,
            org: None,
            bucket: None,
            token: None,
            batch_lines: 5_000,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Writes batches as line protocol to InfluxDB.
pub struct InfluxSink {
    name: String,
    client: reqwest::Client,
    url: String,
    query: Vec<(&'static str, String)>,
    token: Option<String>,
    v2: bool,
    batch_lines: usize,
    skipped: AtomicU64,
}

impl InfluxSink {
    /// A sink for `config`; checks the settings but does not connect.
    pub fn new(config: InfluxConfig) -> Result<InfluxSink, SinkError> {
        let name = config.name.clone().unwrap_or_else(|| "influxdb".into());
        let base = config.url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(SinkError::Config(format!(
                "{name}: url {:?} must start with http:// (no TLS client is built in)",
                config.url
            )));
        }
        let (path, query, v2) = match (&config.database, &config.bucket) {
            (Some(db), None) => {
                let mut q = vec![("db", db.clone()), ("precision", "ns".to_string())];
                if let Some(rp) = &config.retention_policy {
                    q.push(("rp", rp.clone()));
                }
                if let (Some(u), Some(p)) = (&config.username, &config.password) {
                    q.push(("u", u.clone()));
                    q.push(("p", p.clone()));
                }
                ("/write", q, false)
            }
            (None, Some(bucket)) => {
                let org = config.org.clone().ok_or_else(|| {
                    SinkError::Config(format!("{name}: InfluxDB 2.x needs `org` with `bucket`"))
                })?;
                let q = vec![
                    ("org", org),
                    ("bucket", bucket.clone()),
                    ("precision", "ns".to_string()),
                ];
                ("/api/v2/write", q, true)
            }
            _ => {
                return Err(SinkError::Config(format!(
                    "{name}: set either `database` (InfluxDB 1.x) or `bucket` and `org` (2.x)"
                )));
            }
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SinkError::Config(format!("{name}: HTTP client: {e}")))?;
        Ok(InfluxSink {
            url: format!("{base}{path}"),
            name,
            client,
            query,
            token: config.token,
            v2,
            batch_lines: config.batch_lines,
            skipped: AtomicU64::new(0),
        })
    }

    /// Rows left out so far: no non-null field, or text line protocol cannot carry.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Sink for InfluxSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, table: &TableSchema, batch: &RecordBatch) -> Result<u64, SinkError> {
        // InfluxDB 1.x OSS refuses `u` integers; 2.x takes them.
        let encoded = lines::encode(table, batch, self.v2, self.batch_lines)?;
        if encoded.skipped > 0 {
            self.skipped.fetch_add(encoded.skipped, Ordering::Relaxed);
            tracing::debug!(sink = %self.name, table = %table.name, skipped = encoded.skipped, "rows without fields skipped");
        }
        for body in encoded.bodies {
            let mut req = self.client.post(&self.url).query(&self.query).body(body);
            if let Some(token) = &self.token {
                req = req.header("Authorization", format!("Token {token}"));
            }
            let resp = req.send().await.map_err(|error| SinkError::Request {
                sink: self.name.clone(),
                error,
            })?;
            let status = resp.status();
            if !status.is_success() {
                let mut body = resp.text().await.unwrap_or_default();
                if body.len() > 1024 {
                    let mut cut = 1024;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                return Err(SinkError::Status {
                    sink: self.name.clone(),
                    status: status.as_u16(),
                    body,
                });
            }
        }
        tracing::trace!(sink = %self.name, table = %table.name, rows = encoded.lines, "written");
        Ok(encoded.lines)
    }
}
