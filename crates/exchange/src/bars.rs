//! One-minute OHLCV bars of the exchange's own trades, kept in memory for
//! the compatible API's klines and 24-hour tickers. Longer intervals are
//! aggregated from minutes on request. The time-series store keeps the
//! durable bars; after a restart the market-data service seeds this short
//! memory from it ([`MinuteBars::seed`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tradestack_model::{Amount, InstrumentId, Price, Quantity, Side, Trade, TradeId};

/// Minutes kept per instrument: two days.
const KEEP_MINUTES: usize = 2 * 24 * 60;
const MINUTE_NS: i64 = 60_000_000_000;

/// One bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteBar {
    /// Start of the bar, ns since the epoch.
    pub open_time: i64,
    /// First trade price.
    pub open: Price,
    /// Highest.
    pub high: Price,
    /// Lowest.
    pub low: Price,
    /// Last.
    pub close: Price,
    /// Base volume.
    pub volume: Quantity,
    /// Quote volume.
    pub quote_volume: Amount,
    /// Number of trades.
    pub trades: u64,
    /// Base volume bought by takers.
    pub taker_buy_volume: Quantity,
    /// Quote volume bought by takers.
    pub taker_buy_quote: Amount,
    /// First trade id.
    pub first_id: TradeId,
    /// Last trade id.
    pub last_id: TradeId,
}

impl MinuteBar {
    fn new(open_time: i64, t: &Trade) -> Self {
        MinuteBar {
            open_time,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            volume: Quantity::ZERO,
            quote_volume: Amount::ZERO,
            trades: 0,
            taker_buy_volume: Quantity::ZERO,
            taker_buy_quote: Amount::ZERO,
            first_id: t.id,
            last_id: t.id,
        }
    }

    fn add(&mut self, t: &Trade) {
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.close = t.price;
        self.volume += t.quantity;
        let notional = t.price.notional(t.quantity);
        self.quote_volume += notional;
        self.trades += 1;
        self.last_id = t.id;
        if t.aggressor == Side::Buy {
            self.taker_buy_volume += t.quantity;
            self.taker_buy_quote += notional;
        }
    }

    /// As the model's bar of `interval` ns.
    pub fn to_bar(&self, instrument: &InstrumentId, interval: i64) -> tradestack_model::Bar {
        let vwap = if self.volume.is_zero() {
            self.close
        } else {
            Price::from_raw(
                (self.quote_volume.raw() * i128::from(tradestack_model::fixed::SCALE)
                    / i128::from(self.volume.raw())) as i64,
            )
        };
        tradestack_model::Bar {
            instrument: instrument.clone(),
            interval: tradestack_model::Nanos(interval),
            open_time: tradestack_model::UnixNanos(self.open_time),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            quote_volume: self.quote_volume,
            trades: self.trades,
            vwap,
        }
    }

    /// Merges a later bar into this one.
    pub fn merge(&mut self, later: &MinuteBar) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume += later.volume;
        self.quote_volume += later.quote_volume;
        self.trades += later.trades;
        self.taker_buy_volume += later.taker_buy_volume;
        self.taker_buy_quote += later.taker_buy_quote;
        self.last_id = later.last_id;
    }
}

/// Minute bars per instrument.
#[derive(Clone, Default)]
pub struct MinuteBars {
    inner: Arc<Mutex<HashMap<InstrumentId, BTreeMap<i64, MinuteBar>>>>,
}

impl MinuteBars {
    /// Adds a trade to its minute.
    pub fn push(&self, t: &Trade) {
        let start = t.ts.as_i64().div_euclid(MINUTE_NS) * MINUTE_NS;
        let mut m = self.inner.lock();
        let bars = m.entry(t.instrument.clone()).or_default();
        bars.entry(start)
            .or_insert_with(|| MinuteBar::new(start, t))
            .add(t);
        while bars.len() > KEEP_MINUTES {
            bars.pop_first();
        }
    }

    /// Adds minutes recorded elsewhere (the store) that are not here yet;
    /// minutes built from live trades always win. Returns how many were added.
    pub fn seed(
        &self,
        instrument: &InstrumentId,
        minutes: impl IntoIterator<Item = MinuteBar>,
    ) -> usize {
        let mut m = self.inner.lock();
        let bars = m.entry(instrument.clone()).or_default();
        let mut added = 0;
        for b in minutes {
            if b.open_time.rem_euclid(MINUTE_NS) != 0 {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = bars.entry(b.open_time) {
                e.insert(b);
                added += 1;
            }
        }
        while bars.len() > KEEP_MINUTES {
            bars.pop_first();
        }
        added
    }

    /// Bars of `interval_ns` (a multiple of a minute) between `from` and
    /// `to` (ns, inclusive of bars starting in the range), at most `limit`,
    /// the newest when the range is open-ended.
    pub fn bars(
        &self,
        instrument: &InstrumentId,
        interval_ns: i64,
        from: Option<i64>,
        to: Option<i64>,
        limit: usize,
    ) -> Vec<MinuteBar> {
        let m = self.inner.lock();
        let Some(minutes) = m.get(instrument) else {
            return Vec::new();
        };
        let lo = from.unwrap_or(i64::MIN);
        let hi = to.unwrap_or(i64::MAX);
        let mut out: Vec<MinuteBar> = Vec::new();
        for b in minutes
            // Saturating: an open range starts at i64::MIN.
            .range(lo.div_euclid(interval_ns).saturating_mul(interval_ns)..=hi)
            .map(|(_, b)| b)
        {
            let start = b
                .open_time
                .div_euclid(interval_ns)
                .saturating_mul(interval_ns);
            match out.last_mut() {
                Some(last) if last.open_time == start => last.merge(b),
                _ => out.push(MinuteBar {
                    open_time: start,
                    ..*b
                }),
            }
        }
        out.retain(|b| b.open_time >= lo && b.open_time <= hi);
        if from.is_some() {
            out.truncate(limit);
        } else if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        out
    }

    /// How many minutes are kept per instrument.
    pub const KEEP_MINUTES: usize = KEEP_MINUTES;

    /// The bars of the last 24 hours before `now`, merged (None without trades).
    pub fn last_day(&self, instrument: &InstrumentId, now: i64) -> Option<MinuteBar> {
        let m = self.inner.lock();
        let minutes = m.get(instrument)?;
        let mut merged: Option<MinuteBar> = None;
        for (_, b) in minutes.range(now - 24 * 60 * MINUTE_NS..) {
            match merged.as_mut() {
                Some(x) => x.merge(b),
                None => merged = Some(*b),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradestack_model::UnixNanos;

    fn trade(id: u64, minute: i64, price: i64) -> Trade {
        Trade {
            id: TradeId(id),
            instrument: InstrumentId::new("BTC-USDT"),
            price: Price::from_units(price),
            quantity: Quantity::from_units(1),
            aggressor: Side::Buy,
            ts: UnixNanos(minute * MINUTE_NS + 1),
        }
    }

    #[test]
    fn open_ranges_and_seeded_minutes() {
        let bars = MinuteBars::default();
        let id = InstrumentId::new("BTC-USDT");
        bars.push(&trade(1, 1_000, 100));
        bars.push(&trade(2, 1_001, 101));
        // A seed never replaces a live minute.
        let mut seeded = MinuteBar::new(999 * MINUTE_NS, &trade(0, 999, 90));
        seeded.trades = 4;
        let mut clash = seeded;
        clash.open_time = 1_000 * MINUTE_NS;
        assert_eq!(bars.seed(&id, [seeded, clash]), 1);
        let all = bars.bars(&id, MINUTE_NS, None, None, 10);
        assert_eq!(
            all.iter()
                .map(|b| (b.open_time / MINUTE_NS, b.trades))
                .collect::<Vec<_>>(),
            vec![(999, 4), (1_000, 1), (1_001, 1)]
        );
        // Three-minute bars, open range, newest last.
        let three = bars.bars(&id, 3 * MINUTE_NS, None, None, 10);
        assert_eq!(three.len(), 1);
        assert_eq!(three[0].open_time, 999 * MINUTE_NS);
        assert_eq!(three[0].trades, 6);
        assert_eq!(three[0].close, Price::from_units(101));
    }
}
