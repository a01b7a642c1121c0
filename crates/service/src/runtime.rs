//! Per-process engines, metrics and shutdown.

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradestack_bus::Bus;
use tradestack_bus::outbox::{OutboxRelay, OutboxSettings};
use tradestack_cache::Cache;
use tradestack_config::{BusEngine, Config};
use tradestack_kernel::{Clock, RealClock};
use tradestack_store::StateStore;
use tradestack_telemetry::Metrics;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The state store could not be opened.
    #[error("state store ({url}): {reason}")]
    Store {
        /// The store URL, password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The cache could not be opened.
    #[error("cache ({url}): {reason}")]
    Cache {
        /// The cache URL, password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The bus could not be created.
    #[error("bus: {0}")]
    Bus(String),
    /// The HTTP port could not be bound.
    #[error("{service}: cannot listen on {addr}: {reason}")]
    Bind {
        /// Service name.
        service: &'static str,
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        reason: String,
    },
}

/// Everything services in one process share.
pub struct Runtime {
    /// The effective configuration.
    pub config: Config,
    /// Real time (simulations build their own kernel clock).
    pub clock: Arc<dyn Clock>,
    /// The process's metrics registry.
    pub metrics: Metrics,
    /// The message bus.
    pub bus: Bus,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The cache.
    pub cache: Arc<dyn Cache>,
    started: Instant,
    shutdown_tx: watch::Sender<bool>,
    relay: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Opens the configured engines and starts the outbox relay.
    pub async fn build(config: Config, label: &str) -> Result<Runtime, ServiceError> {
        let clock: Arc<dyn Clock> = Arc::new(RealClock);
        let state_url = config.state_url();
        let store =
            tradestack_store::connect(&state_url)
                .await
                .map_err(|e| ServiceError::Store {
                    url: tradestack_config::redact_url(&state_url),
                    reason: e.to_string(),
                })?;
        let cache_url = config.cache_url();
        let cache = tradestack_cache::connect(&cache_url, clock.clone())
            .await
            .map_err(|e| ServiceError::Cache {
                url: tradestack_config::redact_url(&cache_url),
                reason: e.to_string(),
            })?;
        // Event ids must not collide across processes: seed the instance id
        // from the pid and start time (simulations use their seed instead).
        let instance =
            u64::from(std::process::id()) << 32 ^ (clock.now().as_i64() as u64 & 0xffff_ffff);
        let bus = match config.bus {
            BusEngine::Memory => Bus::memory(clock.clone(), instance),
            BusEngine::Kafka => {
                let k = &config.kafka;
                let mut s = tradestack_bus::kafka::KafkaSettings::new(k.brokers.clone());
                s.topic_prefix = k.topic_prefix.clone();
                s.group_prefix = k.group_prefix.clone();
                s.partitions = i32::try_from(k.partitions).unwrap_or(i32::MAX);
                s.message_timeout = k.message_timeout.as_std();
                s.properties = k.properties.clone();
                Bus::kafka(s, clock.clone(), instance)
                    .map_err(|e| ServiceError::Bus(e.to_string()))?
            }
        };
        let metrics = Metrics::new(label, crate::VERSION);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let relay = OutboxRelay::new(
            store.clone(),
            bus.clone(),
            OutboxSettings {
                poll_interval: config.outbox.poll_interval.as_std(),
                batch: config.outbox.batch,
                retain_delivered: config.outbox.retain_delivered.as_std(),
            },
        );
        let relay = tokio::spawn(relay.run(shutdown_rx));
        Ok(Runtime {
            config,
            clock,
            metrics,
            bus,
            store,
            cache,
            started: Instant::now(),
            shutdown_tx,
            relay: Some(relay),
        })
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Seconds since the runtime started.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Begins shutdown: servers stop accepting, services deregister.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Finishes shutdown after the services stopped: flushes the outbox and closes the bus.
    pub async fn finish_shutdown(&mut self) {
        self.begin_shutdown();
        if let Some(relay) = self.relay.take() {
            let _ = relay.await;
        }
        self.bus.close();
    }
}
