//! The native REST API (`/api/v1/...`): JSON in and out, prices and
//! quantities as decimal strings, errors as `{"error", "field", "message"}`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tradestack_api::{ApiError, ApiQuery as Query, parse_json};
use tradestack_matching::{LevelView, RejectReason, StpMode};
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, Fill, InstrumentId, Order, OrderId, OrderType,
    Price, Quantity, Side, TimeInForce, Trade, UnixNanos,
};

use crate::engine::{Command, ExchangeError, OrderRef, PlaceOrder, Reply};
use crate::sequencer::{ExchangeHandle, Unavailable};

/// Recent public trades per instrument, kept from the event stream.
#[derive(Clone, Default)]
pub struct RecentTrades {
    inner: Arc<Mutex<HashMap<InstrumentId, VecDeque<Trade>>>>,
}

/// Trades kept per instrument.
const RECENT_TRADES: usize = 1_000;

impl RecentTrades {
    /// Adds a trade, dropping the oldest beyond the limit.
    pub fn push(&self, t: Trade) {
        let mut m = self.inner.lock();
        let q = m.entry(t.instrument.clone()).or_default();
        if q.len() == RECENT_TRADES {
            q.pop_front();
        }
        q.push_back(t);
    }

    /// The newest `limit` trades, oldest first.
    pub fn last(&self, instrument: &InstrumentId, limit: usize) -> Vec<Trade> {
        let m = self.inner.lock();
        m.get(instrument).map_or_else(Vec::new, |q| {
            q.iter()
                .skip(q.len().saturating_sub(limit))
                .cloned()
                .collect()
        })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The sequencer.
    pub exchange: ExchangeHandle,
    /// Recent trades.
    pub trades: RecentTrades,
    /// Order history for orders no longer open.
    pub store: Arc<dyn tradestack_store::StateStore>,
    /// The service clock (server time for the compatible API).
    pub clock: Arc<dyn tradestack_kernel::Clock>,
    /// One-minute bars of the venue's trades.
    pub bars: crate::bars::MinuteBars,
}

/// The native API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .route("/api/v1/instruments", get(instruments))
        .route("/api/v1/book/{instrument}", get(book))
        .route("/api/v1/trades/{instrument}", get(trades))
        .route(
            "/api/v1/orders",
            post(place).get(open_orders).delete(cancel_all),
        )
        .route(
            "/api/v1/orders/{id}",
            get(get_order).delete(cancel).patch(amend),
        )
        .route("/api/v1/accounts/{account}/balances", get(balances))
        .route("/api/v1/accounts/{account}/positions", get(positions))
        .route("/api/v1/fills", get(fills))
        .route("/api/v1/candles/{instrument}", get(candles))
        .with_state(state)
}

pub(crate) fn unavailable(_: Unavailable) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the exchange is not taking commands",
    )
}

/// Maps an engine error to a status and the request field it concerns.
pub fn engine_error(e: &ExchangeError) -> ApiError {
    let (status, field) = match e {
        ExchangeError::UnknownInstrument(_) => (StatusCode::BAD_REQUEST, Some("instrument")),
        ExchangeError::UnknownAccount(_) => (StatusCode::BAD_REQUEST, Some("account")),
        ExchangeError::UnknownOrder => (StatusCode::NOT_FOUND, None),
        ExchangeError::DuplicateClientOrderId(_) => (StatusCode::CONFLICT, Some("client_order_id")),
        ExchangeError::InsufficientFunds(_) => (StatusCode::BAD_REQUEST, Some("quantity")),
        ExchangeError::NonPositiveAmount => (StatusCode::BAD_REQUEST, Some("amount")),
        ExchangeError::Rejected(r) => (StatusCode::BAD_REQUEST, reject_field(*r)),
        ExchangeError::NotPerpetual(_) => (StatusCode::BAD_REQUEST, Some("instrument")),
    };
    let err = ApiError::new(status, e.code(), e.to_string());
    match field {
        Some(f) => err.with_field(f),
        None => err,
    }
}

/// The request field a book reject is about.
pub fn reject_field(r: RejectReason) -> Option<&'static str> {
    use RejectReason::*;
    Some(match r {
        NonPositivePrice | OffTick | MissingPrice | UnexpectedPrice => "price",
        ZeroQuantity | OffLot | BelowMinQty | AboveMaxQty | BelowMinNotional | BadAmend => {
            "quantity"
        }
        MissingStopPrice | WouldTriggerImmediately => "stop_price",
        BadExpiry => "expire_at",
        PostOnlyWouldTake | FokUnfillable | BadTimeInForce => "time_in_force",
        OutOfRange => "price",
        DuplicateOrderId | UnknownOrder | NotOwner => return None,
    })
}

async fn execute(state: &ApiState, cmd: Command) -> Result<Reply, ApiError> {
    let done = state.exchange.execute(cmd).await.map_err(unavailable)?;
    done.result.map_err(|e| engine_error(&e))
}

#[derive(Serialize)]
struct InstrumentView {
    #[serde(flatten)]
    instrument: tradestack_model::Instrument,
}

async fn instruments(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let list = s
        .exchange
        .read(|ex| ex.instruments().cloned().collect::<Vec<_>>())
        .await
        .map_err(unavailable)?;
    Ok(Json(
        list.into_iter()
            .map(|instrument| InstrumentView { instrument })
            .collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepthQuery {
    depth: Option<usize>,
}

/// An L2 snapshot.
#[derive(Serialize, Deserialize)]
pub struct BookView {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Sequence number of the last delta included.
    pub seq: u64,
    /// Bids, best first.
    pub bids: Vec<LevelView>,
    /// Asks, best first.
    pub asks: Vec<LevelView>,
}

async fn book(
    State(s): State<ApiState>,
    Path(instrument): Path<String>,
    Query(q): Query<DepthQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = InstrumentId::new(&instrument);
    let depth = q.depth.unwrap_or(100).clamp(1, 5_000);
    let snap = s
        .exchange
        .read(move |ex| ex.book(&id).map(|b| b.l2_snapshot(depth)))
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unknown_instrument(&instrument))?;
    Ok(Json(BookView {
        instrument: InstrumentId::new(&instrument),
        seq: snap.seq,
        bids: snap.bids,
        asks: snap.asks,
    }))
}

/// The instrument named in a path, or 404 naming it.
async fn known_instrument(s: &ApiState, instrument: &str) -> Result<InstrumentId, ApiError> {
    let id = InstrumentId::new(instrument);
    let probe = id.clone();
    let known = s
        .exchange
        .read(move |ex| ex.book(&probe).is_some())
        .await
        .map_err(unavailable)?;
    if known {
        Ok(id)
    } else {
        Err(unknown_instrument(instrument))
    }
}

fn unknown_instrument(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_instrument",
        format!("unknown instrument {id}"),
    )
    .with_field("instrument")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn trades(
    State(s): State<ApiState>,
    Path(instrument): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known_instrument(&s, &instrument).await?;
    Ok(Json(
        s.trades.last(&id, q.limit.unwrap_or(500).clamp(1, 1_000)),
    ))
}

/// A new order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    account: AccountId,
    instrument: InstrumentId,
    #[serde(default)]
    client_order_id: Option<ClientOrderId>,
    side: Side,
    #[serde(alias = "type")]
    order_type: OrderType,
    #[serde(default = "gtc")]
    time_in_force: TimeInForce,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    stop_price: Option<Price>,
    quantity: Quantity,
    #[serde(default)]
    expire_at: Option<UnixNanos>,
    #[serde(default)]
    stp: Option<StpMode>,
}

fn gtc() -> TimeInForce {
    TimeInForce::Gtc
}

/// An order and the fills it got in this request.
#[derive(Serialize, Deserialize)]
pub struct OrderResult {
    /// The order after the request.
    pub order: Order,
    /// Fills of this order during the request.
    pub fills: Vec<Fill>,
}

/// Parses a native new-order body (the fuzz target `order_request` drives
/// this with arbitrary bytes).
pub fn parse_place(body: &[u8]) -> Result<PlaceOrder, ApiError> {
    let b: PlaceBody = parse_json(body)?;
    Ok(PlaceOrder {
        account: b.account,
        instrument: b.instrument,
        client_order_id: b.client_order_id,
        side: b.side,
        order_type: b.order_type,
        time_in_force: b.time_in_force,
        price: b.price,
        stop_price: b.stop_price,
        quantity: b.quantity,
        expire_at: b.expire_at,
        stp: b.stp,
    })
}

async fn place(State(s): State<ApiState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let cmd = Command::Place(parse_place(&body)?);
    match execute(&s, cmd).await? {
        Reply::Order(order, fills) => Ok((StatusCode::CREATED, Json(OrderResult { order, fills }))),
        _ => Err(internal()),
    }
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected reply",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountQuery {
    account: AccountId,
    #[serde(default)]
    instrument: Option<InstrumentId>,
}

async fn open_orders(
    State(s): State<ApiState>,
    Query(q): Query<AccountQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let orders = s
        .exchange
        .read(move |ex| ex.open_orders(&q.account, q.instrument.as_ref()))
        .await
        .map_err(unavailable)?;
    Ok(Json(orders))
}

/// `{id}` in a path: a venue id, or `client:<client order id>`.
fn order_ref(id: &str) -> Result<OrderRef, ApiError> {
    if let Some(c) = id.strip_prefix("client:") {
        return Ok(OrderRef::Client(ClientOrderId::new(c)));
    }
    id.parse::<u64>()
        .map(|n| OrderRef::Id(OrderId(n)))
        .map_err(|_| {
            ApiError::bad_request(
                "id",
                format!("{id:?} is neither an order id nor client:<client order id>"),
            )
        })
}

async fn get_order(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let which = order_ref(&id)?;
    let account = q.account.clone();
    let found = s
        .exchange
        .read({
            let which = which.clone();
            move |ex| ex.find(&q.account, &which).map(|o| o.order.clone())
        })
        .await
        .map_err(unavailable)?;
    let found = match (found, which) {
        (Some(o), _) => Some(o),
        // Closed orders come from the history in the state store.
        (None, OrderRef::Id(oid)) => s
            .store
            .get_order(oid)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            })?
            .filter(|o| o.account == account),
        (None, OrderRef::Client(_)) => None,
    };
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_order",
            format!("no order {id} for this account"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    account: AccountId,
    instrument: InstrumentId,
}

async fn cancel(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<OrderQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let cmd = Command::Cancel {
        account: q.account,
        instrument: q.instrument,
        order: order_ref(&id)?,
    };
    match execute(&s, cmd).await? {
        Reply::Order(order, fills) => Ok(Json(OrderResult { order, fills })),
        _ => Err(internal()),
    }
}

async fn cancel_all(
    State(s): State<ApiState>,
    Query(q): Query<AccountQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let cmd = Command::CancelAll {
        account: q.account,
        instrument: q.instrument,
    };
    match execute(&s, cmd).await? {
        Reply::Cancelled(orders) => Ok(Json(orders)),
        _ => Err(internal()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendBody {
    account: AccountId,
    instrument: InstrumentId,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    quantity: Option<Quantity>,
}

async fn amend(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let b: AmendBody = parse_json(&body)?;
    if b.price.is_none() && b.quantity.is_none() {
        return Err(ApiError::bad_request(
            "price",
            "give a new price, a new quantity, or both",
        ));
    }
    let cmd = Command::Amend {
        account: b.account,
        instrument: b.instrument,
        order: order_ref(&id)?,
        price: b.price,
        quantity: b.quantity,
    };
    match execute(&s, cmd).await? {
        Reply::Order(order, fills) => Ok(Json(OrderResult { order, fills })),
        _ => Err(internal()),
    }
}

/// One asset's balance.
#[derive(Serialize, Deserialize)]
pub struct BalanceView {
    /// Asset.
    pub asset: AssetCode,
    /// Free.
    pub free: Amount,
    /// Locked by open orders.
    pub locked: Amount,
}

/// Runs `f` for a known account, else answers 404 naming it.
async fn for_account<R: Send + 'static>(
    s: &ApiState,
    account: &str,
    f: impl FnOnce(&crate::engine::Exchange, &AccountId) -> R + Send + 'static,
) -> Result<R, ApiError> {
    let id = AccountId::new(account);
    s.exchange
        .read(move |ex| ex.account(&id).map(|_| f(ex, &id)))
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_account",
                format!("unknown account {account}"),
            )
            .with_field("account")
        })
}

async fn balances(
    State(s): State<ApiState>,
    Path(account): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let list = for_account(&s, &account, |ex, id| {
        ex.ledger()
            .account(id)
            .map(|(asset, b)| BalanceView {
                asset: asset.clone(),
                free: b.free,
                locked: b.locked,
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list))
}

/// A perpetual position.
#[derive(Serialize, Deserialize)]
pub struct PositionView {
    /// Perpetual.
    pub instrument: InstrumentId,
    /// Contracts, negative when short.
    pub quantity: Amount,
    /// Average entry price.
    pub entry_price: Price,
    /// Margin held.
    pub margin: Amount,
    /// Realized P&L.
    pub realized_pnl: Amount,
    /// Funding received (negative: paid).
    pub funding: Amount,
}

async fn positions(
    State(s): State<ApiState>,
    Path(account): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let list = for_account(&s, &account, |ex, id| {
        ex.positions(id)
            .into_iter()
            .map(|(instrument, p)| PositionView {
                instrument,
                quantity: Amount::from_raw(i128::from(p.qty)),
                entry_price: p.entry,
                margin: p.margin,
                realized_pnl: p.realized,
                funding: p.funding,
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FillsQuery {
    account: AccountId,
    #[serde(default)]
    instrument: Option<InstrumentId>,
    #[serde(default)]
    order_id: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Fills of an account, newest first, from the history in the state store.
async fn fills(
    State(s): State<ApiState>,
    Query(q): Query<FillsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let list = s
        .store
        .fills(tradestack_store::FillQuery {
            account: Some(q.account),
            order_id: q.order_id.map(OrderId),
            instrument: q.instrument,
            limit: Some(q.limit.unwrap_or(500).clamp(1, 1000)),
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        })?;
    Ok(Json(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandleQuery {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Candles from the in-memory minute bars (the time-series store will serve
/// longer history).
async fn candles(
    State(s): State<ApiState>,
    Path(instrument): Path<String>,
    Query(q): Query<CandleQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let interval = q.interval.unwrap_or_else(|| "1m".into());
    let d = humantime::parse_duration(&interval)
        .ok()
        .filter(|d| d.as_secs() >= 60 && d.as_secs() % 60 == 0)
        .ok_or_else(|| {
            ApiError::bad_request("interval", "a whole number of minutes, e.g. 1m, 15m, 1h")
        })?;
    let id = known_instrument(&s, &instrument).await?;
    let interval = d.as_nanos() as i64;
    let limit = q.limit.unwrap_or(500).clamp(1, 1000);
    let bars = s.bars.bars(&id, interval, None, None, limit);
    Ok(Json(
        bars.iter()
            .map(|b| b.to_bar(&id, interval))
            .collect::<Vec<_>>(),
    ))
}

/// The OpenAPI 3 document of this API (kept in `openapi/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi/openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// Interactive docs: a self-contained page that lists and tries the
/// operations of `/openapi.json` (no external scripts).
async fn docs() -> impl IntoResponse {
    axum::response::Html(include_str!("../openapi/docs.html"))
}
