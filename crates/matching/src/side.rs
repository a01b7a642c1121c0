//! One side of the book: price levels with stable handles, ordered by a
//! sorted key vector, best level last.
//!
//! Levels are keyed so that "better" is always "greater": the key is the
//! price for bids and the negated price for asks. Level data lives in a slab,
//! so a level's index never changes while it exists and every resting order
//! keeps the index of its level: cancel and amend reach the level directly,
//! without a search. The order of levels is a sorted vector of keys (8 bytes
//! each, so a search touches few cache lines) with the slab index of each;
//! the best level sits at its end, where almost all activity happens.
//!
//! A level that empties below the top is left in place (count 0) rather than
//! removed, so the vectors do not shift on every deep cancel; an order
//! arriving at that price reuses it. Empty levels are dropped in one pass
//! when they outnumber the live ones. The top level is never empty.
//! Orders at a level form an intrusive FIFO list through the order arena.

use tradestack_model::{Price, Side};

/// End of an intrusive list.
pub(crate) const NIL: u32 = u32::MAX;

/// A price level: aggregate quantity and the FIFO list of its orders.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    /// Price for bids, negated price for asks.
    pub(crate) key: i64,
    /// Sum of the open quantity of its orders (raw units).
    pub(crate) qty: i64,
    /// Number of orders.
    pub(crate) count: u32,
    /// Oldest order (first to fill).
    pub(crate) head: u32,
    /// Newest order.
    pub(crate) tail: u32,
}

/// The levels of one side.
#[derive(Clone, Debug)]
pub(crate) struct BookSide {
    pub(crate) side: Side,
    /// Level data by stable index.
    pub(crate) slab: Vec<Level>,
    /// Unused slab indices.
    free: Vec<u32>,
    /// Keys ascending: worst first, best last.
    keys: Vec<i64>,
    /// The slab index of each key.
    order: Vec<u32>,
    /// Empty levels still in `keys`.
    empties: usize,
}

impl BookSide {
    pub(crate) fn new(side: Side, capacity: usize) -> Self {
        BookSide {
            side,
            slab: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            keys: Vec::with_capacity(capacity),
            order: Vec::with_capacity(capacity),
            empties: 0,
        }
    }

    /// The ordering key of `price` on this side.
    #[inline(always)]
    pub(crate) fn key(&self, price: i64) -> i64 {
        flip(self.side, price)
    }

    /// The price of a level key on this side.
    #[inline(always)]
    pub(crate) fn price(&self, key: i64) -> Price {
        Price::from_raw(flip(self.side, key))
    }

    /// Position of `key` in the order, or where it would be inserted.
    #[inline]
    fn find(&self, key: i64) -> Result<usize, usize> {
        self.keys.binary_search(&key)
    }

    /// The slab index of the level at `key`, creating (or reviving) it.
    #[inline]
    pub(crate) fn level_for(&mut self, key: i64) -> u32 {
        match self.find(key) {
            Ok(pos) => {
                let idx = self.order[pos];
                if self.slab[idx as usize].count == 0 {
                    self.empties -= 1;
                }
                idx
            }
            Err(pos) => {
                let level = Level {
                    key,
                    qty: 0,
                    count: 0,
                    head: NIL,
                    tail: NIL,
                };
                let idx = match self.free.pop() {
                    Some(i) => {
                        self.slab[i as usize] = level;
                        i
                    }
                    None => {
                        self.slab.push(level);
                        (self.slab.len() - 1) as u32
                    }
                };
                self.keys.insert(pos, key);
                self.order.insert(pos, idx);
                idx
            }
        }
    }

    /// The best level's slab index.
    #[inline]
    pub(crate) fn best_idx(&self) -> Option<u32> {
        self.order.last().copied()
    }

    /// The best level.
    #[inline]
    pub(crate) fn best(&self) -> Option<&Level> {
        self.best_idx().map(|i| &self.slab[i as usize])
    }

    /// Levels that hold orders, best first.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Level> + '_ {
        self.order
            .iter()
            .rev()
            .map(|&i| &self.slab[i as usize])
            .filter(|l| l.count > 0)
    }

    /// Called when the level `idx` has just become empty.
    #[inline]
    pub(crate) fn emptied(&mut self, idx: u32) {
        if self.order.last() == Some(&idx) {
            self.pop_top();
            // Keep the top live: drop the empties it was hiding.
            while let Some(&top) = self.order.last() {
                if self.slab[top as usize].count > 0 {
                    break;
                }
                self.pop_top();
                self.empties -= 1;
            }
        } else {
            self.empties += 1;
            if self.empties > 64 && self.empties * 2 > self.keys.len() {
                self.compact();
            }
        }
    }

    fn pop_top(&mut self) {
        self.keys.pop();
        if let Some(idx) = self.order.pop() {
            self.free.push(idx);
        }
    }

    /// Drops every empty level from the order, in one pass.
    fn compact(&mut self) {
        let mut w = 0;
        for r in 0..self.order.len() {
            let idx = self.order[r];
            if self.slab[idx as usize].count > 0 {
                self.order[w] = idx;
                self.keys[w] = self.keys[r];
                w += 1;
            } else {
                self.free.push(idx);
            }
        }
        self.order.truncate(w);
        self.keys.truncate(w);
        self.empties = 0;
    }
}

/// Price to key and back (the map is its own inverse): negated for asks.
#[inline(always)]
pub(crate) fn flip(side: Side, v: i64) -> i64 {
    match side {
        Side::Buy => v,
        Side::Sell => -v,
    }
}
