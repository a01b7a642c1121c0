//! HTTP API conventions shared by every tradestack service: a JSON error
//! body that names the field at fault, and body parsing that finds that
//! field for malformed, missing, unknown and wrongly typed values.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A JSON error answer: `{"error": code, "field": name, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// Any status and code, without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// The same error naming `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

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
            Err(ApiError::bad_request(
                field_of(&err.path().to_string(), &message),
                message,
            ))
        }
    }
}

/// The field an error is about: serde reports missing and unknown fields on
/// the enclosing object, so the name comes from the message there.
fn field_of(path: &str, message: &str) -> String {
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"));
    match (named, path) {
        (Some(name), "." | "") => name.to_string(),
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (Some(name), p) => format!("{p}.{name}"),
        (None, p) => p.to_string(),
    }
}

/// A query-string extractor whose errors are [`ApiError`]s naming the
/// parameter (axum's own answers in plain text).
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a query string, naming the parameter at fault.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
        let message = err.inner().to_string();
        ApiError::bad_request(field_of(&err.path().to_string(), &message), message)
    })
}
