//! Admin endpoints under `/admin`, guarded by a bearer token
//! (`exchange.admin_token`): deposits and withdrawals for simulation, any
//! account's open orders (for audits such as the chaos coordinator's
//! lost-order check), and the chaos hooks. Without a configured token they
//! answer 403.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tradestack_api::{ApiError, parse_json};
use tradestack_model::{AccountId, Amount, AssetCode};

use crate::api::{BalanceView, engine_error};
use crate::engine::{Command, Reply};
use crate::sequencer::ExchangeHandle;

/// The admin routes (chaos included), behind the token check.
pub fn router(
    exchange: ExchangeHandle,
    chaos: crate::chaos::Chaos,
    token: Option<String>,
) -> Router {
    Router::new()
        .route("/admin/accounts/{account}/deposits", post(deposit))
        .route("/admin/accounts/{account}/withdrawals", post(withdraw))
        .route("/admin/accounts/{account}/orders", get(open_orders))
        .with_state(exchange)
        .merge(crate::chaos::router(chaos))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ))
}

async fn require_token(
    State(token): State<Arc<Option<String>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = token.as_deref() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints need exchange.admin_token to be set",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        g.len() == expected.len()
            && g.bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <token>)",
        )
        .with_field("authorization")
        .into_response();
    }
    next.run(req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    asset: AssetCode,
    amount: Amount,
}

async fn transfer(
    exchange: &ExchangeHandle,
    account: String,
    body: &[u8],
    deposit: bool,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let b: Transfer = parse_json(body)?;
    let account = AccountId::new(&account);
    let cmd = if deposit {
        Command::Deposit {
            account,
            asset: b.asset.clone(),
            amount: b.amount,
        }
    } else {
        Command::Withdraw {
            account,
            asset: b.asset.clone(),
            amount: b.amount,
        }
    };
    let done = exchange.execute(cmd).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the exchange is not taking commands",
        )
    })?;
    match done.result.map_err(|e| engine_error(&e))? {
        Reply::Balance(b2) => Ok(Json(BalanceView {
            asset: b.asset,
            free: b2.free,
            locked: b2.locked,
        })),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected reply",
        )),
    }
}

async fn open_orders(
    State(exchange): State<ExchangeHandle>,
    Path(account): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = AccountId::new(&account);
    let orders = exchange
        .read(move |ex| ex.open_orders(&account, None))
        .await
        .map_err(crate::api::unavailable)?;
    Ok(Json(orders))
}

async fn deposit(
    State(ex): State<ExchangeHandle>,
    Path(account): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    transfer(&ex, account, &body, true).await
}

async fn withdraw(
    State(ex): State<ExchangeHandle>,
    Path(account): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    transfer(&ex, account, &body, false).await
}
