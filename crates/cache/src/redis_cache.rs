//! The Redis adapter.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::{Cache, CacheError, ttl_millis};

const ENGINE: &str = "redis";

/// Keys asked for per SCAN round trip (a hint to the server).
const SCAN_COUNT: usize = 1000;

/// Bound on connecting and on each command, so a dead server fails calls
/// instead of hanging them.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Cache`] on Redis through a [`ConnectionManager`], which multiplexes
/// concurrent calls over one connection and reconnects after failures.
///
/// User and password for AUTH (ACL users included) come from the URL:
/// `redis://user:password@host:port/db`. The password is masked in every
/// log line, error and `Debug` output.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    target: String,
    secret: Option<String>,
}

impl RedisCache {
    /// Connects (and authenticates) to the server at `url`.
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let (target, secret) = redact(url);
        let fail = |e: RedisError| CacheError::Connect {
            engine: ENGINE,
            target: target.clone(),
            message: scrub(&e.to_string(), secret.as_deref()),
        };
        let client = redis::Client::open(url).map_err(fail)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(fail)?;
        tracing::info!(engine = ENGINE, target = %target, "cache connected");
        Ok(RedisCache {
            conn,
            target,
            secret,
        })
    }

    /// The server this cache talks to, with any password masked.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn error(&self, op: &'static str, e: RedisError) -> CacheError {
        let message = scrub(&e.to_string(), self.secret.as_deref());
        // A refusal inside MULTI surfaces as an aborted transaction whose
        // message names each command's NoPerm error.
        let refused = e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
            || message.to_ascii_lowercase().contains("noperm");
        if refused {
            CacheError::PermissionDenied {
                engine: ENGINE,
                op,
                message,
            }
        } else {
            CacheError::Backend {
                engine: ENGINE,
                op,
                message,
            }
        }
    }
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The URL with its password masked, and the password itself (for scrubbing).
fn redact(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) if !password.is_empty() => (
            format!("{scheme}://{user}:***@{host}{path}"),
            Some(password.to_owned()),
        ),
        _ => (url.to_owned(), None),
    }
}

/// Removes `secret` from a message, in case a driver ever echoes it.
fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => message.replace(s, "***"),
        _ => message.to_owned(),
    }
}

/// Escapes Redis glob metacharacters so a prefix matches only itself.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Cache for RedisCache {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.error("ping", e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("get", e))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error("set", e))
    }

    async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        // OK when stored, nil when the key already existed.
        let reply: Option<String> = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("set_nx", e))?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let removed: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("delete", e))?;
        Ok(removed > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let set: i64 = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("expire", e))?;
        Ok(set == 1)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let mut conn = self.conn.clone();
        // -2: missing, -1: no expiry, otherwise milliseconds left.
        let ms: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("ttl", e))?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let mut conn = self.conn.clone();
        let result = match ttl_if_new {
            None => {
                redis::cmd("INCRBY")
                    .arg(key)
                    .arg(by)
                    .query_async::<i64>(&mut conn)
                    .await
            }
            Some(ttl) => {
                // MULTI/EXEC: create the key at 0 with its TTL only if it is
                // missing, then add; INCRBY keeps an existing TTL as it is.
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(key)
                    .arg(0)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_millis(ttl))
                    .ignore()
                    .cmd("INCRBY")
                    .arg(key)
                    .arg(by)
                    .query_async::<(i64,)>(&mut conn)
                    .await
                    .map(|(v,)| v)
            }
        };
        result.map_err(|e| {
            let text = e.to_string();
            if text.contains("not an integer") || text.contains("overflow") {
                CacheError::NotAnInteger {
                    engine: ENGINE,
                    key: key.to_owned(),
                }
            } else {
                self.error("incr", e)
            }
        })
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", escape_glob(prefix));
        // SCAN may return a key more than once; the set deduplicates and sorts.
        let mut found = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("keys", e))?;
            for raw in batch {
                match String::from_utf8(raw) {
                    Ok(key) => {
                        found.insert(key);
                    }
                    // Another writer's binary key: it cannot be named by a
                    // &str API anyway, so report and skip it.
                    Err(e) => tracing::warn!(
                        engine = ENGINE,
                        key = ?String::from_utf8_lossy(e.as_bytes()),
                        "skipping a non-UTF-8 key during scan"
                    ),
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(found.into_iter().collect())
    }

    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        if keys.is_empty() {
            // MGET needs at least one key.
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("mget", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let (t, s) = redact("redis://app:pa:ss@w@cache:6380/2");
        assert_eq!(t, "redis://app:***@cache:6380/2");
        assert_eq!(s.as_deref(), Some("pa:ss@w"));
        let (t, s) = redact("rediss://:only@h");
        assert_eq!(t, "rediss://:***@h");
        assert_eq!(s.as_deref(), Some("only"));
        assert_eq!(redact("redis://h:1/0"), ("redis://h:1/0".to_owned(), None));
        assert_eq!(scrub("bad pw hunter2", Some("hunter2")), "bad pw ***");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert_eq!(escape_glob("plain:"), "plain:");
    }
}
