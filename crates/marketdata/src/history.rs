//! The exchange's candles across restarts: its in-memory minute bars (klines, 24-hour tickers)
//! start empty, so the service seeds them from the store's recorded 1-minute bars of the
//! venue. Minutes built from live trades since the start always win.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type, TimestampNanosecondType};
use tradestack_exchange::bars::{MinuteBar, MinuteBars};
use tradestack_model::{Amount, InstrumentId, Price, Quantity, TradeId};
use tradestack_timeseries::{QueryEngine, Store};

/// Minutes per day.
const DAY_MINUTES: i64 = 24 * 60;

/// Reads the venue's recorded 1-minute bars from `since` (ns) and seeds `bars`; the number of
/// minutes added.
pub async fn seed_exchange_bars(
    store: Store,
    venue: &str,
    bars: &MinuteBars,
    since: i64,
) -> Result<usize, String> {
    let engine = QueryEngine::new(store);
    if !engine
        .sql("SELECT table_name FROM information_schema.tables WHERE table_name = 'bars'")
        .await
        .map_err(|e| e.to_string())?
        .batches
        .iter()
        .any(|b| b.num_rows() > 0)
    {
        return Ok(0);
    }
    let sql = format!(
        "SELECT symbol, timestamp, open, high, low, close, volume, quote_volume, trades \
         FROM bars WHERE venue = '{}' AND period = '1m' AND timestamp >= to_timestamp_nanos({since}) \
         ORDER BY symbol, timestamp",
        venue.replace('\'', "''")
    );
    let result = engine.sql(&sql).await.map_err(|e| e.to_string())?;
    let mut added = 0;
    for b in &result.batches {
        let symbol = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampNanosecondType>();
        let dec = |i: usize| b.column(i).as_primitive::<Decimal128Type>();
        let (open, high, low, close, volume, quote) =
            (dec(2), dec(3), dec(4), dec(5), dec(6), dec(7));
        let trades = b.column(8).as_primitive::<Int64Type>();
        let mut rows: Vec<(InstrumentId, MinuteBar)> = Vec::with_capacity(b.num_rows());
        for r in 0..b.num_rows() {
            if [2, 3, 4, 5, 6, 7, 8]
                .iter()
                .any(|&c| b.column(c).is_null(r))
            {
                continue;
            }
            let price = |v: i128| Price::from_raw(i64::try_from(v).unwrap_or(i64::MAX));
            rows.push((
                InstrumentId::new(symbol.value(r)),
                MinuteBar {
                    open_time: ts.value(r),
                    open: price(open.value(r)),
                    high: price(high.value(r)),
                    low: price(low.value(r)),
                    close: price(close.value(r)),
                    volume: Quantity::from_raw(i64::try_from(volume.value(r)).unwrap_or(i64::MAX)),
                    quote_volume: Amount::from_raw(quote.value(r)),
                    trades: u64::try_from(trades.value(r)).unwrap_or(0),
                    // Not recorded in the store.
                    taker_buy_volume: Quantity::ZERO,
                    taker_buy_quote: Amount::ZERO,
                    first_id: TradeId(0),
                    last_id: TradeId(0),
                },
            ));
        }
        for chunk in rows.chunk_by(|a, b| a.0 == b.0) {
            added += bars.seed(&chunk[0].0, chunk.iter().map(|(_, m)| *m));
        }
    }
    Ok(added)
}

/// How far back the seed reaches: what the exchange keeps in memory.
pub fn seed_window(now: i64) -> i64 {
    let keep = i64::try_from(MinuteBars::KEEP_MINUTES).unwrap_or(2 * DAY_MINUTES);
    now.saturating_sub(keep.saturating_mul(60_000_000_000))
}
