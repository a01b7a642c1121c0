//! OHLCV bars built from trades, per instrument, at several intervals at once.
//!
//! # Buckets
//!
//! A trade at `ts` belongs to the bucket starting at `ts − ts.rem_euclid(interval)`: buckets
//! are aligned to the Unix epoch, so minute, hour and day bars start on exact UTC boundaries
//! (and negative timestamps work too). Any positive interval is accepted; intervals that do
//! not divide a day (a week, 7 minutes) are still epoch-aligned (weeks start on Thursdays).
//!
//! # Fields
//!
//! `open`/`close` are the prices of the earliest/latest trade by `(ts, arrival order)`; `high`
//! and `low` the extremes; `volume` the exact sum of quantities; `quote_volume` the exact sum of
//! [`Price::notional`] per trade (each truncated below 10^-8 only if price × quantity carries
//! more than 8 decimals); `trades` the count. `vwap = quote_volume / volume` rounded to the
//! nearest 10^-8, halves away from zero, where the quote volume used is the exact,
//! untruncated Σ price × quantity (kept at 10^-16): it equals `Bar::quote_volume / volume`
//! whenever every notional is exact, and it always lies within `[low, high]`. When the volume
//! is zero (only zero-size prints) `vwap` is the close. The builder aggregates what it is given:
//! filter corrupt prints upstream.
//!
//! # When bars are emitted
//!
//! A bar is emitted ([`BarEvent::Closed`]) when a trade of a later bucket arrives for the same
//! instrument, or when [`BarBuilder::advance_to`] is called with a time at or past the bucket's
//! end. **Empty buckets produce no bar**: a minute without trades is simply absent (consumers
//! that want flat bars can fill them from the previous close). [`BarBuilder::flush`] closes
//! every open bucket at the end of a replay.
//!
//! # Late trades
//!
//! Per instrument and interval, the builder keeps a *watermark*: the start of the open bucket,
//! or of the bucket containing the last `advance_to` time, whichever is later. A trade whose
//! bucket starts before the watermark is **late** (its bucket is closed). Policy:
//!
//! - [`LatePolicy::Revise`] (default, `retain = 60`): if the bucket starts no more than
//!   `retain` intervals before the watermark, the trade is added to that bucket and the
//!   corrected bar is emitted again as [`BarEvent::Revised`] (counted in `late_revised`). A
//!   revision can also be the first bar of a bucket that had no trades when it closed. Older
//!   trades are dropped and counted in `late_dropped`.
//! - [`LatePolicy::Drop`]: every late trade is dropped and counted in `late_dropped`.
//!
//! Counters are per (trade, interval): a trade can be late for the 1s bars and on time for
//! the 1m bars. A trade is applied to all intervals or, on arithmetic overflow, to none.

use crate::util::div_round_half_away;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tradestack_model::{Amount, Bar, InstrumentId, Nanos, Price, Quantity, Trade, UnixNanos};

/// The default intervals: 1s, 1m, 5m, 15m, 1h, 1d.
pub const DEFAULT_INTERVALS: [Nanos; 6] = [
    Nanos::SECOND,
    Nanos::MINUTE,
    Nanos(5 * Nanos::MINUTE.0),
    Nanos(15 * Nanos::MINUTE.0),
    Nanos::HOUR,
    Nanos::DAY,
];

/// What happens to a trade whose bucket is already closed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum LatePolicy {
    /// Drop it and count it.
    Drop,
    /// Re-emit the corrected bar if the bucket is at most `retain` intervals old; else drop.
    Revise {
        /// How many closed buckets per interval stay open to revision.
        retain: u32,
    },
}

impl Default for LatePolicy {
    fn default() -> Self {
        LatePolicy::Revise { retain: 60 }
    }
}

/// Bar builder settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarConfig {
    /// The bar lengths to build, each > 0.
    pub intervals: Vec<Nanos>,
    /// The late-trade policy.
    pub late: LatePolicy,
}

impl Default for BarConfig {
    fn default() -> Self {
        BarConfig {
            intervals: DEFAULT_INTERVALS.to_vec(),
            late: LatePolicy::default(),
        }
    }
}

/// Why a configuration or a trade was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarError {
    /// No intervals configured.
    #[error("no bar intervals configured")]
    NoIntervals,
    /// An interval <= 0.
    #[error("bar interval must be positive, got {0}")]
    InvalidInterval(Nanos),
    /// Adding the trade would overflow a bar's volume or quote volume; nothing was changed.
    #[error("trade {trade} overflows the {interval} bar of {instrument} at {open_time}")]
    Overflow {
        /// The instrument.
        instrument: InstrumentId,
        /// The trade id.
        trade: u64,
        /// The bar interval.
        interval: Nanos,
        /// The bar's start.
        open_time: UnixNanos,
    },
}

/// A bar leaving the builder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarEvent {
    /// A bucket closed; this is its bar.
    Closed(Bar),
    /// A late trade changed (or created) the bar of an already closed bucket.
    Revised(Bar),
}

impl BarEvent {
    /// The bar, closed or revised.
    pub fn bar(&self) -> &Bar {
        match self {
            BarEvent::Closed(b) | BarEvent::Revised(b) => b,
        }
    }
}

/// Counters since the builder was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarStats {
    /// Trades accepted by `on_trade` (each counted once, whatever the intervals).
    pub trades: u64,
    /// Bars emitted as closed.
    pub closed: u64,
    /// (trade, interval) pairs that revised a closed bucket.
    pub late_revised: u64,
    /// (trade, interval) pairs dropped as too late.
    pub late_dropped: u64,
}

/// A bar in the making.
#[derive(Clone, Debug)]
struct Accum {
    open_time: i64,
    open: Price,
    /// `(ts, arrival)` of the trade that set `open`.
    open_key: (i64, u64),
    high: Price,
    low: Price,
    close: Price,
    close_key: (i64, u64),
    volume: Quantity,
    quote_volume: Amount,
    /// Exact Σ price_raw × qty_raw (units of 10^-16), for the VWAP.
    pq: i128,
    trades: u64,
}

/// The running sums of a bar: volume, quote volume, exact price × quantity.
type Sums = (Quantity, Amount, i128);

impl Accum {
    fn new(open_time: i64, t: &Trade, arrival: u64) -> Accum {
        let key = (t.ts.0, arrival);
        Accum {
            open_time,
            open: t.price,
            open_key: key,
            high: t.price,
            low: t.price,
            close: t.price,
            close_key: key,
            volume: t.quantity,
            quote_volume: t.price.notional(t.quantity),
            pq: i128::from(t.price.raw()) * i128::from(t.quantity.raw()),
            trades: 1,
        }
    }

    /// The sums after adding `t`, or `None` on overflow.
    fn sums_with(&self, t: &Trade) -> Option<Sums> {
        Some((
            self.volume.checked_add(t.quantity)?,
            self.quote_volume
                .checked_add(t.price.notional(t.quantity))?,
            self.pq
                .checked_add(i128::from(t.price.raw()) * i128::from(t.quantity.raw()))?,
        ))
    }

    fn add(&mut self, t: &Trade, arrival: u64, sums: Sums) {
        let key = (t.ts.0, arrival);
        if key < self.open_key {
            self.open = t.price;
            self.open_key = key;
        }
        if key >= self.close_key {
            self.close = t.price;
            self.close_key = key;
        }
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        (self.volume, self.quote_volume, self.pq) = sums;
        self.trades += 1;
    }

    /// `Σ p·q / Σ q` from the exact sum, rounded half away from zero; the close if no volume.
    fn vwap(&self) -> Price {
        div_round_half_away(self.pq, i128::from(self.volume.raw()))
            .and_then(|raw| i64::try_from(raw).ok())
            .map_or(self.close, Price::from_raw)
    }

    fn to_bar(&self, instrument: &InstrumentId, interval: i64) -> Bar {
        Bar {
            instrument: instrument.clone(),
            interval: Nanos(interval),
            open_time: UnixNanos(self.open_time),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            quote_volume: self.quote_volume,
            trades: self.trades,
            vwap: self.vwap(),
        }
    }
}

/// One interval of one instrument.
#[derive(Clone, Debug)]
struct Series {
    interval: i64,
    open: Option<Accum>,
    /// Buckets starting before this are closed.
    watermark: i64,
    /// Closed bars still open to revision, by start.
    history: BTreeMap<i64, Accum>,
}

/// Where a trade goes in one series.
enum Plan {
    /// Into the open bucket.
    AddOpen(Sums),
    /// Close the open bucket (if any) and open a new one.
    Open,
    /// Into a closed bucket, re-emitted as a revision (`None` sums: a new bar).
    Revise(i64, Option<Sums>),
    /// Too late: dropped.
    Drop,
}

impl Series {
    fn bucket(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.interval)
    }

    /// Decides where `t` goes; `None` on overflow.
    fn plan(&self, t: &Trade, late: LatePolicy) -> Option<Plan> {
        let b = self.bucket(t.ts.0);
        if b >= self.watermark {
            return Some(match &self.open {
                Some(acc) if acc.open_time == b => Plan::AddOpen(acc.sums_with(t)?),
                _ => Plan::Open,
            });
        }
        Some(match late {
            LatePolicy::Revise { retain }
                if b >= self
                    .watermark
                    .saturating_sub(i64::from(retain).saturating_mul(self.interval)) =>
            {
                match self.history.get(&b) {
                    Some(acc) => Plan::Revise(b, Some(acc.sums_with(t)?)),
                    None => Plan::Revise(b, None),
                }
            }
            _ => Plan::Drop,
        })
    }

    /// Closes the open bucket, keeping it for revisions when the policy wants that.
    fn close_open(&mut self, instrument: &InstrumentId, late: LatePolicy, out: &mut Vec<BarEvent>) {
        if let Some(acc) = self.open.take() {
            out.push(BarEvent::Closed(acc.to_bar(instrument, self.interval)));
            if matches!(late, LatePolicy::Revise { .. }) {
                self.history.insert(acc.open_time, acc);
            }
        }
    }

    /// Moves the watermark to `to` (if later) and forgets bars too old to revise.
    fn raise_watermark(&mut self, to: i64, late: LatePolicy) {
        self.watermark = self.watermark.max(to);
        if let LatePolicy::Revise { retain } = late {
            let oldest = self
                .watermark
                .saturating_sub(i64::from(retain).saturating_mul(self.interval));
            self.history = self.history.split_off(&oldest);
        }
    }
}

/// Builds bars for every instrument it sees (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct BarBuilder {
    intervals: Vec<i64>,
    late: LatePolicy,
    instruments: BTreeMap<InstrumentId, Vec<Series>>,
    stats: BarStats,
    /// Arrival counter, the tie-break between trades with equal timestamps.
    arrivals: u64,
}

impl BarBuilder {
    /// A builder for the configured intervals (deduplicated, shortest first).
    pub fn new(config: &BarConfig) -> Result<Self, BarError> {
        if config.intervals.is_empty() {
            return Err(BarError::NoIntervals);
        }
        if let Some(bad) = config.intervals.iter().find(|i| i.0 <= 0) {
            return Err(BarError::InvalidInterval(*bad));
        }
        let mut intervals: Vec<i64> = config.intervals.iter().map(|i| i.0).collect();
        intervals.sort_unstable();
        intervals.dedup();
        Ok(BarBuilder {
            intervals,
            late: config.late,
            instruments: BTreeMap::new(),
            stats: BarStats::default(),
            arrivals: 0,
        })
    }

    /// The intervals built, shortest first.
    pub fn intervals(&self) -> impl Iterator<Item = Nanos> + '_ {
        self.intervals.iter().map(|&i| Nanos(i))
    }

    /// Counters so far.
    pub fn stats(&self) -> BarStats {
        self.stats
    }

    /// Adds a trade; returns the bars it closed or revised, shortest interval first.
    pub fn on_trade(&mut self, trade: &Trade) -> Result<Vec<BarEvent>, BarError> {
        let intervals = &self.intervals;
        let series = self
            .instruments
            .entry(trade.instrument.clone())
            .or_insert_with(|| {
                intervals
                    .iter()
                    .map(|&interval| Series {
                        interval,
                        open: None,
                        watermark: i64::MIN,
                        history: BTreeMap::new(),
                    })
                    .collect()
            });
        // Plan every interval first so that an overflow leaves the builder untouched.
        let mut plans = Vec::with_capacity(series.len());
        for s in series.iter() {
            match s.plan(trade, self.late) {
                Some(p) => plans.push(p),
                None => {
                    return Err(BarError::Overflow {
                        instrument: trade.instrument.clone(),
                        trade: trade.id.0,
                        interval: Nanos(s.interval),
                        open_time: UnixNanos(s.bucket(trade.ts.0)),
                    });
                }
            }
        }
        let arrival = self.arrivals;
        self.arrivals += 1;
        self.stats.trades += 1;
        let mut out = Vec::new();
        for (s, plan) in series.iter_mut().zip(plans) {
            let b = s.bucket(trade.ts.0);
            match plan {
                Plan::AddOpen(sums) => {
                    if let Some(acc) = s.open.as_mut() {
                        acc.add(trade, arrival, sums);
                    }
                }
                Plan::Open => {
                    s.close_open(&trade.instrument, self.late, &mut out);
                    s.open = Some(Accum::new(b, trade, arrival));
                    s.raise_watermark(b, self.late);
                }
                Plan::Revise(bucket, sums) => {
                    let acc = s
                        .history
                        .entry(bucket)
                        .or_insert_with(|| Accum::new(bucket, trade, arrival));
                    // An existing bar takes the trade; a new one was just built from it.
                    if let Some(sums) = sums {
                        acc.add(trade, arrival, sums);
                    }
                    out.push(BarEvent::Revised(acc.to_bar(&trade.instrument, s.interval)));
                    self.stats.late_revised += 1;
                }
                Plan::Drop => self.stats.late_dropped += 1,
            }
        }
        self.stats.closed += out
            .iter()
            .filter(|e| matches!(e, BarEvent::Closed(_)))
            .count() as u64;
        Ok(out)
    }

    /// Declares that time has reached `now`: closes every bucket that ends at or before it.
    pub fn advance_to(&mut self, now: UnixNanos) -> Vec<BarEvent> {
        let mut out = Vec::new();
        for (instrument, series) in &mut self.instruments {
            for s in series.iter_mut() {
                if s.open
                    .as_ref()
                    .is_some_and(|acc| acc.open_time.saturating_add(s.interval) <= now.0)
                {
                    s.close_open(instrument, self.late, &mut out);
                }
                let b = s.bucket(now.0);
                s.raise_watermark(b, self.late);
            }
        }
        self.stats.closed += out.len() as u64;
        out
    }

    /// Closes every open bucket now, whatever the time (the end of a replay).
    pub fn flush(&mut self) -> Vec<BarEvent> {
        let mut out = Vec::new();
        for (instrument, series) in &mut self.instruments {
            for s in series.iter_mut() {
                if let Some(acc) = &s.open {
                    let next = acc.open_time.saturating_add(s.interval);
                    s.close_open(instrument, self.late, &mut out);
                    s.raise_watermark(next, self.late);
                }
            }
        }
        self.stats.closed += out.len() as u64;
        out
    }

    /// The bar of the open bucket so far, if any (not emitted, may still change).
    pub fn partial(&self, instrument: &InstrumentId, interval: Nanos) -> Option<Bar> {
        let s = self
            .instruments
            .get(instrument)?
            .iter()
            .find(|s| s.interval == interval.0)?;
        s.open.as_ref().map(|a| a.to_bar(instrument, s.interval))
    }
}

#[cfg(test)]
mod tests;
