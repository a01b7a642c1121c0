//! Registry state on top of the cache port.

use crate::entry::{CheckStatus, Registration, ServiceEntry};
use std::sync::Arc;
use std::time::Duration;
use tradestack_cache::{Cache, CacheError};
use tradestack_kernel::Clock;
use tradestack_model::Nanos;

/// Key prefix of service entries (inside the `registry` namespace).
pub const SERVICES_PREFIX: &str = "services:";
/// Key prefix of configuration values (inside the `registry` namespace).
pub const KV_PREFIX: &str = "kv:";

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is invalid; `field` names the offending field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such service instance.
    #[error("service {0} is not registered")]
    NotFound(String),
    /// The backing cache failed.
    #[error("registry storage: {0}")]
    Cache(#[from] CacheError),
    /// A stored entry could not be read.
    #[error("corrupt entry {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoding error.
        reason: String,
    },
}

/// The registry: entries with TTLs, plus configuration key/values.
#[derive(Clone)]
pub struct Registry {
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
}

impl Registry {
    /// A registry storing under the `registry:` namespace of `cache`.
    pub fn new(cache: Arc<dyn Cache>, clock: Arc<dyn Clock>, default_ttl: Duration) -> Self {
        Registry {
            cache: cache.namespace("registry"),
            clock,
            default_ttl,
        }
    }

    /// The backing engine (`memory` or `redis`).
    pub fn engine(&self) -> &'static str {
        self.cache.engine()
    }

    /// Checks the backing cache answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        Ok(self.cache.ping().await?)
    }

    fn key(id: &str) -> String {
        format!("{SERVICES_PREFIX}{id}")
    }

    /// Registers (or re-registers) an instance; it starts out passing.
    pub async fn register(&self, reg: Registration) -> Result<ServiceEntry, RegistryError> {
        let invalid = |field: &str, message: &str| RegistryError::Invalid {
            field: field.into(),
            message: message.into(),
        };
        if reg.name.trim().is_empty() {
            return Err(invalid("Name", "must not be empty"));
        }
        let id = reg.id.clone().unwrap_or_else(|| reg.name.clone());
        if id.trim().is_empty() || id.contains(['*', '?', '[', ']', ' ']) {
            return Err(invalid(
                "ID",
                "must be non-empty without spaces or glob characters",
            ));
        }
        if reg.address.trim().is_empty() {
            return Err(invalid("Address", "must not be empty"));
        }
        if reg.port == 0 {
            return Err(invalid("Port", "must be between 1 and 65535"));
        }
        let ttl = match &reg.check {
            Some(c) => humantime::parse_duration(&c.ttl)
                .map_err(|e| invalid("Check.TTL", &format!("invalid duration {:?}: {e}", c.ttl)))?,
            None => self.default_ttl,
        };
        if ttl < Duration::from_millis(100) {
            return Err(invalid("Check.TTL", "must be at least 100ms"));
        }
        let now = self.clock.now();
        let registered_at = match self.get(&id).await {
            Ok(Some(old)) => old.registered_at,
            _ => now,
        };
        let entry = ServiceEntry {
            id,
            name: reg.name,
            address: reg.address,
            port: reg.port,
            tags: reg.tags,
            meta: reg.meta,
            ttl_nanos: Nanos::from_std(ttl).0,
            status: CheckStatus::Passing,
            output: String::new(),
            registered_at,
            last_heartbeat: now,
        };
        self.write(&entry).await?;
        tracing::info!(id = %entry.id, name = %entry.name, port = entry.port, "service registered");
        Ok(entry)
    }

    async fn write(&self, entry: &ServiceEntry) -> Result<(), RegistryError> {
        let json = serde_json::to_vec(entry).map_err(|e| RegistryError::Corrupt {
            key: entry.id.clone(),
            reason: e.to_string(),
        })?;
        let ttl = Nanos(entry.ttl_nanos).to_std();
        self.cache
            .set(&Self::key(&entry.id), &json, Some(ttl))
            .await?;
        Ok(())
    }

    /// Records a heartbeat (a TTL check update) and refreshes the expiry.
    pub async fn heartbeat(
        &self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<ServiceEntry, RegistryError> {
        let mut entry = self
            .get(id)
            .await?
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        entry.status = status;
        entry.output = output.to_string();
        entry.last_heartbeat = self.clock.now();
        self.write(&entry).await?;
        Ok(entry)
    }

    /// Removes an instance; false when it was not registered.
    pub async fn deregister(&self, id: &str) -> Result<bool, RegistryError> {
        let existed = self.cache.delete(&Self::key(id)).await?;
        if existed {
            tracing::info!(id, "service deregistered");
        }
        Ok(existed)
    }

    /// One instance, if registered and not expired.
    pub async fn get(&self, id: &str) -> Result<Option<ServiceEntry>, RegistryError> {
        let key = Self::key(id);
        match self.cache.get(&key).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RegistryError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Every live instance, sorted by name then id.
    pub async fn list(&self) -> Result<Vec<ServiceEntry>, RegistryError> {
        let keys = self.cache.keys(SERVICES_PREFIX).await?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.cache.mget(&refs).await?;
        let mut out = Vec::with_capacity(values.len());
        for (key, value) in keys.iter().zip(values) {
            // A key can expire between the scan and the read.
            let Some(bytes) = value else { continue };
            match serde_json::from_slice::<ServiceEntry>(&bytes) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(key, error = %e, "skipping corrupt registry entry"),
            }
        }
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }

    /// Instances of one service; only passing ones unless `include_unhealthy`.
    pub async fn by_name(
        &self,
        name: &str,
        include_unhealthy: bool,
    ) -> Result<Vec<ServiceEntry>, RegistryError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|e| e.name == name && (include_unhealthy || e.status == CheckStatus::Passing))
            .collect())
    }

    /// A configuration value.
    pub async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.cache.get(&format!("{KV_PREFIX}{key}")).await?)
    }

    /// Sets a configuration value (kept until deleted).
    pub async fn kv_put(&self, key: &str, value: &[u8]) -> Result<(), RegistryError> {
        if key.is_empty() {
            return Err(RegistryError::Invalid {
                field: "key".into(),
                message: "must not be empty".into(),
            });
        }
        Ok(self
            .cache
            .set(&format!("{KV_PREFIX}{key}"), value, None)
            .await?)
    }

    /// Deletes a configuration value; false when absent.
    pub async fn kv_delete(&self, key: &str) -> Result<bool, RegistryError> {
        Ok(self.cache.delete(&format!("{KV_PREFIX}{key}")).await?)
    }

    /// Configuration keys starting with `prefix`.
    pub async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .cache
            .keys(&format!("{KV_PREFIX}{prefix}"))
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(KV_PREFIX).map(str::to_string))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradestack_cache::MemoryCache;
    use tradestack_kernel::SimClock;
    use tradestack_model::UnixNanos;

    fn reg(id: &str, ttl: &str) -> Registration {
        Registration {
            id: Some(id.into()),
            name: "exchange".into(),
            address: "127.0.0.1".into(),
            port: 8081,
            tags: vec!["spot".into()],
            meta: [("version".to_string(), "1.2.3".to_string())].into(),
            check: Some(crate::entry::Check { ttl: ttl.into() }),
        }
    }

    fn registry() -> (Registry, SimClock) {
        let clock = SimClock::new(UnixNanos::from_secs(1_700_000_000));
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(Arc::new(clock.clone())));
        (
            Registry::new(cache, Arc::new(clock.clone()), Duration::from_secs(15)),
            clock,
        )
    }

    #[tokio::test]
    async fn an_instance_that_stops_heartbeating_is_gone_after_its_ttl() {
        let (r, clock) = registry();
        r.register(reg("ex-1", "10s")).await.unwrap();
        r.register(reg("ex-2", "10s")).await.unwrap();
        // ex-1 keeps heartbeating every 5 s; ex-2 goes silent.
        for _ in 0..3 {
            clock.advance(Nanos::from_secs(5)).unwrap();
            r.heartbeat("ex-1", CheckStatus::Passing, "").await.unwrap();
        }
        let ids: Vec<_> = r.list().await.unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            vec!["ex-1"],
            "ex-2 should have expired 10 s after its registration"
        );
        assert!(matches!(
            r.heartbeat("ex-2", CheckStatus::Passing, "").await,
            Err(RegistryError::NotFound(_))
        ));
        // Just before the TTL ex-1 is still there; just after it is gone.
        clock.advance(Nanos::from_millis(9_999)).unwrap();
        assert!(r.get("ex-1").await.unwrap().is_some());
        clock.advance(Nanos::from_millis(2)).unwrap();
        assert!(r.get("ex-1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lookup_by_name_is_healthy_only_by_default() {
        let (r, _clock) = registry();
        r.register(reg("ex-1", "10s")).await.unwrap();
        r.register(reg("ex-2", "10s")).await.unwrap();
        r.heartbeat("ex-2", CheckStatus::Critical, "db down")
            .await
            .unwrap();
        let healthy: Vec<_> = r
            .by_name("exchange", false)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(healthy, vec!["ex-1"]);
        assert_eq!(r.by_name("exchange", true).await.unwrap().len(), 2);
        assert!(r.by_name("nobody", true).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn reregistration_keeps_the_first_registration_time() {
        let (r, clock) = registry();
        let first = r.register(reg("ex-1", "10s")).await.unwrap();
        clock.advance(Nanos::from_secs(3)).unwrap();
        let again = r.register(reg("ex-1", "10s")).await.unwrap();
        assert_eq!(again.registered_at, first.registered_at);
        assert!(again.last_heartbeat > first.last_heartbeat);
        assert!(r.deregister("ex-1").await.unwrap());
        assert!(!r.deregister("ex-1").await.unwrap());
    }

    #[tokio::test]
    async fn invalid_registrations_name_the_field() {
        let (r, _clock) = registry();
        let mut bad = reg("ex-1", "10s");
        bad.port = 0;
        assert!(
            matches!(r.register(bad).await, Err(RegistryError::Invalid { field, .. }) if field == "Port")
        );
        let bad = reg("ex-1", "soon");
        assert!(
            matches!(r.register(bad).await, Err(RegistryError::Invalid { field, .. }) if field == "Check.TTL")
        );
        let mut bad = reg("ex 1", "10s");
        bad.name = "x".into();
        assert!(
            matches!(r.register(bad).await, Err(RegistryError::Invalid { field, .. }) if field == "ID")
        );
    }

    #[tokio::test]
    async fn kv_round_trip() {
        let (r, _clock) = registry();
        r.kv_put("exchange/fees", b"tier1").await.unwrap();
        assert_eq!(
            r.kv_get("exchange/fees").await.unwrap().as_deref(),
            Some(&b"tier1"[..])
        );
        assert_eq!(r.kv_keys("exchange/").await.unwrap(), vec!["exchange/fees"]);
        assert!(r.kv_delete("exchange/fees").await.unwrap());
        assert!(r.kv_get("exchange/fees").await.unwrap().is_none());
    }
}
