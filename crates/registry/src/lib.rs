//! The service registry.
//!
//! Services register themselves (id, name, address, port, tags, meta and a
//! TTL), heartbeat, and deregister on shutdown; clients look services up by
//! name and read shared configuration from a key/value store. The HTTP API
//! follows Consul's agent API (`/v1/agent/service/register`,
//! `/v1/agent/check/pass/service:<id>`, `/v1/health/service/<name>`,
//! `/v1/kv/<key>`), so its shapes are familiar.
//!
//! Entries live in the cache port under `registry:services:<id>` with the
//! entry's TTL as the key's expiry: a heartbeat refreshes the expiry, and an
//! instance that stops heartbeating disappears when its key expires. With the
//! in-memory cache that is one process's registry; with Redis, every registry
//! process sees the same entries and they survive a registry restart.

pub mod api;
pub mod client;
pub mod entry;
pub mod store;

pub use client::RegistryClient;

/// A TTL check for a registration.
pub fn entry_check(ttl: std::time::Duration) -> entry::Check {
    entry::Check {
        ttl: humantime::format_duration(ttl).to_string(),
    }
}
pub use entry::{CheckStatus, Registration, ServiceEntry};
pub use store::{Registry, RegistryError};
