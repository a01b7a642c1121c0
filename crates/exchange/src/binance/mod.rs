//! A Binance-compatible spot REST API (`/api/v3/...`): the same paths,
//! parameters, signatures, error codes and JSON shapes, so existing clients
//! (ccxt's `binance` class among them) work with only their URLs changed.
//!
//! Symbols are Binance-style (`BTCUSDT` for `BTC-USDT`). Numbers are decimal
//! strings. Signed endpoints need `X-MBX-APIKEY` and an HMAC-SHA256
//! `signature`; API keys come from `[[exchange.accounts]]`.

pub mod auth;
pub mod error;
pub mod limits;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tradestack_matching::{RejectReason, StpMode};
use tradestack_model::{
    AccountId, Amount, Fill, InstrumentId, Order, OrderId, OrderStatus, OrderType, Price, Quantity,
    Side, TimeInForce,
};
use tradestack_store::FillQuery;

use crate::api::ApiState;
use crate::engine::{Command, ExchangeError, OrderRef, PlaceOrder, Reply};
use auth::Keys;
use error::BinanceError;
use limits::{RateLimiter, Usage};

/// What the compatible API needs beyond the native API's state.
#[derive(Clone)]
pub struct BinanceState {
    /// Shared with the native API.
    pub api: ApiState,
    /// API keys.
    pub keys: Keys,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// `BTCUSDT` -> `BTC-USDT`.
    pub symbols: Arc<HashMap<String, InstrumentId>>,
}

impl BinanceState {
    /// The instrument of a Binance symbol.
    fn instrument(&self, symbol: &str) -> Result<InstrumentId, BinanceError> {
        self.symbols
            .get(symbol)
            .cloned()
            .ok_or_else(|| BinanceError::bad(-1121, "Invalid symbol."))
    }

    fn now_ms(&self) -> i64 {
        self.api.clock.now().as_millis()
    }
}

/// `BTC-USDT` -> `BTCUSDT`.
pub fn symbol_of(id: &InstrumentId) -> String {
    id.as_str().replace('-', "")
}

/// The compatible API's routes.
pub fn router(state: BinanceState) -> Router {
    Router::new()
        .route("/api/v3/ping", get(ping))
        .route("/api/v3/time", get(time))
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/depth", get(depth))
        .route("/api/v3/trades", get(trades))
        .route("/api/v3/klines", get(klines))
        .route("/api/v3/ticker/24hr", get(ticker_24hr))
        .route("/api/v3/ticker/price", get(ticker_price))
        .route("/api/v3/ticker/bookTicker", get(book_ticker))
        .route(
            "/api/v3/order",
            post(new_order).get(query_order).delete(cancel_order),
        )
        .route("/api/v3/order/test", post(test_order))
        .route(
            "/api/v3/openOrders",
            get(open_orders).delete(cancel_open_orders),
        )
        .route("/api/v3/allOrders", get(all_orders))
        .route("/api/v3/account", get(account))
        .route("/api/v3/myTrades", get(my_trades))
        .route("/sapi/v1/capital/config/getall", get(coins))
        // No derivatives yet: clients that load every market type see none.
        .route("/fapi/v1/exchangeInfo", get(no_derivatives))
        .route("/dapi/v1/exchangeInfo", get(no_derivatives))
        // No margin trading: empty lists.
        .route("/sapi/v1/margin/allPairs", get(no_margin))
        .route("/sapi/v1/margin/isolated/allPairs", get(no_margin))
        .with_state(state)
}

/// A request's parameters (query string and form body), key and address.
pub struct Req {
    params: HashMap<String, String>,
    query: String,
    body: String,
    api_key: Option<String>,
    client: String,
}

impl<S: Send + Sync> FromRequest<S> for Req {
    type Rejection = BinanceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, BinanceError> {
        let query = req.uri().query().unwrap_or("").to_string();
        let api_key = req
            .headers()
            .get("x-mbx-apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let client = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                BinanceError::bad(-1100, "Illegal characters found in the request body.")
            })?;
        let body = String::from_utf8(body.to_vec()).map_err(|_| {
            BinanceError::bad(-1100, "Illegal characters found in the request body.")
        })?;
        let mut req = Req::parse(query, body)?;
        req.api_key = api_key;
        req.client = client;
        Ok(req)
    }
}

impl Req {
    /// Parameters from a query string and a form body; a parameter given
    /// twice is an error.
    pub fn parse(query: String, body: String) -> Result<Req, BinanceError> {
        let mut params = HashMap::new();
        for (k, v) in
            form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body.as_bytes()))
        {
            if params.insert(k.to_string(), v.to_string()).is_some() {
                return Err(BinanceError::bad(
                    -1101,
                    format!("Duplicate values for parameter '{k}'."),
                ));
            }
        }
        Ok(Req {
            params,
            query,
            body,
            api_key: None,
            client: "unknown".into(),
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn need(&self, name: &str) -> Result<&str, BinanceError> {
        self.get(name).ok_or_else(|| BinanceError::missing(name))
    }

    fn decimal<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, BinanceError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    BinanceError::bad(-1100, format!("Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."))
                })
            })
            .transpose()
    }

    fn int(&self, name: &str) -> Result<Option<i64>, BinanceError> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| BinanceError::malformed(name)))
            .transpose()
    }
}

/// A JSON answer with the usage headers.
fn reply(body: Value, usage: Usage) -> Response {
    let mut r = Json(body).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&usage.weight.to_string()) {
        h.insert("x-mbx-used-weight", v.clone());
        h.insert("x-mbx-used-weight-1m", v);
    }
    if let Some(n) = usage.orders
        && let Ok(v) = HeaderValue::from_str(&n.to_string())
    {
        h.insert("x-mbx-order-count-10s", v);
    }
    r
}

impl BinanceState {
    /// Charges a public request to its key or address.
    fn charge(&self, req: &Req, weight: u32) -> Result<Usage, BinanceError> {
        let who = req
            .api_key
            .as_deref()
            .map_or_else(|| format!("IP({})", req.client), |k| format!("key({k})"));
        self.limiter.charge(&who, weight, false, self.now_ms())
    }

    /// Authenticates a signed request and charges it; returns the account.
    fn signed(
        &self,
        req: &Req,
        weight: u32,
        order: bool,
    ) -> Result<(AccountId, Usage), BinanceError> {
        let (account, secret) = self.keys.account(req.api_key.as_deref())?;
        let account = account.clone();
        self.keys
            .verify(secret, &req.query, &req.body, &req.params, self.now_ms())?;
        let who = format!("key({})", req.api_key.as_deref().unwrap_or(""));
        let usage = self.limiter.charge(&who, weight, order, self.now_ms())?;
        Ok((account, usage))
    }
}

async fn ping(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    Ok(reply(json!({}), s.charge(&req, 1)?))
}

async fn time(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let usage = s.charge(&req, 1)?;
    Ok(reply(json!({ "serverTime": s.now_ms() }), usage))
}

fn parse_stp(s: &str) -> Result<StpMode, BinanceError> {
    Ok(match s {
        "NONE" => StpMode::None,
        "EXPIRE_TAKER" => StpMode::CancelNewest,
        "EXPIRE_MAKER" => StpMode::CancelOldest,
        "EXPIRE_BOTH" => StpMode::CancelBoth,
        "DECREMENT" => StpMode::Decrement,
        _ => {
            return Err(BinanceError::bad(
                -1130,
                "Invalid data sent for a parameter: selfTradePreventionMode.",
            ));
        }
    })
}

async fn exchange_info(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let usage = s.charge(&req, 20)?;
    let only: Option<Vec<String>> = match (req.get("symbol"), req.get("symbols")) {
        (Some(one), _) => Some(vec![one.to_string()]),
        (None, Some(list)) => Some(serde_json::from_str::<Vec<String>>(list).map_err(|_| {
            BinanceError::bad(-1100, "Illegal characters found in parameter 'symbols'.")
        })?),
        (None, None) => None,
    };
    if let Some(list) = &only {
        for sym in list {
            s.instrument(sym)?;
        }
    }
    let instruments = s
        .api
        .exchange
        .read(|ex| ex.instruments().cloned().collect::<Vec<_>>())
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let symbols: Vec<Value> = instruments
        .iter()
        .filter(|i| i.kind == tradestack_model::InstrumentKind::Spot)
        .filter(|i| only.as_ref().is_none_or(|l| l.contains(&symbol_of(&i.id))))
        .map(|i| {
            json!({
                "symbol": symbol_of(&i.id),
                "status": "TRADING",
                "baseAsset": i.base.as_str(),
                "baseAssetPrecision": 8,
                "quoteAsset": i.quote.as_str(),
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT"],
                "icebergAllowed": false,
                "ocoAllowed": false,
                "otoAllowed": false,
                "quoteOrderQtyMarketAllowed": false,
                "allowTrailingStop": false,
                "cancelReplaceAllowed": false,
                "amendAllowed": false,
                "isSpotTradingAllowed": true,
                "isMarginTradingAllowed": false,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": i.tick_size.to_string(), "maxPrice": "10000000", "tickSize": i.tick_size.to_string()},
                    {"filterType": "LOT_SIZE", "minQty": i.min_qty.to_string(), "maxQty": i.max_qty.to_string(), "stepSize": i.lot_size.to_string()},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": i.min_qty.to_string(), "maxQty": i.max_qty.to_string(), "stepSize": i.lot_size.to_string()},
                    {"filterType": "NOTIONAL", "minNotional": i.min_notional.to_string(), "applyMinToMarket": false, "maxNotional": "9000000000", "applyMaxToMarket": false, "avgPriceMins": 0},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
            })
        })
        .collect();
    Ok(reply(
        json!({
            "timezone": "UTC",
            "serverTime": s.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": s.limiter_limits().weight_per_minute},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": s.limiter_limits().orders_per_10s},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }),
        usage,
    ))
}

impl BinanceState {
    fn limiter_limits(&self) -> limits::Limits {
        self.limiter.limits()
    }
}

async fn depth(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let id = s.instrument(req.need("symbol")?)?;
    let limit = req.int("limit")?.unwrap_or(100);
    if !(1..=5000).contains(&limit) {
        return Err(BinanceError::bad(
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '1-5000'.",
        ));
    }
    let weight = match limit {
        1..=100 => 5,
        101..=500 => 25,
        501..=1000 => 50,
        _ => 250,
    };
    let usage = s.charge(&req, weight)?;
    let snap = s
        .api
        .exchange
        .read(move |ex| ex.book(&id).map(|b| b.l2_snapshot(limit as usize)))
        .await
        .map_err(|_| BinanceError::unavailable())?
        .ok_or_else(|| BinanceError::bad(-1121, "Invalid symbol."))?;
    let side = |levels: &[tradestack_matching::LevelView]| -> Vec<Value> {
        levels
            .iter()
            .map(|l| json!([l.price.to_string(), l.quantity.to_string()]))
            .collect()
    };
    Ok(reply(
        json!({ "lastUpdateId": snap.seq, "bids": side(&snap.bids), "asks": side(&snap.asks) }),
        usage,
    ))
}

async fn trades(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let id = s.instrument(req.need("symbol")?)?;
    let limit = req.int("limit")?.unwrap_or(500).clamp(1, 1000) as usize;
    let usage = s.charge(&req, 25)?;
    let list: Vec<Value> = s
        .api
        .trades
        .last(&id, limit)
        .iter()
        .map(|t| {
            json!({
                "id": t.id.0,
                "price": t.price.to_string(),
                "qty": t.quantity.to_string(),
                "quoteQty": t.price.notional(t.quantity).to_string(),
                "time": t.ts.as_millis(),
                "isBuyerMaker": t.aggressor == Side::Sell,
                "isBestMatch": true,
            })
        })
        .collect();
    Ok(reply(Value::Array(list), usage))
}

/// Binance kline intervals in minutes (months are not supported).
fn interval_minutes(s: &str) -> Option<i64> {
    Some(match s {
        "1m" => 1,
        "3m" => 3,
        "5m" => 5,
        "15m" => 15,
        "30m" => 30,
        "1h" => 60,
        "2h" => 120,
        "4h" => 240,
        "6h" => 360,
        "8h" => 480,
        "12h" => 720,
        "1d" => 1440,
        "3d" => 4320,
        "1w" => 10080,
        _ => return None,
    })
}

async fn klines(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let id = s.instrument(req.need("symbol")?)?;
    let minutes = interval_minutes(req.need("interval")?)
        .ok_or_else(|| BinanceError::bad(-1120, "Invalid interval."))?;
    let limit = req.int("limit")?.unwrap_or(500).clamp(1, 1000) as usize;
    let ms = 1_000_000i64;
    let from = req.int("startTime")?.map(|t| t * ms);
    let to = req.int("endTime")?.map(|t| t * ms);
    let usage = s.charge(&req, 2)?;
    let interval_ns = minutes * 60_000 * ms;
    let rows: Vec<Value> = s
        .api
        .bars
        .bars(&id, interval_ns, from, to, limit)
        .iter()
        .map(|b| {
            json!([
                b.open_time / ms,
                b.open.to_string(),
                b.high.to_string(),
                b.low.to_string(),
                b.close.to_string(),
                b.volume.to_string(),
                (b.open_time + interval_ns) / ms - 1,
                b.quote_volume.to_string(),
                b.trades,
                b.taker_buy_volume.to_string(),
                b.taker_buy_quote.to_string(),
                "0"
            ])
        })
        .collect();
    Ok(reply(Value::Array(rows), usage))
}

/// The instruments a ticker request is about: one symbol, a list, or all.
fn ticker_targets(s: &BinanceState, req: &Req) -> Result<(Vec<InstrumentId>, bool), BinanceError> {
    match (req.get("symbol"), req.get("symbols")) {
        (Some(one), _) => Ok((vec![s.instrument(one)?], true)),
        (None, Some(list)) => {
            let names: Vec<String> = serde_json::from_str(list).map_err(|_| {
                BinanceError::bad(-1100, "Illegal characters found in parameter 'symbols'.")
            })?;
            Ok((
                names
                    .iter()
                    .map(|n| s.instrument(n))
                    .collect::<Result<_, _>>()?,
                false,
            ))
        }
        (None, None) => {
            let mut all: Vec<InstrumentId> = s.symbols.values().cloned().collect();
            all.sort();
            Ok((all, false))
        }
    }
}

/// Best bid and ask per instrument.
async fn tops(
    s: &BinanceState,
    ids: Vec<InstrumentId>,
) -> Result<
    Vec<(
        InstrumentId,
        Option<(Price, Quantity)>,
        Option<(Price, Quantity)>,
    )>,
    BinanceError,
> {
    s.api
        .exchange
        .read(move |ex| {
            ids.into_iter()
                .map(|id| {
                    let (b, a) = ex
                        .book(&id)
                        .map_or((None, None), |book| (book.best_bid(), book.best_ask()));
                    (id, b, a)
                })
                .collect()
        })
        .await
        .map_err(|_| BinanceError::unavailable())
}

fn one_or_many(list: Vec<Value>, single: bool) -> Value {
    if single {
        list.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(list)
    }
}

fn px(p: Option<(Price, Quantity)>) -> (String, String) {
    p.map_or(("0".into(), "0".into()), |(p, q)| {
        (p.to_string(), q.to_string())
    })
}

async fn ticker_24hr(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (ids, single) = ticker_targets(&s, &req)?;
    let usage = s.charge(&req, if single { 2 } else { 80 })?;
    let now = s.api.clock.now().as_i64();
    let ms = 1_000_000i64;
    let mut out = Vec::new();
    for (id, bid, ask) in tops(&s, ids).await? {
        let day = s.api.bars.last_day(&id, now);
        let last = s.api.trades.last(&id, 1).pop();
        let (bp, bq) = px(bid);
        let (ap, aq) = px(ask);
        let zero = "0".to_string();
        let (open, high, low, close, vol, qvol, count, first, lastid, open_time) = match &day {
            Some(d) => (
                d.open.to_string(),
                d.high.to_string(),
                d.low.to_string(),
                d.close.to_string(),
                d.volume.to_string(),
                d.quote_volume.to_string(),
                d.trades,
                d.first_id.0 as i64,
                d.last_id.0 as i64,
                d.open_time / ms,
            ),
            None => (
                zero.clone(),
                zero.clone(),
                zero.clone(),
                zero.clone(),
                zero.clone(),
                zero.clone(),
                0,
                -1,
                -1,
                now / ms - 86_400_000,
            ),
        };
        let (change, pct, vwap) = match &day {
            Some(d) => {
                let change = d.close.raw() - d.open.raw();
                let pct = if d.open.raw() != 0 {
                    Price::from_raw(
                        (i128::from(change) * 100 * 100_000_000 / i128::from(d.open.raw())) as i64,
                    )
                } else {
                    Price::ZERO
                };
                let vwap = if d.volume.raw() != 0 {
                    Price::from_raw(
                        (d.quote_volume.raw() * 100_000_000 / i128::from(d.volume.raw())) as i64,
                    )
                } else {
                    Price::ZERO
                };
                (
                    Price::from_raw(change).to_string(),
                    pct.to_string(),
                    vwap.to_string(),
                )
            }
            None => (zero.clone(), zero.clone(), zero.clone()),
        };
        out.push(json!({
            "symbol": symbol_of(&id),
            "priceChange": change,
            "priceChangePercent": pct,
            "weightedAvgPrice": vwap,
            "prevClosePrice": open,
            "lastPrice": close,
            "lastQty": last.as_ref().map_or(zero.clone(), |t| t.quantity.to_string()),
            "bidPrice": bp, "bidQty": bq, "askPrice": ap, "askQty": aq,
            "openPrice": open, "highPrice": high, "lowPrice": low,
            "volume": vol, "quoteVolume": qvol,
            "openTime": open_time, "closeTime": now / ms,
            "firstId": first, "lastId": lastid, "count": count,
        }));
    }
    Ok(reply(one_or_many(out, single), usage))
}

async fn ticker_price(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (ids, single) = ticker_targets(&s, &req)?;
    let usage = s.charge(&req, if single { 2 } else { 4 })?;
    let out = ids
        .iter()
        .map(|id| {
            let price = s
                .api
                .trades
                .last(id, 1)
                .pop()
                .map_or_else(|| "0".to_string(), |t| t.price.to_string());
            json!({ "symbol": symbol_of(id), "price": price })
        })
        .collect();
    Ok(reply(one_or_many(out, single), usage))
}

async fn book_ticker(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (ids, single) = ticker_targets(&s, &req)?;
    let usage = s.charge(&req, if single { 2 } else { 4 })?;
    let out = tops(&s, ids)
        .await?
        .into_iter()
        .map(|(id, bid, ask)| {
            let (bp, bq) = px(bid);
            let (ap, aq) = px(ask);
            json!({ "symbol": symbol_of(&id), "bidPrice": bp, "bidQty": bq, "askPrice": ap, "askQty": aq })
        })
        .collect();
    Ok(reply(one_or_many(out, single), usage))
}

// ------------------------------------------------------------------ orders

fn binance_status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New | OrderStatus::PendingTrigger => "NEW",
        OrderStatus::PartiallyFilled => "PARTIALLY_FILLED",
        OrderStatus::Filled => "FILLED",
        OrderStatus::Cancelled => "CANCELED",
        OrderStatus::Rejected => "REJECTED",
        OrderStatus::Expired => "EXPIRED",
    }
}

fn binance_type(o: &Order) -> &'static str {
    match (o.order_type, o.time_in_force) {
        (OrderType::Limit, TimeInForce::PostOnly) => "LIMIT_MAKER",
        (OrderType::Limit, _) => "LIMIT",
        (OrderType::Market, _) => "MARKET",
        (OrderType::Stop, _) => "STOP_LOSS",
        (OrderType::StopLimit, _) => "STOP_LOSS_LIMIT",
    }
}

fn binance_tif(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
        _ => "GTC",
    }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

/// Binance's order object.
fn order_json(o: &Order, cum_quote: Amount) -> Value {
    let ms = 1_000_000;
    json!({
        "symbol": symbol_of(&o.instrument),
        "orderId": o.id.0,
        "orderListId": -1,
        "clientOrderId": o.client_order_id.as_str(),
        "price": o.price.unwrap_or(Price::ZERO).to_string(),
        "origQty": o.quantity.to_string(),
        "executedQty": o.filled.to_string(),
        "cummulativeQuoteQty": cum_quote.to_string(),
        "status": binance_status(o.status),
        "timeInForce": binance_tif(o.time_in_force),
        "type": binance_type(o),
        "side": side_name(o.side),
        "stopPrice": o.stop_price.unwrap_or(Price::ZERO).to_string(),
        "icebergQty": "0",
        "time": o.created_at.as_i64() / ms,
        "updateTime": o.updated_at.as_i64() / ms,
        "isWorking": o.status != OrderStatus::PendingTrigger,
        "workingTime": o.created_at.as_i64() / ms,
        "origQuoteOrderQty": "0",
        "selfTradePreventionMode": "EXPIRE_TAKER",
    })
}

/// Maps an engine error to Binance's code and message.
fn engine_error(e: &ExchangeError, cancel: bool) -> BinanceError {
    use RejectReason::*;
    match e {
        ExchangeError::UnknownInstrument(_) | ExchangeError::NotPerpetual(_) => {
            BinanceError::bad(-1121, "Invalid symbol.")
        }
        ExchangeError::UnknownAccount(_) => {
            BinanceError::auth(-2015, "Invalid API-key, IP, or permissions for action.")
        }
        ExchangeError::UnknownOrder if cancel => BinanceError::bad(-2011, "Unknown order sent."),
        ExchangeError::UnknownOrder => BinanceError::bad(-2013, "Order does not exist."),
        ExchangeError::DuplicateClientOrderId(_) => {
            BinanceError::bad(-2010, "Duplicate order sent.")
        }
        ExchangeError::InsufficientFunds(_) => BinanceError::bad(
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        ExchangeError::NonPositiveAmount => BinanceError::bad(-1013, "Invalid quantity."),
        ExchangeError::Rejected(r) => match r {
            NonPositivePrice | OffTick | OutOfRange => {
                BinanceError::bad(-1013, "Filter failure: PRICE_FILTER")
            }
            ZeroQuantity | OffLot | BelowMinQty | AboveMaxQty => {
                BinanceError::bad(-1013, "Filter failure: LOT_SIZE")
            }
            BelowMinNotional => BinanceError::bad(-1013, "Filter failure: NOTIONAL"),
            MissingPrice => BinanceError::missing("price"),
            MissingStopPrice => BinanceError::missing("stopPrice"),
            UnexpectedPrice => {
                BinanceError::bad(-1106, "Parameter 'price' sent when not required.")
            }
            BadExpiry | BadTimeInForce => BinanceError::bad(-1115, "Invalid timeInForce."),
            DuplicateOrderId => BinanceError::bad(-2010, "Duplicate order sent."),
            PostOnlyWouldTake => {
                BinanceError::bad(-2010, "Order would immediately match and take.")
            }
            FokUnfillable => BinanceError::bad(-2010, "Order would not be filled in full (FOK)."),
            WouldTriggerImmediately => {
                BinanceError::bad(-2010, "Stop price would trigger immediately.")
            }
            UnknownOrder | NotOwner if cancel => BinanceError::bad(-2011, "Unknown order sent."),
            UnknownOrder | NotOwner => BinanceError::bad(-2013, "Order does not exist."),
            BadAmend => BinanceError::bad(-1013, "Invalid quantity."),
        },
    }
}

/// Parses a new-order request into a command (no side effects); the fuzz
/// target `order_request` drives this with arbitrary input.
pub fn parse_order(
    symbols: &HashMap<String, InstrumentId>,
    req: &Req,
    account: AccountId,
) -> Result<PlaceOrder, BinanceError> {
    let instrument = symbols
        .get(req.need("symbol")?)
        .cloned()
        .ok_or_else(|| BinanceError::bad(-1121, "Invalid symbol."))?;
    let side = match req.need("side")? {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => return Err(BinanceError::bad(-1117, "Invalid side.")),
    };
    let kind = req.need("type")?;
    let tif = match req.get("timeInForce") {
        None => None,
        Some("GTC") => Some(TimeInForce::Gtc),
        Some("IOC") => Some(TimeInForce::Ioc),
        Some("FOK") => Some(TimeInForce::Fok),
        Some(_) => return Err(BinanceError::bad(-1115, "Invalid timeInForce.")),
    };
    let price: Option<Price> = req.decimal("price")?;
    let stop: Option<Price> = req.decimal("stopPrice")?;
    let quantity: Quantity = req
        .decimal("quantity")?
        .ok_or_else(|| BinanceError::missing("quantity"))?;
    if req.get("quoteOrderQty").is_some() {
        return Err(BinanceError::bad(
            -1106,
            "Parameter 'quoteOrderQty' sent when not required.",
        ));
    }
    let not_for = |name: &str, present: bool| {
        if present {
            Err(BinanceError::bad(
                -1106,
                format!("Parameter '{name}' sent when not required."),
            ))
        } else {
            Ok(())
        }
    };
    let (order_type, time_in_force) = match kind {
        "LIMIT" => (
            OrderType::Limit,
            tif.ok_or_else(|| BinanceError::missing("timeInForce"))?,
        ),
        "LIMIT_MAKER" => {
            not_for("timeInForce", tif.is_some())?;
            (OrderType::Limit, TimeInForce::PostOnly)
        }
        "MARKET" => {
            not_for("price", price.is_some())?;
            not_for("timeInForce", tif.is_some())?;
            (OrderType::Market, TimeInForce::Ioc)
        }
        "STOP_LOSS" => {
            not_for("price", price.is_some())?;
            (OrderType::Stop, TimeInForce::Ioc)
        }
        "STOP_LOSS_LIMIT" => (
            OrderType::StopLimit,
            tif.ok_or_else(|| BinanceError::missing("timeInForce"))?,
        ),
        _ => return Err(BinanceError::bad(-1116, "Invalid orderType.")),
    };
    if matches!(order_type, OrderType::Limit | OrderType::StopLimit) && price.is_none() {
        return Err(BinanceError::missing("price"));
    }
    if matches!(order_type, OrderType::Stop | OrderType::StopLimit) && stop.is_none() {
        return Err(BinanceError::missing("stopPrice"));
    }
    if !matches!(order_type, OrderType::Stop | OrderType::StopLimit) {
        not_for("stopPrice", stop.is_some())?;
    }
    let client_order_id = match req.get("newClientOrderId") {
        Some(c)
            if c.len() > 36
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-:/".contains(ch)) =>
        {
            return Err(BinanceError::bad(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            ));
        }
        Some(c) => Some(c.into()),
        None => None,
    };
    Ok(PlaceOrder {
        account,
        instrument,
        client_order_id,
        side,
        order_type,
        time_in_force,
        price,
        stop_price: stop,
        quantity,
        expire_at: None,
        stp: req
            .get("selfTradePreventionMode")
            .map(parse_stp)
            .transpose()?,
    })
}

fn fill_json(f: &Fill) -> Value {
    json!({
        "price": f.price.to_string(),
        "qty": f.quantity.to_string(),
        "commission": f.fee.to_string(),
        "commissionAsset": f.fee_asset.as_str(),
        "tradeId": f.trade_id.0,
    })
}

async fn new_order(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 1, true)?;
    let place = parse_order(&s.symbols, &req, account)?;
    let resp_type = req
        .get("newOrderRespType")
        .unwrap_or(match place.order_type {
            OrderType::Market | OrderType::Limit => "FULL",
            _ => "ACK",
        });
    let done = s
        .api
        .exchange
        .execute(Command::Place(place))
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let (order, fills) = match done.result {
        Ok(Reply::Order(o, f)) => (o, f),
        Ok(_) => return Err(BinanceError::unavailable()),
        Err(e) => return Err(engine_error(&e, false)),
    };
    let cum: Amount = fills
        .iter()
        .fold(Amount::ZERO, |a, f| a + f.price.notional(f.quantity));
    let ms = 1_000_000;
    let mut body = json!({
        "symbol": symbol_of(&order.instrument),
        "orderId": order.id.0,
        "orderListId": -1,
        "clientOrderId": order.client_order_id.as_str(),
        "transactTime": done.events.ts.as_i64() / ms,
    });
    if resp_type != "ACK" {
        let full = order_json(&order, cum);
        for k in [
            "price",
            "origQty",
            "executedQty",
            "cummulativeQuoteQty",
            "status",
            "timeInForce",
            "type",
            "side",
            "workingTime",
            "selfTradePreventionMode",
        ] {
            body[k] = full[k].clone();
        }
        if order.stop_price.is_some() {
            body["stopPrice"] = full["stopPrice"].clone();
        }
    }
    if resp_type == "FULL" {
        body["fills"] = Value::Array(fills.iter().map(fill_json).collect());
    }
    Ok(reply(body, usage))
}

async fn test_order(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 1, false)?;
    let place = parse_order(&s.symbols, &req, account)?;
    // Validates against the instrument's rules without entering the order.
    let checked = s
        .api
        .exchange
        .read(move |ex| {
            let book = ex
                .book(&place.instrument)
                .ok_or(ExchangeError::UnknownInstrument(place.instrument.clone()))?;
            let ins = book.instrument();
            ins.check_qty(place.quantity)
                .map_err(|v| ExchangeError::Rejected(v.into()))?;
            if let Some(p) = place.price {
                ins.check_price(p)
                    .and_then(|()| ins.check_notional(p, place.quantity))
                    .map_err(|v| ExchangeError::Rejected(v.into()))?;
            }
            Ok::<(), ExchangeError>(())
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    checked.map_err(|e| engine_error(&e, false))?;
    Ok(reply(json!({}), usage))
}

/// `orderId` or `origClientOrderId`.
fn which(req: &Req) -> Result<OrderRef, BinanceError> {
    if let Some(id) = req.int("orderId")? {
        return Ok(OrderRef::Id(OrderId(id as u64)));
    }
    match req.get("origClientOrderId") {
        Some(c) => Ok(OrderRef::Client(c.into())),
        None => Err(BinanceError::bad(
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        )),
    }
}

/// An order of `account` by reference: open ones from the engine, closed
/// ones from the history in the state store.
async fn find_order(
    s: &BinanceState,
    account: &AccountId,
    instrument: &InstrumentId,
    which: &OrderRef,
) -> Result<Option<(Order, Amount)>, BinanceError> {
    let (acct, w) = (account.clone(), which.clone());
    let open = s
        .api
        .exchange
        .read(move |ex| ex.find(&acct, &w).map(|o| (o.order.clone(), o.cum_quote)))
        .await
        .map_err(|_| BinanceError::unavailable())?;
    if let Some((o, cum)) = open {
        return Ok((&o.instrument == instrument).then_some((o, cum)));
    }
    let OrderRef::Id(id) = which else {
        return Ok(None);
    };
    let store = &s.api.store;
    let Some(o) = store
        .get_order(*id)
        .await
        .map_err(|_| BinanceError::unavailable())?
    else {
        return Ok(None);
    };
    if &o.account != account || &o.instrument != instrument {
        return Ok(None);
    }
    let cum = cum_quote(s, o.id).await?;
    Ok(Some((o, cum)))
}

async fn cum_quote(s: &BinanceState, id: OrderId) -> Result<Amount, BinanceError> {
    let fills = s
        .api
        .store
        .fills(FillQuery {
            order_id: Some(id),
            ..FillQuery::default()
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    Ok(fills
        .iter()
        .fold(Amount::ZERO, |a, f| a + f.price.notional(f.quantity)))
}

async fn query_order(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 4, false)?;
    let instrument = s.instrument(req.need("symbol")?)?;
    let w = which(&req)?;
    match find_order(&s, &account, &instrument, &w).await? {
        Some((o, cum)) => Ok(reply(order_json(&o, cum), usage)),
        None => Err(BinanceError::bad(-2013, "Order does not exist.")),
    }
}

async fn cancel_order(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 1, false)?;
    let instrument = s.instrument(req.need("symbol")?)?;
    let w = which(&req)?;
    let done = s
        .api
        .exchange
        .execute(Command::Cancel {
            account: account.clone(),
            instrument: instrument.clone(),
            order: w,
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let order = match done.result {
        Ok(Reply::Order(o, _)) => o,
        Ok(_) => return Err(BinanceError::unavailable()),
        Err(e) => return Err(engine_error(&e, true)),
    };
    let cum = cum_quote(&s, order.id).await?;
    let mut body = order_json(&order, cum);
    body["origClientOrderId"] = json!(order.client_order_id.as_str());
    body["transactTime"] = json!(done.events.ts.as_i64() / 1_000_000);
    Ok(reply(body, usage))
}

async fn cancel_open_orders(
    State(s): State<BinanceState>,
    req: Req,
) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 1, false)?;
    let instrument = s.instrument(req.need("symbol")?)?;
    let done = s
        .api
        .exchange
        .execute(Command::CancelAll {
            account,
            instrument: Some(instrument),
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let orders = match done.result {
        Ok(Reply::Cancelled(list)) => list,
        Ok(_) => return Err(BinanceError::unavailable()),
        Err(e) => return Err(engine_error(&e, true)),
    };
    let mut out = Vec::new();
    for o in &orders {
        let mut j = order_json(o, cum_quote(&s, o.id).await?);
        j["origClientOrderId"] = json!(o.client_order_id.as_str());
        out.push(j);
    }
    Ok(reply(Value::Array(out), usage))
}

async fn open_orders(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let symbol = req.get("symbol").map(|sym| s.instrument(sym)).transpose()?;
    let (account, usage) = s.signed(&req, if symbol.is_some() { 6 } else { 80 }, false)?;
    let list = s
        .api
        .exchange
        .read(move |ex| {
            ex.open_orders(&account, symbol.as_ref())
                .into_iter()
                .map(|o| {
                    let cum = ex.open_order(o.id).map_or(Amount::ZERO, |x| x.cum_quote);
                    order_json(&o, cum)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    Ok(reply(Value::Array(list), usage))
}

async fn all_orders(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 20, false)?;
    let instrument = s.instrument(req.need("symbol")?)?;
    let limit = req.int("limit")?.unwrap_or(500).clamp(1, 1000) as usize;
    let from_id = req.int("orderId")?.unwrap_or(0) as u64;
    let start = req.int("startTime")?;
    let end = req.int("endTime")?;
    let mut orders = s
        .api
        .store
        .orders(tradestack_store::OrderQuery {
            account: Some(account.clone()),
            instrument: Some(instrument.clone()),
            open_only: false,
            limit: None,
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    // Open orders from the engine are the freshest state.
    let acct = account.clone();
    let ins = instrument.clone();
    let open: HashMap<OrderId, (Order, Amount)> = s
        .api
        .exchange
        .read(move |ex| {
            ex.open_orders(&acct, Some(&ins))
                .into_iter()
                .map(|o| {
                    let cum = ex.open_order(o.id).map_or(Amount::ZERO, |x| x.cum_quote);
                    (o.id, (o, cum))
                })
                .collect()
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    for (id, (o, _)) in &open {
        if !orders.iter().any(|x| x.id == *id) {
            orders.push(o.clone());
        }
    }
    let ms = 1_000_000;
    orders.retain(|o| {
        o.id.0 >= from_id
            && start.is_none_or(|t| o.created_at.as_i64() / ms >= t)
            && end.is_none_or(|t| o.created_at.as_i64() / ms <= t)
    });
    orders.sort_by_key(|o| o.id);
    orders.truncate(limit);
    let mut out = Vec::new();
    for o in &orders {
        let (o, cum) = match open.get(&o.id) {
            Some((fresh, cum)) => (fresh.clone(), *cum),
            None => (o.clone(), cum_quote(&s, o.id).await?),
        };
        out.push(order_json(&o, cum));
    }
    Ok(reply(Value::Array(out), usage))
}

async fn account(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 20, false)?;
    let now = s.now_ms();
    let acct = account.clone();
    let (balances, tier) = s
        .api
        .exchange
        .read(move |ex| {
            let balances: Vec<Value> = ex
                .ledger()
                .account(&acct)
                .map(|(asset, b)| json!({ "asset": asset.as_str(), "free": b.free.to_string(), "locked": b.locked.to_string() }))
                .collect();
            let tier = ex
                .account(&acct)
                .and_then(|a| ex.settings().fee_tiers.get(&a.tier).copied());
            (balances, tier)
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let (maker, taker) = tier.map_or(("0".to_string(), "0".to_string()), |t| {
        (t.maker.to_string(), t.taker.to_string())
    });
    // Commissions in basis points, as integers (Binance's legacy fields).
    let bps = |r: &str| (r.parse::<f64>().unwrap_or(0.0) * 10_000.0).round() as i64;
    Ok(reply(
        json!({
            "makerCommission": bps(&maker),
            "takerCommission": bps(&taker),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": { "maker": maker, "taker": taker, "buyer": "0", "seller": "0" },
            "canTrade": true,
            "canWithdraw": true,
            "canDeposit": true,
            "brokered": false,
            "requireSelfTradePrevention": false,
            "preventSor": false,
            "updateTime": now,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 0,
        }),
        usage,
    ))
}

async fn my_trades(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 20, false)?;
    let instrument = s.instrument(req.need("symbol")?)?;
    let limit = req.int("limit")?.unwrap_or(500).clamp(1, 1000) as usize;
    let order_id = req.int("orderId")?.map(|n| OrderId(n as u64));
    let from_id = req.int("fromId")?;
    let start = req.int("startTime")?;
    let end = req.int("endTime")?;
    let mut fills = s
        .api
        .store
        .fills(FillQuery {
            account: Some(account),
            order_id,
            instrument: Some(instrument),
            limit: None,
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    let ms = 1_000_000;
    fills.retain(|f| {
        from_id.is_none_or(|id| f.trade_id.0 as i64 >= id)
            && start.is_none_or(|t| f.ts.as_i64() / ms >= t)
            && end.is_none_or(|t| f.ts.as_i64() / ms <= t)
    });
    fills.sort_by_key(|f| (f.trade_id, f.order_id));
    fills.truncate(limit);
    let out: Vec<Value> = fills
        .iter()
        .map(|f| {
            json!({
                "symbol": symbol_of(&f.instrument),
                "id": f.trade_id.0,
                "orderId": f.order_id.0,
                "orderListId": -1,
                "price": f.price.to_string(),
                "qty": f.quantity.to_string(),
                "quoteQty": f.price.notional(f.quantity).to_string(),
                "commission": f.fee.to_string(),
                "commissionAsset": f.fee_asset.as_str(),
                "time": f.ts.as_i64() / ms,
                "isBuyer": f.side == Side::Buy,
                "isMaker": f.liquidity == tradestack_model::Liquidity::Maker,
                "isBestMatch": true,
            })
        })
        .collect();
    Ok(reply(Value::Array(out), usage))
}

async fn no_derivatives(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let usage = s.charge(&req, 1)?;
    Ok(reply(
        json!({
            "timezone": "UTC",
            "serverTime": s.now_ms(),
            "rateLimits": [],
            "exchangeFilters": [],
            "assets": [],
            "symbols": [],
        }),
        usage,
    ))
}

/// Every asset the venue trades, with the caller's balance (Binance's
/// `capital/config/getall`, which clients read currencies from).
async fn coins(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (account, usage) = s.signed(&req, 10, false)?;
    let list = s
        .api
        .exchange
        .read(move |ex| {
            let mut assets: Vec<tradestack_model::AssetCode> = ex
                .instruments()
                .flat_map(|i| [i.base.clone(), i.quote.clone()])
                .collect();
            assets.sort();
            assets.dedup();
            assets
                .into_iter()
                .map(|a| {
                    let b = ex.ledger().get(&account, &a);
                    json!({
                        "coin": a.as_str(),
                        "name": a.as_str(),
                        "free": b.free.to_string(),
                        "locked": b.locked.to_string(),
                        "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
                        "isLegalMoney": a.as_str() == "USD",
                        "trading": true,
                        "depositAllEnable": true,
                        "withdrawAllEnable": true,
                        "networkList": [{
                            "network": a.as_str(),
                            "coin": a.as_str(),
                            "withdrawIntegerMultiple": "0.00000001",
                            "isDefault": true,
                            "depositEnable": true,
                            "withdrawEnable": true,
                            "depositDesc": "", "withdrawDesc": "",
                            "name": a.as_str(),
                            "resetAddressStatus": false,
                            "withdrawFee": "0", "withdrawMin": "0", "withdrawMax": "9000000000",
                            "minConfirm": 1, "unLockConfirm": 0,
                            "sameAddress": false,
                            "estimatedArrivalTime": 0,
                            "busy": false,
                        }],
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| BinanceError::unavailable())?;
    Ok(reply(Value::Array(list), usage))
}

async fn no_margin(State(s): State<BinanceState>, req: Req) -> Result<Response, BinanceError> {
    let (_, usage) = s.signed(&req, 1, false)?;
    Ok(reply(json!([]), usage))
}
