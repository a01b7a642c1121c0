//! The in-process adapter, expiring keys by an injected clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tradestack_kernel::clock::Clock;
use tradestack_model::UnixNanos;

use crate::{Cache, CacheError, ttl_millis};

const ENGINE: &str = "memory";

/// Writes between full sweeps of expired entries. Reads expire lazily, so the
/// sweep only bounds memory held by keys nobody reads again.
const SWEEP_EVERY: u32 = 1024;

struct Entry {
    value: Vec<u8>,
    expires_at: Option<UnixNanos>,
}

impl Entry {
    fn expired(&self, now: UnixNanos) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

#[derive(Default)]
struct State {
    map: HashMap<String, Entry>,
    writes_since_sweep: u32,
}

impl State {
    /// The live entry under `key`, dropping it first if it has expired.
    fn live(&mut self, key: &str, now: UnixNanos) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| e.expired(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: &str, entry: Entry, now: UnixNanos) {
        self.map.insert(key.to_owned(), entry);
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: UnixNanos) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| !e.expired(now));
        self.writes_since_sweep = 0;
        before - self.map.len()
    }
}

/// A [`Cache`] in this process's memory. Expiry follows the injected clock:
/// with a `SimClock`, advancing simulated time expires keys, no sleeping.
pub struct MemoryCache {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl MemoryCache {
    /// An empty cache expiring keys by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryCache {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Drops every expired entry now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        self.state.lock().sweep(now)
    }

    /// Entries held, including expired ones not yet swept (for diagnostics).
    pub fn stored_len(&self) -> usize {
        self.state.lock().map.len()
    }

    fn deadline(&self, now: UnixNanos, ttl: Duration) -> UnixNanos {
        // Same millisecond rounding as Redis, so both adapters agree.
        let nanos = i64::try_from(ttl_millis(ttl))
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        UnixNanos(now.0.saturating_add(nanos))
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("stored", &self.stored_len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = self.clock.now();
        Ok(self.state.lock().live(key, now).map(|e| e.value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let now = self.clock.now();
        let entry = Entry {
            value: value.to_vec(),
            expires_at: ttl.map(|t| self.deadline(now, t)),
        };
        self.state.lock().insert(key, entry, now);
        Ok(())
    }

    async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        if state.live(key, now).is_some() {
            return Ok(false);
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at: ttl.map(|t| self.deadline(now, t)),
        };
        state.insert(key, entry, now);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let existed = state.live(key, now).is_some();
        state.map.remove(key);
        Ok(existed)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = self.clock.now();
        let deadline = self.deadline(now, ttl);
        Ok(match self.state.lock().live(key, now) {
            Some(entry) => {
                entry.expires_at = Some(deadline);
                true
            }
            None => false,
        })
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let left = state
            .live(key, now)
            .and_then(|e| e.expires_at)
            .map(|t| Duration::from_nanos(u64::try_from(t.0 - now.0).unwrap_or(0)));
        Ok(left)
    }

    async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let not_an_integer = || CacheError::NotAnInteger {
            engine: ENGINE,
            key: key.to_owned(),
        };
        if let Some(entry) = state.live(key, now) {
            // Same rule as Redis: the value must be a decimal i64 and the sum must fit.
            let current: i64 = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(not_an_integer)?;
            let next = current.checked_add(by).ok_or_else(not_an_integer)?;
            entry.value = next.to_string().into_bytes();
            return Ok(next);
        }
        let entry = Entry {
            value: by.to_string().into_bytes(),
            expires_at: ttl_if_new.map(|t| self.deadline(now, t)),
        };
        state.insert(key, entry, now);
        Ok(by)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let now = self.clock.now();
        let state = self.state.lock();
        let mut keys: Vec<String> = state
            .map
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && !e.expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        Ok(keys
            .iter()
            .map(|k| state.live(k, now).map(|e| e.value.clone()))
            .collect())
    }
}
