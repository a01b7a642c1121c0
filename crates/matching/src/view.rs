//! Market-data views a client can rebuild: an L2 snapshot plus sequenced
//! deltas gives back the book's depth exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_model::{Price, Quantity, Side};

use crate::book::{LevelView, OrderBook};
use crate::types::BookDelta;

/// Depth of both sides at one sequence number, best levels first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Snapshot {
    /// The sequence number of the last delta included.
    pub seq: u64,
    /// Bids, highest first.
    pub bids: Vec<LevelView>,
    /// Asks, lowest first.
    pub asks: Vec<LevelView>,
}

impl OrderBook {
    /// The top `depth` levels of each side (all levels with `usize::MAX`).
    pub fn l2_snapshot(&self, depth: usize) -> L2Snapshot {
        L2Snapshot {
            seq: self.seq(),
            bids: self.levels(Side::Buy).take(depth).collect(),
            asks: self.levels(Side::Sell).take(depth).collect(),
        }
    }
}

/// A delta did not follow the last one applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sequence gap: expected {expected}, got {got}; fetch a new snapshot")]
pub struct SeqGap {
    /// The sequence number that should have come.
    pub expected: u64,
    /// The one that came.
    pub got: u64,
}

/// A client's copy of the depth, kept current from a full snapshot and deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Book {
    seq: u64,
    bids: BTreeMap<Price, (Quantity, u32)>,
    asks: BTreeMap<Price, (Quantity, u32)>,
}

impl L2Book {
    /// Starts from a full-depth snapshot.
    pub fn from_snapshot(s: &L2Snapshot) -> Self {
        let side = |levels: &[LevelView]| {
            levels
                .iter()
                .map(|l| (l.price, (l.quantity, l.orders)))
                .collect()
        };
        L2Book {
            seq: s.seq,
            bids: side(&s.bids),
            asks: side(&s.asks),
        }
    }

    /// The sequence number of the last delta applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Applies one delta. Deltas at or below the current sequence are old
    /// and ignored; one past the next is a gap.
    pub fn apply(&mut self, d: &BookDelta) -> Result<(), SeqGap> {
        if d.seq <= self.seq {
            return Ok(());
        }
        if d.seq != self.seq + 1 {
            return Err(SeqGap {
                expected: self.seq + 1,
                got: d.seq,
            });
        }
        self.seq = d.seq;
        let side = match d.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if d.quantity.is_zero() {
            side.remove(&d.price);
        } else {
            side.insert(d.price, (d.quantity, d.orders));
        }
        Ok(())
    }

    /// The depth as a snapshot, to compare with the book's own.
    pub fn to_snapshot(&self) -> L2Snapshot {
        let view = |(p, (q, n)): (&Price, &(Quantity, u32))| LevelView {
            price: *p,
            quantity: *q,
            orders: *n,
        };
        L2Snapshot {
            seq: self.seq,
            bids: self.bids.iter().rev().map(view).collect(),
            asks: self.asks.iter().map(view).collect(),
        }
    }
}
