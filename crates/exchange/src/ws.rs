//! WebSocket streams on `/ws`: public book (snapshot, then sequenced
//! deltas), trades and ticker per instrument; private orders, fills and
//! balances after a signed login. JSON text frames both ways.
//!
//! Client messages:
//! - `{"op":"subscribe","channels":["book.BTC-USDT","trades.BTC-USDT","ticker.BTC-USDT","orders","fills","balances"]}`
//! - `{"op":"unsubscribe","channels":[...]}`
//! - `{"op":"login","api_key":"...","timestamp":ms,"signature":hex}` where the
//!   signature is the HMAC-SHA256 of `timestamp=<ms>` with the key's secret
//! - `{"op":"ping"}` (answered with `{"op":"pong"}`)
//! - after login, `{"op":"order","req_id":1,"order":{...native order body without account...}}`
//!   (answered `{"op":"order","req_id":1,"order":{...},"fills":[...]}` once
//!   journaled) and `{"op":"cancel","req_id":2,"instrument":"BTC-USDT","id":7}`;
//!   errors come as `{"op":"error","req_id":..,"error":code,"field":..,"message":..}`
//!
//! Server messages carry `channel` and `type` (`snapshot`, `delta`, `update`),
//! or `op` for control (`subscribed`, `error`, `ping`, `pong`, `resync`). A
//! book subscription starts with a snapshot at sequence `seq`; each delta
//! carries the next `seq`, so a client that sees a jump has missed one and
//! should resubscribe. When this server falls behind it says `resync` and
//! sends fresh snapshots itself. The server pings every 20 s and closes a
//! connection that has not answered for 60 s.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tradestack_model::{AccountId, InstrumentId, Side};

use crate::binance::auth::Keys;
use crate::engine::ExchangeEvent;
use crate::metrics::ExchangeMetrics;
use crate::sequencer::{Applied, ExchangeHandle};

/// What the WebSocket endpoint needs.
#[derive(Clone)]
pub struct WsState {
    /// The sequencer.
    pub exchange: ExchangeHandle,
    /// API keys, for private streams.
    pub keys: Keys,
    /// The service clock, for login timestamps.
    pub clock: Arc<dyn tradestack_kernel::Clock>,
    /// Connected-clients gauge.
    pub metrics: ExchangeMetrics,
    /// Injected faults (outages cut streams, freezes stop market data).
    pub chaos: crate::chaos::Chaos,
}

/// The `/ws` route.
pub fn router(state: WsState) -> axum::Router {
    axum::Router::new()
        .route("/ws", axum::routing::get(upgrade))
        .with_state(state)
}

async fn upgrade(State(s): State<WsState>, ws: WebSocketUpgrade) -> Response {
    let Some(epoch) = s.chaos.ws_gate() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "streams are down (injected outage)",
        )
            .into_response();
    };
    ws.on_upgrade(move |socket| session(s, socket, epoch))
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ClientMsg {
    Subscribe {
        channels: Vec<String>,
    },
    Unsubscribe {
        channels: Vec<String>,
    },
    /// Enter an order for the logged-in account: the native order body
    /// without `account`.
    Order {
        #[serde(default)]
        req_id: Option<u64>,
        order: Value,
    },
    /// Cancel an order of the logged-in account.
    Cancel {
        #[serde(default)]
        req_id: Option<u64>,
        instrument: InstrumentId,
        id: u64,
    },
    Login {
        api_key: String,
        timestamp: i64,
        signature: String,
    },
    Ping,
    Pong,
}

/// A parsed channel name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    Book(InstrumentId),
    Trades(InstrumentId),
    Ticker(InstrumentId),
    Orders,
    Fills,
    Balances,
}

impl Channel {
    fn parse(s: &str) -> Option<Channel> {
        match s.split_once('.') {
            Some(("book", i)) => Some(Channel::Book(InstrumentId::new(i))),
            Some(("trades", i)) => Some(Channel::Trades(InstrumentId::new(i))),
            Some(("ticker", i)) => Some(Channel::Ticker(InstrumentId::new(i))),
            None if s == "orders" => Some(Channel::Orders),
            None if s == "fills" => Some(Channel::Fills),
            None if s == "balances" => Some(Channel::Balances),
            _ => None,
        }
    }

    fn name(&self) -> String {
        match self {
            Channel::Book(i) => format!("book.{i}"),
            Channel::Trades(i) => format!("trades.{i}"),
            Channel::Ticker(i) => format!("ticker.{i}"),
            Channel::Orders => "orders".into(),
            Channel::Fills => "fills".into(),
            Channel::Balances => "balances".into(),
        }
    }

    fn private(&self) -> bool {
        matches!(self, Channel::Orders | Channel::Fills | Channel::Balances)
    }
}

struct Session {
    subs: BTreeSet<Channel>,
    account: Option<AccountId>,
    /// Per subscribed book: the sequence number last sent.
    book_seq: HashMap<InstrumentId, u64>,
    /// Per ticker: the last top of book sent.
    tops: HashMap<InstrumentId, Value>,
    /// Market data was frozen at the last check.
    frozen: bool,
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// A book snapshot, taken between commands.
async fn book_snapshot(ex: &ExchangeHandle, id: &InstrumentId) -> Option<(u64, Value)> {
    let id2 = id.clone();
    let snap = ex
        .read(move |e| e.book(&id2).map(|b| b.l2_snapshot(1_000)))
        .await
        .ok()??;
    Some((
        snap.seq,
        json!({ "channel": format!("book.{id}"), "type": "snapshot", "seq": snap.seq, "bids": snap.bids, "asks": snap.asks }),
    ))
}

async fn top(ex: &ExchangeHandle, id: &InstrumentId) -> Option<Value> {
    let id2 = id.clone();
    let (bid, ask, last) = ex
        .read(move |e| {
            e.book(&id2)
                .map(|b| (b.best_bid(), b.best_ask(), b.last_trade_price()))
        })
        .await
        .ok()??;
    Some(json!({
        "bid": bid.map(|(p, q)| json!([p, q])),
        "ask": ask.map(|(p, q)| json!([p, q])),
        "last": last,
    }))
}

async fn session(s: WsState, mut socket: WebSocket, epoch: u64) {
    s.metrics.ws_clients.inc();
    // Subscribe to events before any snapshot, so nothing falls between.
    let mut events = s.exchange.subscribe();
    let mut st = Session {
        subs: BTreeSet::new(),
        account: None,
        book_seq: HashMap::new(),
        tops: HashMap::new(),
        frozen: false,
    };
    let mut gate = tokio::time::interval(Duration::from_millis(250));
    let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
    heartbeat.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                last_heard = tokio::time::Instant::now();
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if !handle_client(&s, &mut socket, &mut st, &text).await {
                    break;
                }
            }
            applied = events.recv() => {
                match applied {
                    Ok(a) => {
                        if !forward(&s, &mut socket, &mut st, &a).await {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        // Deltas were lost for this client: start its books over.
                        if !resync(&s, &mut socket, &mut st, n).await {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            _ = gate.tick() => {
                if s.chaos.ws_gate() != Some(epoch) {
                    // An injected outage cuts every stream.
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                let frozen = s.chaos.frozen();
                if st.frozen && !frozen && !resync(&s, &mut socket, &mut st, 0).await {
                    break;
                }
                st.frozen = frozen;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > Duration::from_secs(60) {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                if !send(&mut socket, json!({"op": "ping"})).await {
                    break;
                }
            }
        }
    }
    s.metrics.ws_clients.dec();
}

fn ws_error(req_id: Option<u64>, code: &str, field: Option<&str>, message: &str) -> Value {
    json!({"op": "error", "req_id": req_id, "error": code, "field": field, "message": message})
}

/// Enters an order for `account` from a native order body without `account`.
async fn place_over_ws(
    s: &WsState,
    account: &AccountId,
    mut order: Value,
) -> Result<(tradestack_model::Order, Vec<tradestack_model::Fill>), tradestack_api::ApiError> {
    if let Some(obj) = order.as_object_mut() {
        if obj.contains_key("account") {
            return Err(tradestack_api::ApiError::bad_request(
                "order.account",
                "the account is the logged-in one; leave it out",
            ));
        }
        obj.insert("account".into(), Value::String(account.as_str().into()));
    }
    let bytes = serde_json::to_vec(&order).unwrap_or_default();
    let place = crate::api::parse_place(&bytes)?;
    let done = s
        .exchange
        .execute(crate::engine::Command::Place(place))
        .await
        .map_err(|_| {
            tradestack_api::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the exchange is not taking commands",
            )
        })?;
    match done.result {
        Ok(crate::engine::Reply::Order(o, fills)) => Ok((o, fills)),
        Ok(_) => Err(tradestack_api::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected reply",
        )),
        Err(e) => Err(crate::api::engine_error(&e)),
    }
}

/// Tells the client its books restart, and sends fresh snapshots.
async fn resync(s: &WsState, socket: &mut WebSocket, st: &mut Session, missed: u64) -> bool {
    if !send(socket, json!({"op": "resync", "missed": missed})).await {
        return false;
    }
    let books: Vec<InstrumentId> = st.book_seq.keys().cloned().collect();
    for id in books {
        if let Some((seq, snap)) = book_snapshot(&s.exchange, &id).await {
            st.book_seq.insert(id, seq);
            if !send(socket, snap).await {
                return false;
            }
        }
    }
    true
}

/// Handles one client message; false closes the connection.
async fn handle_client(s: &WsState, socket: &mut WebSocket, st: &mut Session, text: &str) -> bool {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return send(
                socket,
                json!({"op": "error", "message": format!("bad message: {e}")}),
            )
            .await;
        }
    };
    match msg {
        ClientMsg::Order { req_id, order } => {
            let reply = match &st.account {
                None => ws_error(req_id, "unauthorized", None, "log in first"),
                Some(account) => place_over_ws(s, account, order).await.map_or_else(
                    |e| ws_error(req_id, e.code, e.field.as_deref(), &e.message),
                    |(o, fills)| json!({"op": "order", "req_id": req_id, "order": o, "fills": fills}),
                ),
            };
            send(socket, reply).await
        }
        ClientMsg::Cancel {
            req_id,
            instrument,
            id,
        } => {
            let reply = match &st.account {
                None => ws_error(req_id, "unauthorized", None, "log in first"),
                Some(account) => {
                    let cmd = crate::engine::Command::Cancel {
                        account: account.clone(),
                        instrument,
                        order: crate::engine::OrderRef::Id(tradestack_model::OrderId(id)),
                    };
                    match s.exchange.execute(cmd).await {
                        Ok(done) => match done.result {
                            Ok(crate::engine::Reply::Order(o, _)) => {
                                json!({"op": "cancel", "req_id": req_id, "order": o})
                            }
                            Ok(_) => ws_error(req_id, "internal", None, "unexpected reply"),
                            Err(e) => {
                                let e = crate::api::engine_error(&e);
                                ws_error(req_id, e.code, e.field.as_deref(), &e.message)
                            }
                        },
                        Err(_) => ws_error(
                            req_id,
                            "unavailable",
                            None,
                            "the exchange is not taking commands",
                        ),
                    }
                }
            };
            send(socket, reply).await
        }
        ClientMsg::Ping => send(socket, json!({"op": "pong"})).await,
        ClientMsg::Pong => true,
        ClientMsg::Login {
            api_key,
            timestamp,
            signature,
        } => {
            let payload = format!("timestamp={timestamp}");
            let mut params = HashMap::new();
            params.insert("timestamp".to_string(), timestamp.to_string());
            params.insert("signature".to_string(), signature);
            let result = s
                .keys
                .account(Some(&api_key))
                .and_then(|(account, secret)| {
                    s.keys
                        .verify(secret, &payload, "", &params, s.clock.now().as_millis())
                        .map(|()| account.clone())
                });
            match result {
                Ok(account) => {
                    let reply = json!({"op": "login", "account": account.as_str()});
                    st.account = Some(account);
                    send(socket, reply).await
                }
                Err(e) => {
                    send(
                        socket,
                        json!({"op": "error", "code": e.code, "message": e.msg}),
                    )
                    .await
                }
            }
        }
        ClientMsg::Unsubscribe { channels } => {
            for c in channels.iter().filter_map(|c| Channel::parse(c)) {
                if let Channel::Book(i) = &c {
                    st.book_seq.remove(i);
                }
                if let Channel::Ticker(i) = &c {
                    st.tops.remove(i);
                }
                st.subs.remove(&c);
            }
            send(socket, json!({"op": "unsubscribed", "channels": channels})).await
        }
        ClientMsg::Subscribe { channels } => {
            for name in &channels {
                let Some(c) = Channel::parse(name) else {
                    if !send(
                        socket,
                        json!({"op": "error", "channel": name, "message": "unknown channel"}),
                    )
                    .await
                    {
                        return false;
                    }
                    continue;
                };
                if c.private() && st.account.is_none() {
                    if !send(
                        socket,
                        json!({"op": "error", "channel": name, "message": "log in first"}),
                    )
                    .await
                    {
                        return false;
                    }
                    continue;
                }
                match &c {
                    Channel::Book(i) | Channel::Trades(i) | Channel::Ticker(i) => {
                        let i2 = i.clone();
                        let known = s
                            .exchange
                            .read(move |e| e.book(&i2).is_some())
                            .await
                            .unwrap_or(false);
                        if !known {
                            if !send(socket, json!({"op": "error", "channel": name, "message": "unknown instrument"})).await {
                                return false;
                            }
                            continue;
                        }
                    }
                    _ => {}
                }
                st.subs.insert(c.clone());
                if !send(socket, json!({"op": "subscribed", "channel": name})).await {
                    return false;
                }
                match &c {
                    Channel::Book(i) => {
                        if let Some((seq, snap)) = book_snapshot(&s.exchange, i).await {
                            st.book_seq.insert(i.clone(), seq);
                            if !send(socket, snap).await {
                                return false;
                            }
                        }
                    }
                    Channel::Ticker(i) => {
                        if let Some(t) = top(&s.exchange, i).await {
                            st.tops.insert(i.clone(), t.clone());
                            let msg = json!({"channel": c.name(), "type": "update", "data": t});
                            if !send(socket, msg).await {
                                return false;
                            }
                        }
                    }
                    _ => {}
                }
            }
            true
        }
    }
}

/// Sends what the client subscribed to from one applied command.
async fn forward(s: &WsState, socket: &mut WebSocket, st: &mut Session, a: &Applied) -> bool {
    let mut touched: BTreeSet<InstrumentId> = BTreeSet::new();
    let frozen = s.chaos.frozen();
    if st.frozen && !frozen && !resync(s, socket, st, 0).await {
        return false;
    }
    st.frozen = frozen;
    for e in &a.events {
        if frozen && matches!(e, ExchangeEvent::Book { .. } | ExchangeEvent::Trade(_)) {
            // Frozen market data: a resync follows when the freeze ends.
            continue;
        }
        let msg = match e {
            ExchangeEvent::Book { instrument, delta } => {
                touched.insert(instrument.clone());
                let Some(last) = st.book_seq.get_mut(instrument) else {
                    continue;
                };
                if delta.seq <= *last {
                    // Already in the snapshot.
                    continue;
                }
                *last = delta.seq;
                json!({
                    "channel": format!("book.{instrument}"),
                    "type": "delta",
                    "seq": delta.seq,
                    "side": if delta.side == Side::Buy { "bid" } else { "ask" },
                    "price": delta.price,
                    "quantity": delta.quantity,
                    "orders": delta.orders,
                })
            }
            ExchangeEvent::Trade(t) if st.subs.contains(&Channel::Trades(t.instrument.clone())) => {
                json!({"channel": format!("trades.{}", t.instrument), "type": "update", "data": t})
            }
            ExchangeEvent::Order(o)
                if st.subs.contains(&Channel::Orders)
                    && st.account.as_ref() == Some(&o.account) =>
            {
                json!({"channel": "orders", "type": "update", "data": o})
            }
            ExchangeEvent::Fill(f)
                if st.subs.contains(&Channel::Fills) && st.account.as_ref() == Some(&f.account) =>
            {
                json!({"channel": "fills", "type": "update", "data": f})
            }
            ExchangeEvent::Balance {
                account,
                asset,
                balance,
            } if st.subs.contains(&Channel::Balances) && st.account.as_ref() == Some(account) => {
                json!({"channel": "balances", "type": "update", "data": {"asset": asset, "free": balance.free, "locked": balance.locked}})
            }
            _ => continue,
        };
        if !send(socket, msg).await {
            return false;
        }
    }
    // Tickers: only when the top of book or last price changed.
    for id in touched.into_iter().filter(|_| !frozen) {
        if !st.tops.contains_key(&id) {
            continue;
        }
        if let Some(t) = top(&s.exchange, &id).await
            && st.tops.get(&id) != Some(&t)
        {
            st.tops.insert(id.clone(), t.clone());
            if !send(
                socket,
                json!({"channel": format!("ticker.{id}"), "type": "update", "data": t}),
            )
            .await
            {
                return false;
            }
        }
    }
    true
}
