//! A small REST API for the tool tests: the APIs that mcp-server (and ai-agent) tools call.
//!
//! - `GET /weather?city=<name>[&unit=c|f]`: `{"city", "temp", "unit", "conditions"}`
//! - `POST /forecast` with a JSON body `{"city", "days"}`: `{"city", "days": [{"day", "temp"}]}`
//! - `POST /__rest/fail` `{"status": 503, "count": 1}`: the next `count` API requests fail
//! - `GET /__rest/requests`: every API request received (method, path, query, headers, body);
//!   `DELETE` forgets them.
//!
//! Prints `rest-api listening on <addr>` once it serves.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Value>>,
    /// Pending failures: (status, count).
    fail: Mutex<Option<(u16, u32)>>,
}

type Ctx = Arc<Shared>;

/// Records the request; answers the pending failure, if any.
fn record(
    ctx: &Ctx,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or_default().to_string()),
            )
        })
        .collect();
    if let Ok(mut list) = ctx.requests.lock() {
        list.push(json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query().unwrap_or_default(),
            "headers": headers,
            "body": String::from_utf8_lossy(body),
        }));
    }
    let mut fail = ctx.fail.lock().ok()?;
    let (status, count) = (*fail)?;
    *fail = (count > 1).then(|| (status, count - 1));
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(
        (
            code,
            Json(json!({"message": "failing on demand", "status": status})),
        )
            .into_response(),
    )
}

/// A temperature that depends on the city, so answers are not constant.
fn temp(city: &str) -> i64 {
    let sum: u32 = city.bytes().map(u32::from).sum();
    i64::from(sum % 30) - 5
}

async fn weather(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = record(&ctx, &method, &uri, &headers, b"") {
        return r;
    }
    let Some(city) = q.get("city").filter(|c| !c.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "city is required"})),
        )
            .into_response();
    };
    let c = temp(city);
    let (t, unit) = match q.get("unit").map(String::as_str) {
        Some("f") => (c * 9 / 5 + 32, "F"),
        _ => (c, "C"),
    };
    Json(json!({"city": city, "temp": t, "unit": unit, "conditions": "sunny"})).into_response()
}

async fn forecast(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = record(&ctx, &method, &uri, &headers, &body) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "body is not JSON"})),
        )
            .into_response();
    };
    let city = req["city"].as_str().unwrap_or("nowhere");
    let days = req["days"].as_u64().unwrap_or(1).min(7);
    let list: Vec<Value> = (0..days)
        .map(|d| json!({"day": d + 1, "temp": temp(city) + d as i64}))
        .collect();
    Json(json!({"city": city, "days": list})).into_response()
}

async fn set_fail(State(ctx): State<Ctx>, Json(req): Json<Value>) -> StatusCode {
    let status = req["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(500);
    let count = req["count"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(1);
    if let Ok(mut f) = ctx.fail.lock() {
        *f = Some((status, count));
    }
    StatusCode::NO_CONTENT
}

async fn requests(State(ctx): State<Ctx>) -> Json<Value> {
    Json(Value::Array(
        ctx.requests.lock().map(|l| l.clone()).unwrap_or_default(),
    ))
}

async fn clear(State(ctx): State<Ctx>) -> StatusCode {
    if let Ok(mut l) = ctx.requests.lock() {
        l.clear();
    }
    if let Ok(mut f) = ctx.fail.lock() {
        *f = None;
    }
    StatusCode::NO_CONTENT
}

fn app() -> Router {
    Router::new()
        .route("/weather", get(weather))
        .route("/forecast", post(forecast))
        .route("/__rest/fail", post(set_fail))
        .route("/__rest/requests", get(requests).delete(clear))
        .with_state(Arc::new(Shared::default()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:8082".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => addr = format!("127.0.0.1:{}", args.next().ok_or("--port needs a value")?),
            "--help" => {
                println!("usage: rest-api [--port 8082]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mut out = std::io::stdout();
    writeln!(out, "rest-api listening on {}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app()).await?;
    Ok(())
}
