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
use serde_json::json;
use std::collections::BTreeMap;

/// A JSON error answer: `{"error": code, "field": name, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

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

/// Parses a JSON body, naming the offending field on error (`body` for
/// syntax errors, the missing or unknown field's name, or the path of a
/// wrongly typed value).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "body",
            "request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| {
                ApiError::bad_request("body", format!("trailing data after JSON: {e}"))
            })?;
            Ok(v)
        }
        Err(err) => {
            let inner = err.inner();
            let message = inner.to_string();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(
                    "body",
                    format!("malformed JSON: {message}"),
                ));
            }
            let path = err.path().to_string();
            // serde reports missing and unknown fields on the enclosing object.
            let named = message.split('`').nth(1).filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            });
            let field = match (named, path.as_str()) {
                (Some(name), ".") => name.to_string(),
                (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
                (Some(name), p) => format!("{p}.{name}"),
                (None, p) => p.to_string(),
            };
            Err(ApiError::bad_request(field, message))
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
