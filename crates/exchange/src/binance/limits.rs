//! Request-weight and order-rate limits per API key (or client address for
//! public endpoints), in fixed windows like Binance's: the used weight of the
//! current minute goes back in `X-MBX-USED-WEIGHT-1M`, and a request over the
//! limit gets a 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::BinanceError;

/// Limits, per minute of weight and per ten seconds of orders.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request weight per minute.
    pub weight_per_minute: u32,
    /// Orders per ten seconds.
    pub orders_per_10s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            weight_per_minute: 6_000,
            orders_per_10s: 100,
        }
    }
}

#[derive(Default)]
struct Window {
    minute: i64,
    weight: u32,
    ten: i64,
    orders: u32,
}

/// The usage counters.
#[derive(Clone, Default)]
pub struct RateLimiter {
    limits: Limits,
    usage: Arc<Mutex<HashMap<String, Window>>>,
}

/// What one request used.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Weight used this minute, this request included.
    pub weight: u32,
    /// Orders this ten seconds, this one included (if it is one).
    pub orders: Option<u32>,
}

impl RateLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            usage: Arc::default(),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Charges `weight` (and one order if `order`) to `who` at `now_ms`.
    pub fn charge(
        &self,
        who: &str,
        weight: u32,
        order: bool,
        now_ms: i64,
    ) -> Result<Usage, BinanceError> {
        let mut m = self.usage.lock();
        if m.len() > 100_000 {
            m.retain(|_, w| w.minute == now_ms / 60_000);
        }
        let w = m.entry(who.to_string()).or_default();
        let minute = now_ms / 60_000;
        if w.minute != minute {
            w.minute = minute;
            w.weight = 0;
        }
        let ten = now_ms / 10_000;
        if w.ten != ten {
            w.ten = ten;
            w.orders = 0;
        }
        if w.weight.saturating_add(weight) > self.limits.weight_per_minute {
            let wait = 60 - (now_ms / 1_000) % 60;
            return Err(BinanceError {
                status: axum::http::StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(wait as u64),
                ..BinanceError::bad(
                    -1003,
                    format!(
                        "Too many requests; current limit of {who} is {} request weight per minute. Please use the websocket for live updates to avoid polling the API.",
                        self.limits.weight_per_minute
                    ),
                )
            });
        }
        if order && w.orders.saturating_add(1) > self.limits.orders_per_10s {
            let wait = 10 - (now_ms / 1_000) % 10;
            return Err(BinanceError {
                status: axum::http::StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(wait as u64),
                ..BinanceError::bad(
                    -1015,
                    format!(
                        "Too many new orders; current limit is {} orders per 10 SECOND.",
                        self.limits.orders_per_10s
                    ),
                )
            });
        }
        w.weight += weight;
        if order {
            w.orders += 1;
        }
        Ok(Usage {
            weight: w.weight,
            orders: order.then_some(w.orders),
        })
    }
}
