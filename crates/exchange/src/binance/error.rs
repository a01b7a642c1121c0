//! Binance's error shape: `{"code": -1121, "msg": "Invalid symbol."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error in Binance's format.
#[derive(Debug, Clone)]
pub struct BinanceError {
    /// HTTP status.
    pub status: StatusCode,
    /// Binance error code.
    pub code: i32,
    /// Message.
    pub msg: String,
    /// Seconds to wait, for 429s.
    pub retry_after: Option<u64>,
}

impl BinanceError {
    /// A 400.
    pub fn bad(code: i32, msg: impl Into<String>) -> Self {
        BinanceError {
            status: StatusCode::BAD_REQUEST,
            code,
            msg: msg.into(),
            retry_after: None,
        }
    }

    /// A 401.
    pub fn auth(code: i32, msg: impl Into<String>) -> Self {
        BinanceError {
            status: StatusCode::UNAUTHORIZED,
            ..BinanceError::bad(code, msg)
        }
    }

    /// A mandatory parameter is missing.
    pub fn missing(name: &str) -> Self {
        BinanceError::bad(
            -1102,
            format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )
    }

    /// A parameter does not parse.
    pub fn malformed(name: &str) -> Self {
        BinanceError::bad(
            -1100,
            format!(
                "Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
            ),
        )
    }

    /// The exchange is not taking requests.
    pub fn unavailable() -> Self {
        BinanceError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..BinanceError::bad(-1016, "This service is no longer available.")
        }
    }
}

impl IntoResponse for BinanceError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "code": self.code, "msg": self.msg })),
        )
            .into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}
