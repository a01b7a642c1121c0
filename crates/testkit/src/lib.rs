//! Test support shared by the adapter test suites.
//!
//! Adapter tests talk to real servers. Locally a missing server skips the test
//! with a printed reason; under `CI=true` a missing server fails the test, so a
//! green CI run always means the real adapters were exercised.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Default PostgreSQL URL (trust auth, database `test`).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default Kafka bootstrap servers (the tansu broker started by `.ci/run`).
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:19092";

/// True when running under CI, where no real-server test may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn reachable(host_port: &str) -> bool {
    let Ok(mut addrs) = host_port.to_socket_addrs() else {
        return false;
    };
    addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn host_port_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// Returns the server URL from `env_var` (or `default`) when it answers on TCP.
/// When it does not: panics under CI, otherwise prints why and returns `None`.
pub fn require_server(what: &str, env_var: &str, default: &str) -> Option<String> {
    let url = std::env::var(env_var).unwrap_or_else(|_| default.to_string());
    let first = url.split(',').next().unwrap_or(&url);
    if reachable(&host_port_of(first)) {
        return Some(url);
    }
    let msg = format!("{what} is not reachable at {url} (set {env_var} to point elsewhere)");
    if in_ci() {
        panic!("CI=true and {msg}: real-server tests may not be skipped in CI");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// The real PostgreSQL server, or a skip (see [`require_server`]).
pub fn postgres() -> Option<String> {
    require_server(
        "PostgreSQL",
        "TRADESTACK_TEST_POSTGRES_URL",
        DEFAULT_POSTGRES_URL,
    )
}

/// The real Redis server, or a skip (see [`require_server`]).
pub fn redis() -> Option<String> {
    require_server("Redis", "TRADESTACK_TEST_REDIS_URL", DEFAULT_REDIS_URL)
}

/// The real Kafka-compatible broker, or a skip (see [`require_server`]).
pub fn kafka() -> Option<String> {
    require_server(
        "Kafka broker",
        "TRADESTACK_TEST_KAFKA_BROKERS",
        DEFAULT_KAFKA_BROKERS,
    )
}

/// A process-unique name for a test resource (database, topic, key prefix).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_host_and_port() {
        assert_eq!(host_port_of("postgres://u:p@h:5432/db?x=1"), "h:5432");
        assert_eq!(host_port_of("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(host_port_of("127.0.0.1:19092"), "127.0.0.1:19092");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
