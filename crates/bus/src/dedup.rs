//! Deduplication of at-least-once deliveries by event id.

use std::collections::{HashSet, VecDeque};
use tradestack_model::EventId;

/// Remembers the last `capacity` event ids and says whether an id is new.
/// Bounded, so a long-running consumer does not grow without limit; size it
/// above the largest redelivery window (the outbox relay's retention).
#[derive(Debug)]
pub struct Deduplicator {
    seen: HashSet<EventId>,
    order: VecDeque<EventId>,
    capacity: usize,
    duplicates: u64,
}

impl Deduplicator {
    /// Remembers up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Deduplicator {
            seen: HashSet::with_capacity(capacity.min(1 << 20)),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity: capacity.max(1),
            duplicates: 0,
        }
    }

    /// True the first time an id is seen, false for a redelivery.
    pub fn first_time(&mut self, id: EventId) -> bool {
        if !self.seen.insert(id) {
            self.duplicates += 1;
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// How many duplicates were dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_capacity() {
        let mut d = Deduplicator::new(2);
        assert!(d.first_time(EventId(1)));
        assert!(!d.first_time(EventId(1)));
        assert!(d.first_time(EventId(2)));
        assert!(d.first_time(EventId(3)));
        // 1 fell out of the window.
        assert!(d.first_time(EventId(1)));
        assert_eq!(d.duplicates(), 1);
    }
}
