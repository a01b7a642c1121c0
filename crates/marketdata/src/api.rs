//! The scenario hooks over HTTP: steer the running simulator (reference-price overlays,
//! liquidity withdrawal) and inject feed faults. The chaos coordinator drives a live
//! ecosystem through these; operators can too.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/simulator` | reference prices, active overlays, liquidity state |
//! | POST | `/api/v1/simulator/overlays` | adds a shock, depeg or volatility regime (201 `{id}`) |
//! | DELETE | `/api/v1/simulator/overlays/{id}` | clears one overlay |
//! | DELETE | `/api/v1/simulator/overlays` | clears every overlay |
//! | PUT | `/api/v1/simulator/liquidity` | `{"withdrawn": true}` makes the market makers pull quotes |
//! | GET | `/api/v1/feed/disruption` | faults being injected and counts so far |
//! | PUT | `/api/v1/feed/disruption` | starts injecting a `DisruptionConfig` |
//! | DELETE | `/api/v1/feed/disruption` | stops injecting |
//! | POST | `/api/v1/replays` | starts replaying files onto the feed (202 with the job) |
//! | GET | `/api/v1/replays`, `/api/v1/replays/{id}` | replay progress |
//! | DELETE | `/api/v1/replays/{id}` | cancels a replay |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tradestack_api::{ApiError, parse_json};
use tradestack_kernel::Clock;

use crate::disruption::{DisruptionConfig, DisruptionError};
use crate::gateway::FeedHandle;
use crate::live::{ControlError, SimControl};
use crate::reference::{Overlay, OverlayId, ReferenceError};
use crate::replay::{Speed, SymbolMap};
use crate::replayer::{ReplayRequest, Replays};

/// What the routes act on.
pub struct ControlApi {
    /// The live simulator, when it runs.
    pub simulator: Option<SimControl>,
    /// The feed gateway.
    pub feed: FeedHandle,
    /// Stamps overlays that give no start.
    pub clock: Arc<dyn Clock>,
    /// Replay jobs.
    pub replays: Arc<Replays>,
    /// Directories replayed files must be in (canonical paths); empty = anywhere.
    pub replay_dirs: Vec<std::path::PathBuf>,
}

/// The routes (see the module docs).
pub fn routes(api: Arc<ControlApi>) -> Router {
    Router::new()
        .route("/api/v1/simulator", get(status))
        .route(
            "/api/v1/simulator/overlays",
            post(add_overlay).delete(clear_all),
        )
        .route("/api/v1/simulator/overlays/{id}", delete(clear_one))
        .route("/api/v1/simulator/liquidity", put(liquidity))
        .route(
            "/api/v1/feed/disruption",
            get(feed_status)
                .put(set_disruption)
                .delete(clear_disruption),
        )
        .route("/api/v1/replays", post(start_replay).get(list_replays))
        .route(
            "/api/v1/replays/{id}",
            get(replay_status).delete(cancel_replay),
        )
        .with_state(api)
}

fn simulator(api: &ControlApi) -> Result<&SimControl, ApiError> {
    api.simulator.as_ref().ok_or_else(not_running)
}

fn not_running() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "simulator_off",
        "the market simulator is not running (marketdata.simulate = false)",
    )
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NotRunning => not_running(),
        ControlError::Refused(ReferenceError::InvalidOverlay { field, reason }) => {
            ApiError::bad_request(field, reason)
        }
        ControlError::Refused(e @ ReferenceError::UnknownAsset(_)) => {
            ApiError::bad_request("assets", e.to_string())
        }
        ControlError::Refused(e) => ApiError::bad_request("body", e.to_string()),
    }
}

async fn status(State(api): State<Arc<ControlApi>>) -> Result<Response, ApiError> {
    let s = simulator(&api)?.status().await.map_err(control_error)?;
    let prices: serde_json::Map<String, serde_json::Value> = s
        .prices
        .iter()
        .map(|(id, p)| (id.as_str().to_string(), json!(p.to_string())))
        .collect();
    let overlays: Vec<_> = s
        .overlays
        .iter()
        .map(|(id, o)| json!({ "id": id, "overlay": o }))
        .collect();
    Ok(Json(json!({
        "now": s.now,
        "prices": prices,
        "overlays": overlays,
        "liquidity_withdrawn": s.liquidity_withdrawn,
    }))
    .into_response())
}

/// Parses an overlay, filling in a missing `start` with now.
fn overlay_from(body: &[u8], now: i64) -> Result<Overlay, ApiError> {
    let mut value: serde_json::Value = parse_json(body)?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("start").or_insert(json!(now));
    }
    let bytes =
        serde_json::to_vec(&value).map_err(|e| ApiError::bad_request("body", e.to_string()))?;
    parse_json(&bytes)
}

async fn add_overlay(
    State(api): State<Arc<ControlApi>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sim = simulator(&api)?;
    let overlay = overlay_from(&body, api.clock.now().0)?;
    let id = sim.add_overlay(overlay).await.map_err(control_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

async fn clear_one(
    State(api): State<Arc<ControlApi>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("id", format!("{id:?} is not an overlay id")))?;
    match simulator(&api)?.clear_overlay(Some(OverlayId(id))).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no active overlay {id}"),
        )
        .with_field("id")),
        Err(e) => Err(control_error(e)),
    }
}

async fn clear_all(State(api): State<Arc<ControlApi>>) -> Result<Response, ApiError> {
    simulator(&api)?
        .clear_overlay(None)
        .await
        .map_err(control_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Liquidity {
    withdrawn: bool,
}

async fn liquidity(State(api): State<Arc<ControlApi>>, body: Bytes) -> Result<Response, ApiError> {
    let l: Liquidity = parse_json(&body)?;
    simulator(&api)?
        .withdraw_liquidity(l.withdrawn)
        .await
        .map_err(control_error)?;
    Ok(Json(json!({ "liquidity_withdrawn": l.withdrawn })).into_response())
}

async fn feed_status(State(api): State<Arc<ControlApi>>) -> Response {
    Json(api.feed.status()).into_response()
}

fn gateway_stopped() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "feed_stopped",
        "the feed gateway has stopped",
    )
}

fn disruption_error(e: DisruptionError) -> ApiError {
    let field = match &e {
        DisruptionError::Probability(f)
        | DisruptionError::Negative(f)
        | DisruptionError::Incomplete(f, _) => *f,
    };
    ApiError::bad_request(field, e.to_string())
}

async fn set_disruption(
    State(api): State<Arc<ControlApi>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config: DisruptionConfig = parse_json(&body)?;
    api.feed
        .configure(Some(config))
        .await
        .map_err(|_| gateway_stopped())?
        .map_err(disruption_error)?;
    Ok(Json(api.feed.status()).into_response())
}

async fn clear_disruption(State(api): State<Arc<ControlApi>>) -> Result<Response, ApiError> {
    api.feed
        .configure(None)
        .await
        .map_err(|_| gateway_stopped())?
        .map_err(disruption_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn default_speed() -> String {
    "max".into()
}

fn yes() -> bool {
    true
}

/// The body of `POST /api/v1/replays`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Files on the service's machine.
    files: Vec<std::path::PathBuf>,
    /// `max` (default), `realtime` or `Nx`.
    #[serde(default = "default_speed")]
    speed: String,
    /// Also store what is replayed (default true).
    #[serde(default = "yes")]
    record: bool,
    /// Explicit venue symbol to instrument mappings.
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, String>,
}

fn job_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request("id", format!("{id:?} is not a replay id")))
}

fn no_job(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no replay {id}"),
    )
    .with_field("id")
}

async fn start_replay(
    State(api): State<Arc<ControlApi>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ReplayBody = parse_json(&body)?;
    if b.files.is_empty() {
        return Err(ApiError::bad_request("files", "name at least one file"));
    }
    for (i, f) in b.files.iter().enumerate() {
        let field = || format!("files[{i}]");
        let path = std::fs::canonicalize(f)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                ApiError::bad_request(
                    field(),
                    format!(
                        "{} is not a readable file on the service's machine",
                        f.display()
                    ),
                )
            })?;
        if !api.replay_dirs.is_empty() && !api.replay_dirs.iter().any(|d| path.starts_with(d)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{} is outside marketdata.replay_dirs", f.display()),
            )
            .with_field(field()));
        }
    }
    let speed: Speed = b
        .speed
        .parse()
        .map_err(|e: crate::replay::PacingError| ApiError::bad_request("speed", e.to_string()))?;
    let symbols = b
        .symbols
        .iter()
        .fold(SymbolMap::new(), |m, (venue, id)| m.with(venue, id));
    let id = api.replays.start(ReplayRequest {
        files: b.files,
        speed,
        record: b.record,
        symbols,
    });
    let status = api.replays.status(id).ok_or_else(|| no_job(id))?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn list_replays(State(api): State<Arc<ControlApi>>) -> Response {
    Json(api.replays.list()).into_response()
}

async fn replay_status(
    State(api): State<Arc<ControlApi>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let s = api.replays.status(id).ok_or_else(|| no_job(id))?;
    Ok(Json(s).into_response())
}

async fn cancel_replay(
    State(api): State<Arc<ControlApi>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    if api.replays.cancel(id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_job(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_start_is_now() {
        let o = overlay_from(
            br#"{"kind":"shock","duration":60000000000,"change":-0.15}"#,
            42,
        )
        .unwrap();
        assert_eq!(
            o,
            Overlay::Shock {
                start: tradestack_model::UnixNanos(42),
                duration: tradestack_model::Nanos::from_secs(60),
                change: -0.15,
                assets: vec![],
            }
        );
    }

    #[test]
    fn a_bad_overlay_names_the_field() {
        let e = overlay_from(br#"{"kind":"shock","duration":60}"#, 0).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("change"));
        let e =
            overlay_from(br#"{"kind":"shock","duration":"soon","change":-0.15}"#, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = overlay_from(br#"{"kind":"crash"}"#, 0).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
