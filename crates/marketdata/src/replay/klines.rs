//! Recorded OHLCV bars: Binance's 12-column kline export and FTX's 1-minute OHLCV CSV.
//!
//! **Binance** (no header; a first line that does not start with a number is skipped as a
//! header): `open_time, open, high, low, close, volume, close_time, quote_volume, trades,
//! taker_buy_base, taker_buy_quote, ignore`. Times are milliseconds, or microseconds when the
//! value is at least 10^14 (Binance's newer spot exports). The interval is given, or inferred
//! per row as `close_time + 1 unit − open_time`. `vwap = quote_volume / volume` rounded to the
//! nearest 10^-8 (the close when the volume is zero); the taker columns are not carried.
//!
//! **FTX** (header `timestamp,open,high,low,close,volume`): the timestamp is the bar's UTC open
//! time as `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `T` separator and a trailing `Z` are accepted).
//! FTX reported candle volume in quote currency (USD): at ~46,000 USD per BTC the sample's
//! ~2.3 million per minute only makes sense in USD. So by default ([`FtxVolume::Quote`]) the
//! column becomes `quote_volume` and the base `volume` is zero; [`FtxVolume::Base`] does the
//! opposite. The file has no trade count or VWAP: those fields are zero (meaning "unknown").
//! FTX served volumes as binary floats, and a few were printed with float noise
//! (`218102.59507500002`): in the volume column only, digits beyond the 8th decimal are
//! rounded half away from zero (on the decimal digits, no float involved) and counted in
//! [`FtxBars::rounded_volumes`]. Prices must still be exact.
//!
//! Rows whose high is below their low, open or close (or whose low is above them) are errors.

use super::{CsvRows, Fields, Parsed, ReplayError, RowError, column_indices, open};
use crate::util::{days_from_civil, parse_decimal_rounded, valid_date, vwap};
use std::io::Read;
use std::path::Path;
use tradestack_model::{Amount, Bar, InstrumentId, Nanos, Price, Quantity, UnixNanos};

/// Checks `low <= open, close <= high`.
fn check_ohlc(
    f: &Fields<'_>,
    open: Price,
    high: Price,
    low: Price,
    close: Price,
) -> Result<(), RowError> {
    if high < low {
        return Err(f.error("high", format!("{high} is below low {low}")));
    }
    for (name, v) in [("open", open), ("close", close)] {
        if v < low || v > high {
            return Err(f.error(name, format!("{v} is outside [low {low}, high {high}]")));
        }
    }
    Ok(())
}

/// Reads a Binance kline export as bars of `instrument`.
pub struct BinanceKlines<R: Read> {
    rows: CsvRows<R>,
    instrument: InstrumentId,
    interval: Option<Nanos>,
}

impl<R: Read> BinanceKlines<R> {
    /// Bars of `instrument`; `interval` `None` infers it from each row's open and close times.
    pub fn new(reader: R, file: &str, instrument: InstrumentId, interval: Option<Nanos>) -> Self {
        BinanceKlines {
            rows: CsvRows::new(reader, file, false),
            instrument,
            interval,
        }
    }
}

/// A Binance time column in nanoseconds, and the nanoseconds of one of its units.
fn binance_time(f: &Fields<'_>, idx: usize, name: &str) -> Result<(i64, i64), RowError> {
    let v: i64 = f.parse(idx, name)?;
    // Milliseconds until ~5138 AD; from 10^14 on the value can only be microseconds.
    let unit = if v.abs() >= 100_000_000_000_000 {
        1_000
    } else {
        1_000_000
    };
    v.checked_mul(unit)
        .map(|ns| (ns, unit))
        .ok_or_else(|| f.error(name, "out of range"))
}

impl<R: Read> Iterator for BinanceKlines<R> {
    type Item = Result<Bar, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let row = match self.rows.next_row()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            // An optional header line.
            if row.line == 1
                && row
                    .text(0, "open_time")
                    .is_ok_and(|s| !s.starts_with(|c: char| c.is_ascii_digit()))
            {
                continue;
            }
            let (instrument, given) = (&self.instrument, self.interval);
            return Some((|| {
                row.expect_len(12)?;
                let (open_time, _) = binance_time(&row, 0, "open_time")?;
                let (close_time, unit) = binance_time(&row, 6, "close_time")?;
                let interval = match given {
                    Some(i) => i,
                    None => {
                        let i = close_time - open_time + unit;
                        if i <= 0 {
                            return Err(row.error("close_time", "is not after open_time"));
                        }
                        Nanos(i)
                    }
                };
                let open: Price = row.parse(1, "open")?;
                let high: Price = row.parse(2, "high")?;
                let low: Price = row.parse(3, "low")?;
                let close: Price = row.parse(4, "close")?;
                check_ohlc(&row, open, high, low, close)?;
                let volume: Quantity = row.parse(5, "volume")?;
                let quote_volume: Amount = row.parse(7, "quote_volume")?;
                Ok(Bar {
                    instrument: instrument.clone(),
                    interval,
                    open_time: UnixNanos(open_time),
                    open,
                    high,
                    low,
                    close,
                    volume,
                    quote_volume,
                    trades: row.parse(8, "trades")?,
                    vwap: vwap(quote_volume, volume).unwrap_or(close),
                })
            })());
        }
    }
}

/// Which volume the FTX `volume` column holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FtxVolume {
    /// Quote currency (USD), the default: it becomes `Bar::quote_volume`.
    #[default]
    Quote,
    /// Base currency: it becomes `Bar::volume`.
    Base,
}

/// Reads FTX OHLCV rows as bars of `instrument`.
pub struct FtxBars<R: Read> {
    rows: CsvRows<R>,
    cols: [usize; 6],
    instrument: InstrumentId,
    interval: Nanos,
    volume: FtxVolume,
    rounded: u64,
}

impl<R: Read> FtxBars<R> {
    /// How many volume values so far had more than 8 decimals and were rounded.
    pub fn rounded_volumes(&self) -> u64 {
        self.rounded
    }

    /// Reads the header; every bar gets `interval` (the files are per interval).
    pub fn new(
        reader: R,
        file: &str,
        instrument: InstrumentId,
        interval: Nanos,
        volume: FtxVolume,
    ) -> Result<Self, ReplayError> {
        let mut rows = CsvRows::new(reader, file, true);
        let header = rows.headers()?;
        let cols = column_indices(
            file,
            &header,
            ["timestamp", "open", "high", "low", "close", "volume"],
        )?;
        Ok(FtxBars {
            rows,
            cols,
            instrument,
            interval,
            volume,
            rounded: 0,
        })
    }
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fffffffff][Z]` (UTC) into nanoseconds since the epoch.
pub fn parse_utc_datetime(s: &str) -> Option<UnixNanos> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let s = s.strip_suffix("+00:00").unwrap_or(s);
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || da.len() != 2 {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, se) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || [h, mi, se].iter().any(|p| p.len() != 2) {
        return None;
    }
    let num = |p: &str| -> Option<u32> {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (i64::from(num(y)?), num(mo)?, num(da)?);
    let (hour, minute, second) = (num(h)?, num(mi)?, num(se)?);
    if !valid_date(year, month, day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_ns = if frac.is_empty() {
        0
    } else {
        i64::from(num(frac)?) * 10i64.pow(9 - frac.len() as u32)
    };
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3_600
        + i64::from(minute) * 60
        + i64::from(second);
    Some(UnixNanos(
        secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)?,
    ))
}

impl<R: Read> Iterator for FtxBars<R> {
    type Item = Result<Bar, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let [ts, o, h, l, c, v] = self.cols;
        let (instrument, interval, unit) = (&self.instrument, self.interval, self.volume);
        let rounded = &mut self.rounded;
        let row = match self.rows.next_row()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some((|| {
            let text = row.text(ts, "timestamp")?;
            let open_time = parse_utc_datetime(text).ok_or_else(|| {
                row.error(
                    "timestamp",
                    format!("{text:?} is not YYYY-MM-DD HH:MM:SS[.f]"),
                )
            })?;
            let open: Price = row.parse(o, "open")?;
            let high: Price = row.parse(h, "high")?;
            let low: Price = row.parse(l, "low")?;
            let close: Price = row.parse(c, "close")?;
            check_ohlc(&row, open, high, low, close)?;
            let text = row.text(v, "volume")?;
            let raw = parse_decimal_rounded(text)
                .filter(|r| *r >= 0)
                .ok_or_else(|| row.error("volume", format!("{text:?} is not a volume")))?;
            if text.split_once('.').is_some_and(|(_, f)| f.len() > 8) {
                *rounded += 1;
            }
            let (volume, quote_volume) = match unit {
                FtxVolume::Quote => (Quantity::ZERO, Amount::from_raw(raw)),
                FtxVolume::Base => (
                    Quantity::from_raw(
                        i64::try_from(raw).map_err(|_| row.error("volume", "out of range"))?,
                    ),
                    Amount::ZERO,
                ),
            };
            Ok(Bar {
                instrument: instrument.clone(),
                interval,
                open_time,
                open,
                high,
                low,
                close,
                volume,
                quote_volume,
                trades: 0,
                vwap: Price::ZERO,
            })
        })())
    }
}

/// Reads a whole Binance kline file, time-ordered.
pub fn read_binance_klines(
    path: &Path,
    instrument: InstrumentId,
    interval: Option<Nanos>,
) -> Result<Parsed<Bar>, ReplayError> {
    let (reader, name) = open(path)?;
    Ok(Parsed::collect_sorted(
        BinanceKlines::new(reader, &name, instrument, interval),
        |b| b.open_time,
    ))
}

/// Reads a whole FTX OHLCV file, time-ordered.
pub fn read_ftx_bars(
    path: &Path,
    instrument: InstrumentId,
    interval: Nanos,
    volume: FtxVolume,
) -> Result<Parsed<Bar>, ReplayError> {
    let (reader, name) = open(path)?;
    Ok(Parsed::collect_sorted(
        FtxBars::new(reader, &name, instrument, interval, volume)?,
        |b| b.open_time,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> InstrumentId {
        InstrumentId::new("ADA-BTC")
    }

    #[test]
    fn parses_a_binance_kline_and_infers_the_interval() {
        let text = "1637971200000,0.00002853,0.00002854,0.00002851,0.00002854,36304.20000000,1637971259999,1.03547608,79,19523.00000000,0.55694227,0\n";
        let bars: Vec<_> = BinanceKlines::new(text.as_bytes(), "k", ada(), None).collect();
        let b = bars[0].as_ref().unwrap();
        assert_eq!(b.open_time, UnixNanos::from_millis(1_637_971_200_000));
        assert_eq!(b.interval, Nanos::MINUTE);
        assert_eq!(b.open.to_string(), "0.00002853");
        assert_eq!(b.volume.to_string(), "36304.2");
        assert_eq!(b.quote_volume.to_string(), "1.03547608");
        assert_eq!(b.trades, 79);
        // 1.03547608 / 36304.2 = 0.0000285222...
        assert_eq!(b.vwap.to_string(), "0.00002852");
    }

    #[test]
    fn binance_microsecond_exports_and_headers() {
        let text = "open_time,open,high,low,close,volume,close_time,quote_volume,count,tb,tq,ignore\n\
                    1735689600000000,1,2,0.5,1.5,10,1735689659999999,15,3,1,1,0\n";
        let bars: Vec<_> = BinanceKlines::new(text.as_bytes(), "k", ada(), None).collect();
        assert_eq!(bars.len(), 1);
        let b = bars[0].as_ref().unwrap();
        assert_eq!(b.open_time, UnixNanos::from_micros(1_735_689_600_000_000));
        assert_eq!(b.interval, Nanos::MINUTE);
        assert_eq!(b.vwap.to_string(), "1.5");
    }

    #[test]
    fn bad_kline_rows_name_their_field() {
        let text = "1,1,2,0.5,1.5,10,60000,15,3,1,1,0\n\
                    2,1,0.4,0.5,1.5,10,60001,15,3,1,1,0\n\
                    3,1,2,0.5,1.5,10,60002,15,3\n\
                    4,1,2,0.5,1.5,10,60003,15,many,1,1,0\n\
                    5,1,2,0.5,1.5,10,4,15,3,1,1,0\n";
        let rows: Vec<_> = BinanceKlines::new(text.as_bytes(), "k.csv", ada(), None).collect();
        assert!(rows[0].is_ok());
        let errs: Vec<(u64, &str)> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            errs,
            vec![(2, "high"), (3, "row"), (4, "trades"), (5, "close_time")]
        );
    }

    #[test]
    fn parses_utc_datetimes() {
        assert_eq!(
            parse_utc_datetime("2021-12-31 23:01:00.000000"),
            Some(UnixNanos::from_secs(1_640_991_660))
        );
        assert_eq!(
            parse_utc_datetime("2022-02-01T05:31:00Z"),
            Some(UnixNanos::from_secs(1_643_693_460))
        );
        assert_eq!(
            parse_utc_datetime("1970-01-01 00:00:00.5"),
            Some(UnixNanos(500_000_000))
        );
        for bad in [
            "2021-02-30 00:00:00",
            "2021-12-31 24:00:00",
            "2021-12-31",
            "21-12-31 00:00:00",
            "2021-12-31 00:00:00.1234567890",
            "2021-12-31 0a:00:00",
        ] {
            assert_eq!(parse_utc_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_ftx_rows() {
        let text = "timestamp,open,high,low,close,volume\n\
                    2021-12-31 23:01:00.000000,46319.0,46385.0,46319.0,46377.0,2300413.7295\n\
                    yesterday,46319.0,46385.0,46319.0,46377.0,1\n";
        let btc = InstrumentId::new("BTC-PERP");
        let rows: Vec<_> = FtxBars::new(
            text.as_bytes(),
            "f",
            btc.clone(),
            Nanos::MINUTE,
            FtxVolume::Quote,
        )
        .unwrap()
        .collect();
        let b = rows[0].as_ref().unwrap();
        assert_eq!(b.quote_volume.to_string(), "2300413.7295");
        assert_eq!(b.volume, Quantity::ZERO);
        assert_eq!(b.close.to_string(), "46377");
        assert_eq!(rows[1].as_ref().unwrap_err().field, "timestamp");
        let noisy = "timestamp,open,high,low,close,volume\n\
                     2021-12-31 23:01:00,1,1,1,1,218102.59507500002\n\
                     2021-12-31 23:02:00,1,1,1,1,-5\n";
        let mut r = FtxBars::new(
            noisy.as_bytes(),
            "f",
            btc.clone(),
            Nanos::MINUTE,
            FtxVolume::Quote,
        )
        .unwrap();
        assert_eq!(
            r.next().unwrap().unwrap().quote_volume.to_string(),
            "218102.595075"
        );
        assert_eq!(r.next().unwrap().unwrap_err().field, "volume");
        assert_eq!(r.rounded_volumes(), 1);
        let base: Vec<_> = FtxBars::new(text.as_bytes(), "f", btc, Nanos::MINUTE, FtxVolume::Base)
            .unwrap()
            .collect();
        assert_eq!(base[0].as_ref().unwrap().volume.to_string(), "2300413.7295");
    }
}
