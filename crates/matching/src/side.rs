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
#[derive(Clone, Debug)]
pub(crate) struct BookSide {
    pub(crate) side: Side,
    /// Ascending by key: worst first, best last.
    pub(crate) levels: Vec<Level>,
}

impl BookSide {
    pub(crate) fn new(side: Side, capacity: usize) -> Self {
        BookSide {
            side,
            levels: Vec::with_capacity(capacity),
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
    /// Searches from the top first: most lookups are near the best price.
    #[inline]
    pub(crate) fn find(&self, key: i64) -> Result<usize, usize> {
        let n = self.levels.len();
        let near = n.saturating_sub(8);
        for i in (near..n).rev() {
            let k = self.levels[i].key;
            if k == key {
                return Ok(i);
            }
            if k < key {
                return Err(i + 1);
            }
        }
        self.levels[..near].binary_search_by(|l| l.key.cmp(&key))
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
