//! The service host.
//!
//! Every tradestack service runs inside a [`Runtime`], which builds the
//! engines named by the configuration (bus, state store, cache), the metrics
//! registry and the shutdown signal once per process. [`start`] then serves
//! a [`Service`] on its own HTTP port with the common endpoints
//! (`/livez`, `/readyz`, `/health`, `/metrics`), registers it with the
//! service registry, heartbeats, and deregisters on shutdown.
//!
//! `tradestack up` starts every service in one runtime on embedded engines;
//! `tradestack serve <name>` starts one, on whatever engines the
//! configuration names.

mod endpoints;
mod registration;
mod runtime;

pub use endpoints::{Check, common_routes};
pub use registration::RegistryLink;
pub use runtime::{Runtime, ServiceError};

use async_trait::async_trait;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The version every service reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One tradestack service.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Its name in the registry and on the command line.
    fn name(&self) -> &'static str;
    /// Its own HTTP routes (merged with the common endpoints).
    fn routes(&self) -> Router;
    /// Its own readiness checks, beyond the runtime's engines.
    async fn checks(&self) -> Vec<Check> {
        Vec::new()
    }
}

/// A service that is up: where it listens and how to wait for it.
pub struct RunningService {
    /// Service name.
    pub name: &'static str,
    /// The address it actually bound (port 0 resolved).
    pub addr: SocketAddr,
    /// Ends when the server has shut down and the service deregistered.
    pub task: JoinHandle<()>,
}

/// Binds `listen`, serves `service` with the common endpoints, registers it
/// through `link`, and keeps it registered until the runtime shuts down.
pub async fn start(
    rt: &Runtime,
    service: Arc<dyn Service>,
    listen: SocketAddr,
    advertise: Option<String>,
    link: RegistryLink,
) -> Result<RunningService, ServiceError> {
    let name = service.name();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServiceError::Bind {
            service: name,
            addr: listen,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServiceError::Bind {
        service: name,
        addr: listen,
        reason: e.to_string(),
    })?;
    let endpoints = endpoints::Endpoints::new(rt, service.clone());
    tokio::spawn(
        endpoints
            .clone()
            .refresh_ready(std::time::Duration::from_secs(10), rt.shutdown_signal()),
    );
    let app =
        endpoints
            .routes()
            .merge(service.routes())
            .layer(axum::middleware::from_fn_with_state(
                rt.metrics.clone(),
                tradestack_telemetry::http::track,
            ));
    let mut shutdown = rt.shutdown_signal();
    let (host, port) = advertised(advertise.as_deref(), addr);
    let registration = registration::Registration::new(rt, name, host, port, link);
    registration.register().await;
    let heartbeat = registration.clone().heartbeat_loop(rt.shutdown_signal());
    let task = tokio::spawn(async move {
        // Client addresses reach handlers (rate limits key on them).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
        if let Err(e) = server.await {
            tracing::error!(service = name, error = %e, "server failed");
        }
        let _ = heartbeat.await;
        registration.deregister().await;
        tracing::info!(service = name, "stopped");
    });
    tracing::info!(service = name, %addr, "listening");
    Ok(RunningService { name, addr, task })
}

/// Where others reach a service bound to `addr`: `advertise` (a host, or
/// host:port), else the bound IP (loopback for a wildcard bind); the port is
/// the bound one unless `advertise` names one.
pub fn advertised(advertise: Option<&str>, addr: SocketAddr) -> (String, u16) {
    let Some(a) = advertise.map(str::trim).filter(|a| !a.is_empty()) else {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        return (host, addr.port());
    };
    // A bare IPv6 address has colons but no port; `[::1]:8080` has both.
    let bare_ipv6 = !a.starts_with('[') && a.matches(':').count() > 1;
    match a.rsplit_once(':') {
        Some((host, port)) if !bare_ipv6 => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (a.to_string(), addr.port()),
        },
        _ => (a.to_string(), addr.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn advertise_is_a_host_or_a_host_and_port() {
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let one: std::net::SocketAddr = "10.0.0.5:8081".parse().unwrap();
        let cases = [
            (None, any, ("127.0.0.1", 8080)),
            (None, one, ("10.0.0.5", 8081)),
            (Some("exchange"), any, ("exchange", 8080)),
            (Some("exchange:443"), any, ("exchange", 443)),
            (Some("[::1]:9000"), any, ("[::1]", 9000)),
            (Some("fd00::7"), any, ("fd00::7", 8080)),
            (Some(" "), one, ("10.0.0.5", 8081)),
        ];
        for (advertise, addr, (host, port)) in cases {
            assert_eq!(
                advertised(advertise, addr),
                (host.to_string(), port),
                "{advertise:?}"
            );
        }
    }
}
