//! Parsers that turn recorded market-data files into time-ordered model events, and the pure
//! pacing rule a replayer uses to space them out.
//!
//! | file | reader | yields |
//! |---|---|---|
//! | Tardis `trades` CSV | [`tardis::TardisTrades`] | [`Trade`](tradestack_model::Trade) |
//! | Tardis `quotes` CSV | [`tardis::TardisQuotes`] | [`Quote`](tradestack_model::Quote) |
//! | Binance 12-column kline CSV | [`klines::BinanceKlines`] | [`Bar`](tradestack_model::Bar) |
//! | FTX 1m OHLCV CSV | [`klines::FtxBars`] | [`Bar`](tradestack_model::Bar) |
//! | Binance depth snapshot + diffs | [`depth`] | [`depth::DepthBook`] states |
//! | LOBSTER message file | [`lobster::LobsterMessages`] | [`lobster::LobsterMessage`] |
//!
//! [`load::load`] finds each file's format and merges any set of files into one time-ordered
//! stream of feed events; the service's replay jobs publish that stream on the bus.
//!
//! Every reader is an iterator of `Result<event, RowError>` over any [`std::io::Read`]: a
//! malformed row becomes a [`RowError`] naming the file, the line and the field, and parsing
//! carries on with the next row; nothing panics on bad input. [`Parsed::collect_sorted`]
//! gathers events and errors and puts the events in time order (stable, so equal times keep
//! file order). The `read_*` functions do the same from a path.
//!
//! All prices and sizes are parsed from their decimal text straight into fixed point; a value
//! with more than 8 decimals is a row error, never silently rounded.

pub mod depth;
pub mod klines;
pub mod load;
pub mod lobster;
pub mod pacing;
pub mod tardis;

pub use pacing::{PacingError, Speed, replay_delay};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::str::FromStr;
use tradestack_model::InstrumentId;

/// One malformed row: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: field `{field}`: {reason}")]
pub struct RowError {
    /// The file (or source name) it came from.
    pub file: String,
    /// 1-based line number in that file.
    pub line: u64,
    /// The field (column name) at fault, or `row` for the row as a whole.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// A failure that stops a whole file from being read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The header lacks a required column.
    #[error("{file}: header has no `{column}` column")]
    MissingColumn {
        /// The file.
        file: String,
        /// The column.
        column: &'static str,
    },
    /// The file parsed but is not valid as a whole (e.g. a snapshot mixing update ids).
    #[error("{file}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The header row could not be read.
    #[error("{file}: unreadable header: {message}")]
    Header {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
}

/// The events of one file in time order, and the rows that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    /// Parsed events, stably sorted by time.
    pub events: Vec<T>,
    /// Malformed rows, in file order.
    pub errors: Vec<RowError>,
    /// Events whose time was earlier than the one before them in the file.
    pub out_of_order: u64,
}

impl<T> Parsed<T> {
    /// Collects a reader's results, sorting events by `time` (stable).
    pub fn collect_sorted<I, K>(rows: I, time: impl Fn(&T) -> K) -> Parsed<T>
    where
        I: IntoIterator<Item = Result<T, RowError>>,
        K: Ord + Copy,
    {
        let mut events = Vec::new();
        let mut errors = Vec::new();
        let mut out_of_order = 0;
        let mut last: Option<K> = None;
        for r in rows {
            match r {
                Ok(e) => {
                    let k = time(&e);
                    if last.is_some_and(|l| k < l) {
                        out_of_order += 1;
                    }
                    last = Some(last.map_or(k, |l| l.max(k)));
                    events.push(e);
                }
                Err(e) => errors.push(e),
            }
        }
        if out_of_order > 0 {
            events.sort_by_key(|e| time(e));
        }
        Parsed {
            events,
            errors,
            out_of_order,
        }
    }
}

/// Maps venue symbols (`BTCUSDT`) to instrument ids (`BTC-USDT`).
///
/// Explicit entries win; otherwise, unless the map is strict, [`SymbolMap::default_rule`]
/// applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolMap {
    explicit: BTreeMap<String, InstrumentId>,
    strict: bool,
}

/// Quote assets recognised by the default rule, longest first so `BUSD` wins over `USD`.
const QUOTE_ASSETS: [&str; 12] = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY", "DAI",
];

impl SymbolMap {
    /// An empty map that falls back to the default rule.
    pub fn new() -> Self {
        SymbolMap::default()
    }

    /// An empty map that knows only explicit entries.
    pub fn strict() -> Self {
        SymbolMap {
            explicit: BTreeMap::new(),
            strict: true,
        }
    }

    /// Adds an explicit mapping.
    pub fn with(mut self, venue_symbol: &str, instrument: &str) -> Self {
        self.explicit
            .insert(venue_symbol.to_string(), InstrumentId::new(instrument));
        self
    }

    /// The instrument for a venue symbol, if known.
    pub fn resolve(&self, venue_symbol: &str) -> Option<InstrumentId> {
        match self.explicit.get(venue_symbol) {
            Some(id) => Some(id.clone()),
            None if self.strict => None,
            None => Some(Self::default_rule(venue_symbol)),
        }
    }

    /// Upper-cases; `BTC/USDT`, `btc_usdt` become `BTC-USDT`; a concatenated pair ending in a
    /// known quote asset (`BTCUSDT`, `ADABTC`) is split; anything else is kept as it is.
    pub fn default_rule(venue_symbol: &str) -> InstrumentId {
        let s = venue_symbol.trim().to_ascii_uppercase();
        if s.contains(['-', '/', '_']) {
            return InstrumentId::new(s.replace(['/', '_'], "-"));
        }
        for q in QUOTE_ASSETS {
            if let Some(base) = s.strip_suffix(q)
                && !base.is_empty()
            {
                return InstrumentId::new(format!("{base}-{q}"));
            }
        }
        InstrumentId::new(s)
    }
}

/// A CSV source: the csv reader, its name for error messages, and a record buffer.
pub(crate) struct CsvRows<R: Read> {
    file: String,
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    /// Wraps `reader`; with `has_headers` the first line is the header.
    pub(crate) fn new(reader: R, file: &str, has_headers: bool) -> Self {
        CsvRows {
            file: file.to_string(),
            reader: csv::ReaderBuilder::new()
                .has_headers(has_headers)
                // Rows of the wrong width become our own row errors, not csv failures.
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(reader),
            record: csv::StringRecord::new(),
            done: false,
        }
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The header row's column names.
    pub(crate) fn headers(&mut self) -> Result<Vec<String>, ReplayError> {
        self.reader
            .headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .map_err(|e| ReplayError::Header {
                file: self.file.clone(),
                message: e.to_string(),
            })
    }

    /// The next data row as fields, or a row error; `None` at the end. An I/O failure is
    /// reported once and ends the stream.
    pub(crate) fn next_row(&mut self) -> Option<Result<Fields<'_>, RowError>> {
        if self.done {
            return None;
        }
        match self.reader.read_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                Some(Ok(Fields {
                    file: &self.file,
                    line,
                    record: &self.record,
                }))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                }
                Some(Err(RowError {
                    file: self.file.clone(),
                    line,
                    field: "row".to_string(),
                    reason: e.to_string(),
                }))
            }
        }
    }
}

/// One CSV row with what is needed to name a faulty field.
pub(crate) struct Fields<'a> {
    file: &'a str,
    pub(crate) line: u64,
    record: &'a csv::StringRecord,
}

impl Fields<'_> {
    /// A row error about `field`.
    pub(crate) fn error(&self, field: &str, reason: impl Into<String>) -> RowError {
        RowError {
            file: self.file.to_string(),
            line: self.line,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Fails unless the row has exactly `n` fields.
    pub(crate) fn expect_len(&self, n: usize) -> Result<(), RowError> {
        if self.record.len() == n {
            Ok(())
        } else {
            Err(self.error(
                "row",
                format!("expected {n} fields, found {}", self.record.len()),
            ))
        }
    }

    /// The text of column `idx` (named `name` in errors), non-empty.
    pub(crate) fn text(&self, idx: usize, name: &str) -> Result<&str, RowError> {
        match self.record.get(idx) {
            None => Err(self.error(name, "missing")),
            Some("") => Err(self.error(name, "empty")),
            Some(s) => Ok(s),
        }
    }

    /// Column `idx` parsed as `T`, with the parse error as the reason.
    pub(crate) fn parse<T>(&self, idx: usize, name: &str) -> Result<T, RowError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let s = self.text(idx, name)?;
        s.parse::<T>()
            .map_err(|e| self.error(name, format!("{s:?}: {e}")))
    }
}

/// Finds each required column in a header; `MissingColumn` names the first absent one.
pub(crate) fn column_indices<const N: usize>(
    file: &str,
    header: &[String],
    wanted: [&'static str; N],
) -> Result<[usize; N], ReplayError> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(wanted) {
        *slot = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| ReplayError::MissingColumn {
                file: file.to_string(),
                column: name,
            })?;
    }
    Ok(out)
}

/// Opens `path` buffered, with its file name for error messages.
pub(crate) fn open(path: &Path) -> Result<(BufReader<File>, String), ReplayError> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let file = File::open(path).map_err(|source| ReplayError::Io {
        file: name.clone(),
        source,
    })?;
    Ok((BufReader::new(file), name))
}

/// A one-entry symbol cache, so a file of one instrument allocates its id once.
#[derive(Clone, Debug, Default)]
pub(crate) struct SymbolCache {
    last: Option<(String, InstrumentId)>,
}

impl SymbolCache {
    /// Resolves through `map`, reusing the previous answer for a repeated symbol.
    pub(crate) fn resolve(&mut self, map: &SymbolMap, venue: &str) -> Option<InstrumentId> {
        if let Some((s, id)) = &self.last
            && s == venue
        {
            return Some(id.clone());
        }
        let id = map.resolve(venue)?;
        self.last = Some((venue.to_string(), id.clone()));
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_symbol_rule() {
        let r = |s| SymbolMap::default_rule(s).as_str().to_string();
        assert_eq!(r("BTCUSDT"), "BTC-USDT");
        assert_eq!(r("btcusdt"), "BTC-USDT");
        assert_eq!(r("ETHBUSD"), "ETH-BUSD");
        assert_eq!(r("ADABTC"), "ADA-BTC");
        assert_eq!(r("BTC-PERP"), "BTC-PERP");
        assert_eq!(r("eth/usdc"), "ETH-USDC");
        assert_eq!(r("USDT"), "USDT");
        assert_eq!(r("XYZ"), "XYZ");
    }

    #[test]
    fn explicit_and_strict_maps() {
        let m = SymbolMap::new().with("XBTUSD", "BTC-USD");
        assert_eq!(m.resolve("XBTUSD").unwrap().as_str(), "BTC-USD");
        assert_eq!(m.resolve("ETHUSD").unwrap().as_str(), "ETH-USD");
        let s = SymbolMap::strict().with("BTCUSDT", "BTC-PERP");
        assert_eq!(s.resolve("BTCUSDT").unwrap().as_str(), "BTC-PERP");
        assert_eq!(s.resolve("ETHUSDT"), None);
    }

    #[test]
    fn collect_sorted_orders_stably_and_counts() {
        let rows: Vec<Result<(i64, char), RowError>> = vec![
            Ok((2, 'a')),
            Ok((1, 'b')),
            Err(RowError {
                file: "f".into(),
                line: 3,
                field: "x".into(),
                reason: "bad".into(),
            }),
            Ok((2, 'c')),
            Ok((1, 'd')),
        ];
        let p = Parsed::collect_sorted(rows, |e| e.0);
        assert_eq!(p.events, vec![(1, 'b'), (1, 'd'), (2, 'a'), (2, 'c')]);
        assert_eq!(p.out_of_order, 2);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].to_string(), "f:3: field `x`: bad");
    }
}
