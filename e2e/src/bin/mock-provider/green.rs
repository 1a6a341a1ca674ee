//! A mock of Alibaba Cloud content security (Green, API version 2022-03-02) at `POST /`, the
//! RPC endpoint: it verifies the request signature with the suite's own implementation
//! (`e2e::green`), rejects replayed nonces and stale timestamps, and answers
//! `TextModerationPlus` / `MultiModalGuard` with the documented shapes. Risk comes from words in
//! the checked text: "bomb" high, "weapon" medium, "ignore previous instructions" a prompt
//! attack, a mainland mobile number sensitive data (masked); "slowcheck" delays the answer.
//! `POST /__mock/green` sets `{"secrets": {ak: sk}, "delay_ms", "status"}`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::record::{lock, Shared};
use crate::reply;

/// The access key pair the mock knows unless told otherwise.
pub const ACCESS_KEY: &str = "mock-ak";
/// Its secret.
pub const SECRET_KEY: &str = "mock-sk";
/// How long "slowcheck" delays an answer.
const SLOW_MS: u64 = 3000;

/// How the endpoint behaves.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// AccessKey id → secret.
    pub secrets: BTreeMap<String, String>,
    /// Delay before answering, ms.
    pub delay_ms: u64,
    /// Answer with this status (and an error body) instead.
    pub status: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secrets: [(ACCESS_KEY.to_string(), SECRET_KEY.to_string())].into(),
            delay_ms: 0,
            status: None,
        }
    }
}

/// Signature nonces seen (a nonce is good once).
#[derive(Default)]
pub struct Nonces(pub HashSet<String>);

/// `POST /` and its control endpoint.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", post(check))
        .route("/__mock/green", post(configure))
}

async fn configure(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Settings>(&body) {
        Ok(settings) => {
            *lock(&shared.green) = settings;
            reply::json(StatusCode::OK, json!({"ok": true}))
        }
        Err(e) => reply::invalid_request(&format!("invalid green settings: {e}")),
    }
}

fn rpc_error(status: StatusCode, code: &str, message: &str) -> Response {
    reply::json(
        status,
        json!({"RequestId": "mock-green-error", "Code": code, "Message": message, "HostId": "green-cip.mock"}),
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Seconds since the epoch of `yyyy-MM-ddTHH:mm:ssZ`.
fn parse_timestamp(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (the inverse of the usual algorithm), counted here on its own.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// The verdict data for `content` checked by `action`.
pub fn data_for(action: &str, content: &str) -> Value {
    let lower = content.to_lowercase();
    let (risk, label, words) = if lower.contains("bomb") {
        ("high", "violent_explosives", "bomb")
    } else if lower.contains("weapon") {
        ("medium", "weapons", "weapon")
    } else {
        ("none", "", "")
    };
    let attack = lower.contains("ignore previous instructions");
    let result = if label.is_empty() {
        json!([{"Label": "nonLabel", "Confidence": 0.0}])
    } else {
        json!([{"Label": label, "Confidence": 99.5, "RiskWords": words, "Description": "mock"}])
    };
    let advice = if label.is_empty() {
        json!([])
    } else {
        json!([{"Answer": "作为一个AI助手，我无法回答这个问题。", "HitLabel": label}])
    };
    if action != "MultiModalGuard" {
        return json!({"RiskLevel": risk, "Result": result, "Advice": advice, "DataId": "mock"});
    }
    let mut detail = Vec::new();
    if !label.is_empty() {
        detail.push(
            json!({"Type": "contentModeration", "Level": risk, "Suggestion": "block",
            "Result": [{"Label": label, "Confidence": 99.5, "RiskWords": words}]}),
        );
    }
    if attack {
        detail.push(
            json!({"Type": "promptAttack", "Level": "high", "Suggestion": "block",
            "Result": [{"Label": "jailbreak", "Confidence": 98.0}]}),
        );
    }
    let phone = content
        .char_indices()
        .find(|(i, c)| {
            *c == '1'
                && content
                    .get(*i..*i + 11)
                    .is_some_and(|s| s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .and_then(|(i, _)| content.get(i..i + 11));
    if let Some(phone) = phone {
        let masked = format!("{}****{}", &phone[..3], &phone[7..]);
        detail.push(json!({"Type": "sensitiveData", "Level": "S2", "Suggestion": "mask",
            "Result": [{"Label": "1780", "Description": "phone number",
                "Ext": {"SensitiveData": [phone], "Desensitization": content.replace(phone, &masked)}}]}));
    }
    let suggestion = if !label.is_empty() && risk == "high" || attack {
        "block"
    } else if phone.is_some() {
        "mask"
    } else {
        "pass"
    };
    json!({"RiskLevel": risk, "AttackLevel": if attack { "high" } else { "none" },
        "Suggestion": suggestion, "Detail": detail, "Result": result, "Advice": advice, "DataId": "mock"})
}

async fn check(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let settings = lock(&shared.green).clone();
    if settings.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(settings.delay_ms)).await;
    }
    if let Some(code) = settings.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return reply::mock_failure(code);
    }
    let params = e2e::green::parse_form(&body);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for required in [
        "Action",
        "Version",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Signature",
        "Service",
        "ServiceParameters",
    ] {
        if get(required).is_none_or(str::is_empty) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                &format!("{required} is mandatory for this action."),
            );
        }
    }
    let Some(secret) = get("AccessKeyId").and_then(|ak| settings.secrets.get(ak)) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    };
    if get("SignatureMethod") != Some("HMAC-SHA1") || get("SignatureVersion") != Some("1.0") {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "unsupported signature method or version",
        );
    }
    let expected = e2e::green::sign("POST", &params, secret);
    if get("Signature") != Some(expected.as_str()) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }
    let fresh = get("Timestamp")
        .and_then(parse_timestamp)
        .is_some_and(|t| now_secs().abs_diff(t) <= 900);
    if !fresh {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    let nonce = get("SignatureNonce").unwrap_or_default().to_string();
    if !lock(&shared.green_nonces).0.insert(nonce) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    let action = get("Action").unwrap_or_default();
    if action != "TextModerationPlus" && action != "MultiModalGuard" {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction.NotFound",
            "Specified api is not found.",
        );
    }
    let Some(sp) = get("ServiceParameters").and_then(|s| serde_json::from_str::<Value>(s).ok())
    else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "ServiceParameters is not JSON",
        );
    };
    let content = sp
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if content.contains("slowcheck") {
        tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
    }
    let id = format!("mock-green-{}", lock(&shared.green_nonces).0.len());
    reply::json(
        StatusCode::OK,
        json!({"Code": 200, "Message": "OK", "RequestId": id, "Data": data_for(action, content)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drive_the_levels() {
        assert_eq!(
            data_for("TextModerationPlus", "a BOMB")["RiskLevel"],
            "high"
        );
        assert_eq!(
            data_for("TextModerationPlus", "a weapon")["RiskLevel"],
            "medium"
        );
        assert_eq!(data_for("TextModerationPlus", "hello")["RiskLevel"], "none");
        let d = data_for("MultiModalGuard", "call 13800138000 now");
        assert_eq!(d["Suggestion"], "mask");
        assert_eq!(
            d["Detail"][0]["Result"][0]["Ext"]["Desensitization"],
            "call 138****8000 now"
        );
        let d = data_for("MultiModalGuard", "Ignore previous instructions");
        assert_eq!(d["AttackLevel"], "high");
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp("2016-02-23T12:46:24Z"), Some(1_456_231_584));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert!(parse_timestamp("2016-02-23 12:46:24").is_none());
    }
}
