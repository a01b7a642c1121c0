//! Binance-style request signing: `X-MBX-APIKEY`, an HMAC-SHA256 `signature`
//! over the query string followed by the body, a `timestamp` inside
//! `recvWindow`, and (our addition) a refusal of a signature already seen,
//! so a captured request cannot be replayed inside its window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tradestack_model::AccountId;

use super::error::BinanceError;

/// Largest `recvWindow` accepted, in ms (Binance's limit).
pub const MAX_RECV_WINDOW: i64 = 60_000;

/// API keys and their accounts and secrets.
#[derive(Clone, Default)]
pub struct Keys {
    by_key: Arc<HashMap<String, (AccountId, String)>>,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    set: std::collections::HashSet<String>,
    order: VecDeque<(i64, String)>,
}

impl Keys {
    /// Keys from `(api_key, account, secret)` triples.
    pub fn new(entries: impl IntoIterator<Item = (String, AccountId, String)>) -> Self {
        Keys {
            by_key: Arc::new(entries.into_iter().map(|(k, a, s)| (k, (a, s))).collect()),
            seen: Arc::default(),
        }
    }

    /// The account behind `X-MBX-APIKEY`.
    pub fn account(&self, api_key: Option<&str>) -> Result<(&AccountId, &str), BinanceError> {
        let key = api_key.ok_or_else(|| BinanceError::auth(-2014, "API-key format invalid."))?;
        self.by_key
            .get(key)
            .map(|(a, s)| (a, s.as_str()))
            .ok_or_else(|| {
                BinanceError::auth(-2015, "Invalid API-key, IP, or permissions for action.")
            })
    }

    /// Checks a signed request. `query` and `body` are the raw strings;
    /// `params` their parsed union. `now_ms` is the server time.
    pub fn verify(
        &self,
        secret: &str,
        query: &str,
        body: &str,
        params: &HashMap<String, String>,
        now_ms: i64,
    ) -> Result<(), BinanceError> {
        let signature = params
            .get("signature")
            .ok_or_else(|| BinanceError::missing("signature"))?;
        let payload = format!("{}{}", strip_signature(query), strip_signature(body));
        let ts: i64 = params
            .get("timestamp")
            .ok_or_else(|| BinanceError::missing("timestamp"))?
            .parse()
            .map_err(|_| BinanceError::malformed("timestamp"))?;
        let window: i64 = match params.get("recvWindow") {
            Some(w) => w
                .parse()
                .map_err(|_| BinanceError::malformed("recvWindow"))?,
            None => 5_000,
        };
        self.check(secret, &payload, signature, ts, window, now_ms)
    }

    /// Checks an HMAC-SHA256 `signature` of `payload`, the timestamp against
    /// the receive window, and that the signature was not used before.
    pub fn check(
        &self,
        secret: &str,
        payload: &str,
        signature: &str,
        ts: i64,
        window: i64,
        now_ms: i64,
    ) -> Result<(), BinanceError> {
        let expected = sign(secret, payload);
        if !constant_time_eq(
            expected.as_bytes(),
            signature.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(BinanceError::bad(
                -1022,
                "Signature for this request is not valid.",
            ));
        }
        if !(0..=MAX_RECV_WINDOW).contains(&window) {
            return Err(BinanceError::bad(
                -1131,
                "recvWindow must be less than 60000",
            ));
        }
        if ts > now_ms + 1_000 || now_ms - ts > window {
            return Err(BinanceError::bad(
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            ));
        }
        let mut seen = self.seen.lock();
        while let Some((t, _)) = seen.order.front() {
            if now_ms - t <= MAX_RECV_WINDOW + 1_000 {
                break;
            }
            if let Some((_, s)) = seen.order.pop_front() {
                seen.set.remove(&s);
            }
        }
        if !seen.set.insert(signature.to_string()) {
            return Err(BinanceError::bad(
                -1022,
                "Signature for this request was already used (replayed request).",
            ));
        }
        seen.order.push_back((now_ms, signature.to_string()));
        Ok(())
    }
}

/// The parameters before `signature=...` (Binance signs everything else).
fn strip_signature(s: &str) -> String {
    s.split('&')
        .filter(|kv| !kv.starts_with("signature="))
        .collect::<Vec<_>>()
        .join("&")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs a payload, for clients and tests.
pub fn sign(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}
