//! Keeping a service registered: register at start, heartbeat, deregister at stop.

use crate::Runtime;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tradestack_registry::{CheckStatus, Registry, RegistryClient};

/// How a service reaches the registry.
#[derive(Clone)]
pub enum RegistryLink {
    /// The registry runs in this process (`tradestack up`).
    Local(Registry),
    /// The registry is another process, reached over HTTP.
    Remote(RegistryClient),
}

impl RegistryLink {
    /// The base URL (`http://host:port`) of a passing instance of `name`,
    /// if one is registered.
    pub async fn locate(&self, name: &str) -> Result<Option<String>, String> {
        let entries = match self {
            RegistryLink::Local(r) => r.by_name(name, false).await.map_err(|e| e.to_string())?,
            RegistryLink::Remote(c) => c.health(name, false).await.map_err(|e| e.to_string())?,
        };
        Ok(entries.first().map(|e| e.base_url()))
    }
}

#[derive(Clone)]
pub(crate) struct Registration {
    id: String,
    name: &'static str,
    host: String,
    port: u16,
    ttl: Duration,
    interval: Duration,
    link: RegistryLink,
}

impl Registration {
    pub(crate) fn new(
        rt: &Runtime,
        name: &'static str,
        host: String,
        port: u16,
        link: RegistryLink,
    ) -> Self {
        Registration {
            id: format!("{name}-{host}-{port}"),
            name,
            host,
            port,
            ttl: rt.config.registry.ttl.as_std(),
            interval: rt.config.registry.heartbeat_interval.as_std(),
            link,
        }
    }

    fn meta() -> BTreeMap<String, String> {
        [("version".to_string(), crate::VERSION.to_string())].into()
    }

    /// Registers; failures are logged and retried by the heartbeat loop.
    pub(crate) async fn register(&self) -> bool {
        let result = match &self.link {
            RegistryLink::Local(r) => r
                .register(tradestack_registry::Registration {
                    id: Some(self.id.clone()),
                    name: self.name.to_string(),
                    address: self.host.clone(),
                    port: self.port,
                    tags: vec![],
                    meta: Self::meta(),
                    check: Some(tradestack_registry::entry_check(self.ttl)),
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            RegistryLink::Remote(c) => c
                .register(
                    &self.id,
                    self.name,
                    &self.host,
                    self.port,
                    Self::meta(),
                    self.ttl,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(service = self.name, error = %e, "registration failed; will retry");
                false
            }
        }
    }

    async fn heartbeat(&self) -> bool {
        match &self.link {
            RegistryLink::Local(r) => r
                .heartbeat(&self.id, CheckStatus::Passing, "")
                .await
                .is_ok(),
            RegistryLink::Remote(c) => c.heartbeat(&self.id, CheckStatus::Passing).await.is_ok(),
        }
    }

    /// Heartbeats until shutdown; re-registers when the entry was lost
    /// (expired during a pause, or the registry restarted without Redis).
    pub(crate) fn heartbeat_loop(
        self,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                if !self.heartbeat().await {
                    self.register().await;
                }
            }
        })
    }

    pub(crate) async fn deregister(&self) {
        let ok = match &self.link {
            RegistryLink::Local(r) => r.deregister(&self.id).await.is_ok(),
            RegistryLink::Remote(c) => c.deregister(&self.id).await.is_ok(),
        };
        if !ok {
            tracing::warn!(
                service = self.name,
                "could not deregister; the entry will expire after its TTL"
            );
        }
    }
}
