//! Recorded files to one time-ordered stream of [`FeedEvent`]s, with the format found from the
//! file itself, so a replay (onto the bus, or into a backtest) takes any mix of files.
//!
//! | format | recognised by | events |
//! |---|---|---|
//! | Tardis trades | header `exchange,symbol,timestamp,local_timestamp,id,side,price,amount` | trades |
//! | Tardis quotes | header with `ask_amount,ask_price,bid_price,bid_amount` | quotes |
//! | Binance klines | 12 numeric columns, no header; `SYMBOL-1m-...` file name | 1m bars |
//! | FTX bars | header `timestamp,open,high,low,close,volume`; `FTX_SYMBOL_...` name | 1m bars |
//! | Binance depth | `..._depth-snapshot.csv` with its `..._depth-updates.csv` beside it | top-10 books and quotes |
//! | LOBSTER | `TICKER_DATE_..._message_N.csv`, with `..._orderbook_N.csv` if present | trades (executions) and quotes |
//!
//! The venue comes from the file: Tardis's `exchange` column, else `binance`, `ftx` or
//! `lobster`. LOBSTER times are New York local time; the offset (EST or EDT) follows the US
//! daylight-saving rule for the file's date. Depth diffs replay with [`GapPolicy::Continue`]:
//! a gap is counted in the load's errors and the book carries on, as a recorder would.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use tradestack_model::{InstrumentId, Nanos, Price, Quantity, Quote, Side, Trade, TradeId};

use super::depth::{Applied, DepthProtocol, DepthReplay, GapPolicy, read_depth};
use super::klines::{FtxVolume, read_binance_klines, read_ftx_bars};
use super::lobster::{LobsterMessage, read_messages, session_midnight};
use super::tardis::{read_quotes, read_trades};
use super::{CsvRows, Parsed, ReplayError, RowError, SymbolMap, open};
use crate::feed::{BookLevels, FeedEvent, FeedMessage};
use crate::util::days_from_civil;

/// Book levels kept per side in replayed depth snapshots.
pub const BOOK_DEPTH: usize = 10;

/// A recorded-file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tardis trades CSV.
    TardisTrades,
    /// Tardis quotes CSV.
    TardisQuotes,
    /// Binance 12-column klines.
    BinanceKlines,
    /// FTX OHLCV.
    FtxBars,
    /// Binance depth snapshot (+ updates).
    BinanceDepth,
    /// LOBSTER messages (+ order book).
    Lobster,
}

/// Every event of a set of files, time-ordered, and what could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Events in time order (files merged; equal times keep file order).
    pub events: Vec<FeedMessage>,
    /// Rows or events that were skipped, with where and why.
    pub errors: Vec<RowError>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn invalid(path: &Path, reason: impl Into<String>) -> ReplayError {
    ReplayError::Invalid {
        file: file_name(path),
        reason: reason.into(),
    }
}

/// Finds a file's format from its name and first line.
pub fn detect(path: &Path) -> Result<Format, ReplayError> {
    let name = file_name(path);
    if name.contains("_depth-snapshot") || name.contains("_depth-updates") {
        return Ok(Format::BinanceDepth);
    }
    if name.contains("_message_") {
        return Ok(Format::Lobster);
    }
    let (mut reader, _) = open(path)?;
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|source| ReplayError::Io {
            file: name.clone(),
            source,
        })?;
    let header = first.trim().to_ascii_lowercase();
    if header.starts_with("exchange,symbol,timestamp") {
        if header.contains("ask_price") {
            return Ok(Format::TardisQuotes);
        }
        if header.contains("price") && header.contains("amount") {
            return Ok(Format::TardisTrades);
        }
    }
    if header.starts_with("timestamp,open,high,low,close,volume") {
        return Ok(Format::FtxBars);
    }
    let fields: Vec<&str> = header.split(',').collect();
    if fields.len() == 12 && fields.iter().all(|f| f.parse::<f64>().is_ok()) {
        return Ok(Format::BinanceKlines);
    }
    Err(invalid(
        path,
        "unknown format (expected Tardis trades or quotes, Binance klines or depth, FTX bars \
         or LOBSTER messages)",
    ))
}

/// The sibling of a file whose name differs by one part (`snapshot` ↔ `updates`).
fn sibling(path: &Path, from: &str, to: &str) -> PathBuf {
    path.with_file_name(file_name(path).replace(from, to))
}

/// Loads every file (see the module docs) and merges them into one timeline. A file that
/// cannot be read at all fails the whole load; bad rows are reported and skipped.
pub fn load(paths: &[PathBuf], symbols: &SymbolMap) -> Result<Timeline, ReplayError> {
    let mut timeline = Timeline::default();
    let mut seen_depth = Vec::new();
    for path in paths {
        let format = detect(path)?;
        let part = match format {
            Format::TardisTrades => tagged(
                &tardis_venue(path),
                read_trades(path, symbols.clone())?,
                FeedEvent::Trade,
            ),
            Format::TardisQuotes => tagged(
                &tardis_venue(path),
                read_quotes(path, symbols.clone())?,
                FeedEvent::Quote,
            ),
            Format::BinanceKlines => {
                let symbol = file_name(path)
                    .split('-')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let parsed =
                    read_binance_klines(path, symbols_resolve(symbols, &symbol, path)?, None)?;
                tagged("binance", parsed, FeedEvent::Bar)
            }
            Format::FtxBars => {
                let symbol = file_name(path)
                    .split('_')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let parsed = read_ftx_bars(
                    path,
                    symbols_resolve(symbols, &symbol, path)?,
                    Nanos::from_secs(60),
                    FtxVolume::Quote,
                )?;
                tagged("ftx", parsed, FeedEvent::Bar)
            }
            Format::BinanceDepth => {
                let snapshot = sibling(path, "_depth-updates", "_depth-snapshot");
                if seen_depth.contains(&snapshot) {
                    continue;
                }
                seen_depth.push(snapshot.clone());
                depth(&snapshot, symbols)?
            }
            Format::Lobster => lobster(path)?,
        };
        timeline.events.extend(part.events);
        timeline.errors.extend(part.errors);
    }
    timeline
        .events
        .sort_by_key(|m| crate::disruption::Tick::ts(&m.event));
    Ok(timeline)
}

fn symbols_resolve(
    map: &SymbolMap,
    symbol: &str,
    path: &Path,
) -> Result<InstrumentId, ReplayError> {
    map.resolve(symbol)
        .ok_or_else(|| invalid(path, format!("symbol {symbol:?} is not in the symbol map")))
}

fn tagged<T>(venue: &str, parsed: Parsed<T>, wrap: impl Fn(T) -> FeedEvent) -> Timeline {
    Timeline {
        events: parsed
            .events
            .into_iter()
            .map(|e| FeedMessage {
                venue: venue.to_string(),
                event: wrap(e),
            })
            .collect(),
        errors: parsed.errors,
    }
}

/// A Tardis file's venue: the prefix of its name (`binance-futures_BTCUSDT_...`, Tardis's own
/// naming), else `tardis`.
fn tardis_venue(path: &Path) -> String {
    let name = file_name(path);
    match name.split_once('_') {
        Some((venue, _)) if !venue.is_empty() => venue.to_string(),
        _ => "tardis".to_string(),
    }
}

fn book_levels(replay: &DepthReplay<'_>, instrument: &InstrumentId) -> BookLevels {
    let book = replay.book();
    BookLevels {
        instrument: instrument.clone(),
        ts: book.ts(),
        bids: book.bids().take(BOOK_DEPTH).collect(),
        asks: book.asks().take(BOOK_DEPTH).collect(),
    }
}

/// A depth snapshot and its diffs: a book (and quote) after the snapshot and after each diff.
fn depth(snapshot: &Path, symbols: &SymbolMap) -> Result<Timeline, ReplayError> {
    let updates = sibling(snapshot, "_depth-snapshot", "_depth-updates");
    let files = read_depth(snapshot, &updates)?;
    let instrument = symbols_resolve(symbols, &files.snapshot.symbol, snapshot)?;
    let mut out = Timeline {
        events: Vec::new(),
        errors: files.errors,
    };
    let mut replay = DepthReplay::new(
        &files.snapshot,
        &files.events,
        DepthProtocol::Futures,
        GapPolicy::Continue,
    );
    let emit = |out: &mut Timeline, replay: &DepthReplay<'_>| {
        let levels = book_levels(replay, &instrument);
        if let Some(q) = replay.book().top().to_quote(instrument.clone(), levels.ts) {
            out.events.push(FeedMessage {
                venue: "binance".into(),
                event: FeedEvent::Quote(q),
            });
        }
        out.events.push(FeedMessage {
            venue: "binance".into(),
            event: FeedEvent::Book(levels),
        });
    };
    emit(&mut out, &replay);
    let name = file_name(&updates);
    let events = files.events.clone();
    for ev in &events {
        let Some(step) = replay.next() else { break };
        match step.outcome {
            Ok(Applied::Stale) => continue,
            Ok(Applied::Updated { gap: Some(g), .. }) => out.errors.push(RowError {
                file: name.clone(),
                line: ev.line,
                field: "first_update_id".into(),
                reason: format!("update-id gap: {g}; the book carries on"),
            }),
            Ok(_) => {}
            Err(e) => {
                out.errors.push(RowError {
                    file: name.clone(),
                    line: ev.line,
                    field: "row".into(),
                    reason: e.to_string(),
                });
                continue;
            }
        }
        emit(&mut out, &replay);
    }
    Ok(out)
}

/// US Eastern offset from UTC on a date: EDT (−4 h) from the second Sunday of March to the
/// first Sunday of November, else EST (−5 h).
fn new_york_offset(year: i64, month: u32, day: u32) -> Nanos {
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = |d: u32| (days_from_civil(year, month, d) + 4).rem_euclid(7);
    let nth_sunday = |n: u32| {
        let first = (1..=7).find(|&d| weekday(d) == 0).unwrap_or(1);
        first + 7 * (n - 1)
    };
    let dst = match month {
        4..=10 => true,
        3 => day >= nth_sunday(2),
        11 => day < nth_sunday(1),
        _ => false,
    };
    Nanos::from_secs(if dst { -4 * 3600 } else { -5 * 3600 })
}

/// The date in a LOBSTER file name (`TICKER_YYYY-MM-DD_...`).
fn lobster_date(name: &str) -> Option<(i64, u32, u32)> {
    let mut p = name.split('_').nth(1)?.split('-');
    Some((
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    ))
}

/// LOBSTER: executions become trades (the aggressor is opposite the resting order), and each
/// order-book row (when the file is there) the quote after its message.
fn lobster(path: &Path) -> Result<Timeline, ReplayError> {
    let name = file_name(path);
    let ticker = name.split('_').next().unwrap_or_default().to_string();
    let (y, m, d) = lobster_date(&name).ok_or_else(|| invalid(path, "no date in the file name"))?;
    let midnight = session_midnight(&name, new_york_offset(y, m, d))
        .ok_or_else(|| invalid(path, "no date in the file name"))?;
    let instrument = InstrumentId::new(&ticker);
    let parsed = read_messages(path)?;
    let mut out = Timeline {
        events: Vec::new(),
        errors: parsed.errors,
    };
    let book = sibling(path, "_message_", "_orderbook_");
    let mut quotes = if book.exists() {
        let (reader, book_name) = open(&book)?;
        Some(LobsterTops::new(reader, &book_name))
    } else {
        None
    };
    let mut trade_id = 0u64;
    for msg in parsed.events {
        let ts = msg.at(midnight);
        if let Some(tops) = &mut quotes {
            match tops.next_top() {
                Some(Ok(Some((bid, bid_size, ask, ask_size)))) => out.events.push(FeedMessage {
                    venue: "lobster".into(),
                    event: FeedEvent::Quote(Quote {
                        instrument: instrument.clone(),
                        bid,
                        bid_size,
                        ask,
                        ask_size,
                        ts,
                    }),
                }),
                Some(Ok(None)) | None => {}
                Some(Err(e)) => out.errors.push(e),
            }
        }
        if let LobsterMessage::ExecuteVisible(o)
        | LobsterMessage::ExecuteHidden(o)
        | LobsterMessage::Cross(o) = &msg
        {
            trade_id += 1;
            out.events.push(FeedMessage {
                venue: "lobster".into(),
                event: FeedEvent::Trade(Trade {
                    id: TradeId(trade_id),
                    instrument: instrument.clone(),
                    price: o.price,
                    quantity: o.size,
                    aggressor: match o.side {
                        Side::Buy => Side::Sell,
                        Side::Sell => Side::Buy,
                    },
                    ts,
                }),
            });
        }
    }
    Ok(out)
}

/// Level 1 of a LOBSTER order-book file, row by row.
struct LobsterTops<R: Read> {
    rows: CsvRows<R>,
}

/// Best bid, its size, best ask, its size.
type Top = (Price, Quantity, Price, Quantity);

impl<R: Read> LobsterTops<R> {
    fn new(reader: R, name: &str) -> Self {
        LobsterTops {
            rows: CsvRows::new(reader, name, true),
        }
    }

    /// The next row's top; `None` inside when a side is empty (LOBSTER's dummy prices).
    fn next_top(&mut self) -> Option<Result<Option<Top>, RowError>> {
        let row = match self.rows.next_row()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let level = || -> Result<Option<Top>, RowError> {
            let ask: i64 = row.parse(0, "BestAsk")?;
            let ask_size: i64 = row.parse(1, "BestAskVolume")?;
            let bid: i64 = row.parse(2, "BestBid")?;
            let bid_size: i64 = row.parse(3, "BestBidVolume")?;
            // Empty sides are 9999999999 (ask) and -9999999999 (bid).
            if ask >= 9_999_999_999 || bid <= -9_999_999_999 {
                return Ok(None);
            }
            Ok(Some((
                Price(bid * super::lobster::PRICE_UNIT),
                Quantity::from_units(bid_size),
                Price(ask * super::lobster::PRICE_UNIT),
                Quantity::from_units(ask_size),
            )))
        };
        Some(level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disruption::Tick;

    fn shared(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(rel)
    }

    #[test]
    fn new_york_offsets_follow_daylight_saving() {
        let h = |y, m, d| new_york_offset(y, m, d).0 / 3_600_000_000_000;
        assert_eq!(h(2012, 6, 21), -4);
        assert_eq!(h(2012, 1, 10), -5);
        // 2012: DST from 11 March to 4 November.
        assert_eq!(h(2012, 3, 10), -5);
        assert_eq!(h(2012, 3, 11), -4);
        assert_eq!(h(2012, 11, 3), -4);
        assert_eq!(h(2012, 11, 4), -5);
    }

    #[test]
    fn detects_every_shared_sample() {
        let cases = [
            (
                "tardis/binance-futures_BTCUSDT_2020-02-22_trades.csv",
                Format::TardisTrades,
            ),
            (
                "tardis/binance-futures_BTCUSDT_2020-02-22_quotes.csv",
                Format::TardisQuotes,
            ),
            ("binance/ADABTC-1m-2021-11-27.csv", Format::BinanceKlines),
            (
                "binance/FTX_BTC-PERP_2021-12-31_2022-02-01_1m.csv",
                Format::FtxBars,
            ),
            (
                "binance/BTCUSDT-futures_2022-11-01_depth-snapshot.csv",
                Format::BinanceDepth,
            ),
            (
                "lobster/AMZN_2012-06-21_34200000_57600000_message_1.csv",
                Format::Lobster,
            ),
        ];
        for (rel, want) in cases {
            let p = shared(rel);
            if !p.exists() {
                eprintln!("skipping: {} not found", p.display());
                return;
            }
            assert_eq!(detect(&p).unwrap(), want, "{rel}");
        }
        let e = detect(&shared("lobster/LOBSTER_SampleFiles_ReadMe.txt")).unwrap_err();
        assert!(e.to_string().contains("unknown format"), "{e}");
    }

    #[test]
    fn merges_files_in_time_order_with_venues() {
        let trades = shared("tardis/binance-futures_BTCUSDT_2020-02-22_trades.csv");
        let quotes = shared("tardis/binance-futures_BTCUSDT_2020-02-22_quotes.csv");
        if !trades.exists() {
            eprintln!("skipping: {} not found", trades.display());
            return;
        }
        let t = load(&[trades.clone(), quotes.clone()], &SymbolMap::new()).unwrap();
        let n_trades = read_trades(&trades, SymbolMap::new()).unwrap().events.len();
        let n_quotes = read_quotes(&quotes, SymbolMap::new()).unwrap().events.len();
        assert_eq!(t.events.len(), n_trades + n_quotes);
        assert!(t.errors.is_empty(), "{:?}", &t.errors[..1]);
        let kinds = |k| t.events.iter().filter(|m| m.event.kind() == k).count();
        assert_eq!((kinds("trade"), kinds("quote")), (n_trades, n_quotes));
        assert!(t.events.iter().all(|m| m.venue == "binance-futures"));
        assert!(
            t.events
                .windows(2)
                .all(|w| w[0].event.ts() <= w[1].event.ts())
        );
        assert_eq!(t.events[0].event.instrument().as_str(), "BTC-USDT");
    }

    #[test]
    fn lobster_executions_become_trades_with_the_aggressor_side() {
        let path = shared("lobster/AMZN_2012-06-21_34200000_57600000_message_1.csv");
        if !path.exists() {
            eprintln!("skipping: {} not found", path.display());
            return;
        }
        let messages = read_messages(&path).unwrap();
        let executions = messages
            .events
            .iter()
            .filter(|m| matches!(m.type_code(), 4..=6))
            .count();
        let t = load(&[path], &SymbolMap::new()).unwrap();
        let trades: Vec<&Trade> = t
            .events
            .iter()
            .filter_map(|m| match &m.event {
                FeedEvent::Trade(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(trades.len(), executions);
        assert!(executions > 0);
        // The first message is a hidden execution of a sell order at 223.82: a buy.
        assert_eq!(trades[0].price, "223.82".parse().unwrap());
        assert_eq!(trades[0].aggressor, Side::Buy);
        // 09:30:00.017 New York (EDT) is 13:30:00.017 UTC on 2012-06-21.
        let day = days_from_civil(2012, 6, 21) * Nanos::DAY.0;
        assert_eq!(
            trades[0].ts.0 - day,
            13 * 3_600_000_000_000 + 30 * 60_000_000_000 + 17_460_000
        );
        // Every message row has an order-book row: quotes come with them.
        assert!(t.events.iter().any(|m| m.event.kind() == "quote"));
        assert!(t.events.iter().all(|m| m.venue == "lobster"));
    }

    #[test]
    fn depth_replays_books_and_reports_the_recorded_gap() {
        let snapshot = shared("binance/BTCUSDT-futures_2022-11-01_depth-snapshot.csv");
        let updates = shared("binance/BTCUSDT-futures_2022-11-01_depth-updates.csv");
        if !snapshot.exists() {
            eprintln!("skipping: {} not found", snapshot.display());
            return;
        }
        // Naming both files replays the pair once.
        let t = load(&[snapshot, updates], &SymbolMap::new()).unwrap();
        let books: Vec<&BookLevels> = t
            .events
            .iter()
            .filter_map(|m| match &m.event {
                FeedEvent::Book(b) => Some(b),
                _ => None,
            })
            .collect();
        assert!(books.len() > 1);
        assert!(
            books
                .iter()
                .all(|b| b.bids.len() <= BOOK_DEPTH && b.asks.len() <= BOOK_DEPTH)
        );
        assert!(
            books
                .iter()
                .all(|b| b.bids.windows(2).all(|w| w[0].0 > w[1].0))
        );
        assert!(
            t.errors.iter().any(|e| e.reason.contains("gap")),
            "{:?}",
            t.errors
        );
    }
}
