//! The in-process bus: typed, bounded, broadcast queues.
//!
//! Each topic keeps a list of queues, one per plain subscriber and one per
//! consumer group. Publishing clones the message into each queue (moves it
//! when there is one). A queue is a mutex-guarded `VecDeque` that the
//! consumer drains a whole batch at a time by swapping buffers, so the lock
//! is taken once per batch on the consumer side and the publisher pays one
//! uncontended lock per message. Wake-ups happen only when a queue goes from
//! empty to non-empty. Buffers are reused, so steady state allocates nothing.

use crate::envelope::{Delivery, RawEnvelope};
use crate::{BusError, Message, Topic};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Default capacity of one subscriber's queue.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

struct Queue<T> {
    items: Mutex<VecDeque<Delivery<T>>>,
    capacity: usize,
    /// Wakes the consumer when the queue becomes non-empty.
    ready: Notify,
    /// Wakes publishers waiting for space.
    space: Notify,
    closed: AtomicBool,
}

impl<T> Queue<T> {
    fn new(capacity: usize) -> Self {
        Queue {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            ready: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Pushes unless full; gives the item back when full.
    fn push(&self, d: Delivery<T>) -> Result<(), Delivery<T>> {
        let mut q = self.items.lock();
        if q.len() >= self.capacity {
            return Err(d);
        }
        let was_empty = q.is_empty();
        q.push_back(d);
        drop(q);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
        self.space.notify_waiters();
    }
}

struct TopicState<T> {
    name: Arc<str>,
    queues: ArcSwap<Vec<Arc<Queue<T>>>>,
    groups: Mutex<HashMap<String, Arc<Queue<T>>>>,
    capacity: usize,
}

impl<T: Message> TopicState<T> {
    fn publish(&self, d: Delivery<T>) -> Result<(), BusError> {
        let queues = self.queues.load();
        match queues.len() {
            0 => Ok(()),
            1 => queues[0]
                .push(d)
                .map_err(|_| BusError::Full(self.name.to_string())),
            _ => {
                // All-or-nothing would need two passes under every lock; instead
                // a full queue fails the publish after the others got theirs,
                // and the error says so. Callers that must not drop use publish_async.
                let mut full = false;
                for q in queues.iter() {
                    full |= q.push(d.clone()).is_err();
                }
                if full {
                    Err(BusError::Full(self.name.to_string()))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Type-erased view of a topic, for raw (encoded) publishing and closing.
trait ErasedTopic: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn publish_raw(&self, env: &RawEnvelope) -> Result<(), BusError>;
    fn close(&self);
}

impl<T: Message> ErasedTopic for TopicState<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn publish_raw(&self, env: &RawEnvelope) -> Result<(), BusError> {
        let d = crate::envelope::decode::<T>(env)?;
        self.publish(d)
    }
    fn close(&self) {
        for q in self.queues.load().iter() {
            q.close();
        }
    }
}

/// The in-process transport.
pub struct MemoryBus {
    topics: RwLock<HashMap<Arc<str>, Arc<dyn ErasedTopic>>>,
    capacity: usize,
    closed: AtomicBool,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus whose subscriber queues hold [`DEFAULT_CAPACITY`] messages.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A bus with a given per-subscriber queue capacity.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryBus {
            topics: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
        }
    }

    fn topic<T: Message>(&self, topic: &Topic<T>) -> Result<Arc<TopicState<T>>, BusError> {
        let name: Arc<str> = Arc::from(topic.name());
        let erased = {
            let read = self.topics.read();
            read.get(&name).cloned()
        };
        let erased = match erased {
            Some(e) => e,
            None => {
                let mut write = self.topics.write();
                write
                    .entry(name.clone())
                    .or_insert_with(|| {
                        Arc::new(TopicState::<T> {
                            name: name.clone(),
                            queues: ArcSwap::from_pointee(Vec::new()),
                            groups: Mutex::new(HashMap::new()),
                            capacity: self.capacity,
                        })
                    })
                    .clone()
            }
        };
        downcast::<T>(erased).ok_or_else(|| BusError::TypeMismatch(topic.name().to_string()))
    }

    /// A publishing handle bound to one topic.
    pub fn publisher<T: Message>(&self, topic: &Topic<T>) -> Result<Publisher<T>, BusError> {
        Ok(Publisher {
            topic: self.topic(topic)?,
        })
    }

    /// Subscribes; see [`crate::Bus::subscribe`].
    pub fn subscribe<T: Message>(
        &self,
        topic: &Topic<T>,
        group: Option<&str>,
    ) -> Result<Receiver<T>, BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let state = self.topic(topic)?;
        let queue = match group {
            Some(g) => {
                let mut groups = state.groups.lock();
                if let Some(q) = groups.get(g) {
                    q.clone()
                } else {
                    let q = Arc::new(Queue::new(state.capacity));
                    groups.insert(g.to_string(), q.clone());
                    add_queue(&state, q.clone());
                    q
                }
            }
            None => {
                let q = Arc::new(Queue::new(state.capacity));
                add_queue(&state, q.clone());
                q
            }
        };
        Ok(Receiver {
            queue,
            batch: VecDeque::new(),
        })
    }

    /// Publishes an encoded envelope to whatever type the topic carries.
    /// A topic nobody has touched yet has no subscribers, so the message is dropped.
    pub fn publish_raw(&self, env: &RawEnvelope) -> Result<(), BusError> {
        let topic = self.topics.read().get(env.topic.as_str()).cloned();
        match topic {
            Some(t) => t.publish_raw(env),
            None => Ok(()),
        }
    }

    /// Closes every queue: receivers drain what is queued, then end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for t in self.topics.read().values() {
            t.close();
        }
    }
}

/// Swaps the queue's contents into `batch` (empty on entry), reusing both buffers.
fn refill<T>(queue: &Queue<T>, batch: &mut VecDeque<Delivery<T>>) -> bool {
    let mut q = queue.items.lock();
    if q.is_empty() {
        return false;
    }
    std::mem::swap(&mut *q, batch);
    drop(q);
    queue.space.notify_waiters();
    true
}

async fn push_waiting<T>(q: &Queue<T>, mut d: Delivery<T>) -> Result<(), BusError> {
    loop {
        let space = q.space.notified();
        tokio::pin!(space);
        space.as_mut().enable();
        match q.push(d) {
            Ok(()) => return Ok(()),
            Err(back) => {
                if q.closed.load(Ordering::Acquire) {
                    return Err(BusError::Closed);
                }
                d = back;
                space.await;
            }
        }
    }
}

fn add_queue<T: Message>(state: &TopicState<T>, q: Arc<Queue<T>>) {
    state.queues.rcu(|old| {
        let mut v = Vec::clone(old);
        v.push(q.clone());
        v
    });
}

fn downcast<T: Message>(erased: Arc<dyn ErasedTopic>) -> Option<Arc<TopicState<T>>> {
    if erased.as_any().is::<TopicState<T>>() {
        let raw = Arc::into_raw(erased) as *const TopicState<T>;
        // SAFETY: the type check above proves the pointee is a TopicState<T>;
        // the pointer came from Arc::into_raw of that same allocation.
        Some(unsafe { Arc::from_raw(raw) })
    } else {
        None
    }
}

/// Publishes to one in-process topic.
pub struct Publisher<T> {
    topic: Arc<TopicState<T>>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher {
            topic: self.topic.clone(),
        }
    }
}

impl<T: Message> Publisher<T> {
    /// Publishes now or fails with [`BusError::Full`].
    pub fn try_publish(&self, d: Delivery<T>) -> Result<(), BusError> {
        self.topic.publish(d)
    }

    /// Publishes, waiting for space in each full subscriber queue, so every
    /// subscriber gets the message (backpressure instead of loss).
    pub async fn publish_async(&self, d: Delivery<T>) -> Result<(), BusError> {
        let queues = self.topic.queues.load_full();
        let Some((last, rest)) = queues.split_last() else {
            return Ok(());
        };
        for q in rest {
            push_waiting(q, d.clone()).await?;
        }
        push_waiting(last, d).await
    }

    /// Number of subscriber queues on this topic.
    pub fn subscribers(&self) -> usize {
        self.topic.queues.load().len()
    }
}

/// Receives from one in-process queue.
pub struct Receiver<T> {
    queue: Arc<Queue<T>>,
    batch: VecDeque<Delivery<T>>,
}

impl<T: Message> Receiver<T> {
    /// Takes the next delivery without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery<T>> {
        if self.batch.is_empty() {
            self.refill();
        }
        self.batch.pop_front()
    }

    fn refill(&mut self) -> bool {
        refill(&self.queue, &mut self.batch)
    }

    /// Waits for the next delivery; `None` once closed and drained.
    pub async fn recv(&mut self) -> Option<Delivery<T>> {
        loop {
            if !self.batch.is_empty() {
                return self.batch.pop_front();
            }
            let ready = self.queue.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if refill(&self.queue, &mut self.batch) {
                continue;
            }
            if self.queue.closed.load(Ordering::Acquire) {
                return None;
            }
            ready.await;
        }
    }

    /// Moves every queued delivery into `out`, returning how many.
    pub fn drain_into(&mut self, out: &mut Vec<Delivery<T>>) -> usize {
        self.refill();
        let n = self.batch.len();
        out.extend(self.batch.drain(..));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradestack_model::{EventId, UnixNanos};

    fn d(n: u64) -> Delivery<u64> {
        Delivery::new(EventId(u128::from(n)), None, Vec::new(), UnixNanos(0), n)
    }

    #[tokio::test]
    async fn broadcast_groups_and_order() {
        let bus = MemoryBus::new();
        let t = Topic::<u64>::new("t");
        let mut a = bus.subscribe(&t, None).unwrap();
        let mut b = bus.subscribe(&t, None).unwrap();
        let mut g1 = bus.subscribe(&t, Some("g")).unwrap();
        let mut g2 = bus.subscribe(&t, Some("g")).unwrap();
        let p = bus.publisher(&t).unwrap();
        for i in 0..100 {
            p.try_publish(d(i)).unwrap();
        }
        for i in 0..100 {
            assert_eq!(a.recv().await.unwrap().msg, i);
            assert_eq!(b.recv().await.unwrap().msg, i);
        }
        // The group shares one queue: together its members see each message once.
        let mut got = Vec::new();
        while let Some(x) = g1.try_recv() {
            got.push(x.msg);
            if let Some(y) = g2.try_recv() {
                got.push(y.msg);
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn type_mismatch_is_an_error() {
        let bus = MemoryBus::new();
        bus.publisher(&Topic::<u64>::new("x")).unwrap();
        assert!(matches!(
            bus.publisher(&Topic::<String>::new("x")),
            Err(BusError::TypeMismatch(_))
        ));
    }

    #[tokio::test]
    async fn full_queue_backpressure() {
        let bus = MemoryBus::with_capacity(4);
        let t = Topic::<u64>::new("bp");
        let mut r = bus.subscribe(&t, None).unwrap();
        let p = bus.publisher(&t).unwrap();
        for i in 0..4 {
            p.try_publish(d(i)).unwrap();
        }
        assert!(matches!(p.try_publish(d(4)), Err(BusError::Full(_))));
        // publish_async waits for the consumer instead of failing.
        let p2 = p.clone();
        let h = tokio::spawn(async move {
            for i in 4..20 {
                p2.publish_async(d(i)).await.unwrap();
            }
        });
        for i in 0..20 {
            assert_eq!(r.recv().await.unwrap().msg, i);
        }
        h.await.unwrap();
    }

    #[tokio::test]
    async fn close_ends_receivers_after_draining() {
        let bus = MemoryBus::new();
        let t = Topic::<u64>::new("c");
        let mut r = bus.subscribe(&t, None).unwrap();
        bus.publisher(&t).unwrap().try_publish(d(1)).unwrap();
        bus.close();
        assert_eq!(r.recv().await.unwrap().msg, 1);
        assert!(r.recv().await.is_none());
        assert!(matches!(bus.subscribe(&t, None), Err(BusError::Closed)));
    }

    #[tokio::test]
    async fn raw_publish_decodes_into_the_topic_type() {
        let bus = MemoryBus::new();
        let t = Topic::<String>::new("raw");
        let mut r = bus.subscribe(&t, None).unwrap();
        let env = crate::envelope::encode(
            EventId(9),
            "raw",
            Some("BTC-USDT"),
            UnixNanos(5),
            &"hi".to_string(),
        )
        .unwrap();
        bus.publish_raw(&env).unwrap();
        let got = r.recv().await.unwrap();
        assert_eq!(
            (got.id, got.msg.as_str(), got.key.as_deref()),
            (EventId(9), "hi", Some("BTC-USDT"))
        );
    }
}
