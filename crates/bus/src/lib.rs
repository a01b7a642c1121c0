//! The message bus port: typed publish/subscribe and request/reply.
//!
//! Services talk through [`Bus`], which has two adapters behind one API:
//!
//! - **in-process** ([`memory`]), the default: typed queues, no encoding, no
//!   allocation per message beyond the message itself. Delivery is
//!   broadcast to every subscriber; subscribers that share a consumer group
//!   share one queue.
//! - **Kafka** ([`kafka`], feature `kafka`): messages are encoded with the
//!   versioned binary codec, keyed by instrument so one instrument's events
//!   stay in one partition and in order, consumed through consumer groups,
//!   and acknowledged after processing (at least once).
//!
//! Events that must not be lost while the broker is down are written to the
//! state store's outbox in the same transaction as the state change; the
//! [`outbox::OutboxRelay`] publishes them once the broker answers. Consumers
//! deduplicate by [`EventId`] with [`dedup::Deduplicator`].

pub mod dedup;
pub mod envelope;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod outbox;
pub mod request;

pub use envelope::{Delivery, Headers, RawEnvelope, headers};
pub use request::{Reply, Request};

use std::marker::PhantomData;
use std::sync::Arc;
use tradestack_kernel::Clock;
use tradestack_model::{EventId, UnixNanos};

/// Anything that can travel on the bus.
pub trait Message:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}
impl<T> Message for T where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}

/// A named topic carrying messages of type `T`.
pub struct Topic<T> {
    name: Arc<str>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Topic<T> {
    /// A topic with the given name (e.g. `exchange.trades`).
    pub fn new(name: impl AsRef<str>) -> Self {
        Topic {
            name: Arc::from(name.as_ref()),
            _t: PhantomData,
        }
    }
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic {
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topic({})", self.name)
    }
}

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A topic is already in use with a different message type.
    #[error("topic {0} is already used with another message type")]
    TypeMismatch(String),
    /// A subscriber's queue is full (in-process backpressure).
    #[error("queue full on topic {0}")]
    Full(String),
    /// The bus was shut down.
    #[error("bus closed")]
    Closed,
    /// No reply arrived in time.
    #[error("request on {0} timed out")]
    Timeout(String),
    /// The responder answered with an error.
    #[error("remote error: {0}")]
    Remote(String),
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] tradestack_model::codec::CodecError),
    /// The broker refused or failed.
    #[error("broker: {0}")]
    Broker(String),
    /// The state store failed (outbox).
    #[error("store: {0}")]
    Store(#[from] tradestack_store::StoreError),
}

/// Where an acknowledged message landed (Kafka gives a partition and offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Partition, if the transport partitions.
    pub partition: i32,
    /// Offset within the partition, if the transport has offsets.
    pub offset: i64,
}

/// Makes unique, sortable event ids: 64 bits of instance id, 64 bits of counter.
/// In simulation the instance id comes from the seed, so ids are reproducible.
#[derive(Debug)]
pub struct IdGenerator {
    instance: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl IdGenerator {
    /// A generator for one bus instance.
    pub fn new(instance: u64) -> Self {
        IdGenerator {
            instance,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }
    /// The next id.
    pub fn next(&self) -> EventId {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        EventId((u128::from(self.instance) << 64) | u128::from(n))
    }
}

enum Engine {
    Memory(memory::MemoryBus),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaBus),
}

struct Inner {
    engine: Engine,
    clock: Arc<dyn Clock>,
    ids: IdGenerator,
    requests: request::Requester,
}

/// The message bus: cheap to clone, one per process (or per simulation).
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bus({})", self.engine_name())
    }
}

impl Bus {
    /// An in-process bus. `instance` seeds event ids (use the run seed in simulation).
    pub fn memory(clock: Arc<dyn Clock>, instance: u64) -> Bus {
        Bus::with_engine(Engine::Memory(memory::MemoryBus::new()), clock, instance)
    }

    /// A bus over Kafka.
    #[cfg(feature = "kafka")]
    pub fn kafka(
        settings: kafka::KafkaSettings,
        clock: Arc<dyn Clock>,
        instance: u64,
    ) -> Result<Bus, BusError> {
        Ok(Bus::with_engine(
            Engine::Kafka(kafka::KafkaBus::new(settings)?),
            clock,
            instance,
        ))
    }

    fn with_engine(engine: Engine, clock: Arc<dyn Clock>, instance: u64) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                engine,
                clock,
                ids: IdGenerator::new(instance),
                requests: request::Requester::new(instance),
            }),
        }
    }

    /// `memory` or `kafka`.
    pub fn engine_name(&self) -> &'static str {
        match &self.inner.engine {
            Engine::Memory(_) => "memory",
            #[cfg(feature = "kafka")]
            Engine::Kafka(_) => "kafka",
        }
    }

    /// The clock that stamps messages.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// A new event id.
    pub fn next_id(&self) -> EventId {
        self.inner.ids.next()
    }

    /// The current time on the bus clock.
    pub fn now(&self) -> UnixNanos {
        self.inner.clock.now()
    }

    /// A publishing handle for one topic (resolve once, publish many times).
    pub fn publisher<T: Message>(&self, topic: &Topic<T>) -> Result<Publisher<T>, BusError> {
        let kind = match &self.inner.engine {
            Engine::Memory(m) => PublisherKind::Memory(m.publisher(topic)?),
            #[cfg(feature = "kafka")]
            Engine::Kafka(k) => PublisherKind::Kafka(k.clone(), topic.clone()),
        };
        Ok(Publisher {
            bus: self.clone(),
            kind,
        })
    }

    /// Publishes one message (convenience for [`Bus::publisher`] + [`Publisher::publish`]).
    pub async fn publish<T: Message>(
        &self,
        topic: &Topic<T>,
        key: Option<&str>,
        msg: T,
    ) -> Result<EventId, BusError> {
        self.publisher(topic)?.publish(key, msg).await
    }

    /// Publishes an already-encoded message (the outbox relay uses this).
    pub async fn publish_raw(&self, env: RawEnvelope) -> Result<Ack, BusError> {
        match &self.inner.engine {
            Engine::Memory(m) => m.publish_raw(&env).map(|()| Ack::default()),
            #[cfg(feature = "kafka")]
            Engine::Kafka(k) => k.publish_raw(env).await,
        }
    }

    /// Subscribes to a topic. With a `group`, subscribers of the same group
    /// share the messages (each goes to one of them); without, every
    /// subscriber gets every message published after it subscribed.
    pub async fn subscribe<T: Message>(
        &self,
        topic: &Topic<T>,
        group: Option<&str>,
    ) -> Result<Subscription<T>, BusError> {
        match &self.inner.engine {
            Engine::Memory(m) => Ok(Subscription::Memory(m.subscribe(topic, group)?)),
            #[cfg(feature = "kafka")]
            Engine::Kafka(k) => Ok(Subscription::Kafka(Box::new(
                k.subscribe(topic, group).await?,
            ))),
        }
    }

    /// Stops all subscriptions and background work of this bus.
    pub fn close(&self) {
        match &self.inner.engine {
            Engine::Memory(m) => m.close(),
            #[cfg(feature = "kafka")]
            Engine::Kafka(k) => k.close(),
        }
    }

    /// Checks that the transport is usable (the broker answers), for readiness probes.
    pub async fn ping(&self) -> Result<(), BusError> {
        match &self.inner.engine {
            Engine::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            Engine::Kafka(k) => k.ping().await,
        }
    }

    pub(crate) fn requester(&self) -> &request::Requester {
        &self.inner.requests
    }
}

enum PublisherKind<T> {
    Memory(memory::Publisher<T>),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaBus, Topic<T>),
}

/// A handle that publishes to one topic.
pub struct Publisher<T> {
    bus: Bus,
    kind: PublisherKind<T>,
}

impl<T: Message> Publisher<T> {
    /// Publishes `msg` with an optional partition key (use the instrument id)
    /// and the current trace context. In-process it waits only when a
    /// subscriber's queue is full; on Kafka it waits for the broker's ack.
    pub async fn publish(&self, key: Option<&str>, msg: T) -> Result<EventId, BusError> {
        let mut headers = Headers::new();
        tradestack_telemetry::propagation::inject_headers(&mut headers);
        self.publish_with(key, headers, msg).await
    }

    /// Like [`Publisher::publish`], with explicit headers.
    pub async fn publish_with(
        &self,
        key: Option<&str>,
        headers: Headers,
        msg: T,
    ) -> Result<EventId, BusError> {
        let id = self.bus.next_id();
        let ts = self.bus.now();
        match &self.kind {
            PublisherKind::Memory(p) => {
                p.publish_async(Delivery::new(id, key, headers, ts, msg))
                    .await?;
            }
            #[cfg(feature = "kafka")]
            PublisherKind::Kafka(k, topic) => {
                let payload = tradestack_model::codec::encode_message(&msg)?;
                k.publish_raw(RawEnvelope {
                    id,
                    topic: topic.name().to_string(),
                    key: key.map(|k| k.as_bytes().to_vec()),
                    headers,
                    payload,
                    created_at: ts,
                })
                .await?;
            }
        }
        Ok(id)
    }

    /// Publishes without waiting: in-process it fails with
    /// [`BusError::Full`] instead of blocking (the allocation-free hot
    /// path); on Kafka it queues to the producer without waiting for the
    /// ack, in order, and fails if the topic is not ready
    /// ([`Publisher::ready`]) or the producer's queue is full.
    pub fn try_publish(&self, key: Option<&str>, msg: T) -> Result<EventId, BusError> {
        let id = self.bus.next_id();
        match &self.kind {
            PublisherKind::Memory(p) => {
                p.try_publish(Delivery::new(id, key, Headers::new(), self.bus.now(), msg))?;
            }
            #[cfg(feature = "kafka")]
            PublisherKind::Kafka(k, topic) => {
                let mut headers = Headers::new();
                tradestack_telemetry::propagation::inject_headers(&mut headers);
                k.try_publish_raw(RawEnvelope {
                    id,
                    topic: topic.name().to_string(),
                    key: key.map(|k| k.as_bytes().to_vec()),
                    headers,
                    payload: tradestack_model::codec::encode_message(&msg)?,
                    created_at: self.bus.now(),
                })?;
            }
        }
        Ok(id)
    }

    /// Waits until [`Publisher::try_publish`] can succeed: on Kafka, the
    /// topic exists; in-process, at once.
    pub async fn ready(&self) -> Result<(), BusError> {
        match &self.kind {
            PublisherKind::Memory(_) => Ok(()),
            #[cfg(feature = "kafka")]
            PublisherKind::Kafka(k, topic) => k.prepare(topic.name()).await,
        }
    }
}

/// A stream of deliveries from one topic.
pub enum Subscription<T> {
    /// In-process queue.
    Memory(memory::Receiver<T>),
    /// Kafka consumer.
    #[cfg(feature = "kafka")]
    Kafka(Box<kafka::KafkaSubscription<T>>),
}

impl<T: Message> Subscription<T> {
    /// The next delivery; `None` once the bus is closed. On Kafka, asking for
    /// the next message acknowledges the previous one (at-least-once: a crash
    /// while handling a message redelivers it).
    pub async fn recv(&mut self) -> Option<Delivery<T>> {
        match self {
            Subscription::Memory(r) => r.recv().await,
            #[cfg(feature = "kafka")]
            Subscription::Kafka(k) => k.recv().await,
        }
    }
}
