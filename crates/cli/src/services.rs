//! The services this binary can run, wired to their crates.

use async_trait::async_trait;
use axum::Router;
use tradestack_registry::Registry;
use tradestack_service::{Check, Service};

/// Every service name, in start order.
pub const ALL: &[&str] = &[
    "registry",
    "exchange",
    "marketdata",
    "audit",
    "risk",
    "strategy",
    "custodian",
    "coordinator",
];

/// The registry's HTTP service.
pub struct RegistryService {
    /// The registry state (in-memory or Redis, per the `cache` engine).
    pub registry: Registry,
}

#[async_trait]
impl Service for RegistryService {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn routes(&self) -> Router {
        tradestack_registry::api::router(self.registry.clone())
    }
    async fn checks(&self) -> Vec<Check> {
        vec![Check::from_result("registry", self.registry.ping().await)]
    }
}
