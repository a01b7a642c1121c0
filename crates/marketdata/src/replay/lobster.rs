//! LOBSTER message files: `Time,Type,OrderId,Size,Price,Direction`.
//!
//! `Time` is seconds after midnight with up to nanosecond decimals, in the exchange's local
//! time (NASDAQ: America/New_York); it is kept exact as [`Nanos`] since midnight, and
//! [`LobsterMessage::at`] places it on the UTC axis given the UTC instant of that midnight
//! (see [`session_midnight`]). `Price` is dollars × 10,000 (so one price unit is 10^4 raw fixed
//! point units); `Size` is shares; `Direction` is 1 for a buy limit order, −1 for a sell limit
//! order (an execution of a sell order is a buyer-initiated trade). A header row, if present,
//! is skipped. Type 7 (trading halt) rows carry the halt state in `Price`: −1 halted,
//! 0 quoting resumed, 1 trading resumed.

use super::{CsvRows, Fields, Parsed, ReplayError, RowError, open};
use crate::util::{days_from_civil, parse_seconds_to_nanos, valid_date};
use std::io::Read;
use std::path::Path;
use tradestack_model::{Nanos, Price, Quantity, Side, UnixNanos};

/// Raw fixed-point units per LOBSTER price unit (10^8 / 10^4).
pub(crate) const PRICE_UNIT: i64 = 10_000;

/// The order-level fields of a LOBSTER message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LobsterOrder {
    /// Time since midnight (exchange local time).
    pub time: Nanos,
    /// The exchange's order reference number.
    pub order_id: u64,
    /// Shares concerned by this message.
    pub size: Quantity,
    /// The order's limit price.
    pub price: Price,
    /// The side of the limit order.
    pub side: Side,
}

/// The trading state announced by a halt message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltState {
    /// Trading halted (price −1).
    Halted,
    /// Quoting resumed, trading not yet (price 0).
    QuotingResumed,
    /// Trading resumed (price 1).
    TradingResumed,
}

/// One LOBSTER message, typed by its `Type` column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LobsterMessage {
    /// Type 1: a new limit order.
    Submit(LobsterOrder),
    /// Type 2: part of an order cancelled (`size` is the cancelled part).
    Cancel(LobsterOrder),
    /// Type 3: an order deleted entirely.
    Delete(LobsterOrder),
    /// Type 4: a visible order executed (`size` is the executed part).
    ExecuteVisible(LobsterOrder),
    /// Type 5: a hidden order executed.
    ExecuteHidden(LobsterOrder),
    /// Type 6: a cross trade (e.g. an auction).
    Cross(LobsterOrder),
    /// Type 7: a trading halt or resumption.
    Halt {
        /// Time since midnight.
        time: Nanos,
        /// The announced state.
        state: HaltState,
    },
}

impl LobsterMessage {
    /// Time since midnight.
    pub fn time(&self) -> Nanos {
        match self {
            LobsterMessage::Submit(o)
            | LobsterMessage::Cancel(o)
            | LobsterMessage::Delete(o)
            | LobsterMessage::ExecuteVisible(o)
            | LobsterMessage::ExecuteHidden(o)
            | LobsterMessage::Cross(o) => o.time,
            LobsterMessage::Halt { time, .. } => *time,
        }
    }

    /// The LOBSTER type code (1–7).
    pub fn type_code(&self) -> u8 {
        match self {
            LobsterMessage::Submit(_) => 1,
            LobsterMessage::Cancel(_) => 2,
            LobsterMessage::Delete(_) => 3,
            LobsterMessage::ExecuteVisible(_) => 4,
            LobsterMessage::ExecuteHidden(_) => 5,
            LobsterMessage::Cross(_) => 6,
            LobsterMessage::Halt { .. } => 7,
        }
    }

    /// The order fields, for every type but halts.
    pub fn order(&self) -> Option<&LobsterOrder> {
        match self {
            LobsterMessage::Halt { .. } => None,
            LobsterMessage::Submit(o)
            | LobsterMessage::Cancel(o)
            | LobsterMessage::Delete(o)
            | LobsterMessage::ExecuteVisible(o)
            | LobsterMessage::ExecuteHidden(o)
            | LobsterMessage::Cross(o) => Some(o),
        }
    }

    /// The message time on the UTC axis, given the UTC instant of the session's midnight.
    pub fn at(&self, midnight: UnixNanos) -> UnixNanos {
        midnight + self.time()
    }
}

/// The UTC instant of local midnight for a LOBSTER file named `TICKER_YYYY-MM-DD_...`, given
/// the local UTC offset that day (New York in June: −4 h, i.e. `Nanos(-4 * 3600 * 10^9)`).
pub fn session_midnight(file_name: &str, utc_offset: Nanos) -> Option<UnixNanos> {
    let date = file_name.split('_').nth(1)?;
    let mut p = date.split('-');
    let y: i64 = p.next()?.parse().ok()?;
    let m: u32 = p.next()?.parse().ok()?;
    let d: u32 = p.next()?.parse().ok()?;
    if p.next().is_some() || !valid_date(y, m, d) {
        return None;
    }
    // Local midnight is `offset` away from UTC midnight: UTC = local − offset.
    Some(UnixNanos(
        days_from_civil(y, m, d) * Nanos::DAY.0 - utc_offset.0,
    ))
}

/// Reads LOBSTER message rows, in file order.
pub struct LobsterMessages<R: Read> {
    rows: CsvRows<R>,
}

impl<R: Read> LobsterMessages<R> {
    /// Reads `reader` (named `file` in errors).
    pub fn new(reader: R, file: &str) -> Self {
        LobsterMessages {
            rows: CsvRows::new(reader, file, false),
        }
    }

    /// The source name used in errors.
    pub fn file(&self) -> &str {
        self.rows.file()
    }
}

fn parse_message(row: &Fields<'_>) -> Result<LobsterMessage, RowError> {
    row.expect_len(6)?;
    let text = row.text(0, "Time")?;
    let time = parse_seconds_to_nanos(text)
        .map(Nanos)
        .ok_or_else(|| row.error("Time", format!("{text:?} is not seconds after midnight")))?;
    let kind: u8 = row.parse(1, "Type")?;
    let raw_price: i64 = row.parse(4, "Price")?;
    let direction: i8 = row.parse(5, "Direction")?;
    if kind == 7 {
        let state = match raw_price {
            -1 => HaltState::Halted,
            0 => HaltState::QuotingResumed,
            1 => HaltState::TradingResumed,
            other => return Err(row.error("Price", format!("{other} is not a halt state"))),
        };
        return Ok(LobsterMessage::Halt { time, state });
    }
    let side = match direction {
        1 => Side::Buy,
        -1 => Side::Sell,
        other => return Err(row.error("Direction", format!("{other} is not 1 or -1"))),
    };
    if raw_price <= 0 {
        return Err(row.error("Price", format!("{raw_price} is not a positive price")));
    }
    let price = raw_price
        .checked_mul(PRICE_UNIT)
        .map(Price::from_raw)
        .ok_or_else(|| row.error("Price", "out of range"))?;
    let shares: i64 = row.parse(3, "Size")?;
    let size = shares
        .checked_mul(Quantity::ONE.raw())
        .filter(|s| *s >= 0)
        .map(Quantity::from_raw)
        .ok_or_else(|| row.error("Size", format!("{shares} is not a share count")))?;
    let order = LobsterOrder {
        time,
        order_id: row.parse(2, "OrderId")?,
        size,
        price,
        side,
    };
    Ok(match kind {
        1 => LobsterMessage::Submit(order),
        2 => LobsterMessage::Cancel(order),
        3 => LobsterMessage::Delete(order),
        4 => LobsterMessage::ExecuteVisible(order),
        5 => LobsterMessage::ExecuteHidden(order),
        6 => LobsterMessage::Cross(order),
        other => return Err(row.error("Type", format!("{other} is not a LOBSTER type (1-7)"))),
    })
}

impl<R: Read> Iterator for LobsterMessages<R> {
    type Item = Result<LobsterMessage, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let row = match self.rows.next_row()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if row.line == 1
                && row
                    .text(0, "Time")
                    .is_ok_and(|s| s.eq_ignore_ascii_case("time"))
            {
                continue;
            }
            return Some(parse_message(&row));
        }
    }
}

/// Reads a whole LOBSTER message file, ordered by time.
pub fn read_messages(path: &Path) -> Result<Parsed<LobsterMessage>, ReplayError> {
    let (reader, name) = open(path)?;
    Ok(Parsed::collect_sorted(
        LobsterMessages::new(reader, &name),
        LobsterMessage::time,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_with_and_without_a_header() {
        let body = "34200.01746,5,0,1,2238200,-1\r\n\
                    34200.18961,1,11885113,21,2238100,1\r\n\
                    34200.2,2,11885113,1,2238100,1\r\n\
                    34200.3,3,11885113,20,2238100,1\r\n\
                    34200.4,4,7,100,2239500,-1\r\n\
                    34200.5,6,8,100,2239000,1\r\n\
                    36023,7,0,0,-1,-1\r\n\
                    36323,7,0,0,0,-1\r\n\
                    36723,7,0,0,1,-1";
        for text in [
            body.to_string(),
            format!("Time,Type,OrderId,Size,Price,Direction\r\n{body}"),
        ] {
            let msgs: Vec<LobsterMessage> = LobsterMessages::new(text.as_bytes(), "m")
                .map(Result::unwrap)
                .collect();
            let codes: Vec<u8> = msgs.iter().map(LobsterMessage::type_code).collect();
            assert_eq!(codes, vec![5, 1, 2, 3, 4, 6, 7, 7, 7]);
            let LobsterMessage::Submit(o) = &msgs[1] else {
                panic!()
            };
            assert_eq!(o.time, Nanos(34_200_189_610_000));
            assert_eq!(o.order_id, 11_885_113);
            assert_eq!(o.size, Quantity::from_units(21));
            assert_eq!(o.price.to_string(), "223.81");
            assert_eq!(o.side, Side::Buy);
            assert_eq!(
                msgs[6..],
                [
                    LobsterMessage::Halt {
                        time: Nanos::from_secs(36_023),
                        state: HaltState::Halted
                    },
                    LobsterMessage::Halt {
                        time: Nanos::from_secs(36_323),
                        state: HaltState::QuotingResumed
                    },
                    LobsterMessage::Halt {
                        time: Nanos::from_secs(36_723),
                        state: HaltState::TradingResumed
                    },
                ]
            );
        }
    }

    #[test]
    fn malformed_rows_are_reported_and_skipped() {
        let text = "34200.1,1,1,10,2238100,1\n\
                    34200.2,9,1,10,2238100,1\n\
                    34200.3,1,1,10,2238100,0\n\
                    34200.4,1,1,-10,2238100,1\n\
                    noon,1,1,10,2238100,1\n\
                    34200.5,1,1,10\n\
                    34200.6,7,0,0,5,-1\n\
                    34200.7,1,2,10,2238200,-1\n";
        let rows: Vec<_> = LobsterMessages::new(text.as_bytes(), "m.csv").collect();
        assert_eq!(rows.len(), 8);
        let errs: Vec<(u64, &str)> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            errs,
            vec![
                (2, "Type"),
                (3, "Direction"),
                (4, "Size"),
                (5, "Time"),
                (6, "row"),
                (7, "Price")
            ]
        );
        assert!(rows[0].is_ok() && rows[7].is_ok());
    }

    #[test]
    fn session_midnight_from_the_file_name() {
        // 2012-06-21 00:00 in New York (UTC−4) is 04:00 UTC.
        let m = session_midnight(
            "AMZN_2012-06-21_34200000_57600000_message_1.csv",
            Nanos(-4 * 3_600_000_000_000),
        )
        .unwrap();
        assert_eq!(m, UnixNanos::from_secs(1_340_251_200));
        let msg = LobsterMessage::Halt {
            time: Nanos::from_secs(34_200),
            state: HaltState::Halted,
        };
        // 09:30 New York = 13:30 UTC.
        assert_eq!(msg.at(m), UnixNanos::from_secs(1_340_285_400));
        assert_eq!(session_midnight("AMZN_2012-13-01_x", Nanos::ZERO), None);
    }
}
