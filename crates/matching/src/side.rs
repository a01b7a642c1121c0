//! One side of the book: price levels in a sorted vector, best level last.
//!
//! Levels are keyed so that "better" is always "greater": the key is the
//! price for bids and the negated price for asks. The best level sits at the
//! end of the vector, where almost all activity happens, so adding or removing
//! a level near the top moves few elements, and matching pops from the end.
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
///
/// A level that empties below the top is left in place (count 0) rather than
/// removed, so the vector does not shift on every deep cancel; an order
/// arriving at that price reuses it. Empty levels are dropped in one pass
/// when they outnumber the live ones. The last level is never empty.
#[derive(Clone, Debug)]
pub(crate) struct BookSide {
    pub(crate) side: Side,
    /// Ascending by key: worst first, best last.
    pub(crate) levels: Vec<Level>,
    /// Empty levels left in `levels`.
    pub(crate) empties: usize,
}

impl BookSide {
    pub(crate) fn new(side: Side, capacity: usize) -> Self {
        BookSide {
            side,
            levels: Vec::with_capacity(capacity),
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

    /// Index of the level with `key`, or where it would be inserted.
    /// A branch-free binary search: which half is taken is unpredictable.
    #[inline]
    pub(crate) fn find(&self, key: i64) -> Result<usize, usize> {
        let levels = &self.levels[..];
        let mut size = levels.len();
        if size == 0 {
            return Err(0);
        }
        let mut base = 0usize;
        while size > 1 {
            let half = size / 2;
            let mid = base + half;
            base = if levels[mid].key <= key { mid } else { base };
            size -= half;
        }
        let k = levels[base].key;
        if k == key {
            Ok(base)
        } else {
            Err(base + usize::from(k < key))
        }
    }

    /// Levels that hold orders, best first.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Level> + '_ {
        self.levels.iter().rev().filter(|l| l.count > 0)
    }

    /// Called when the level at `at` has just become empty.
    #[inline]
    pub(crate) fn emptied(&mut self, at: usize) {
        if at + 1 == self.levels.len() {
            self.levels.pop();
            // Keep the top live: drop empties it was hiding.
            while self.levels.last().is_some_and(|l| l.count == 0) {
                self.levels.pop();
                self.empties -= 1;
            }
        } else {
            self.empties += 1;
            if self.empties > 64 && self.empties * 2 > self.levels.len() {
                self.levels.retain(|l| l.count > 0);
                self.empties = 0;
            }
        }
    }

    /// The best level.
    #[inline]
    pub(crate) fn best(&self) -> Option<&Level> {
        self.levels.last()
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
