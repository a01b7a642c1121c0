//! An HTTP client for the registry API, used by services and the CLI.

use crate::entry::{CheckStatus, Registration, ServiceEntry};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry could not be reached.
    #[error("registry at {url} is unreachable: {reason}")]
    Unreachable {
        /// Registry base URL.
        url: String,
        /// Transport error.
        reason: String,
    },
    /// The registry answered with an error status.
    #[error("registry answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
}

/// Talks to a registry over HTTP.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

impl RegistryClient {
    /// A client for the registry at `base` (e.g. `http://127.0.0.1:8500`).
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        RegistryClient {
            base: base.into().trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            Err(ClientError::Status { status, body })
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        resp.json().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: format!("bad response: {e}"),
        })
    }

    /// Registers an instance.
    pub async fn register(
        &self,
        id: &str,
        name: &str,
        address: &str,
        port: u16,
        meta: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<ServiceEntry, ClientError> {
        let reg = Registration {
            id: Some(id.to_string()),
            name: name.to_string(),
            address: address.to_string(),
            port,
            tags: vec![],
            meta,
            check: Some(crate::entry_check(ttl)),
        };
        self.json(
            self.http
                .put(format!("{}/v1/agent/service/register", self.base))
                .json(&reg),
        )
        .await
    }

    /// Sends a heartbeat with a status.
    pub async fn heartbeat(&self, id: &str, status: CheckStatus) -> Result<(), ClientError> {
        let verb = match status {
            CheckStatus::Passing => "pass",
            CheckStatus::Warning => "warn",
            CheckStatus::Critical => "fail",
        };
        self.send(
            self.http
                .put(format!("{}/v1/agent/check/{verb}/service:{id}", self.base)),
        )
        .await
        .map(|_| ())
    }

    /// Deregisters an instance.
    pub async fn deregister(&self, id: &str) -> Result<(), ClientError> {
        self.send(
            self.http
                .put(format!("{}/v1/agent/service/deregister/{id}", self.base)),
        )
        .await
        .map(|_| ())
    }

    /// Every registered instance.
    pub async fn services(&self) -> Result<Vec<ServiceEntry>, ClientError> {
        let map: BTreeMap<String, ServiceEntry> = self
            .json(self.http.get(format!("{}/v1/agent/services", self.base)))
            .await?;
        Ok(map.into_values().collect())
    }

    /// Instances of one service (passing only unless `include_unhealthy`).
    pub async fn health(
        &self,
        name: &str,
        include_unhealthy: bool,
    ) -> Result<Vec<ServiceEntry>, ClientError> {
        self.json(
            self.http
                .get(format!("{}/v1/health/service/{name}", self.base))
                .query(&[("passing", (!include_unhealthy).to_string())]),
        )
        .await
    }
}
