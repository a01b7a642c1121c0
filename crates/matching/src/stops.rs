//! Stop and stop-limit orders waiting for the last trade price.
//!
//! Each side is a vector sorted so that the next order to trigger is last:
//! buy stops trigger lowest stop price first (when the last trade reaches or
//! passes it upward), sell stops highest first; equal stop prices trigger in
//! arrival order.

use tradestack_model::{OrderId, Price, Side};

use crate::hash::IdMap;
use crate::types::NewOrder;

/// A pending stop with its trigger priority.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Larger triggers first: `-stop` for buys, `stop` for sells.
    rank: i64,
    /// Arrival order.
    seq: u64,
    order: NewOrder,
}

/// Pending stop orders of one book.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stops {
    buys: Vec<Entry>,
    sells: Vec<Entry>,
    ids: IdMap<Side>,
    seq: u64,
}

impl Stops {
    /// Adds a validated stop order (its stop price is set).
    pub(crate) fn insert(&mut self, order: NewOrder) {
        let stop = order.stop_price.map_or(0, Price::raw);
        let (list, rank) = match order.side {
            Side::Buy => (&mut self.buys, -stop),
            Side::Sell => (&mut self.sells, stop),
        };
        self.seq += 1;
        let entry = Entry {
            rank,
            seq: self.seq,
            order,
        };
        // Ascending by (rank, newest first): the last entry triggers first.
        let at = list.partition_point(|e| {
            (e.rank, std::cmp::Reverse(e.seq)) < (rank, std::cmp::Reverse(entry.seq))
        });
        list.insert(at, entry);
        self.ids.insert(order.id.0, order.side);
    }

    /// True when no stop waits.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A pending stop by id.
    pub(crate) fn get(&self, id: OrderId) -> Option<&NewOrder> {
        let side = self.ids.get(&id.0)?;
        self.list(*side)
            .iter()
            .find(|e| e.order.id == id)
            .map(|e| &e.order)
    }

    /// Removes a pending stop.
    pub(crate) fn remove(&mut self, id: OrderId) -> Option<NewOrder> {
        let side = self.ids.remove(&id.0)?;
        let list = match side {
            Side::Buy => &mut self.buys,
            Side::Sell => &mut self.sells,
        };
        let at = list.iter().position(|e| e.order.id == id)?;
        Some(list.remove(at).order)
    }

    /// The next stop that a last trade price of `last` triggers, removed.
    /// When both sides have one, the earlier arrival goes first.
    pub(crate) fn pop_triggered(&mut self, last: i64) -> Option<NewOrder> {
        let buy = self.buys.last().filter(|e| last >= -e.rank).map(|e| e.seq);
        let sell = self.sells.last().filter(|e| last <= e.rank).map(|e| e.seq);
        let entry = match (buy, sell) {
            (Some(b), Some(s)) if s < b => self.sells.pop(),
            (Some(_), _) => self.buys.pop(),
            (None, Some(_)) => self.sells.pop(),
            (None, None) => None,
        }?;
        self.ids.remove(&entry.order.id.0);
        Some(entry.order)
    }

    /// Every pending stop: buys then sells, each in trigger order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &NewOrder> + '_ {
        self.buys
            .iter()
            .rev()
            .chain(self.sells.iter().rev())
            .map(|e| &e.order)
    }

    /// Every pending stop, oldest first.
    pub(crate) fn in_arrival_order(&self) -> Vec<NewOrder> {
        let mut all: Vec<&Entry> = self.buys.iter().chain(self.sells.iter()).collect();
        all.sort_by_key(|e| e.seq);
        all.into_iter().map(|e| e.order).collect()
    }

    fn list(&self, side: Side) -> &[Entry] {
        match side {
            Side::Buy => &self.buys,
            Side::Sell => &self.sells,
        }
    }
}
