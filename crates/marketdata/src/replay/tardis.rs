//! Tardis.dev CSV exports: `trades` and `quotes` (top of book).
//!
//! Columns are found by header name, so column order does not matter:
//! trades need `symbol,timestamp,local_timestamp,id,side,price,amount`; quotes need
//! `symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount`. Timestamps are
//! microseconds since the epoch; the event time is the venue's `timestamp` unless
//! [`TimestampSource::Local`] is chosen. A trade's `side` is the aggressor (`buy`/`sell`; Tardis'
//! `unknown` is a row error since a model trade always has an aggressor).

use super::{
    CsvRows, Fields, Parsed, ReplayError, RowError, SymbolCache, SymbolMap, column_indices, open,
};
use std::io::Read;
use std::path::Path;
use tradestack_model::{Price, Quantity, Quote, Side, Trade, TradeId, UnixNanos};

/// Which Tardis timestamp becomes the event time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampSource {
    /// The venue's own time (`timestamp`), the default.
    #[default]
    Exchange,
    /// When Tardis received it (`local_timestamp`).
    Local,
}

/// Parses a microsecond timestamp column into nanoseconds.
fn micros(f: &Fields<'_>, idx: usize, name: &str) -> Result<UnixNanos, RowError> {
    let us: i64 = f.parse(idx, name)?;
    us.checked_mul(1_000)
        .map(UnixNanos)
        .ok_or_else(|| f.error(name, "out of range"))
}

/// A price column that must be > 0.
pub(crate) fn positive_price(f: &Fields<'_>, idx: usize, name: &str) -> Result<Price, RowError> {
    let p: Price = f.parse(idx, name)?;
    if p.raw() <= 0 {
        return Err(f.error(name, format!("{p} is not a positive price")));
    }
    Ok(p)
}

/// What both readers share: the rows, where the columns are, the symbol map and the time
/// source. The first three columns are always `symbol,timestamp,local_timestamp`.
struct TardisRows<R: Read> {
    rows: CsvRows<R>,
    cols: [usize; 7],
    symbols: SymbolMap,
    cache: SymbolCache,
    time: TimestampSource,
}

impl<R: Read> TardisRows<R> {
    /// Reads the header, finding the common columns and the kind's own four.
    fn new(
        reader: R,
        file: &str,
        symbols: SymbolMap,
        own: [&'static str; 4],
    ) -> Result<Self, ReplayError> {
        let mut rows = CsvRows::new(reader, file, true);
        let header = rows.headers()?;
        let [a, b, c, d] = own;
        let cols = column_indices(
            file,
            &header,
            ["symbol", "timestamp", "local_timestamp", a, b, c, d],
        )?;
        Ok(TardisRows {
            rows,
            cols,
            symbols,
            cache: SymbolCache::default(),
            time: TimestampSource::Exchange,
        })
    }

    /// The next row as an event: `build` gets the row, the kind's column positions, the
    /// instrument and the event time.
    fn next_with<T>(
        &mut self,
        build: impl FnOnce(
            &Fields<'_>,
            [usize; 4],
            tradestack_model::InstrumentId,
            UnixNanos,
        ) -> Result<T, RowError>,
    ) -> Option<Result<T, RowError>> {
        let [sym, ts, local, a, b, c, d] = self.cols;
        let (symbols, cache, time) = (&self.symbols, &mut self.cache, self.time);
        let row = match self.rows.next_row()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let venue = row.text(sym, "symbol")?;
            let instrument = cache
                .resolve(symbols, venue)
                .ok_or_else(|| row.error("symbol", format!("{venue:?} is not mapped")))?;
            let exchange_ts = micros(&row, ts, "timestamp")?;
            let local_ts = micros(&row, local, "local_timestamp")?;
            let at = match time {
                TimestampSource::Exchange => exchange_ts,
                TimestampSource::Local => local_ts,
            };
            build(&row, [a, b, c, d], instrument, at)
        })())
    }
}

/// Reads Tardis trade rows as model trades, in file order.
pub struct TardisTrades<R: Read>(TardisRows<R>);

impl<R: Read> TardisTrades<R> {
    /// Reads the header of `reader` (named `file` in errors).
    pub fn new(reader: R, file: &str, symbols: SymbolMap) -> Result<Self, ReplayError> {
        TardisRows::new(reader, file, symbols, ["id", "side", "price", "amount"]).map(TardisTrades)
    }

    /// Chooses the timestamp that becomes the event time.
    pub fn with_timestamp(mut self, source: TimestampSource) -> Self {
        self.0.time = source;
        self
    }
}

impl<R: Read> Iterator for TardisTrades<R> {
    type Item = Result<Trade, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next_with(|row, [id, side, price, amount], instrument, ts| {
                let aggressor = match row.text(side, "side")? {
                    "buy" | "BUY" | "Buy" => Side::Buy,
                    "sell" | "SELL" | "Sell" => Side::Sell,
                    other => return Err(row.error("side", format!("{other:?} is not buy or sell"))),
                };
                Ok(Trade {
                    id: TradeId(row.parse(id, "id")?),
                    instrument,
                    price: positive_price(row, price, "price")?,
                    quantity: row.parse::<Quantity>(amount, "amount")?,
                    aggressor,
                    ts,
                })
            })
    }
}

/// Reads Tardis quote rows as model quotes, in file order.
pub struct TardisQuotes<R: Read>(TardisRows<R>);

impl<R: Read> TardisQuotes<R> {
    /// Reads the header of `reader` (named `file` in errors).
    pub fn new(reader: R, file: &str, symbols: SymbolMap) -> Result<Self, ReplayError> {
        let own = ["ask_amount", "ask_price", "bid_price", "bid_amount"];
        TardisRows::new(reader, file, symbols, own).map(TardisQuotes)
    }

    /// Chooses the timestamp that becomes the event time.
    pub fn with_timestamp(mut self, source: TimestampSource) -> Self {
        self.0.time = source;
        self
    }
}

impl<R: Read> Iterator for TardisQuotes<R> {
    type Item = Result<Quote, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_with(
            |row, [ask_amount, ask_price, bid_price, bid_amount], instrument, ts| {
                Ok(Quote {
                    instrument,
                    bid: positive_price(row, bid_price, "bid_price")?,
                    bid_size: row.parse(bid_amount, "bid_amount")?,
                    ask: positive_price(row, ask_price, "ask_price")?,
                    ask_size: row.parse(ask_amount, "ask_amount")?,
                    ts,
                })
            },
        )
    }
}

/// Reads a whole Tardis trades file, time-ordered.
pub fn read_trades(path: &Path, symbols: SymbolMap) -> Result<Parsed<Trade>, ReplayError> {
    let (reader, name) = open(path)?;
    Ok(Parsed::collect_sorted(
        TardisTrades::new(reader, &name, symbols)?,
        |t| t.ts,
    ))
}

/// Reads a whole Tardis quotes file, time-ordered.
pub fn read_quotes(path: &Path, symbols: SymbolMap) -> Result<Parsed<Quote>, ReplayError> {
    let (reader, name) = open(path)?;
    Ok(Parsed::collect_sorted(
        TardisQuotes::new(reader, &name, symbols)?,
        |q| q.ts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n";

    #[test]
    fn parses_trades_and_reports_bad_rows_by_line_and_field() {
        let text = format!(
            "{HEADER}\
             binance-futures,BTCUSDT,1582329602111000,1582329602418379,42377944,buy,9682,0.132\n\
             binance-futures,BTCUSDT,1582329602116000,1582329602418420,42377945,sell,9681.5,x\n\
             binance-futures,BTCUSDT,1582329602117000,1582329602418420,42377946,unknown,9681,1\n\
             binance-futures,BTCUSDT,1582329602118000,1582329602418420,42377947,buy,-3,1\n\
             binance-futures,BTCUSDT,1582329602119000\n\
             binance-futures,BTCUSDT,1582329602120000,1582329602418420,42377948,sell,9680.123456789,1\n\
             binance-futures,BTCUSDT,1582329602121000,1582329602418999,42377949,sell,9680.5,2\n"
        );
        let rows: Vec<_> = TardisTrades::new(text.as_bytes(), "t.csv", SymbolMap::new())
            .unwrap()
            .collect();
        assert_eq!(rows.len(), 7);
        let ok: Vec<&Trade> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].instrument.as_str(), "BTC-USDT");
        assert_eq!(ok[0].price.to_string(), "9682");
        assert_eq!(ok[0].quantity.to_string(), "0.132");
        assert_eq!(ok[0].ts, UnixNanos(1_582_329_602_111_000_000));
        assert_eq!(ok[0].id, TradeId(42_377_944));
        assert_eq!(ok[1].aggressor, Side::Sell);
        let errs: Vec<(u64, String)> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.field.clone()))
            .collect();
        assert_eq!(
            errs,
            vec![
                (3, "amount".to_string()),
                (4, "side".to_string()),
                (5, "price".to_string()),
                (6, "local_timestamp".to_string()),
                (7, "price".to_string()),
            ]
        );
        let e = rows[1].as_ref().unwrap_err().to_string();
        assert!(e.starts_with("t.csv:3: field `amount`"), "{e}");
    }

    #[test]
    fn local_timestamps_and_strict_symbols() {
        let text =
            format!("{HEADER}x,BTCUSDT,1000,2000,1,buy,1,1\nx,ETHUSDT,1000,2000,2,buy,1,1\n");
        let map = SymbolMap::strict().with("BTCUSDT", "BTC-PERP");
        let rows: Vec<_> = TardisTrades::new(text.as_bytes(), "t", map)
            .unwrap()
            .with_timestamp(TimestampSource::Local)
            .collect();
        let t = rows[0].as_ref().unwrap();
        assert_eq!(t.ts, UnixNanos(2_000_000));
        assert_eq!(t.instrument.as_str(), "BTC-PERP");
        assert_eq!(rows[1].as_ref().unwrap_err().field, "symbol");
    }

    #[test]
    fn missing_columns_are_a_file_error() {
        let err = TardisTrades::new(
            "exchange,symbol,timestamp\n".as_bytes(),
            "t",
            SymbolMap::new(),
        )
        .err()
        .unwrap();
        assert!(matches!(
            err,
            ReplayError::MissingColumn {
                column: "local_timestamp",
                ..
            }
        ));
    }

    #[test]
    fn parses_quotes() {
        let text = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n\
                    binance-futures,BTCUSDT,1582329601096000,1582329603502092,0.84,9682,9681.92,0.67\n\
                    binance-futures,BTCUSDT,1582329601097000,1582329603502092,,9682,9681.92,0.67\n";
        let rows: Vec<_> = TardisQuotes::new(text.as_bytes(), "q", SymbolMap::new())
            .unwrap()
            .collect();
        let q = rows[0].as_ref().unwrap();
        assert_eq!(q.bid.to_string(), "9681.92");
        assert_eq!(q.ask_size.to_string(), "0.84");
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str(), e.reason.as_str()),
            (3, "ask_amount", "empty")
        );
    }
}
