//! Order request parsing, native JSON and Binance-style parameters, on
//! arbitrary input: it may reject, it must not panic.
//!
//!     cargo install cargo-fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run order_request -- -max_total_time=60
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tradestack_exchange::api::parse_place;
use tradestack_exchange::binance::{Req, parse_order};
use tradestack_model::{AccountId, InstrumentId};

fuzz_target!(|data: &[u8]| {
    let _ = parse_place(data);
    let text = String::from_utf8_lossy(data);
    let (query, body) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(req) = Req::parse(query.to_string(), body.to_string()) {
        let mut symbols = HashMap::new();
        symbols.insert("BTCUSDT".to_string(), InstrumentId::new("BTC-USDT"));
        let _ = parse_order(&symbols, &req, AccountId::new("fuzz"));
    }
});
