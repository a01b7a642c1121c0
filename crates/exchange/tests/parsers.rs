//! The order request parsers never panic, on random bytes or on mutations of
//! a valid request, and accept the valid ones. (The cargo-fuzz target
//! `fuzz/fuzz_targets/order_request.rs` drives the same two functions
//! coverage-guided; this runs in every test run.)

use std::collections::HashMap;

use proptest::prelude::*;
use tradestack_exchange::api::parse_place;
use tradestack_exchange::binance::{Req, parse_order};
use tradestack_model::{AccountId, InstrumentId};

fn symbols() -> HashMap<String, InstrumentId> {
    let mut m = HashMap::new();
    m.insert("BTCUSDT".to_string(), InstrumentId::new("BTC-USDT"));
    m
}

const QUERY: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000&newClientOrderId=abc&timestamp=1";
const JSON: &str = r#"{"account":"a","instrument":"BTC-USDT","side":"buy","order_type":"limit","price":"50000","quantity":"0.01"}"#;

fn binance(query: &str) {
    if let Ok(req) = Req::parse(query.to_string(), String::new()) {
        let _ = parse_order(&symbols(), &req, AccountId::new("a"));
    }
}

#[test]
fn valid_requests_parse() {
    let req = Req::parse(QUERY.into(), String::new()).unwrap();
    let o = parse_order(&symbols(), &req, AccountId::new("a")).unwrap();
    assert_eq!(o.price.unwrap().to_string(), "50000");
    let o = parse_place(JSON.as_bytes()).unwrap();
    assert_eq!(o.quantity.to_string(), "0.01");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_place(&bytes);
        binance(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_requests_never_panic(at in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        for base in [QUERY, JSON] {
            let mut b = base.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(i + 1).min(b.len()));
            let _ = parse_place(&b);
            binance(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn numbers_of_any_shape_never_panic(price in "[-+0-9.eE]{0,30}", qty in "[-+0-9.eE]{0,30}") {
        binance(&format!("symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity={qty}&price={price}"));
        let _ = parse_place(format!(r#"{{"account":"a","instrument":"BTC-USDT","side":"buy","order_type":"limit","price":"{price}","quantity":"{qty}"}}"#).as_bytes());
    }
}
