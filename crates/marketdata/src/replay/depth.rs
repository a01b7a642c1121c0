//! Binance L2 depth: a REST snapshot plus the diff-depth stream that follows, rebuilt into a
//! [`DepthBook`].
//!
//! Both files share the layout
//! `symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu`
//! (`timestamp` in ms, `side` `b`/`a`, `update_type` `snap` in the snapshot and `set` in diffs,
//! `pu` the previous event's last update id, −1 in the snapshot). Consecutive diff rows with
//! the same `(first_update_id, last_update_id, pu)` are one stream event ([`group_events`]);
//! events are applied in update-id order.
//!
//! # Rules ([`DepthProtocol::Futures`], Binance USDⓈ-M; `U`/`u` = first/last update id)
//!
//! 1. An event with `u` < the snapshot's `lastUpdateId` is older than the snapshot: dropped
//!    ([`Applied::Stale`]); so is an event with `u` <= the last applied `u` (a redelivery).
//! 2. The first applied event must straddle the snapshot: `U <= lastUpdateId <= u`.
//! 3. Every later event must continue the previous one: `pu == previous u`.
//! 4. Quantities are absolute: a level is set to `qty`, and `qty == 0` removes it (removing a
//!    level that is not there is normal and only counted).
//!
//! [`DepthProtocol::Spot`] differs in 1–3: drop `u <= lastUpdateId`, first event
//! `U <= lastUpdateId + 1 <= u`, then `U == previous u + 1`.
//!
//! A broken rule 2 or 3 is a gap. With [`GapPolicy::Fail`] (what a live client must do) the
//! event is refused with [`DepthError::Gap`] and the book refuses everything until it is
//! [`DepthBook::reset`] from a new snapshot. With [`GapPolicy::Continue`] the gap is counted
//! and reported in the outcome and the event is applied anyway (useful for recorded samples
//! whose snapshot and diffs were not captured back to back).

use super::tardis::positive_price;
use super::{CsvRows, Fields, ReplayError, RowError, column_indices, open};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use tradestack_model::{InstrumentId, Price, Quantity, Quote, Side, UnixNanos};

/// Whether a row belongs to a snapshot or to a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// `snap`: a snapshot level.
    Snapshot,
    /// `set`: a diff level (absolute quantity).
    Set,
}

/// One parsed depth row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthRow {
    /// Line in the source file.
    pub line: u64,
    /// Venue symbol.
    pub symbol: String,
    /// Event time.
    pub ts: UnixNanos,
    /// `U`: first update id of the event.
    pub first_update_id: u64,
    /// `u`: last update id of the event.
    pub last_update_id: u64,
    /// Bid (`Buy`) or ask (`Sell`).
    pub side: Side,
    /// Snapshot or diff.
    pub kind: RowKind,
    /// Level price.
    pub price: Price,
    /// Absolute quantity at the level (0 removes it).
    pub qty: Quantity,
    /// `pu`: the previous event's `u`; `None` for -1.
    pub prev_last_update_id: Option<u64>,
}

/// Reads depth rows (snapshot or diffs), in file order.
pub struct DepthRows<R: Read> {
    rows: CsvRows<R>,
    cols: [usize; 9],
}

impl<R: Read> DepthRows<R> {
    /// Reads the header of `reader` (named `file` in errors).
    pub fn new(reader: R, file: &str) -> Result<Self, ReplayError> {
        let mut rows = CsvRows::new(reader, file, true);
        let header = rows.headers()?;
        let cols = column_indices(
            file,
            &header,
            [
                "symbol",
                "timestamp",
                "first_update_id",
                "last_update_id",
                "side",
                "update_type",
                "price",
                "qty",
                "pu",
            ],
        )?;
        Ok(DepthRows { rows, cols })
    }
}

fn parse_row(row: &Fields<'_>, cols: [usize; 9]) -> Result<DepthRow, RowError> {
    let [sym, ts, first, last, side, kind, price, qty, pu] = cols;
    let ms: i64 = row.parse(ts, "timestamp")?;
    let ts = UnixNanos(
        ms.checked_mul(1_000_000)
            .ok_or_else(|| row.error("timestamp", "out of range"))?,
    );
    let side = match row.text(side, "side")? {
        "b" | "bid" | "B" => Side::Buy,
        "a" | "ask" | "A" => Side::Sell,
        other => return Err(row.error("side", format!("{other:?} is not b or a"))),
    };
    let kind = match row.text(kind, "update_type")? {
        "snap" => RowKind::Snapshot,
        "set" => RowKind::Set,
        other => return Err(row.error("update_type", format!("{other:?} is not snap or set"))),
    };
    let pu: i64 = row.parse(pu, "pu")?;
    let prev_last_update_id = match pu {
        -1 => None,
        p => Some(u64::try_from(p).map_err(|_| row.error("pu", format!("{p} is not an id")))?),
    };
    let first_update_id: u64 = row.parse(first, "first_update_id")?;
    let last_update_id: u64 = row.parse(last, "last_update_id")?;
    if last_update_id < first_update_id {
        return Err(row.error("last_update_id", "is below first_update_id"));
    }
    Ok(DepthRow {
        line: row.line,
        symbol: row.text(sym, "symbol")?.to_string(),
        ts,
        first_update_id,
        last_update_id,
        side,
        kind,
        price: positive_price(row, price, "price")?,
        qty: row.parse(qty, "qty")?,
        prev_last_update_id,
    })
}

impl<R: Read> Iterator for DepthRows<R> {
    type Item = Result<DepthRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let cols = self.cols;
        Some(match self.rows.next_row()? {
            Ok(row) => parse_row(&row, cols),
            Err(e) => Err(e),
        })
    }
}

/// A full book at one update id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthSnapshot {
    /// Venue symbol.
    pub symbol: String,
    /// Snapshot time.
    pub ts: UnixNanos,
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// Bid levels as given.
    pub bids: Vec<(Price, Quantity)>,
    /// Ask levels as given.
    pub asks: Vec<(Price, Quantity)>,
}

impl DepthSnapshot {
    /// Assembles snapshot rows; they must all be `snap` rows of one symbol and update id.
    pub fn from_rows(rows: impl IntoIterator<Item = DepthRow>) -> Result<Self, DepthError> {
        let mut snap: Option<DepthSnapshot> = None;
        for r in rows {
            if r.kind != RowKind::Snapshot {
                return Err(DepthError::BadSnapshot {
                    line: r.line,
                    reason: "row is not a snapshot (`snap`) row".into(),
                });
            }
            let s = snap.get_or_insert_with(|| DepthSnapshot {
                symbol: r.symbol.clone(),
                ts: r.ts,
                last_update_id: r.last_update_id,
                bids: Vec::new(),
                asks: Vec::new(),
            });
            if r.last_update_id != s.last_update_id || r.symbol != s.symbol {
                return Err(DepthError::BadSnapshot {
                    line: r.line,
                    reason: format!(
                        "{} at update id {} in a snapshot of {} at {}",
                        r.symbol, r.last_update_id, s.symbol, s.last_update_id
                    ),
                });
            }
            match r.side {
                Side::Buy => s.bids.push((r.price, r.qty)),
                Side::Sell => s.asks.push((r.price, r.qty)),
            }
        }
        snap.ok_or(DepthError::NoSnapshot)
    }
}

/// One level change of a diff event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelChange {
    /// Bid (`Buy`) or ask (`Sell`).
    pub side: Side,
    /// Level price.
    pub price: Price,
    /// New absolute quantity (0 removes).
    pub qty: Quantity,
}

/// One diff-depth stream event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthEvent {
    /// Line of its first row.
    pub line: u64,
    /// Event time.
    pub ts: UnixNanos,
    /// `U`.
    pub first_update_id: u64,
    /// `u`.
    pub last_update_id: u64,
    /// `pu` (futures).
    pub prev_last_update_id: Option<u64>,
    /// Level changes, in row order.
    pub changes: Vec<LevelChange>,
}

/// Groups diff rows into events by `(U, u, pu)`, ordered by update id (`u`, then `U`).
/// Rows of one event keep their file order; snapshot rows are ignored.
pub fn group_events(rows: impl IntoIterator<Item = DepthRow>) -> Vec<DepthEvent> {
    let mut events: BTreeMap<(u64, u64, Option<u64>), DepthEvent> = BTreeMap::new();
    for r in rows {
        if r.kind != RowKind::Set {
            continue;
        }
        let key = (r.last_update_id, r.first_update_id, r.prev_last_update_id);
        events
            .entry(key)
            .or_insert_with(|| DepthEvent {
                line: r.line,
                ts: r.ts,
                first_update_id: r.first_update_id,
                last_update_id: r.last_update_id,
                prev_last_update_id: r.prev_last_update_id,
                changes: Vec::new(),
            })
            .changes
            .push(LevelChange {
                side: r.side,
                price: r.price,
                qty: r.qty,
            });
    }
    events.into_values().collect()
}

/// Which Binance market's sequencing rules apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DepthProtocol {
    /// USDⓈ-M / COIN-M futures: continuity through `pu`.
    #[default]
    Futures,
    /// Spot: continuity through `U == previous u + 1`.
    Spot,
}

/// What to do when an event does not continue the book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GapPolicy {
    /// Refuse it and everything after until a new snapshot (the live-client rule).
    #[default]
    Fail,
    /// Count it, report it, apply the event anyway.
    Continue,
}

/// Why a depth event or snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepthError {
    /// No snapshot rows at all.
    #[error("no snapshot rows")]
    NoSnapshot,
    /// Snapshot rows that do not form one snapshot.
    #[error("line {line}: bad snapshot: {reason}")]
    BadSnapshot {
        /// The offending row's line.
        line: u64,
        /// Why.
        reason: String,
    },
    /// The event does not continue the book.
    #[error(
        "line {line}: update gap: event U={first_update_id} u={last_update_id} pu={prev:?} does not continue from update id {expected_after}"
    )]
    Gap {
        /// The event's first line.
        line: u64,
        /// The update id the book is at (snapshot or last applied event).
        expected_after: u64,
        /// The event's `U`.
        first_update_id: u64,
        /// The event's `u`.
        last_update_id: u64,
        /// The event's `pu`.
        prev: Option<u64>,
    },
    /// A gap was found earlier; the book needs a new snapshot.
    #[error("line {line}: the book needs a new snapshot after a gap")]
    NeedsSnapshot {
        /// The refused event's first line.
        line: u64,
    },
}

/// What applying an event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Dropped: older than the snapshot or already applied.
    Stale,
    /// Applied.
    Updated {
        /// Level changes applied.
        levels: usize,
        /// Zero-quantity changes for levels that were not in the book.
        removed_absent: usize,
        /// Set when the event did not continue the book (only under [`GapPolicy::Continue`]).
        gap: Option<DepthError>,
    },
}

/// Counters since the last snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepthStats {
    /// Events applied.
    pub applied: u64,
    /// Events dropped as stale.
    pub stale: u64,
    /// Gaps found (refused or, under `Continue`, applied anyway).
    pub gaps: u64,
    /// Level changes applied.
    pub levels_changed: u64,
    /// Removals of absent levels.
    pub removed_absent: u64,
}

/// The best bid and ask, each with its quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopOfBook {
    /// Best bid.
    pub bid: Option<(Price, Quantity)>,
    /// Best ask.
    pub ask: Option<(Price, Quantity)>,
}

impl TopOfBook {
    /// True when both sides exist and the bid is at or above the ask.
    pub fn is_crossed(&self) -> bool {
        matches!((self.bid, self.ask), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// A model quote when both sides exist.
    pub fn to_quote(&self, instrument: InstrumentId, ts: UnixNanos) -> Option<Quote> {
        let ((bid, bid_size), (ask, ask_size)) = (self.bid?, self.ask?);
        Some(Quote {
            instrument,
            bid,
            bid_size,
            ask,
            ask_size,
            ts,
        })
    }
}

/// An L2 book rebuilt from a snapshot and diffs (see the module docs for the rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthBook {
    bids: BTreeMap<Price, Quantity>,
    asks: BTreeMap<Price, Quantity>,
    protocol: DepthProtocol,
    policy: GapPolicy,
    snapshot_id: u64,
    /// `u` of the last applied event; `None` until the first one after the snapshot.
    last_applied: Option<u64>,
    needs_snapshot: bool,
    ts: UnixNanos,
    stats: DepthStats,
}

impl DepthBook {
    /// A book initialised from `snapshot`.
    pub fn new(snapshot: &DepthSnapshot, protocol: DepthProtocol, policy: GapPolicy) -> Self {
        let mut b = DepthBook {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            protocol,
            policy,
            snapshot_id: 0,
            last_applied: None,
            needs_snapshot: false,
            ts: snapshot.ts,
            stats: DepthStats::default(),
        };
        b.reset(snapshot);
        b
    }

    /// Replaces the whole book with `snapshot` and restarts sequencing from it.
    pub fn reset(&mut self, snapshot: &DepthSnapshot) {
        let levels = |v: &[(Price, Quantity)]| {
            v.iter()
                .filter(|(_, q)| !q.is_zero())
                .copied()
                .collect::<BTreeMap<_, _>>()
        };
        self.bids = levels(&snapshot.bids);
        self.asks = levels(&snapshot.asks);
        self.snapshot_id = snapshot.last_update_id;
        self.last_applied = None;
        self.needs_snapshot = false;
        self.ts = snapshot.ts;
        self.stats = DepthStats::default();
    }

    /// Applies one event under the book's protocol and gap policy.
    pub fn apply(&mut self, ev: &DepthEvent) -> Result<Applied, DepthError> {
        if self.needs_snapshot {
            return Err(DepthError::NeedsSnapshot { line: ev.line });
        }
        let (u_first, u_last) = (ev.first_update_id, ev.last_update_id);
        let stale = match self.protocol {
            DepthProtocol::Futures => u_last < self.snapshot_id,
            DepthProtocol::Spot => u_last <= self.snapshot_id,
        } || self.last_applied.is_some_and(|l| u_last <= l);
        if stale {
            self.stats.stale += 1;
            return Ok(Applied::Stale);
        }
        let continues = match (self.protocol, self.last_applied) {
            (DepthProtocol::Futures, None) => u_first <= self.snapshot_id,
            (DepthProtocol::Futures, Some(l)) => ev.prev_last_update_id == Some(l),
            (DepthProtocol::Spot, None) => u_first <= self.snapshot_id.saturating_add(1),
            (DepthProtocol::Spot, Some(l)) => u_first == l.saturating_add(1),
        };
        let gap = (!continues).then(|| DepthError::Gap {
            line: ev.line,
            expected_after: self.last_applied.unwrap_or(self.snapshot_id),
            first_update_id: u_first,
            last_update_id: u_last,
            prev: ev.prev_last_update_id,
        });
        if let Some(g) = &gap {
            self.stats.gaps += 1;
            if self.policy == GapPolicy::Fail {
                self.needs_snapshot = true;
                return Err(g.clone());
            }
        }
        let mut removed_absent = 0;
        for c in &ev.changes {
            let side = match c.side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            if c.qty.is_zero() {
                if side.remove(&c.price).is_none() {
                    removed_absent += 1;
                }
            } else {
                side.insert(c.price, c.qty);
            }
        }
        self.last_applied = Some(u_last);
        self.ts = ev.ts;
        self.stats.applied += 1;
        self.stats.levels_changed += ev.changes.len() as u64;
        self.stats.removed_absent += removed_absent as u64;
        Ok(Applied::Updated {
            levels: ev.changes.len(),
            removed_absent,
            gap,
        })
    }

    /// Best bid and ask.
    pub fn top(&self) -> TopOfBook {
        TopOfBook {
            bid: self.bids.last_key_value().map(|(p, q)| (*p, *q)),
            ask: self.asks.first_key_value().map(|(p, q)| (*p, *q)),
        }
    }

    /// Bid levels, best (highest) first.
    pub fn bids(&self) -> impl Iterator<Item = (Price, Quantity)> + '_ {
        self.bids.iter().rev().map(|(p, q)| (*p, *q))
    }

    /// Ask levels, best (lowest) first.
    pub fn asks(&self) -> impl Iterator<Item = (Price, Quantity)> + '_ {
        self.asks.iter().map(|(p, q)| (*p, *q))
    }

    /// Time of the snapshot or of the last applied event.
    pub fn ts(&self) -> UnixNanos {
        self.ts
    }

    /// The update id the book is at.
    pub fn update_id(&self) -> u64 {
        self.last_applied.unwrap_or(self.snapshot_id)
    }

    /// True after a refused gap, until [`DepthBook::reset`].
    pub fn needs_snapshot(&self) -> bool {
        self.needs_snapshot
    }

    /// Counters since the last snapshot.
    pub fn stats(&self) -> DepthStats {
        self.stats
    }
}

/// The outcome of one event of a [`DepthReplay`], with the top of book after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthStep {
    /// The event's time.
    pub ts: UnixNanos,
    /// The event's `U`.
    pub first_update_id: u64,
    /// The event's `u`.
    pub last_update_id: u64,
    /// What applying it did (or why it was refused).
    pub outcome: Result<Applied, DepthError>,
    /// Best bid and ask after it.
    pub top: TopOfBook,
}

/// Replays events over a book, yielding a [`DepthStep`] per event; the full book is available
/// between steps through [`DepthReplay::book`].
#[derive(Clone, Debug)]
pub struct DepthReplay<'a> {
    book: DepthBook,
    events: std::slice::Iter<'a, DepthEvent>,
}

impl<'a> DepthReplay<'a> {
    /// Starts from `snapshot` and will apply `events` in the given order.
    pub fn new(
        snapshot: &DepthSnapshot,
        events: &'a [DepthEvent],
        protocol: DepthProtocol,
        policy: GapPolicy,
    ) -> Self {
        DepthReplay {
            book: DepthBook::new(snapshot, protocol, policy),
            events: events.iter(),
        }
    }

    /// The book as of the last step.
    pub fn book(&self) -> &DepthBook {
        &self.book
    }
}

impl Iterator for DepthReplay<'_> {
    type Item = DepthStep;

    fn next(&mut self) -> Option<DepthStep> {
        let ev = self.events.next()?;
        let outcome = self.book.apply(ev);
        Some(DepthStep {
            ts: ev.ts,
            first_update_id: ev.first_update_id,
            last_update_id: ev.last_update_id,
            outcome,
            top: self.book.top(),
        })
    }
}

/// A snapshot file and a diff file, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthFiles {
    /// The snapshot.
    pub snapshot: DepthSnapshot,
    /// The diff events, in update-id order.
    pub events: Vec<DepthEvent>,
    /// Malformed rows of either file.
    pub errors: Vec<RowError>,
    /// Diff rows parsed.
    pub rows: u64,
}

/// Reads a snapshot file and a diff file.
pub fn read_depth(snapshot: &Path, updates: &Path) -> Result<DepthFiles, ReplayError> {
    let mut errors = Vec::new();
    let (reader, name) = open(snapshot)?;
    let mut snap_rows = Vec::new();
    for r in DepthRows::new(reader, &name)? {
        match r {
            Ok(r) => snap_rows.push(r),
            Err(e) => errors.push(e),
        }
    }
    let snapshot = DepthSnapshot::from_rows(snap_rows).map_err(|e| ReplayError::Invalid {
        file: name.clone(),
        reason: e.to_string(),
    })?;
    let (reader, name) = open(updates)?;
    let mut rows = Vec::new();
    for r in DepthRows::new(reader, &name)? {
        match r {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(e),
        }
    }
    let n = rows.len() as u64;
    Ok(DepthFiles {
        snapshot,
        events: group_events(rows),
        errors,
        rows: n,
    })
}

#[cfg(test)]
mod tests;
