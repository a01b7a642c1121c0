//! Signed requests on the native API.
//!
//! A request carries `X-TS-APIKEY`, `X-TS-TIMESTAMP` (ms), optionally
//! `X-TS-RECV-WINDOW` (ms, default 5000), and `X-TS-SIGNATURE`: the hex
//! HMAC-SHA256, with the key's secret, of
//! `<timestamp><METHOD><path and query><body>`. The account is the key's; a
//! request that names another account (in the path, the query or the body)
//! is refused. A signature is accepted once. With
//! `exchange.require_signatures` (the default), unsigned requests to private
//! endpoints get 401; turned off, they are accepted as the account they name
//! (local simulation only).
//! Every private request is charged to its key (or client address) under the
//! same weight and order-rate limits as the compatible API: over them, 429
//! with `Retry-After`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tradestack_api::ApiError;

use crate::binance::auth::Keys;

/// What the check needs.
pub struct NativeAuth {
    /// API keys and secrets.
    pub keys: Keys,
    /// Server time.
    pub clock: Arc<dyn tradestack_kernel::Clock>,
    /// Refuse unsigned requests to private endpoints.
    pub required: bool,
    /// Request weight and order rate per API key (per client address for
    /// unsigned requests), shared with the compatible API's limits.
    pub limiter: crate::binance::limits::RateLimiter,
}

/// Charges one request (and one order for a new order) to `who`; the 429
/// (with `Retry-After`) to answer when over the limit.
fn over_limit(auth: &NativeAuth, who: &str, new_order: bool) -> Option<Response> {
    auth.limiter
        .charge(who, 1, new_order, auth.clock.now().as_millis())
        .err()
        .map(|e| {
            let mut r =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.msg).into_response();
            if let Some(s) = e.retry_after
                && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert("retry-after", v);
            }
            r
        })
}

/// Largest body read for signing.
const MAX_BODY: usize = 1 << 20;

fn private(path: &str) -> bool {
    path.starts_with("/api/v1/orders")
        || path.starts_with("/api/v1/fills")
        || path.starts_with("/api/v1/accounts/")
}

fn unauthorized(field: &str, message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_field(field)
        .into_response()
}

/// The account a request names, if any: path, then query, then JSON body.
fn named_account(path: &str, query: &str, body: &[u8]) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/api/v1/accounts/") {
        return rest.split('/').next().map(str::to_string);
    }
    if let Some(a) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "account")
        .map(|(_, v)| v.to_string())
    {
        return Some(a);
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("account")
                .and_then(|a| a.as_str())
                .map(str::to_string)
        })
}

/// Verifies signed requests to the native API's private endpoints.
pub async fn middleware(State(auth): State<Arc<NativeAuth>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !private(&path) {
        return next.run(req).await;
    }
    let new_order = req.method() == axum::http::Method::POST && path == "/api/v1/orders";
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    // Owned copies: nothing borrowed from the request lives across an await.
    let (key, ts, signature, window) = {
        let h = req.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            get("x-ts-apikey"),
            get("x-ts-timestamp"),
            get("x-ts-signature"),
            get("x-ts-recv-window"),
        )
    };
    let Some(key) = key else {
        if auth.required {
            return unauthorized(
                "x-ts-apikey",
                "this endpoint needs a signed request (X-TS-APIKEY, X-TS-TIMESTAMP, X-TS-SIGNATURE)",
            );
        }
        if let Some(r) = over_limit(&auth, &format!("IP({client})"), new_order) {
            return r;
        }
        return next.run(req).await;
    };
    let (Some(ts), Some(signature)) = (ts, signature) else {
        return unauthorized(
            "x-ts-signature",
            "X-TS-TIMESTAMP and X-TS-SIGNATURE are required with X-TS-APIKEY",
        );
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return unauthorized(
            "x-ts-timestamp",
            "X-TS-TIMESTAMP must be milliseconds since the epoch",
        );
    };
    let window = match window.map(|w| w.parse::<i64>()) {
        None => 5_000,
        Some(Ok(w)) => w,
        Some(Err(_)) => {
            return unauthorized("x-ts-recv-window", "X-TS-RECV-WINDOW must be milliseconds");
        }
    };
    let Ok((account, secret)) = auth
        .keys
        .account(Some(&key))
        .map(|(a, s)| (a.clone(), s.to_string()))
    else {
        return unauthorized("x-ts-apikey", "unknown API key");
    };
    let method = req.method().as_str().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_string());
    let query = req.uri().query().unwrap_or("").to_string();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::bad_request("body", "request body too large or unreadable")
            .into_response();
    };
    let payload = format!(
        "{ts}{method}{path_and_query}{}",
        String::from_utf8_lossy(&bytes)
    );
    if let Err(e) = auth.keys.check(
        &secret,
        &payload,
        &signature,
        ts,
        window,
        auth.clock.now().as_millis(),
    ) {
        let field = if e.code == -1021 || e.code == -1131 {
            "x-ts-timestamp"
        } else {
            "x-ts-signature"
        };
        return unauthorized(field, e.msg);
    }
    if let Some(named) = named_account(&path, &query, &bytes)
        && named != account.as_str()
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key belongs to account {account}, not {named}"),
        )
        .with_field("account")
        .into_response();
    }
    if let Some(r) = over_limit(&auth, &format!("key({key})"), new_order) {
        return r;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Signs a native request, for clients and tests.
pub fn sign_request(
    secret: &str,
    ts_ms: i64,
    method: &str,
    path_and_query: &str,
    body: &str,
) -> String {
    crate::binance::auth::sign(secret, &format!("{ts_ms}{method}{path_and_query}{body}"))
}
