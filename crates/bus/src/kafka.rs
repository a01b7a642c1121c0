//! The Kafka adapter (librdkafka through `rdkafka`).
//!
//! - Topics are `<topic_prefix><name>`, created on first use with the
//!   configured partition count.
//! - Messages are keyed by instrument; librdkafka's `murmur2_random`
//!   partitioner (the Java client's) keeps one key in one partition, so
//!   per-instrument order holds.
//! - The producer waits for `acks=all` and keeps one request in flight per
//!   connection, so retries cannot reorder a partition.
//! - Consumers use consumer groups, store an offset only after the message
//!   was handed out and the next one requested (at-least-once), and commit
//!   stored offsets in the background.
//! - A message whose `ts-epoch` header is newer than any seen before on its
//!   partition means the broker lost its log and the outbox relay re-sent
//!   what it retained; the consumer then re-reads the partition from the
//!   start, and deduplication by event id drops what it had already seen.

use crate::envelope::{Delivery, Headers, RawEnvelope, headers};
use crate::{Ack, BusError, Message, Topic};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tradestack_model::{EventId, UnixNanos};

/// Connection and topic settings.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Prepended to every topic name.
    pub topic_prefix: String,
    /// Prepended to every consumer group name.
    pub group_prefix: String,
    /// Partitions for topics this adapter creates.
    pub partitions: i32,
    /// Replication factor for topics this adapter creates.
    pub replication: i32,
    /// How long the producer retries one message before failing it.
    pub message_timeout: Duration,
    /// How consumers of a named group get their partitions.
    pub membership: Membership,
    /// Extra librdkafka properties (security, tuning).
    pub properties: BTreeMap<String, String>,
}

/// How a consumer of a named group gets its partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Membership {
    /// The broker's group coordinator balances partitions across members
    /// (JoinGroup/SyncGroup), so several processes share a topic.
    #[default]
    Broker,
    /// Each consumer takes every partition itself and commits offsets under
    /// the group id: no rebalances, for one consumer per group, and for
    /// brokers whose group coordinator cannot recover from a member leaving.
    Static,
}

impl KafkaSettings {
    /// Settings for the given brokers with defaults elsewhere.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topic_prefix: "tradestack.".into(),
            group_prefix: "tradestack".into(),
            partitions: 3,
            replication: 1,
            message_timeout: Duration::from_secs(300),
            membership: Membership::Broker,
            properties: BTreeMap::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", "tradestack");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

struct Inner {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    ensured: Mutex<HashSet<String>>,
    closed: AtomicBool,
    anonymous: AtomicU64,
}

/// The Kafka transport; cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

fn broker_err(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

impl KafkaBus {
    /// Connects lazily: librdkafka reconnects on its own, so this only fails
    /// on invalid settings.
    pub fn new(settings: KafkaSettings) -> Result<Self, BusError> {
        let mut pc = settings.client_config();
        pc.set("acks", "all")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            .set("retry.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .set(
                "message.timeout.ms",
                settings.message_timeout.as_millis().to_string(),
            );
        let producer: FutureProducer = pc.create().map_err(broker_err)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.client_config().create().map_err(broker_err)?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                settings,
                producer,
                admin,
                ensured: Mutex::new(HashSet::new()),
                closed: AtomicBool::new(false),
                anonymous: AtomicU64::new(0),
            }),
        })
    }

    fn full_topic(&self, name: &str) -> String {
        format!("{}{}", self.inner.settings.topic_prefix, name)
    }

    async fn ensure_topic(&self, full: &str) -> Result<(), BusError> {
        if self.inner.ensured.lock().contains(full) {
            return Ok(());
        }
        let s = &self.inner.settings;
        let topic = NewTopic::new(full, s.partitions, TopicReplication::Fixed(s.replication));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match self.inner.admin.create_topics([&topic], &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((t, code)) => {
                            return Err(BusError::Broker(format!("create topic {t}: {code}")));
                        }
                    }
                }
            }
            Err(e) => return Err(broker_err(format!("create topic {full}: {e}"))),
        }
        self.inner.ensured.lock().insert(full.to_string());
        Ok(())
    }

    /// Produces one encoded message and waits for the broker's ack.
    pub async fn publish_raw(&self, env: RawEnvelope) -> Result<Ack, BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let full = self.full_topic(&env.topic);
        self.ensure_topic(&full).await?;
        let id = env.id.to_string();
        let ts = env.created_at.as_i64().to_string();
        let mut hs = OwnedHeaders::new_with_capacity(env.headers.len() + 2)
            .insert(Header {
                key: headers::ID,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: headers::TS,
                value: Some(ts.as_str()),
            });
        for (k, v) in &env.headers {
            hs = hs.insert(Header {
                key: k.as_str(),
                value: Some(v.as_str()),
            });
        }
        let mut record = FutureRecord::to(&full)
            .payload(&env.payload)
            .headers(hs)
            .timestamp(env.created_at.as_millis());
        if let Some(k) = &env.key {
            record = record.key(k);
        }
        match self
            .inner
            .producer
            .send(record, self.inner.settings.message_timeout)
            .await
        {
            Ok(d) => Ok(Ack {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) => Err(broker_err(e)),
        }
    }

    /// Subscribes through a consumer group. Without a group name each
    /// subscription gets its own group and starts at the end of the log
    /// (broadcast); named groups start at the beginning of the log.
    pub async fn subscribe<T: Message>(
        &self,
        topic: &Topic<T>,
        group: Option<&str>,
    ) -> Result<KafkaSubscription<T>, BusError> {
        let full = self.full_topic(topic.name());
        self.ensure_topic(&full).await?;
        let s = &self.inner.settings;
        let membership = if group.is_some() {
            s.membership
        } else {
            Membership::Broker
        };
        let (group_id, reset) = match group {
            Some(g) => (format!("{}.{g}", s.group_prefix), "earliest"),
            None => (
                format!(
                    "{}.anon.{}.{}",
                    s.group_prefix,
                    std::process::id(),
                    self.inner.anonymous.fetch_add(1, Ordering::Relaxed)
                ),
                "latest",
            ),
        };
        let mut config = s.client_config();
        config
            .set("group.id", &group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            .set("auto.offset.reset", reset)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "300000")
            .set("reconnect.backoff.max.ms", "1000");
        let consumer = open_consumer(&config, &full, membership)?;
        let mut sub = KafkaSubscription {
            consumer,
            config,
            membership,
            reset_to_start: reset == "earliest",
            topic: full,
            last: None,
            epochs: HashMap::new(),
            _t: PhantomData,
        };
        if membership == Membership::Static {
            sub.assign_all().await?;
        }
        Ok(sub)
    }

    /// Asks the cluster for metadata: fails when no broker answers.
    pub async fn ping(&self) -> Result<(), BusError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
                .map_err(broker_err)
        })
        .await
        .map_err(broker_err)?
    }

    /// Refuses further publishes.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// Notes when every broker connection is down, so a consumer can tell an
/// outage from an idle topic.
#[derive(Default)]
struct OutageContext {
    down: AtomicBool,
}

impl ClientContext for OutageContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.down.store(true, Ordering::Release);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for OutageContext {}

type Stream = StreamConsumer<OutageContext>;

fn open_consumer(
    config: &ClientConfig,
    topic: &str,
    membership: Membership,
) -> Result<Arc<Stream>, BusError> {
    let consumer: Stream = config
        .create_with_context(OutageContext::default())
        .map_err(broker_err)?;
    if membership == Membership::Broker {
        consumer.subscribe(&[topic]).map_err(broker_err)?;
    }
    Ok(Arc::new(consumer))
}

/// Receives from one Kafka topic through a consumer group.
pub struct KafkaSubscription<T> {
    consumer: Arc<Stream>,
    config: ClientConfig,
    membership: Membership,
    reset_to_start: bool,
    topic: String,
    last: Option<(i32, i64)>,
    epochs: HashMap<i32, u64>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Message> KafkaSubscription<T> {
    /// The next delivery. Requesting it marks the previous one processed.
    pub async fn recv(&mut self) -> Option<Delivery<T>> {
        loop {
            if let Some((p, o)) = self.last.take()
                && let Err(e) = self.consumer.store_offset(&self.topic, p, o)
            {
                tracing::debug!(error = %e, partition = p, offset = o, "offset not stored");
            }
            let consumer = self.consumer.clone();
            let m = match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    // Broker outages surface here; librdkafka reconnects by itself.
                    tracing::debug!(error = %e, topic = %self.topic, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => {
                    self.recover_after_outage().await;
                    continue;
                }
            };
            consumer.context().down.store(false, Ordering::Release);
            let (partition, offset) = (m.partition(), m.offset());
            let mut hs: Headers = Vec::new();
            let (mut id, mut ts, mut epoch) = (None, None, 0u64);
            if let Some(h) = m.headers() {
                for hd in h.iter() {
                    let v = hd
                        .value
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    match hd.key {
                        headers::ID => id = u128::from_str_radix(&v, 16).ok().map(EventId),
                        headers::TS => ts = v.parse::<i64>().ok().map(UnixNanos),
                        headers::EPOCH => epoch = v.parse().unwrap_or(0),
                        _ => hs.push((hd.key.to_string(), v)),
                    }
                }
            }
            match self.epochs.get(&partition).copied() {
                Some(seen) if epoch > seen => {
                    tracing::warn!(topic = %self.topic, partition, epoch, "broker log was replaced; re-reading partition from the start");
                    self.epochs.insert(partition, epoch);
                    if let Err(e) = self.consumer.seek(
                        &self.topic,
                        partition,
                        rdkafka::Offset::Beginning,
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(error = %e, "seek failed; continuing from here");
                    } else {
                        continue;
                    }
                }
                Some(_) => {}
                None => {
                    self.epochs.insert(partition, epoch);
                }
            }
            self.last = Some((partition, offset + 1));
            let Some(id) = id else {
                tracing::warn!(topic = %self.topic, partition, offset, "message without ts-id header skipped");
                continue;
            };
            let msg = match tradestack_model::codec::decode::<T>(m.payload().unwrap_or_default()) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::error!(error = %e, topic = %self.topic, partition, offset, "undecodable message skipped");
                    continue;
                }
            };
            let key = m
                .key()
                .map(|k| Arc::from(String::from_utf8_lossy(k).as_ref()));
            return Some(Delivery {
                id,
                key,
                headers: hs,
                ts: ts.unwrap_or_default(),
                msg,
            });
        }
    }
}

impl<T> KafkaSubscription<T> {
    /// After an outage with no traffic since, a consumer can stay attached to a
    /// group generation the restarted broker no longer knows (seen with tansu),
    /// so it would wait forever. Once a broker answers again, open a fresh
    /// consumer in the same group: it resumes from the committed offsets, or
    /// from the start of a log the broker rebuilt.
    async fn recover_after_outage(&mut self) {
        if !self.consumer.context().down.load(Ordering::Acquire) {
            return;
        }
        let probe = self.consumer.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            probe.fetch_metadata(None, Duration::from_secs(1)).is_ok()
        })
        .await
        .unwrap_or(false);
        if !reachable {
            return;
        }
        if self.membership == Membership::Static {
            match self.assign_all().await {
                Ok(()) => {
                    tracing::warn!(topic = %self.topic, "broker is back after an outage; partitions re-assigned");
                    self.consumer.context().down.store(false, Ordering::Release);
                    self.epochs.clear();
                }
                Err(e) => tracing::warn!(error = %e, "cannot re-assign partitions; retrying"),
            }
            return;
        }
        match open_consumer(&self.config, &self.topic, self.membership) {
            Ok(fresh) => {
                tracing::warn!(topic = %self.topic, "broker is back after an outage; rejoining the consumer group");
                if let Some((p, o)) = self.last.take() {
                    let _ = self.consumer.store_offset(&self.topic, p, o);
                }
                self.consumer = fresh;
                self.epochs.clear();
            }
            Err(e) => tracing::warn!(error = %e, "cannot reopen consumer; retrying"),
        }
    }
}

impl<T> KafkaSubscription<T> {
    /// Static membership: assigns every partition of the topic, each from the
    /// group's committed offset, else from the start or end per the reset policy.
    async fn assign_all(&mut self) -> Result<(), BusError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let reset = if self.reset_to_start {
            rdkafka::Offset::Beginning
        } else {
            rdkafka::Offset::End
        };
        tokio::task::spawn_blocking(move || {
            let md = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map_err(broker_err)?;
            let partitions: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(BusError::Broker(format!(
                    "topic {topic} has no partitions yet"
                )));
            }
            let mut wanted = rdkafka::TopicPartitionList::new();
            for p in &partitions {
                wanted.add_partition(&topic, *p);
            }
            let committed = consumer
                .committed_offsets(wanted, Duration::from_secs(5))
                .map_err(broker_err)?;
            let mut assignment = rdkafka::TopicPartitionList::new();
            for e in committed.elements() {
                let offset = match e.offset() {
                    rdkafka::Offset::Offset(o) if o >= 0 => rdkafka::Offset::Offset(o),
                    _ => reset,
                };
                assignment
                    .add_partition_offset(&topic, e.partition(), offset)
                    .map_err(broker_err)?;
            }
            consumer.assign(&assignment).map_err(broker_err)
        })
        .await
        .map_err(broker_err)?
    }
}

impl<T> Drop for KafkaSubscription<T> {
    fn drop(&mut self) {
        if let Some((p, o)) = self.last.take() {
            let _ = self.consumer.store_offset(&self.topic, p, o);
        }
        let _ = self
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    }
}
