//! The cache/KV port: byte values with optional TTLs, atomic counters,
//! set-if-absent, prefix scans, and per-domain key namespaces.
//!
//! Services depend on the object-safe [`Cache`] trait (`Arc<dyn Cache>`) and
//! pick an adapter by URL with [`connect`]:
//!
//! - [`MemoryCache`] (`memory://`): a map in this process whose expiry follows
//!   an injected [`Clock`], so simulations expire keys by advancing simulated
//!   time instead of sleeping.
//! - [`RedisCache`] (`redis://`, `rediss://`): a reconnecting
//!   [`redis::aio::ConnectionManager`]; ACL user and password come from the URL.
//!
//! Each domain works inside its own prefix through [`Namespaced`]
//! (`cache.namespace("registry")` stores `registry:<key>`), which is also
//! what Redis ACL key patterns (`~registry:*`) are written against.
//!
//! TTLs are rounded up to whole milliseconds (at least 1 ms) in both adapters,
//! because that is Redis's resolution.

#![warn(missing_docs)]

mod error;
mod memory;
mod namespaced;
mod redis_cache;

#[doc(hidden)]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tradestack_kernel::clock::Clock;

pub use error::CacheError;
pub use memory::MemoryCache;
pub use namespaced::Namespaced;
pub use redis_cache::RedisCache;

/// A key-value cache with expiry. Keys are UTF-8 strings; values are bytes.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The adapter's engine: `"memory"` or `"redis"`.
    fn engine(&self) -> &'static str;

    /// Checks that the backend answers (for readiness probes).
    async fn ping(&self) -> Result<(), CacheError>;

    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key`, replacing any value and TTL; `ttl: None`
    /// keeps it until deleted.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Stores `value` only if `key` is absent; true when it was stored.
    async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError>;

    /// Removes `key`; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Sets (or refreshes) the TTL of an existing key; false when it is missing.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// Time left before `key` expires; `None` when it is missing or has no TTL.
    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError>;

    /// Adds `by` to the decimal integer under `key` (a missing key counts as
    /// 0 and then gets `ttl_if_new`, if given) and returns the new value.
    async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<i64, CacheError>;

    /// Every live key starting with `prefix`, sorted. Scans incrementally
    /// (never blocks the server), so keys changed during the scan may or may
    /// not appear.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError>;

    /// The values under `keys`, in the same order (`None` for missing ones).
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError>;
}

impl dyn Cache {
    /// A view of this cache that stores every key as `<prefix>:<key>`.
    pub fn namespace(self: &Arc<Self>, prefix: &str) -> Arc<dyn Cache> {
        Arc::new(Namespaced::new(Arc::clone(self), prefix))
    }
}

/// Opens the cache named by `url`: `memory://` (expiring by `clock`),
/// `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS).
pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn Cache>, CacheError> {
    if url.starts_with("memory:") {
        return Ok(Arc::new(MemoryCache::new(clock)));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(RedisCache::connect(url).await?));
    }
    Err(CacheError::UnsupportedUrl {
        scheme: url.split_once(':').map_or(url, |(s, _)| s).to_string(),
    })
}

/// Largest TTL in milliseconds: far beyond any cache lifetime, and small
/// enough that Redis never rejects it as overflowing its clock.
const MAX_TTL_MS: u64 = 1 << 52;

/// A TTL as whole milliseconds, rounded up so it never expires early, at
/// least 1 (Redis refuses 0) and at most [`MAX_TTL_MS`].
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(MAX_TTL_MS).clamp(1, MAX_TTL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1_500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2_000);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS);
    }
}
