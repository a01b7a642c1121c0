//! Per-domain key prefixes over any cache.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Cache, CacheError};

/// A [`Cache`] that stores every key as `<prefix>:<key>` in an inner cache,
/// so domains sharing one Redis cannot collide and ACL key patterns
/// (`~<prefix>:*`) can confine each of them.
pub struct Namespaced {
    inner: Arc<dyn Cache>,
    /// The prefix including its trailing `:`.
    prefix: String,
}

impl Namespaced {
    /// Wraps `inner` so that keys live under `<prefix>:`.
    pub fn new(inner: Arc<dyn Cache>, prefix: &str) -> Self {
        Namespaced {
            inner,
            prefix: format!("{prefix}:"),
        }
    }

    /// The prefix, without the separating `:`.
    pub fn prefix(&self) -> &str {
        self.prefix.strip_suffix(':').unwrap_or(&self.prefix)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl std::fmt::Debug for Namespaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaced")
            .field("engine", &self.inner.engine())
            .field("prefix", &self.prefix())
            .finish()
    }
}

#[async_trait]
impl Cache for Namespaced {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.inner.get(&self.full(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        self.inner.set(&self.full(key), value, ttl).await
    }

    async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        self.inner.set_nx(&self.full(key), value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.inner.delete(&self.full(key)).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.expire(&self.full(key), ttl).await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        self.inner.ttl(&self.full(key)).await
    }

    async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<i64, CacheError> {
        self.inner.incr(&self.full(key), by, ttl_if_new).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let keys = self.inner.keys(&self.full(prefix)).await?;
        // Every key returned starts with our prefix; strip it back off.
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }

    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        self.inner.mget(&refs).await
    }
}
