//! Chaos hooks: faults injected into the running exchange through
//! `/admin/chaos`, and later by scenarios.
//!
//! - `latency`: extra delay (plus jitter) on requests whose path starts with
//!   `endpoint`;
//! - `errors`: a share of those requests answered with `status` (5xx or 429);
//! - `reject`: a share of new orders rejected by the venue;
//! - `outage`: the API answers 503, and with `websocket` every stream is cut
//!   and new ones refused;
//! - `freeze`: market data stops (WebSocket book, trades and ticker, and the
//!   book deltas on the bus); when it ends, stream clients get fresh snapshots;
//! - `partial_fills`: incoming orders fill only `bps` of their quantity (a
//!   journaled command, so replay reproduces it).
//!
//! Each fault may have a duration, after which it clears itself. Every
//! injection and clearing is an event on the bus (`exchange.chaos`) and an
//! audit record, for the audit correlator. Which requests a fault hits is
//! drawn from a seeded generator, so a scenario replays the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tradestack_api::{ApiError, parse_json};
use tradestack_bus::{Bus, Topic};
use tradestack_kernel::{Clock, DetRng};
use tradestack_model::UnixNanos;
use tradestack_store::{AuditRecord, StateStore, WriteBatch};

use crate::engine::Command;
use crate::sequencer::ExchangeHandle;

/// Bus topic of chaos events.
pub const CHAOS_TOPIC: &str = "exchange.chaos";

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Delay requests under a path prefix.
    Latency {
        /// Path prefix, e.g. `/api/v3/order` (`/` for all).
        endpoint: String,
        /// Added delay in ms.
        delay_ms: u64,
        /// Up to this much more, uniformly drawn, in ms.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Answer a share of requests under a path prefix with an error status.
    Errors {
        /// Path prefix.
        endpoint: String,
        /// 500, 502, 503, 504 or 429.
        status: u16,
        /// Share of requests hit, in basis points.
        rate_bps: u32,
    },
    /// Reject a share of new orders.
    Reject {
        /// Share of orders rejected, in basis points.
        rate_bps: u32,
    },
    /// The API is down; with `websocket`, streams are cut too.
    Outage {
        /// Also disconnect and refuse WebSocket clients.
        #[serde(default)]
        websocket: bool,
    },
    /// Market data stops.
    Freeze,
    /// Orders fill only this share on arrival, in basis points.
    PartialFills {
        /// 1 to 9,999.
        bps: u32,
    },
}

impl FaultSpec {
    fn validate(&self) -> Result<(), ApiError> {
        let bad = |field: &str, msg: &str| Err(ApiError::bad_request(field, msg));
        match self {
            FaultSpec::Errors {
                status, rate_bps, ..
            } => {
                if !matches!(status, 429 | 500 | 502 | 503 | 504) {
                    return bad(
                        "fault.errors.status",
                        "status must be 429, 500, 502, 503 or 504",
                    );
                }
                if *rate_bps == 0 || *rate_bps > 10_000 {
                    return bad("fault.errors.rate_bps", "rate_bps must be 1 to 10000");
                }
            }
            FaultSpec::Reject { rate_bps } if *rate_bps == 0 || *rate_bps > 10_000 => {
                return bad("fault.reject.rate_bps", "rate_bps must be 1 to 10000");
            }
            FaultSpec::PartialFills { bps } if *bps == 0 || *bps >= 10_000 => {
                return bad("fault.partial_fills.bps", "bps must be 1 to 9999");
            }
            FaultSpec::Latency {
                delay_ms,
                jitter_ms,
                ..
            } if delay_ms + jitter_ms > 60_000 => {
                return bad(
                    "fault.latency.delay_ms",
                    "delay plus jitter must be at most 60000 ms",
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Latency { .. } => "latency",
            FaultSpec::Errors { .. } => "errors",
            FaultSpec::Reject { .. } => "reject",
            FaultSpec::Outage { .. } => "outage",
            FaultSpec::Freeze => "freeze",
            FaultSpec::PartialFills { .. } => "partial_fills",
        }
    }
}

/// An active fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Id, for clearing it.
    pub id: u64,
    /// What it does.
    pub fault: FaultSpec,
    /// When it started (ns).
    pub started_at: UnixNanos,
    /// When it clears itself (ns), if it does.
    pub until: Option<UnixNanos>,
}

/// A chaos event on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosEvent {
    /// `injected`, `cleared` or `expired`.
    pub action: String,
    /// The fault.
    pub fault: Fault,
    /// When (ns).
    pub at: UnixNanos,
}

struct Inner {
    faults: Vec<Fault>,
    next_id: u64,
    rng: DetRng,
    /// Bumped when an outage cuts WebSocket clients.
    ws_epoch: u64,
}

/// Creates the chaos topic, so announcing a fault never waits for the broker.
pub async fn prepare(bus: &Bus) {
    let ready = match bus.publisher(&Topic::<ChaosEvent>::new(CHAOS_TOPIC)) {
        Ok(p) => p.ready().await,
        Err(e) => Err(e),
    };
    if let Err(e) = ready {
        tracing::warn!(error = %e, "the chaos topic is not ready; fault events may be lost");
    }
}

/// The chaos state, shared by the middleware, the streams and the admin API.
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
    exchange: ExchangeHandle,
    bus: Bus,
    store: Arc<dyn StateStore>,
}

/// What the middleware decided for one request.
enum Verdict {
    Pass(Duration),
    Fail(Duration, StatusCode),
    Reject(Duration),
    Down,
}

impl Chaos {
    /// No faults; `seed` drives which requests faults hit.
    pub fn new(
        seed: u64,
        clock: Arc<dyn Clock>,
        exchange: ExchangeHandle,
        bus: Bus,
        store: Arc<dyn StateStore>,
    ) -> Self {
        Chaos {
            inner: Arc::new(Mutex::new(Inner {
                faults: Vec::new(),
                next_id: 1,
                rng: DetRng::new(seed),
                ws_epoch: 0,
            })),
            clock,
            exchange,
            bus,
            store,
        }
    }

    /// Active faults, dropping expired ones (and announcing them).
    pub fn active(&self) -> Vec<Fault> {
        let now = self.clock.now();
        let expired: Vec<Fault> = {
            let mut g = self.inner.lock();
            let (gone, kept): (Vec<Fault>, Vec<Fault>) = g
                .faults
                .drain(..)
                .partition(|f| f.until.is_some_and(|u| u <= now));
            g.faults = kept;
            gone
        };
        for f in expired {
            self.ended(f, "expired");
        }
        self.inner.lock().faults.clone()
    }

    /// True while market data is frozen.
    pub fn frozen(&self) -> bool {
        self.active()
            .iter()
            .any(|f| matches!(f.fault, FaultSpec::Freeze))
    }

    /// The WebSocket epoch: streams close when it changes; `None` while an
    /// outage refuses streams.
    pub fn ws_gate(&self) -> Option<u64> {
        let down = self
            .active()
            .iter()
            .any(|f| matches!(f.fault, FaultSpec::Outage { websocket: true }));
        (!down).then(|| self.inner.lock().ws_epoch)
    }

    fn verdict(&self, path: &str, new_order: bool) -> Verdict {
        let faults = self.active();
        let mut g = self.inner.lock();
        let mut delay = Duration::ZERO;
        let mut verdict = None;
        for f in &faults {
            match &f.fault {
                FaultSpec::Outage { .. } => return Verdict::Down,
                FaultSpec::Latency {
                    endpoint,
                    delay_ms,
                    jitter_ms,
                } if path.starts_with(endpoint.as_str()) => {
                    let jitter = if *jitter_ms > 0 {
                        g.rng.next_u64() % (jitter_ms + 1)
                    } else {
                        0
                    };
                    delay += Duration::from_millis(delay_ms + jitter);
                }
                FaultSpec::Errors {
                    endpoint,
                    status,
                    rate_bps,
                } if path.starts_with(endpoint.as_str())
                    && verdict.is_none()
                    && g.rng.chance(u64::from(*rate_bps), 10_000) =>
                {
                    verdict = Some(
                        StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    );
                }
                FaultSpec::Reject { rate_bps }
                    if new_order
                        && verdict.is_none()
                        && g.rng.chance(u64::from(*rate_bps), 10_000) =>
                {
                    return Verdict::Reject(delay);
                }
                _ => {}
            }
        }
        match verdict {
            Some(s) => Verdict::Fail(delay, s),
            None => Verdict::Pass(delay),
        }
    }

    /// Starts a fault.
    pub async fn inject(
        &self,
        fault: FaultSpec,
        duration: Option<Duration>,
    ) -> Result<Fault, ApiError> {
        fault.validate()?;
        if let FaultSpec::PartialFills { bps } = fault {
            self.set_fill_cap(bps).await?;
        }
        let now = self.clock.now();
        let f = {
            let mut g = self.inner.lock();
            let f = Fault {
                id: g.next_id,
                fault,
                started_at: now,
                until: duration.map(|d| UnixNanos(now.as_i64() + d.as_nanos() as i64)),
            };
            g.next_id += 1;
            if matches!(f.fault, FaultSpec::Outage { websocket: true }) {
                g.ws_epoch += 1;
            }
            g.faults.push(f.clone());
            f
        };
        self.announce(&f, "injected");
        if let Some(d) = duration {
            // Clear it on time even if nobody asks.
            let me = self.clone();
            let id = f.id;
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(f) = me.take(id) {
                    me.ended(f, "expired");
                }
            });
        }
        Ok(f)
    }

    fn take(&self, id: u64) -> Option<Fault> {
        let mut g = self.inner.lock();
        let at = g.faults.iter().position(|f| f.id == id)?;
        Some(g.faults.remove(at))
    }

    /// Clears one fault.
    pub fn clear(&self, id: u64) -> Option<Fault> {
        let f = self.take(id)?;
        self.ended(f.clone(), "cleared");
        Some(f)
    }

    /// Clears every fault.
    pub fn clear_all(&self) -> Vec<Fault> {
        let all: Vec<Fault> = self.inner.lock().faults.drain(..).collect();
        for f in &all {
            self.ended(f.clone(), "cleared");
        }
        all
    }

    async fn set_fill_cap(&self, bps: u32) -> Result<(), ApiError> {
        let done = self
            .exchange
            .execute(Command::SetFillCap {
                instrument: None,
                bps,
            })
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the exchange is not taking commands",
                )
            })?;
        done.result
            .map(|_| ())
            .map_err(|e| ApiError::bad_request("fault", e.to_string()))
    }

    fn ended(&self, f: Fault, action: &'static str) {
        if matches!(f.fault, FaultSpec::PartialFills { .. }) {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.set_fill_cap(10_000).await;
            });
        }
        self.announce(&f, action);
    }

    /// Publishes the event (without waiting) and records it for audit.
    fn announce(&self, f: &Fault, action: &'static str) {
        let at = self.clock.now();
        tracing::warn!(id = f.id, kind = f.fault.kind(), action, "chaos");
        let event = ChaosEvent {
            action: action.into(),
            fault: f.clone(),
            at,
        };
        let topic = Topic::<ChaosEvent>::new(CHAOS_TOPIC);
        if let Ok(p) = self.bus.publisher(&topic) {
            let _ = p.try_publish(Some("exchange"), event.clone());
        }
        let record = AuditRecord {
            id: format!("exchange-chaos-{}-{action}-{}", f.id, at.as_i64()),
            ts: at,
            actor: "exchange".into(),
            action: format!("chaos.{action}"),
            subject: f.fault.kind().into(),
            detail: serde_json::to_value(&event).unwrap_or_default(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.commit(WriteBatch::new().append_audit(record)).await {
                tracing::warn!(error = %e, "cannot record a chaos event");
            }
        });
    }
}

/// Applies the active faults to one API request.
pub async fn middleware(State(chaos): State<Chaos>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/admin/") || path == "/ws" {
        return next.run(req).await;
    }
    let binance = path.starts_with("/api/v3")
        || path.starts_with("/sapi")
        || path.starts_with("/fapi")
        || path.starts_with("/dapi");
    let new_order = req.method() == axum::http::Method::POST
        && (path == "/api/v3/order" || path == "/api/v1/orders");
    let (delay, outcome) = match chaos.verdict(&path, new_order) {
        Verdict::Pass(d) => (d, None),
        Verdict::Fail(d, s) => (d, Some(s)),
        Verdict::Reject(d) => (d, Some(StatusCode::BAD_REQUEST)),
        Verdict::Down => (Duration::ZERO, Some(StatusCode::SERVICE_UNAVAILABLE)),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match outcome {
        None => next.run(req).await,
        Some(StatusCode::BAD_REQUEST) if binance => (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": -2010, "msg": "Order rejected by the venue (injected fault)."})),
        )
            .into_response(),
        Some(StatusCode::BAD_REQUEST) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "venue_reject",
            "order rejected by the venue (injected fault)",
        )
        .into_response(),
        Some(status) if binance => {
            let (code, msg) = if status == StatusCode::TOO_MANY_REQUESTS {
                (-1003, "Too many requests (injected fault).")
            } else {
                (
                    -1001,
                    "Internal error; unable to process your request. Please try again.",
                )
            };
            let mut r = (status, Json(json!({"code": code, "msg": msg}))).into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            }
            r
        }
        Some(status) => {
            let mut r = ApiError::new(
                status,
                "injected_fault",
                format!("injected {}", status.as_u16()),
            )
            .into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    fault: FaultSpec,
    #[serde(default)]
    duration: Option<String>,
}

/// The admin routes.
pub fn router(chaos: Chaos) -> axum::Router {
    axum::Router::new()
        .route("/admin/chaos", get(list).post(inject).delete(clear_all))
        .route("/admin/chaos/{id}", delete(clear_one))
        .with_state(chaos)
}

async fn list(State(c): State<Chaos>) -> impl IntoResponse {
    Json(c.active())
}

async fn inject(State(c): State<Chaos>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let b: InjectBody = parse_json(&body)?;
    let duration = b
        .duration
        .map(|d| {
            humantime::parse_duration(&d)
                .map_err(|e| ApiError::bad_request("duration", format!("{e}; use e.g. \"30s\"")))
        })
        .transpose()?;
    let f = c.inject(b.fault, duration).await?;
    Ok((StatusCode::CREATED, Json(f)))
}

async fn clear_one(
    State(c): State<Chaos>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    c.clear(id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_fault",
            format!("no active fault {id}"),
        )
    })
}

async fn clear_all(State(c): State<Chaos>) -> impl IntoResponse {
    Json(c.clear_all())
}
