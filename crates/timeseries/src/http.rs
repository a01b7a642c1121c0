//! The HTTP API that existing clients speak: InfluxDB and QuestDB line
//! protocol writes, `/ping`, QuestDB's `/settings`, `/exec` and `/exp`, CSV
//! import, and typed endpoints for bars, trades and the latest quote.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tradestack_api::{ApiError, ApiQuery};
use tradestack_kernel::Clock;
use tradestack_lineproto::Precision;

use crate::import;
use crate::query::{QueryEngine, QueryResult};
use crate::render::{self, Format};
use crate::store::Store;

/// Shared state of the HTTP API.
pub struct TimeseriesApi {
    /// The store.
    pub store: Store,
    /// SQL over it.
    pub engine: QueryEngine,
    /// Time for lines without a timestamp.
    pub clock: Arc<dyn Clock>,
    /// Ingest counters.
    pub metrics: crate::metrics::IngestMetrics,
    error_ids: AtomicU64,
}

impl TimeseriesApi {
    /// The API over `store`.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: crate::metrics::IngestMetrics,
    ) -> Arc<TimeseriesApi> {
        Arc::new(TimeseriesApi {
            engine: QueryEngine::new(store.clone()),
            store,
            clock,
            metrics,
            error_ids: AtomicU64::new(1),
        })
    }
}

/// The routes.
pub fn routes(api: Arc<TimeseriesApi>) -> Router {
    Router::new()
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/ping", get(ping).head(ping))
        .route("/settings", get(settings))
        .route("/exec", get(exec))
        .route("/exp", get(export))
        .route("/imp", post(import_csv))
        .route("/api/v1/bars", get(bars))
        .route("/api/v1/trades", get(trades))
        .route("/api/v1/quotes/latest", get(latest_quote))
        .with_state(api)
}

#[derive(Deserialize)]
struct WriteParams {
    precision: Option<String>,
    #[allow(dead_code)]
    db: Option<String>,
    #[allow(dead_code)]
    org: Option<String>,
    #[allow(dead_code)]
    bucket: Option<String>,
}

async fn write_v1(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<WriteParams>,
    body: Bytes,
) -> Response {
    write(api, p, body).await
}

async fn write_v2(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<WriteParams>,
    body: Bytes,
) -> Response {
    write(api, p, body).await
}

async fn write(api: Arc<TimeseriesApi>, p: WriteParams, body: Bytes) -> Response {
    let precision = match p.precision.as_deref().map(str::parse::<Precision>) {
        None => Precision::Nanoseconds,
        Some(Ok(v)) => v,
        Some(Err(e)) => return ApiError::bad_request("precision", e.to_string()).into_response(),
    };
    let now = api.clock.now().0;
    let store = api.store.clone();
    let outcome =
        tokio::task::spawn_blocking(move || store.write_lines(&body, precision, now, false))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"code": "internal error", "message": e})),
            )
                .into_response();
        }
    };
    api.metrics.record("http", &outcome);
    if outcome.errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let (line, message) = &outcome.errors[0];
    let id = api.error_ids.fetch_add(1, Ordering::Relaxed);
    let errors: Vec<_> = outcome
        .errors
        .iter()
        .take(100)
        .map(|(l, m)| json!({"line": l, "message": m}))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "code": "invalid",
            "message": format!(
                "failed to parse line protocol: {} of {} lines refused (the others were stored); first: error in line {line}: {message}",
                outcome.errors.len(),
                outcome.errors.len() + outcome.accepted
            ),
            "line": line,
            "errorId": format!("tradestack-{id}"),
            "accepted": outcome.accepted,
            "errors": errors,
        })),
    )
        .into_response()
}

async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            ("X-Influxdb-Version", "1.8.10"),
            ("X-Influxdb-Build", "tradestack"),
        ],
    )
        .into_response()
}

/// QuestDB's server settings. Advertising only protocol version 1 makes
/// the official clients send text line protocol (floats as text), which is
/// what we parse.
async fn settings() -> Response {
    axum::Json(json!({
        "config": {
            "release.type": "OSS",
            "release.version": concat!("tradestack-", env!("CARGO_PKG_VERSION")),
            "line.proto.support.versions": [1],
            "ilp.proto.transports": ["tcp", "http"],
            "cairo.max.file.name.length": 127,
            "posthog.enabled": false,
        },
        "preferences.version": 0,
        "preferences": {},
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ExecParams {
    query: Option<String>,
    limit: Option<String>,
    #[allow(dead_code)]
    count: Option<String>,
    #[allow(dead_code)]
    timings: Option<String>,
    #[allow(dead_code)]
    nm: Option<String>,
}

/// Rows `[lo, hi)` that QuestDB's `limit` selects out of `total`:
/// `n` (first n), `-n` (last n), or `lo,hi` (rows lo+1..=hi).
fn limit_range(limit: Option<&str>, total: usize) -> Result<(usize, usize), ApiError> {
    let bad = || ApiError::bad_request("limit", "expected n, -n or lo,hi");
    let Some(l) = limit else {
        return Ok((0, total));
    };
    let parse = |s: &str| s.trim().parse::<i64>().map_err(|_| bad());
    let clamp = |v: i64| usize::try_from(v.max(0)).unwrap_or(usize::MAX).min(total);
    match l.split_once(',') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            Ok((clamp(lo), clamp(hi).max(clamp(lo))))
        }
        None => {
            let n = parse(l)?;
            if n >= 0 {
                Ok((0, clamp(n)))
            } else {
                Ok((total.saturating_sub(clamp(-n)), total))
            }
        }
    }
}

/// Rows `[lo, hi)` of a result, as (batch, row) pairs.
fn rows_in(
    result: &QueryResult,
    lo: usize,
    hi: usize,
) -> impl Iterator<Item = (&datafusion::arrow::record_batch::RecordBatch, usize)> {
    result
        .batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| (b, r)))
        .skip(lo)
        .take(hi.saturating_sub(lo))
}

/// One row's cells, comma-separated.
fn write_row(
    out: &mut String,
    b: &datafusion::arrow::record_batch::RecordBatch,
    r: usize,
    fmt: Format,
) {
    for (c, col) in b.columns().iter().enumerate() {
        if c > 0 {
            out.push(',');
        }
        render::write_cell(out, col, r, fmt);
    }
}

fn sql_error(query: &str, e: crate::query::QueryError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"query": query, "error": e.message, "position": e.position})),
    )
        .into_response()
}

/// Runs the `query` parameter and picks the rows `limit` selects: the
/// query text, the result and the row range, or the error response.
async fn run(
    api: &TimeseriesApi,
    q: Option<String>,
    limit: Option<&str>,
) -> Result<(String, QueryResult, usize, usize), Response> {
    let Some(query) = q.filter(|q| !q.trim().is_empty()) else {
        return Err(ApiError::bad_request("query", "missing or empty query").into_response());
    };
    let result = api
        .engine
        .sql(&query)
        .await
        .map_err(|e| sql_error(&query, e))?;
    let total: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    let (lo, hi) = limit_range(limit, total).map_err(IntoResponse::into_response)?;
    Ok((query, result, lo, hi))
}

async fn exec(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<ExecParams>,
) -> Response {
    let (query, result, lo, hi) = match run(&api, p.query, p.limit.as_deref()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut out = String::with_capacity(256 + (hi - lo) * 64);
    out.push_str("{\"query\":");
    out.push_str(&serde_json::to_string(&query).expect("string"));
    out.push_str(",\"columns\":[");
    let mut ts_index: i64 = -1;
    for (i, f) in result.schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let ty = render::type_name(f);
        if ts_index < 0 && f.name() == crate::schema::TIMESTAMP && ty == "TIMESTAMP" {
            ts_index = i as i64;
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"type\":\"{ty}\"}}",
            serde_json::to_string(f.name()).expect("string")
        );
    }
    let _ = write!(out, "],\"timestamp\":{ts_index},\"dataset\":[");
    for (i, (b, r)) in rows_in(&result, lo, hi).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        write_row(&mut out, b, r, Format::Json);
        out.push(']');
    }
    let _ = write!(
        out,
        "],\"count\":{},\"timings\":{{\"authentication\":0,\"compiler\":{},\"execute\":{},\"count\":0}}}}",
        hi - lo,
        result.compile_ns,
        result.execute_ns
    );
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn export(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<ExecParams>,
) -> Response {
    let (_, result, lo, hi) = match run(&api, p.query, p.limit.as_deref()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut out = String::new();
    for (i, f) in result.schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", f.name().replace('"', "\"\""));
    }
    out.push_str("\r\n");
    for (b, r) in rows_in(&result, lo, hi) {
        write_row(&mut out, b, r, Format::Csv);
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"questdb-query.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ImportParams {
    name: Option<String>,
    timestamp: Option<String>,
}

async fn import_csv(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<ImportParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(table) = p.name.filter(|n| !n.is_empty()) else {
        return ApiError::bad_request("name", "the table to import into is required")
            .into_response();
    };
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"))
    {
        return ApiError::bad_request(
            "body",
            "send the CSV as the raw request body (text/csv), not as a multipart form",
        )
        .into_response();
    }
    let store = api.store.clone();
    let ts_col = p.timestamp;
    let result = tokio::task::spawn_blocking(move || {
        import::import_csv(&store, &table, ts_col.as_deref(), &body[..])
    })
    .await;
    match result {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// A time parameter: integer milliseconds since the epoch, or RFC 3339.
fn time_param(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return ms
            .checked_mul(1_000_000)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(field, "out of range"));
    }
    humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                field,
                "expected milliseconds since the epoch or an RFC 3339 time",
            )
        })
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Deserialize)]
struct SeriesParams {
    symbol: Option<String>,
    interval: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// Runs a typed query and answers its rows as JSON objects.
async fn typed(api: &TimeseriesApi, sql: String) -> Response {
    match api.engine.sql(&sql).await {
        Ok(r) => {
            let mut out = String::from("[");
            let mut first = true;
            for b in &r.batches {
                for row in 0..b.num_rows() {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push('{');
                    for (c, f) in r.schema.fields().iter().enumerate() {
                        if c > 0 {
                            out.push(',');
                        }
                        let _ =
                            write!(out, "{}:", serde_json::to_string(f.name()).expect("string"));
                        // Money as strings, like the exchange's API.
                        if matches!(
                            f.data_type(),
                            datafusion::arrow::datatypes::DataType::Decimal128(..)
                        ) && !b.column(c).is_null(row)
                        {
                            let mut s = String::new();
                            render::write_cell(&mut s, b.column(c), row, Format::Csv);
                            let _ = write!(out, "\"{s}\"");
                        } else {
                            render::write_cell(&mut out, b.column(c), row, Format::Json);
                        }
                    }
                    out.push('}');
                }
            }
            out.push(']');
            ([(header::CONTENT_TYPE, "application/json")], out).into_response()
        }
        Err(e) => sql_error(&sql, e),
    }
}

fn series_filter(p: &SeriesParams) -> Result<String, ApiError> {
    let Some(symbol) = p.symbol.as_deref().filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("symbol", "required"));
    };
    let mut w = format!("symbol = {}", sql_text(symbol));
    if let Some(from) = time_param("from", p.from.as_deref())? {
        let _ = write!(w, " AND timestamp >= to_timestamp_nanos({from})");
    }
    if let Some(to) = time_param("to", p.to.as_deref())? {
        let _ = write!(w, " AND timestamp < to_timestamp_nanos({to})");
    }
    Ok(w)
}

async fn bars(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> Response {
    let filter = match series_filter(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let interval = p.interval.as_deref().unwrap_or("1m");
    let limit = p.limit.unwrap_or(1000).min(100_000);
    let sql = format!(
        "SELECT timestamp, symbol, period, open, high, low, close, volume, quote_volume, trades, vwap \
         FROM bars WHERE {filter} AND period = {} ORDER BY timestamp LIMIT {limit}",
        sql_text(interval)
    );
    typed(&api, sql).await
}

async fn trades(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> Response {
    let filter = match series_filter(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let limit = p.limit.unwrap_or(1000).min(100_000);
    let sql = format!(
        "SELECT timestamp, symbol, venue, side, price, quantity, trade_id \
         FROM trades WHERE {filter} ORDER BY timestamp LIMIT {limit}"
    );
    typed(&api, sql).await
}

async fn latest_quote(
    State(api): State<Arc<TimeseriesApi>>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> Response {
    let filter = match series_filter(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let sql = format!(
        "SELECT timestamp, symbol, venue, bid, bid_size, ask, ask_size \
         FROM quotes WHERE {filter} ORDER BY timestamp DESC LIMIT 1"
    );
    typed(&api, sql).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_questdb() {
        assert_eq!(limit_range(None, 10).unwrap(), (0, 10));
        assert_eq!(limit_range(Some("3"), 10).unwrap(), (0, 3));
        assert_eq!(limit_range(Some("-3"), 10).unwrap(), (7, 10));
        assert_eq!(limit_range(Some("2,5"), 10).unwrap(), (2, 5));
        assert_eq!(limit_range(Some("20"), 10).unwrap(), (0, 10));
        assert!(limit_range(Some("x"), 10).is_err());
    }
}
