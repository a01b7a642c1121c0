//! A running exchange over its native HTTP API and WebSocket streams.
//!
//! Actions go to `/api/v1/orders` (signed with the account's API key when
//! the settings have one, unsigned otherwise, which only an exchange with
//! `require_signatures = false` accepts). Order updates and fills come from
//! one `/ws` connection per account with a key: a signed login, then the
//! private `orders` and `fills` channels. A dropped connection is
//! reconnected with backoff, and the driver is told with a
//! [`VenueEvent::Gap`], since updates in between are lost.
//!
//! Plain `http://` only: this build has no TLS, so a TLS-terminating proxy
//! belongs in front of a remote exchange.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tradestack_config::ConfigDuration;
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, Fill, Instrument, InstrumentId, Order, OrderType,
    Price, Quantity, Side, TimeInForce,
};

use super::{EVENT_QUEUE, Venue, VenueError, VenueEvent};
use crate::engine::Outgoing;
use crate::strategy::Action;

/// First wait before reconnecting a stream; doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream silent this long is dead: the exchange pings every 20 s.
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// The API key of one account on the remote exchange.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCredentials {
    /// The account the key belongs to.
    pub account: AccountId,
    /// The API key (`X-TS-APIKEY`).
    pub api_key: String,
    /// Its HMAC secret.
    pub api_secret: String,
}

impl fmt::Debug for RemoteCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCredentials")
            .field("account", &self.account)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

/// Where the remote exchange is and how to authenticate to it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    /// The exchange's root URL, e.g. `http://127.0.0.1:8080` (no path).
    pub url: String,
    /// API keys by account; accounts without one send unsigned requests and get no stream.
    #[serde(default)]
    pub credentials: Vec<RemoteCredentials>,
    /// The exchange's admin token, needed only for deposits.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Limit on each HTTP request and on each step of a stream's login (text in TOML, e.g. `"5s"`).
    #[serde(default = "default_timeout", deserialize_with = "duration_text")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Durations are text in TOML, as everywhere in the configuration.
fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    ConfigDuration::deserialize(d).map(ConfigDuration::as_std)
}

impl RemoteSettings {
    /// Settings for `url` without credentials or admin token, and a 10 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteSettings {
            url: url.into(),
            credentials: Vec::new(),
            admin_token: None,
            timeout: default_timeout(),
        }
    }
}

impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A setting [`RemoteVenue::new`] cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote venue setting `{key}`: {reason}")]
pub struct RemoteSettingsError {
    /// The key at fault, e.g. `url` or `credentials[1].account`.
    pub key: String,
    /// The problem.
    pub reason: String,
}

/// One account's key and secret.
#[derive(Clone)]
struct Key {
    api_key: String,
    secret: String,
}

struct Inner {
    base: Url,
    ws: Url,
    http: reqwest::Client,
    keys: BTreeMap<AccountId, Key>,
    admin_token: Option<String>,
    timeout: Duration,
    /// Last signing timestamp (ms): kept strictly increasing, because the
    /// exchange accepts a signature once and two identical requests in one
    /// millisecond would otherwise sign the same.
    last_ts: AtomicI64,
}

/// A tradestack exchange reached over its native HTTP API and WebSocket.
#[derive(Clone)]
pub struct RemoteVenue {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteVenue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteVenue")
            .field("url", &self.inner.base.as_str())
            .field("accounts", &self.inner.keys.keys().collect::<Vec<_>>())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteVenue {
    /// A venue on the exchange at `settings.url`; nothing is contacted yet.
    pub fn new(settings: RemoteSettings) -> Result<RemoteVenue, RemoteSettingsError> {
        let bad = |key: &str, reason: String| RemoteSettingsError {
            key: key.into(),
            reason,
        };
        let base = Url::parse(settings.url.trim())
            .map_err(|e| bad("url", format!("{:?} is not a URL: {e}", settings.url)))?;
        if base.scheme() != "http" {
            return Err(bad(
                "url",
                format!(
                    "only http:// is supported (this build has no TLS), not {}://",
                    base.scheme()
                ),
            ));
        }
        // Requests are signed over their path: a prefix that a proxy strips
        // would make every signature wrong.
        if base.path() != "/" || base.query().is_some() {
            return Err(bad(
                "url",
                "give the exchange's root URL (scheme, host and port), without a path".into(),
            ));
        }
        let mut ws = base.clone();
        if ws.set_scheme("ws").is_err() {
            return Err(bad("url", "cannot derive the WebSocket URL".into()));
        }
        ws.set_path("/ws");
        if settings.timeout.is_zero() {
            return Err(bad("timeout", "must be more than zero".into()));
        }
        let mut keys = BTreeMap::new();
        for (i, c) in settings.credentials.into_iter().enumerate() {
            if c.api_key.is_empty() || c.api_secret.is_empty() {
                return Err(bad(
                    &format!("credentials[{i}]"),
                    "api_key and api_secret must not be empty".into(),
                ));
            }
            let key = Key {
                api_key: c.api_key,
                secret: c.api_secret,
            };
            if keys.insert(c.account.clone(), key).is_some() {
                return Err(bad(
                    &format!("credentials[{i}].account"),
                    format!("account {} has two keys", c.account),
                ));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| bad("url", format!("cannot build the HTTP client: {e}")))?;
        Ok(RemoteVenue {
            inner: Arc::new(Inner {
                base,
                ws,
                http,
                keys,
                admin_token: settings.admin_token,
                timeout: settings.timeout,
                last_ts: AtomicI64::new(0),
            }),
        })
    }
}

impl Inner {
    /// The URL of `segments` (each percent-encoded) with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        // The base is http with an empty path (checked in `new`), so it has segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A signing timestamp in ms: the wall clock, but always past the last one.
    fn timestamp(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let next = |prev: i64| Some(now.max(prev.saturating_add(1)));
        match self
            .last_ts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, next)
        {
            Ok(prev) | Err(prev) => now.max(prev.saturating_add(1)),
        }
    }

    /// Sends one request and returns the body of a 2xx answer. `sign_as`
    /// signs it with that account's key, if it has one; `admin` adds the
    /// admin token.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        sign_as: Option<&AccountId>,
        admin: Option<&str>,
    ) -> Result<Vec<u8>, VenueError> {
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method.clone(), url);
        if let Some(key) = sign_as.and_then(|a| self.keys.get(a)) {
            let ts = self.timestamp();
            let text = body
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let signature = sign(
                &key.secret,
                &format!("{ts}{}{path_and_query}{text}", method.as_str()),
            );
            req = req
                .header("x-ts-apikey", &key.api_key)
                .header("x-ts-timestamp", ts.to_string())
                .header("x-ts-signature", signature);
        }
        if let Some(token) = admin {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| VenueError::Unavailable(format!("{what}: {}", chain(&e))))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| VenueError::Unavailable(format!("{what}: {}", chain(&e))))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(error_from(&what, status, &bytes, retry_after.as_deref()))
    }

    /// `call` and parse the JSON answer.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        sign_as: Option<&AccountId>,
    ) -> Result<T, VenueError> {
        let what = format!("{method} {}", url.path());
        let bytes = self.call(method, url, None, sign_as, None).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| VenueError::Unavailable(format!("{what}: unexpected answer: {e}")))
    }
}

/// An error and its causes on one line (reqwest's own text omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The exchange's error body: `{"error", "field", "message"}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A non-2xx answer as a venue error: the exchange refused (4xx) or failed
/// (5xx). Every 429 is `rate_limited`, whatever the body says, so the driver
/// can back off on one code.
fn error_from(
    what: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<&str>,
) -> VenueError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let text = String::from_utf8_lossy(body);
    let message = match &parsed {
        Some(ErrorBody {
            message: Some(m),
            field: Some(f),
            ..
        }) => format!("{m} (field {f})"),
        Some(ErrorBody {
            message: Some(m), ..
        }) => m.clone(),
        _ if text.trim().is_empty() => format!("{what}: {status}"),
        _ => format!("{what}: {status}: {}", text.trim()),
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        let message = match retry_after {
            Some(s) => format!("{message} (retry after {s} s)"),
            None => message,
        };
        return VenueError::Refused {
            code: "rate_limited".into(),
            message,
        };
    }
    if status.is_client_error() {
        let code = parsed
            .and_then(|p| {
                p.error.or(p.code.map(|c| match c {
                    Value::String(s) => s,
                    other => other.to_string(),
                }))
            })
            .unwrap_or_else(|| format!("http_{}", status.as_u16()));
        VenueError::Refused { code, message }
    } else {
        VenueError::Unavailable(format!("{what}: {status}: {message}"))
    }
}

/// Hex HMAC-SHA256 of `payload`, as the exchange checks it.
fn sign(secret: &str, payload: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty
    // signature would only be refused by the exchange.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The native new-order body, as `crate::session::to_command` fills a `PlaceOrder`.
#[derive(Serialize)]
struct PlaceBody<'a> {
    account: &'a AccountId,
    instrument: &'a InstrumentId,
    client_order_id: &'a ClientOrderId,
    side: Side,
    order_type: OrderType,
    time_in_force: TimeInForce,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<Price>,
    quantity: Quantity,
}

/// One row of `GET /api/v1/accounts/{account}/balances`.
#[derive(Deserialize)]
struct BalanceRow {
    asset: AssetCode,
    free: Amount,
    locked: Amount,
}

#[async_trait]
impl Venue for RemoteVenue {
    fn kind(&self) -> &'static str {
        "remote"
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        let url = self.inner.url(&["api", "v1", "instruments"], &[]);
        self.inner.call_json(Method::GET, url, None).await
    }

    async fn events(
        &self,
        accounts: BTreeSet<AccountId>,
    ) -> Result<mpsc::Receiver<VenueEvent>, VenueError> {
        let (tx, out) = mpsc::channel(EVENT_QUEUE);
        let mut ready = Vec::new();
        for account in accounts {
            let Some(key) = self.inner.keys.get(&account).cloned() else {
                tracing::warn!(
                    account = %account,
                    "no API key for this account: its order updates and fills cannot be streamed"
                );
                continue;
            };
            let (ready_tx, ready_rx) = oneshot::channel();
            tokio::spawn(stream_account(
                self.inner.clone(),
                account.clone(),
                key,
                tx.clone(),
                ready_tx,
            ));
            ready.push((account, ready_rx));
        }
        if ready.is_empty() {
            // Nothing streams, but the stream stays open (silent) rather
            // than ending, which the driver would take for a lost venue.
            tokio::spawn(async move { tx.closed().await });
        }
        // Wait for every login and subscription, so nothing sent after this
        // returns can be missed. On an error `out` is dropped, which ends
        // the other streams.
        for (account, rx) in ready {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(VenueError::Unavailable(format!(
                        "the stream of {account} stopped before it started"
                    )));
                }
            }
        }
        Ok(out)
    }

    async fn send(&self, action: &Outgoing) -> Result<(), VenueError> {
        let account = &action.account;
        let (method, url, body) = match &action.action {
            Action::Submit(req) => {
                let body = PlaceBody {
                    account,
                    instrument: &req.instrument,
                    client_order_id: &req.client_order_id,
                    side: req.side,
                    order_type: req.order_type,
                    time_in_force: req.time_in_force,
                    price: req.price,
                    quantity: req.quantity,
                };
                let bytes = serde_json::to_vec(&body).map_err(|e| VenueError::Refused {
                    code: "bad_request".into(),
                    message: format!("cannot encode the order: {e}"),
                })?;
                let url = self.inner.url(&["api", "v1", "orders"], &[]);
                (Method::POST, url, Some(bytes))
            }
            Action::Cancel {
                instrument,
                client_order_id,
            } => {
                // The exchange takes `client:<id>` for a client order id.
                let id = format!("client:{client_order_id}");
                let url = self.inner.url(
                    &["api", "v1", "orders", &id],
                    &[
                        ("account", account.as_str()),
                        ("instrument", instrument.as_str()),
                    ],
                );
                (Method::DELETE, url, None)
            }
            Action::CancelAll { instrument } => {
                let mut query = vec![("account", account.as_str())];
                if let Some(i) = instrument {
                    query.push(("instrument", i.as_str()));
                }
                let url = self.inner.url(&["api", "v1", "orders"], &query);
                (Method::DELETE, url, None)
            }
        };
        self.inner
            .call(method, url, body, Some(account), None)
            .await
            .map(|_| ())
    }

    async fn balance(&self, account: &AccountId, asset: &AssetCode) -> Result<Amount, VenueError> {
        let url = self.inner.url(
            &["api", "v1", "accounts", account.as_str(), "balances"],
            &[],
        );
        let rows: Vec<BalanceRow> = self
            .inner
            .call_json(Method::GET, url, Some(account))
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| &r.asset == asset)
            .fold(Amount::ZERO, |sum, r| sum + r.free + r.locked))
    }

    async fn deposit(
        &self,
        account: &AccountId,
        asset: &AssetCode,
        amount: Amount,
    ) -> Result<(), VenueError> {
        let Some(token) = self.inner.admin_token.as_deref() else {
            return Err(VenueError::Refused {
                code: "no_admin_token".into(),
                message: "deposits go through the exchange's admin API: set admin_token in the remote venue settings".into(),
            });
        };
        let url = self
            .inner
            .url(&["admin", "accounts", account.as_str(), "deposits"], &[]);
        let body = json!({ "asset": asset, "amount": amount }).to_string();
        self.inner
            .call(
                Method::POST,
                url,
                Some(body.into_bytes()),
                None,
                Some(token),
            )
            .await
            .map(|_| ())
    }
}

/// How one WebSocket connection ended.
enum Ended {
    /// The driver dropped the receiver: stop for good.
    ReceiverGone,
    /// The connection failed or closed; reconnect. `live` says whether it
    /// got as far as its subscriptions.
    Lost { error: VenueError, live: bool },
}

/// Streams one account's order updates and fills into `tx`, reconnecting
/// until the receiver is dropped. `ready` hears how the first connection went.
async fn stream_account(
    inner: Arc<Inner>,
    account: AccountId,
    key: Key,
    tx: mpsc::Sender<VenueEvent>,
    ready: oneshot::Sender<Result<(), VenueError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = BACKOFF_MIN;
    let mut attempts = 0u32;
    loop {
        let ended = tokio::select! {
            _ = tx.closed() => return,
            ended = connection(&inner, &account, &key, &tx, &mut ready, attempts) => ended,
        };
        match ended {
            Ended::ReceiverGone => return,
            Ended::Lost { error, live } => {
                if let Some(r) = ready.take() {
                    // The first connection failed: `events` reports it.
                    let _ = r.send(Err(error));
                    return;
                }
                if live {
                    backoff = BACKOFF_MIN;
                    attempts = 0;
                }
                attempts += 1;
                tracing::warn!(
                    account = %account,
                    error = %error,
                    retry_in = ?backoff,
                    "venue stream lost; reconnecting"
                );
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A server frame: control (`op`) or channel update (`channel`, `data`).
#[derive(Deserialize)]
struct Frame {
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    missed: Option<u64>,
}

/// Private channels the driver needs.
const CHANNELS: [&str; 2] = ["orders", "fills"];

/// One connection: connect, log in, subscribe, then forward updates until
/// it drops. `attempts` > 0 means this is a reconnection (a gap is reported
/// once it is subscribed).
async fn connection(
    inner: &Inner,
    account: &AccountId,
    key: &Key,
    tx: &mpsc::Sender<VenueEvent>,
    ready: &mut Option<oneshot::Sender<Result<(), VenueError>>>,
    attempts: u32,
) -> Ended {
    let lost = |error: VenueError, live: bool| Ended::Lost { error, live };
    let unavailable = |m: String| VenueError::Unavailable(format!("stream of {account}: {m}"));
    let mut ws = match tokio::time::timeout(
        inner.timeout,
        tokio_tungstenite::connect_async(inner.ws.as_str()),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return lost(unavailable(chain(&e)), false),
        Err(_) => return lost(unavailable("connecting timed out".into()), false),
    };
    let ts = inner.timestamp();
    let login = json!({
        "op": "login",
        "api_key": key.api_key,
        "timestamp": ts,
        "signature": sign(&key.secret, &format!("timestamp={ts}")),
    });
    if let Err(e) = ws.send(Message::Text(login.to_string().into())).await {
        return lost(unavailable(chain(&e)), false);
    }
    let mut logged_in = false;
    let mut subscribed = 0usize;
    loop {
        let live = subscribed == CHANNELS.len();
        // Until subscribed each step has the request timeout; then only a
        // silence longer than the exchange's heartbeat means a dead link.
        let limit = if live { STREAM_IDLE } else { inner.timeout };
        let msg = match tokio::time::timeout(limit, ws.next()).await {
            Err(_) => return lost(unavailable(format!("nothing heard for {limit:?}")), live),
            Ok(None) => return lost(unavailable("closed by the exchange".into()), live),
            Ok(Some(Err(e))) => return lost(unavailable(chain(&e)), live),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let why = frame.map_or_else(String::new, |f| format!(": {}", f.reason.as_str()));
                return lost(unavailable(format!("closed by the exchange{why}")), live);
            }
            // Protocol pings are answered by tungstenite itself.
            _ => continue,
        };
        let frame: Frame = match serde_json::from_str(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "unreadable venue frame skipped");
                continue;
            }
        };
        match (frame.op.as_deref(), frame.channel.as_deref()) {
            (Some("ping"), _) => {
                let pong = json!({"op": "pong"}).to_string();
                if let Err(e) = ws.send(Message::Text(pong.into())).await {
                    return lost(unavailable(chain(&e)), live);
                }
            }
            (Some("login"), _) => {
                logged_in = true;
                let sub = json!({"op": "subscribe", "channels": CHANNELS}).to_string();
                if let Err(e) = ws.send(Message::Text(sub.into())).await {
                    return lost(unavailable(chain(&e)), false);
                }
            }
            (Some("subscribed"), Some(c)) if CHANNELS.contains(&c) => {
                subscribed += 1;
                if subscribed < CHANNELS.len() {
                    continue;
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                } else {
                    tracing::info!(account = %account, attempts, "venue stream reconnected");
                    let gap = VenueEvent::Gap(format!(
                        "reconnected the stream of {account} after {attempts} attempt(s): updates in between may be missing"
                    ));
                    if tx.send(gap).await.is_err() {
                        return Ended::ReceiverGone;
                    }
                }
            }
            (Some("error"), _) => {
                let message = frame.message.unwrap_or_else(|| "no message".into());
                // A refused login is the key's fault, not the link's.
                let error = if logged_in {
                    unavailable(format!("exchange error: {message}"))
                } else {
                    VenueError::Refused {
                        code: "unauthorized".into(),
                        message: format!(
                            "stream login of {account} refused{}: {message}",
                            frame.code.map_or_else(String::new, |c| format!(" ({c})"))
                        ),
                    }
                };
                return lost(error, live);
            }
            (Some("resync"), _) if frame.missed.unwrap_or(0) > 0 => {
                // The exchange dropped updates for this connection.
                let gap = VenueEvent::Gap(format!(
                    "the exchange's stream of {account} fell behind ({} batches missed)",
                    frame.missed.unwrap_or(0)
                ));
                if tx.send(gap).await.is_err() {
                    return Ended::ReceiverGone;
                }
            }
            (None, Some("orders")) => {
                let Some(order) = parse::<Order>(account, "order", frame.data) else {
                    continue;
                };
                if order.account == *account && tx.send(VenueEvent::Order(order)).await.is_err() {
                    return Ended::ReceiverGone;
                }
            }
            (None, Some("fills")) => {
                let Some(fill) = parse::<Fill>(account, "fill", frame.data) else {
                    continue;
                };
                if fill.account == *account && tx.send(VenueEvent::Fill(fill)).await.is_err() {
                    return Ended::ReceiverGone;
                }
            }
            // Pongs, quiet resyncs and anything newer: nothing to do.
            _ => {}
        }
    }
}

/// The `data` of an update, or a logged skip.
fn parse<T: serde::de::DeserializeOwned>(
    account: &AccountId,
    what: &str,
    data: Option<Value>,
) -> Option<T> {
    let Some(data) = data else {
        tracing::warn!(account = %account, "{what} update without data skipped");
        return None;
    };
    match serde_json::from_value(data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(account = %account, error = %e, "unreadable {what} update skipped");
            None
        }
    }
}
