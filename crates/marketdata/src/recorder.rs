//! Writes trades, quotes and the bars built from the trades into the
//! time-series store, in batches.

use std::collections::BTreeMap;

use tradestack_model::{Bar, InstrumentId, Nanos, Price, Quantity, Quote, Side, Trade, UnixNanos};
use tradestack_timeseries::{BatchBuilder, Store, StoreError, Value};

use crate::bars::{BarBuilder, BarConfig, BarError, BarEvent};

/// The label of a bar interval: `1s`, `1m`, `5m`, `1h`, `1d`, else seconds.
pub fn interval_label(i: Nanos) -> String {
    let s = i.0 / 1_000_000_000;
    match s {
        _ if i.0 % 1_000_000_000 != 0 => format!("{}ns", i.0),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Batches market data into the store.
pub struct Recorder {
    store: Store,
    venue: String,
    trades: BatchBuilder,
    quotes: BatchBuilder,
    bars: BatchBuilder,
    books: BatchBuilder,
    builder: BarBuilder,
    last_quote: BTreeMap<InstrumentId, (Price, Quantity, Price, Quantity)>,
}

/// Recorder errors.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store refused a batch.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A bar could not be built.
    #[error("bars: {0}")]
    Bar(#[from] BarError),
}

fn dec(raw: i64) -> Value<'static> {
    Value::Decimal(i128::from(raw))
}

impl Recorder {
    /// A recorder for trades of `venue`, building bars per `bars`.
    pub fn new(store: Store, venue: &str, bars: &BarConfig) -> Result<Recorder, RecordError> {
        Ok(Recorder {
            trades: store.builder("trades")?,
            quotes: store.builder("quotes")?,
            bars: store.builder("bars")?,
            books: store.builder("book_snapshots")?,
            builder: BarBuilder::new(bars)?,
            store,
            venue: venue.to_string(),
            last_quote: BTreeMap::new(),
        })
    }

    /// Records a trade and feeds the bar builder.
    pub fn trade(&mut self, t: &Trade) -> Result<(), RecordError> {
        let side = match t.aggressor {
            Side::Buy => "buy",
            Side::Sell => "sell",
        };
        self.trades
            .push_row(
                t.ts.0,
                [
                    ("symbol", Value::Str(t.instrument.as_str()), true),
                    ("venue", Value::Str(&self.venue), true),
                    ("side", Value::Str(side), true),
                    ("price", dec(t.price.0), false),
                    ("quantity", dec(t.quantity.0), false),
                    ("trade_id", Value::Long(t.id.0 as i64), false),
                ],
            )
            .map_err(|error| StoreError::Row {
                table: "trades".into(),
                error,
            })?;
        for e in self.builder.on_trade(t)? {
            self.bar_event(e)?;
        }
        Ok(())
    }

    fn bar_event(&mut self, e: BarEvent) -> Result<(), RecordError> {
        let b = e.bar().clone();
        self.bar(&b)
    }

    /// Records a bar (built elsewhere, e.g. replayed klines).
    pub fn bar(&mut self, b: &Bar) -> Result<(), RecordError> {
        let label = interval_label(b.interval);
        self.bars
            .push_row(
                b.open_time.0,
                [
                    ("symbol", Value::Str(b.instrument.as_str()), true),
                    ("venue", Value::Str(&self.venue), true),
                    ("period", Value::Str(&label), true),
                    ("open", dec(b.open.0), false),
                    ("high", dec(b.high.0), false),
                    ("low", dec(b.low.0), false),
                    ("close", dec(b.close.0), false),
                    ("volume", dec(b.volume.0), false),
                    ("quote_volume", Value::Decimal(b.quote_volume.0), false),
                    ("trades", Value::Long(b.trades as i64), false),
                    ("vwap", dec(b.vwap.0), false),
                ],
            )
            .map_err(|error| StoreError::Row {
                table: "bars".into(),
                error,
            })?;
        Ok(())
    }

    /// Records a top-of-book quote, unless it equals the previous one.
    pub fn quote(&mut self, q: &Quote) -> Result<(), RecordError> {
        let key = (q.bid, q.bid_size, q.ask, q.ask_size);
        if self.last_quote.get(&q.instrument) == Some(&key) {
            return Ok(());
        }
        self.last_quote.insert(q.instrument.clone(), key);
        self.quotes
            .push_row(
                q.ts.0,
                [
                    ("symbol", Value::Str(q.instrument.as_str()), true),
                    ("venue", Value::Str(&self.venue), true),
                    ("bid", dec(q.bid.0), false),
                    ("bid_size", dec(q.bid_size.0), false),
                    ("ask", dec(q.ask.0), false),
                    ("ask_size", dec(q.ask_size.0), false),
                ],
            )
            .map_err(|error| StoreError::Row {
                table: "quotes".into(),
                error,
            })?;
        Ok(())
    }

    /// Records the top levels of a book, one row per level (`level` 0 is the best).
    pub fn book(&mut self, b: &crate::feed::BookLevels) -> Result<(), RecordError> {
        for (side, levels) in [("bid", &b.bids), ("ask", &b.asks)] {
            for (i, (price, quantity)) in levels.iter().enumerate() {
                self.books
                    .push_row(
                        b.ts.0,
                        [
                            ("symbol", Value::Str(b.instrument.as_str()), true),
                            ("venue", Value::Str(&self.venue), true),
                            ("side", Value::Str(side), true),
                            ("level", Value::Long(i as i64), false),
                            ("price", dec(price.0), false),
                            ("quantity", dec(quantity.0), false),
                        ],
                    )
                    .map_err(|error| StoreError::Row {
                        table: "book_snapshots".into(),
                        error,
                    })?;
            }
        }
        Ok(())
    }

    /// Records any feed event.
    pub fn event(&mut self, e: &crate::feed::FeedEvent) -> Result<(), RecordError> {
        use crate::feed::FeedEvent;
        match e {
            FeedEvent::Trade(t) => self.trade(t),
            FeedEvent::Quote(q) => self.quote(q),
            FeedEvent::Bar(b) => self.bar(b),
            FeedEvent::Book(b) => self.book(b),
        }
    }

    /// Closes the bars that ended by `now`.
    pub fn advance_to(&mut self, now: UnixNanos) -> Result<(), RecordError> {
        for e in self.builder.advance_to(now) {
            self.bar_event(e)?;
        }
        Ok(())
    }

    /// Closes every open bar (end of a replay or a run).
    pub fn finish_bars(&mut self) -> Result<(), RecordError> {
        for e in self.builder.flush() {
            self.bar_event(e)?;
        }
        Ok(())
    }

    /// Rows waiting to be committed.
    pub fn pending(&self) -> usize {
        self.trades.rows() + self.quotes.rows() + self.bars.rows() + self.books.rows()
    }

    /// Commits what is pending; the rows committed.
    pub fn commit(&mut self) -> Result<usize, RecordError> {
        if self.pending() == 0 {
            return Ok(0);
        }
        let take = |b: &mut BatchBuilder| {
            let fresh = BatchBuilder::new(b.schema().clone());
            std::mem::replace(b, fresh)
        };
        let batches = vec![
            take(&mut self.trades),
            take(&mut self.quotes),
            take(&mut self.bars),
            take(&mut self.books),
        ];
        Ok(self.store.commit(batches)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_labels() {
        let s = 1_000_000_000;
        assert_eq!(interval_label(Nanos(s)), "1s");
        assert_eq!(interval_label(Nanos(60 * s)), "1m");
        assert_eq!(interval_label(Nanos(15 * 60 * s)), "15m");
        assert_eq!(interval_label(Nanos(3600 * s)), "1h");
        assert_eq!(interval_label(Nanos(86_400 * s)), "1d");
        assert_eq!(interval_label(Nanos(90 * s)), "90s");
    }
}
