//! Registry records.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tradestack_model::UnixNanos;

/// The result of a service's last health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded but serving.
    Warning,
    /// Not serving.
    Critical,
}

/// TTL check settings in a registration (Consul's `Check` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// How long the entry lives without a heartbeat, e.g. `"15s"`.
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A registration request, in Consul's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Unique instance id (defaults to the name).
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    /// Service name, e.g. `exchange`.
    #[serde(rename = "Name")]
    pub name: String,
    /// Host or IP where it listens.
    #[serde(rename = "Address")]
    pub address: String,
    /// Port where it listens.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Free-form tags.
    #[serde(rename = "Tags", default)]
    pub tags: Vec<String>,
    /// Free-form metadata (`version` is shown by `tradestack status`).
    #[serde(rename = "Meta", default)]
    pub meta: BTreeMap<String, String>,
    /// TTL check; without one the registry's default TTL applies.
    #[serde(rename = "Check", default)]
    pub check: Option<Check>,
}

/// A registered service instance as stored and returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Instance id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    #[serde(rename = "Service")]
    pub name: String,
    /// Host or IP.
    #[serde(rename = "Address")]
    pub address: String,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// TTL in nanoseconds.
    #[serde(rename = "TTLNanos")]
    pub ttl_nanos: i64,
    /// Last check result.
    #[serde(rename = "Status")]
    pub status: CheckStatus,
    /// Optional note from the last check.
    #[serde(rename = "Output", default)]
    pub output: String,
    /// First registration time.
    #[serde(rename = "RegisteredAt")]
    pub registered_at: UnixNanos,
    /// Last heartbeat time.
    #[serde(rename = "LastHeartbeat")]
    pub last_heartbeat: UnixNanos,
}

impl ServiceEntry {
    /// `http://address:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.address, self.port)
    }
    /// The `version` meta value, or `-`.
    pub fn version(&self) -> &str {
        self.meta.get("version").map_or("-", String::as_str)
    }
}
