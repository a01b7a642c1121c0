//! The registry's HTTP API (Consul agent API shapes).

use crate::entry::{CheckStatus, Registration};
use crate::store::{Registry, RegistryError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use std::collections::BTreeMap;
pub use tradestack_api::{ApiError, parse_json};

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, message } => ApiError::bad_request(field, message),
            RegistryError::NotFound(id) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                field: None,
                message: format!("service {id} is not registered"),
            },
            other => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                field: None,
                message: other.to_string(),
            },
        }
    }
}

/// The registry routes, to be merged into a service router.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/check/{status}/{check_id}", put(check))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/health/service/{name}", get(health))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .with_state(registry)
}

async fn register(State(r): State<Registry>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let reg: Registration = parse_json(&body)?;
    let entry = r.register(reg).await?;
    Ok(axum::Json(entry))
}

async fn deregister(
    State(r): State<Registry>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if r.deregister(&id).await? {
        Ok(StatusCode::OK)
    } else {
        Err(RegistryError::NotFound(id).into())
    }
}

#[derive(Deserialize)]
struct NoteQuery {
    note: Option<String>,
}

async fn check(
    State(r): State<Registry>,
    Path((status, check_id)): Path<(String, String)>,
    Query(q): Query<NoteQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let status = match status.as_str() {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        other => {
            return Err(ApiError::bad_request(
                "status",
                format!("unknown check status {other:?}; use pass, warn or fail"),
            ));
        }
    };
    let id = check_id.strip_prefix("service:").unwrap_or(&check_id);
    let entry = r
        .heartbeat(id, status, q.note.as_deref().unwrap_or(""))
        .await?;
    Ok(axum::Json(entry))
}

async fn services(State(r): State<Registry>) -> Result<impl IntoResponse, ApiError> {
    let map: BTreeMap<String, _> = r
        .list()
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    Ok(axum::Json(map))
}

async fn service(
    State(r): State<Registry>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    match r.get(&id).await? {
        Some(e) => Ok(axum::Json(e)),
        None => Err(RegistryError::NotFound(id).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    passing: Option<bool>,
}

async fn health(
    State(r): State<Registry>,
    Path(name): Path<String>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("passing", e.body_text()))?;
    let entries = r.by_name(&name, !q.passing.unwrap_or(true)).await?;
    Ok(axum::Json(entries))
}

#[derive(Deserialize)]
struct KvQuery {
    keys: Option<String>,
}

async fn kv_get(
    State(r): State<Registry>,
    Path(key): Path<String>,
    Query(q): Query<KvQuery>,
) -> Result<Response, ApiError> {
    if q.keys.is_some() {
        return Ok(axum::Json(r.kv_keys(&key).await?).into_response());
    }
    match r.kv_get(&key).await? {
        Some(v) => Ok(v.into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: None,
            message: format!("no value under {key}"),
        }),
    }
}

async fn kv_put(
    State(r): State<Registry>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    r.kv_put(&key, &body).await?;
    Ok(axum::Json(true))
}

async fn kv_delete(
    State(r): State<Registry>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(r.kv_delete(&key).await?))
}
