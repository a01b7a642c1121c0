//! The outbox relay: moves messages committed to the state store onto the bus.
//!
//! A service writes its state change and the event describing it in one
//! store transaction ([`tradestack_store::WriteBatch::outbox`]). The relay
//! polls pending rows, publishes them in order, and marks them delivered
//! only after the broker acknowledged them. While the broker is down the rows
//! simply stay pending, so nothing committed is lost; after a crash of the
//! service the relay resumes from what is still pending (at least once).
//!
//! Delivered rows are kept for `retain_delivered`. If the broker itself
//! loses acknowledged data (a single broker with volatile storage, or an
//! unclean leader election), its offsets go backwards: the relay notices an
//! ack at or below an offset it already saw on that partition, re-queues the
//! retained rows of that topic, and stamps them with a newer `ts-epoch` so
//! consumers re-read the partition (see [`crate::kafka`]). Consumers drop the
//! resulting duplicates by event id.

use crate::envelope::headers;
use crate::{Bus, BusError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tradestack_model::Nanos;
use tradestack_store::{OutboxSeq, StateStore};

/// Relay tuning.
#[derive(Clone, Debug)]
pub struct OutboxSettings {
    /// Pause between polls when nothing is pending.
    pub poll_interval: Duration,
    /// Most rows per round.
    pub batch: u32,
    /// How long delivered rows are kept for re-sending.
    pub retain_delivered: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            poll_interval: Duration::from_millis(50),
            batch: 500,
            retain_delivered: Duration::from_secs(3600),
        }
    }
}

/// What one relay round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Rows published and marked delivered.
    pub delivered: usize,
    /// Rows that failed and stay pending.
    pub failed: usize,
    /// Rows re-queued because the broker lost data.
    pub requeued: u64,
}

/// Publishes outbox rows onto a bus.
pub struct OutboxRelay {
    store: Arc<dyn StateStore>,
    bus: Bus,
    settings: OutboxSettings,
    /// Highest acknowledged offset per (topic, partition).
    acked: HashMap<(String, i32), i64>,
    /// Current broker-log generation, stamped on every message.
    epoch: u64,
    last_purge: Option<tradestack_model::UnixNanos>,
}

impl OutboxRelay {
    /// A relay from `store`'s outbox to `bus`.
    pub fn new(store: Arc<dyn StateStore>, bus: Bus, settings: OutboxSettings) -> Self {
        OutboxRelay {
            store,
            bus,
            settings,
            acked: HashMap::new(),
            epoch: 0,
            last_purge: None,
        }
    }

    /// One round: publish up to `batch` pending rows in order and mark the
    /// acknowledged ones. Stops at the first failure so order is kept.
    pub async fn round(&mut self) -> Result<RoundReport, BusError> {
        let rows = self.store.outbox_pending(self.settings.batch).await?;
        let mut report = RoundReport::default();
        if rows.is_empty() {
            self.maybe_purge().await?;
            return Ok(report);
        }
        // Publish concurrently (the producer batches and keeps per-partition
        // order); results come back in row order.
        let sends = rows.iter().map(|row| {
            let mut env = row.message.clone();
            if self.epoch > 0 {
                env.headers.retain(|(k, _)| k != headers::EPOCH);
                env.headers
                    .push((headers::EPOCH.to_string(), self.epoch.to_string()));
            }
            self.bus.publish_raw(env)
        });
        let results = futures::future::join_all(sends).await;
        let mut done: Vec<OutboxSeq> = Vec::with_capacity(rows.len());
        let mut lost_topics: Vec<String> = Vec::new();
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(ack) => {
                    done.push(row.seq);
                    if self.bus.engine_name() == "memory" {
                        continue;
                    }
                    let key = (row.message.topic.clone(), ack.partition);
                    if let Some(prev) = self.acked.get(&key)
                        && ack.offset <= *prev
                        && !lost_topics.contains(&row.message.topic)
                    {
                        lost_topics.push(row.message.topic.clone());
                    }
                    self.acked.insert(key, ack.offset);
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %row.message.topic, "outbox publish failed; will retry");
                    report.failed = rows.len() - done.len();
                    break;
                }
            }
        }
        let now = self.bus.now();
        if !done.is_empty() {
            self.store.outbox_mark_delivered(&done, now).await?;
        }
        report.delivered = done.len();
        for topic in lost_topics {
            // The broker's offsets went backwards: it lost acknowledged data.
            self.epoch = self
                .epoch
                .max(now.as_i64().max(0) as u64)
                .max(self.epoch + 1);
            self.acked.retain(|(t, _), _| *t != topic);
            let since = now - Nanos::from_std(self.settings.retain_delivered);
            let n = self
                .store
                .outbox_requeue_delivered_since(Some(&topic), since)
                .await?;
            tracing::warn!(
                topic,
                requeued = n,
                epoch = self.epoch,
                "broker lost acknowledged messages; re-sending retained outbox rows"
            );
            report.requeued += n;
        }
        Ok(report)
    }

    async fn maybe_purge(&mut self) -> Result<(), BusError> {
        let now = self.bus.now();
        let every = Nanos::from_secs(60);
        if self.last_purge.is_some_and(|t| now - t < every) {
            return Ok(());
        }
        self.last_purge = Some(now);
        let before = now - Nanos::from_std(self.settings.retain_delivered);
        self.store.outbox_purge_delivered(before).await?;
        Ok(())
    }

    /// Runs rounds until `shutdown` fires, then drains what is pending once more.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = self.settings.poll_interval;
        loop {
            let pause = match self.round().await {
                Ok(r) if r.failed == 0 && r.delivered > 0 => {
                    backoff = self.settings.poll_interval;
                    Duration::ZERO
                }
                Ok(r) if r.failed == 0 => self.settings.poll_interval,
                Ok(_) | Err(_) => {
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        // Final flush on clean shutdown; whatever fails stays pending for next start.
        if let Err(e) = self.round().await {
            tracing::warn!(error = %e, "final outbox flush failed; rows stay pending");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;
    use tradestack_kernel::RealClock;
    use tradestack_store::WriteBatch;

    #[tokio::test]
    async fn relays_committed_events_in_order_on_the_memory_bus() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            tradestack_store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
                .await
                .unwrap();
        let bus = Bus::memory(Arc::new(RealClock), 7);
        let topic = Topic::<u64>::new("numbers");
        let mut sub = bus.subscribe(&topic, None).await.unwrap();
        for i in 0..10u64 {
            let env =
                crate::envelope::encode(bus.next_id(), "numbers", None, bus.now(), &i).unwrap();
            store.commit(WriteBatch::new().outbox(env)).await.unwrap();
        }
        let mut relay = OutboxRelay::new(store.clone(), bus.clone(), OutboxSettings::default());
        let r = relay.round().await.unwrap();
        assert_eq!(r.delivered, 10);
        for i in 0..10u64 {
            assert_eq!(sub.recv().await.unwrap().msg, i);
        }
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.pending, stats.delivered), (0, 10));
        assert_eq!(relay.round().await.unwrap(), RoundReport::default());
    }
}
