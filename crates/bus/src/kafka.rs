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
//! - When every broker connection goes down, the broker may come back empty
//!   (a single broker with volatile storage). Producers then create their
//!   topics again before the next publish, and consumers stop fetching until
//!   the broker answers, create the topic if it is missing, and take their
//!   partitions back: from where they were, or from the start of a log that
//!   is now shorter than their position. Fetching a topic the broker no
//!   longer knows is avoided on purpose: librdkafka 2.12 crashes (SIGSEGV in
//!   `rd_kafka_metadata_update_op`) on the leader hint such a fetch returns.

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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    producer: FutureProducer<OutageContext>,
    /// Set by the producer when every broker connection went down.
    producer_down: Arc<AtomicBool>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist since the producer last lost every broker.
    ensured: Mutex<HashSet<String>>,
    /// One topic creation at a time, so a burst of publishes after an outage
    /// sends one CreateTopics request rather than one per message.
    creating: tokio::sync::Mutex<()>,
    /// Failed creations so far: callers queued behind a failure fail fast
    /// instead of each waiting out the admin timeout while the broker is down.
    create_failures: AtomicU64,
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
        // Topics are created by `ensure_topic` with the configured partition
        // count. A restarted broker would otherwise auto-create them on the
        // producer's next metadata request with its own default count, which
        // moves keys to other partitions.
        pc.set("allow.auto.create.topics", "false")
            .set("acks", "all")
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
        let producer_down = Arc::new(AtomicBool::new(false));
        let producer: FutureProducer<OutageContext> = pc
            .create_with_context(OutageContext {
                down: producer_down.clone(),
            })
            .map_err(broker_err)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.client_config().create().map_err(broker_err)?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                settings,
                producer,
                producer_down,
                admin,
                ensured: Mutex::new(HashSet::new()),
                creating: tokio::sync::Mutex::new(()),
                create_failures: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                anonymous: AtomicU64::new(0),
            }),
        })
    }

    fn full_topic(&self, name: &str) -> String {
        format!("{}{}", self.inner.settings.topic_prefix, name)
    }

    /// Makes sure `full` exists, creating it with the configured partition
    /// count. `recheck` asks the broker even if the topic was ensured before
    /// (a consumer after an outage: the broker may have come back empty).
    async fn ensure_topic(&self, full: &str, recheck: bool) -> Result<(), BusError> {
        if !recheck && self.inner.ensured.lock().contains(full) {
            return Ok(());
        }
        let failures = self.inner.create_failures.load(Ordering::Acquire);
        let _turn = self.inner.creating.lock().await;
        if !recheck && self.inner.ensured.lock().contains(full) {
            return Ok(());
        }
        if self.inner.create_failures.load(Ordering::Acquire) != failures {
            return Err(BusError::Broker(format!(
                "create topic {full}: the broker did not answer; retry later"
            )));
        }
        match self.create_topic(full).await {
            Ok(()) => {
                self.inner.ensured.lock().insert(full.to_string());
                Ok(())
            }
            Err(e) => {
                self.inner.create_failures.fetch_add(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    async fn create_topic(&self, full: &str) -> Result<(), BusError> {
        let s = &self.inner.settings;
        let topic = NewTopic::new(full, s.partitions, TopicReplication::Fixed(s.replication));
        // Bounded, so a publish during an outage fails (the outbox keeps the
        // row) rather than waiting for librdkafka's default of a minute.
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(5)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = self
            .inner
            .admin
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| broker_err(format!("create topic {full}: {e}")))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(BusError::Broker(format!("create topic {t}: {code}")));
                }
            }
        }
        Ok(())
    }

    /// Produces one encoded message and waits for the broker's ack.
    pub async fn publish_raw(&self, env: RawEnvelope) -> Result<Ack, BusError> {
        let full = self.before_publish(&env)?;
        self.ensure_topic(&full, false).await?;
        let (id, ts) = (env.id.to_string(), env.created_at.as_i64().to_string());
        let record = record(&full, &env, &id, &ts);
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

    /// Hands one encoded message to the producer's queue without waiting
    /// for the broker's ack; a failed delivery is logged. Queued messages
    /// keep their order, as awaited ones do. The topic must exist
    /// ([`KafkaBus::prepare`]): a missing one is created in the background
    /// and this message refused, as is one the queue has no room for.
    pub fn try_publish_raw(&self, env: RawEnvelope) -> Result<(), BusError> {
        let full = self.before_publish(&env)?;
        if !self.inner.ensured.lock().contains(&full) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (bus, topic) = (self.clone(), full.clone());
                rt.spawn(async move { bus.ensure_topic(&topic, false).await });
            }
            return Err(BusError::Broker(format!("topic {full} is not created yet")));
        }
        let (id, ts) = (env.id.to_string(), env.created_at.as_i64().to_string());
        match self
            .inner
            .producer
            .send_result(record(&full, &env, &id, &ts))
        {
            Ok(delivery) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Ok(Err((error, _))) = delivery.await {
                            tracing::warn!(%error, topic = %full, "queued message not delivered");
                        }
                    });
                }
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(BusError::Full(full))
            }
            Err((e, _)) => Err(broker_err(e)),
        }
    }

    /// Creates `topic` now if needed, so [`KafkaBus::try_publish_raw`] can queue to it.
    pub async fn prepare(&self, topic: &str) -> Result<(), BusError> {
        self.ensure_topic(&self.full_topic(topic), false).await
    }

    /// Refuses a closed bus; after a total outage, forgets which topics
    /// exist. Returns the full topic name.
    fn before_publish(&self, env: &RawEnvelope) -> Result<String, BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        if self.inner.producer_down.swap(false, Ordering::AcqRel) {
            // Every broker was unreachable: it may have restarted without its
            // topics. A broker like tansu acknowledges produce requests for a
            // topic it does not know yet without listing the topic, so a
            // consumer would never see those messages; create topics again.
            self.inner.ensured.lock().clear();
        }
        Ok(self.full_topic(&env.topic))
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
        self.ensure_topic(&full, false).await?;
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
            bus: self.clone(),
            consumer,
            config,
            membership,
            reset_to_start: reset == "earliest",
            topic: full,
            suspended: false,
            last: None,
            next: HashMap::new(),
            epochs: HashMap::new(),
            rewind: BTreeSet::new(),
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

/// The Kafka record of `env` on `full`, with its id and timestamp headers.
fn record<'a>(
    full: &'a str,
    env: &'a RawEnvelope,
    id: &'a str,
    ts: &'a str,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut hs = OwnedHeaders::new_with_capacity(env.headers.len() + 2)
        .insert(Header {
            key: headers::ID,
            value: Some(id),
        })
        .insert(Header {
            key: headers::TS,
            value: Some(ts),
        });
    for (k, v) in &env.headers {
        hs = hs.insert(Header {
            key: k.as_str(),
            value: Some(v.as_str()),
        });
    }
    let mut record = FutureRecord::to(full)
        .payload(env.payload.as_slice())
        .headers(hs)
        .timestamp(env.created_at.as_millis());
    if let Some(k) = &env.key {
        record = record.key(k.as_slice());
    }
    record
}

/// Notes when every broker connection is down: a producer then creates its
/// topics again, a consumer stops fetching until the broker answers.
#[derive(Default)]
struct OutageContext {
    /// Shared, because a producer's context is out of reach once wrapped.
    down: Arc<AtomicBool>,
}

impl ClientContext for OutageContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_outage(&error) {
            self.down.store(true, Ordering::Release);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for OutageContext {}

fn is_outage(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown)
    )
}

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
    /// The bus, to create the topic again after an outage.
    bus: KafkaBus,
    consumer: Arc<Stream>,
    config: ClientConfig,
    membership: Membership,
    reset_to_start: bool,
    topic: String,
    /// Fetching is stopped because every broker connection went down.
    suspended: bool,
    /// The last delivery; its offset is stored when the next one is asked for.
    last: Option<(i32, i64)>,
    /// Per partition, where to go on after an outage: just past the last
    /// delivery, or the start of a log that was replaced.
    next: HashMap<i32, rdkafka::Offset>,
    /// The newest `ts-epoch` seen per partition.
    epochs: HashMap<i32, u64>,
    /// Partitions to re-read from the start that were not sought yet; their
    /// messages are dropped until then, as they will come again.
    rewind: BTreeSet<i32>,
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
            if self.suspended && !self.resume().await {
                // Keep serving the consumer's queue (errors, callbacks) while
                // the broker is away; nothing is assigned, so no message is lost.
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), self.consumer.recv()).await;
                continue;
            }
            if !self.rewind.is_empty() {
                self.seek_rewinds().await;
            }
            let consumer = self.consumer.clone();
            let m = match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    // Broker outages surface here; librdkafka reconnects by itself.
                    tracing::debug!(error = %e, topic = %self.topic, "consumer error");
                    if is_outage(&e) {
                        self.suspend();
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
                Err(_) => {
                    if consumer.context().down.load(Ordering::Acquire) {
                        self.suspend();
                    }
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
                    self.rewind.insert(partition);
                    self.next.insert(partition, rdkafka::Offset::Beginning);
                }
                Some(_) => {}
                None => {
                    self.epochs.insert(partition, epoch);
                }
            }
            if self.rewind.contains(&partition) {
                continue;
            }
            self.next
                .insert(partition, rdkafka::Offset::Offset(offset + 1));
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
    /// Stops fetching while every broker connection is down. The broker may
    /// come back without the topic, or with it re-created under a new topic
    /// id; fetching with the old one then gets a reply that crashes
    /// librdkafka 2.12, and a position past the end of a shorter log is not
    /// reported by every broker. `resume` takes the partitions back safely.
    fn suspend(&mut self) {
        if self.suspended {
            return;
        }
        self.suspended = true;
        match self.membership {
            Membership::Static => {
                if let Err(e) = self.consumer.unassign() {
                    tracing::warn!(error = %e, topic = %self.topic, "cannot unassign partitions");
                }
            }
            Membership::Broker => self.consumer.unsubscribe(),
        }
        tracing::warn!(topic = %self.topic, "all brokers are down; fetching stopped until one answers");
    }

    /// Once a broker answers again: creates the topic if the broker lost it,
    /// then takes the partitions back (static membership) or joins the group
    /// with a fresh consumer, as a restarted broker may not know the old
    /// member. True when fetching again.
    async fn resume(&mut self) -> bool {
        let probe = self.consumer.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            probe.fetch_metadata(None, Duration::from_secs(1)).is_ok()
        })
        .await
        .unwrap_or(false);
        if !reachable {
            return false;
        }
        if let Err(e) = self.bus.ensure_topic(&self.topic, true).await {
            tracing::warn!(error = %e, "cannot ensure the topic after an outage; retrying");
            return false;
        }
        let resumed = match self.membership {
            Membership::Static => self.assign_all().await,
            Membership::Broker => self.rejoin(),
        };
        match resumed {
            Ok(()) => {
                tracing::warn!(topic = %self.topic, "broker is back after an outage; fetching again");
                self.suspended = false;
                self.consumer.context().down.store(false, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %self.topic, "cannot take partitions back; retrying");
                false
            }
        }
    }

    /// Broker membership: replaces the consumer with one that joins the group
    /// anew and resumes from the committed offsets.
    fn rejoin(&mut self) -> Result<(), BusError> {
        let fresh = open_consumer(&self.config, &self.topic, self.membership)?;
        let old = std::mem::replace(&mut self.consumer, fresh);
        // The old member's group may be gone with the broker: do not wait for
        // its final commit.
        drop(close_consumer(old, false));
        Ok(())
    }

    /// Seeks the partitions in `rewind` to their start; those that cannot be
    /// sought yet (not assigned) stay pending.
    async fn seek_rewinds(&mut self) {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let pending: Vec<i32> = self.rewind.iter().copied().collect();
        let sought = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .filter(|&p| {
                    match consumer.seek(&topic, p, rdkafka::Offset::Beginning, Duration::from_secs(5)) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(error = %e, partition = p, "seek to the start failed; retrying");
                            false
                        }
                    }
                })
                .collect::<Vec<i32>>()
        })
        .await
        .unwrap_or_default();
        for p in sought {
            self.rewind.remove(&p);
        }
    }

    /// Static membership: assigns every partition of the topic: where this
    /// subscription left off, else from the group's committed offset, else
    /// from the start or end per the reset policy. A position past the end of
    /// the log means the broker lost the log (some brokers answer such a
    /// fetch with nothing instead of an out-of-range error): start over.
    async fn assign_all(&mut self) -> Result<(), BusError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let reset = if self.reset_to_start {
            rdkafka::Offset::Beginning
        } else {
            rdkafka::Offset::End
        };
        let mut known = self.next.clone();
        for p in &self.rewind {
            known.insert(*p, rdkafka::Offset::Beginning);
        }
        tokio::task::spawn_blocking(move || {
            // Also refreshes the consumer's metadata, so it fetches with the
            // topic id the broker has now.
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
            let committed = committed_offsets(&consumer, &topic, &partitions, &known);
            let mut assignment = rdkafka::TopicPartitionList::new();
            for p in partitions {
                let start = match known
                    .get(&p)
                    .copied()
                    .or_else(|| committed.get(&p).copied())
                {
                    Some(rdkafka::Offset::Offset(o)) => {
                        let (_, high) = consumer
                            .fetch_watermarks(&topic, p, Duration::from_secs(5))
                            .map_err(broker_err)?;
                        if o > high {
                            tracing::warn!(
                                topic,
                                partition = p,
                                position = o,
                                end = high,
                                "position past the end of the log; re-reading from the start"
                            );
                            rdkafka::Offset::Beginning
                        } else {
                            rdkafka::Offset::Offset(o)
                        }
                    }
                    Some(other) => other,
                    None => reset,
                };
                assignment
                    .add_partition_offset(&topic, p, start)
                    .map_err(broker_err)?;
            }
            consumer.assign(&assignment).map_err(broker_err)
        })
        .await
        .map_err(broker_err)??;
        // Every partition to rewind was just assigned from its start.
        self.rewind.clear();
        Ok(())
    }
}

/// The group's committed offsets for the partitions without a `known`
/// position. A group coordinator that does not answer (tansu's can hang
/// after a restart) only costs redeliveries: the reset policy applies.
fn committed_offsets(
    consumer: &Stream,
    topic: &str,
    partitions: &[i32],
    known: &HashMap<i32, rdkafka::Offset>,
) -> HashMap<i32, rdkafka::Offset> {
    let mut wanted = rdkafka::TopicPartitionList::new();
    for p in partitions.iter().filter(|p| !known.contains_key(p)) {
        wanted.add_partition(topic, *p);
    }
    if wanted.count() == 0 {
        return HashMap::new();
    }
    match consumer.committed_offsets(wanted, Duration::from_secs(5)) {
        Ok(committed) => committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) if o >= 0 => {
                    Some((e.partition(), rdkafka::Offset::Offset(o)))
                }
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, topic, "committed offsets unavailable; using the reset policy");
            HashMap::new()
        }
    }
}

impl<T> Drop for KafkaSubscription<T> {
    fn drop(&mut self) {
        if let Some((p, o)) = self.last.take() {
            let _ = self.consumer.store_offset(&self.topic, p, o);
        }
        // During an outage a commit would only wait for the broker.
        let committed = close_consumer(self.consumer.clone(), !self.suspended);
        // Wait for the final commit, as a subscription dropped and opened
        // again in the same group should resume after the last delivery; but
        // not for long, as a broker that is gone never answers.
        let _ = committed.recv_timeout(Duration::from_secs(5));
    }
}

/// Closes a consumer on a thread of its own once every other handle is gone,
/// after a synchronous commit of the stored offsets if `commit`. Both wait for
/// the broker, without a bound if it is gone (librdkafka retries the final
/// commit until a coordinator answers), so they must not hold up an async
/// worker or a runtime shutdown. The receiver fires once the commit is done.
fn close_consumer(consumer: Arc<Stream>, commit: bool) -> std::sync::mpsc::Receiver<()> {
    let (done, committed) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            if commit {
                let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
            }
            let _ = done.send(());
            // Blocking helpers (metadata, seek) may hold a handle a moment longer.
            while Arc::strong_count(&consumer) > 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(consumer);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread to close the consumer on; closing it here");
    }
    committed
}
