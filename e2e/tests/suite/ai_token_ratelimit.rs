//! ai-token-ratelimit through a real Envoy: reservations before the request, reconciliation
//! after it, the rejection headers, independent keys, estimates for streams without usage.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;
use common::{away_from_minute_end, o200k};
use e2e::envoy::Options;
use e2e::Gateway;
use serde_json::json;
use std::time::Duration;

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-token-ratelimit";

fn chat(extra: serde_json::Value) -> String {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

fn words(n: usize) -> String {
    vec!["tok"; n].join(" ")
}

#[test]
fn fourth_request_is_rejected_with_the_headers() {
    let config = r#"{"rule_name": "per-minute", "global_threshold": {"token_per_minute": 1000},
        "default_max_tokens": 200}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    away_from_minute_end();
    let content = words(299); // with the 1-word prompt, each answer uses 300 tokens
    let headers = [("x-mock-content", content.as_str())];
    let prompt = o200k("hi");
    for i in 0..3u64 {
        let resp = gw
            .post("/v1/chat/completions", &headers, &chat(json!({})))
            .unwrap();
        assert_eq!(resp.status, 200, "request {i}: {}", resp.body);
        assert_eq!(resp.json().unwrap()["usage"]["total_tokens"], 300);
        assert_eq!(resp.header("x-ratelimit-limit-tokens"), Some("1000"));
        let remaining = 1000 - 300 * i - (prompt + 200);
        assert_eq!(
            resp.header("x-ratelimit-remaining-tokens"),
            Some(remaining.to_string().as_str())
        );
    }
    let resp = gw
        .post("/v1/chat/completions", &headers, &chat(json!({})))
        .unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    let v = resp.json().unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        v["error"]["message"], "Too many requests",
        "Higress's default"
    );
    assert_eq!(resp.header("x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(resp.header("x-ratelimit-remaining-tokens"), Some("100"));
    let reset: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset));
    assert_eq!(
        resp.header("x-tokenratelimit-reset"),
        Some(reset.to_string().as_str())
    );
    assert_eq!(
        resp.header("x-ratelimit-reset-tokens"),
        Some(format!("{reset}s").as_str())
    );
    assert_eq!(
        gw.mock.requests().unwrap().len(),
        3,
        "the rejected request reached the provider"
    );
    // Anthropic clients get Anthropic's shape.
    let body =
        json!({"model": "c", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]});
    let v = gw
        .post("/v1/messages", &[], &body.to_string())
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let rejected = gw.envoy.prometheus().unwrap();
    let count = rejected
        .iter()
        .find(|s| {
            s.name == "ai_token_ratelimit_rejected"
                && s.labels.get("rule").map(String::as_str) == Some("per-minute")
        })
        .map(|s| s.value);
    assert_eq!(count, Some(2.0));
}

#[test]
fn concurrent_requests_cannot_overspend_the_budget() {
    let config = r#"{"rule_name": "burst", "global_threshold": {"token_per_hour": 1000}}"#;
    let gw = std::sync::Arc::new(Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap());
    let content = words(99); // each answer uses 100 tokens, each reservation is prompt + 100
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let gw = gw.clone();
            let content = content.clone();
            std::thread::spawn(move || {
                let headers = [
                    ("x-mock-content", content.as_str()),
                    ("x-mock-delay-ms", "400"),
                ];
                gw.post(
                    "/v1/chat/completions",
                    &headers,
                    &chat(json!({"max_tokens": 100})),
                )
                .unwrap()
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let rejected = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted as usize + rejected, 20, "{statuses:?}");
    let reservation = o200k("hi") + 100;
    assert!(admitted >= 1 && rejected >= 1, "{statuses:?}");
    assert!(
        admitted * 100 <= 1000 + reservation,
        "{admitted} admitted: {statuses:?}"
    );
}

#[test]
fn consumer_header_and_ip_keys_limit_independently() {
    let config = r#"{"rule_name": "keys", "rule_items": [
        {"limit_by_per_consumer": "", "limit_keys": [{"key": "regexp:^(ann|bob)$", "token_per_hour": 500}]},
        {"limit_by_per_header": "x-team", "limit_keys": [{"key": "regexp:^team-", "token_per_hour": 500}]},
        {"limit_by_per_ip": "from-header-x-real-ip", "limit_keys": [{"key": "10.0.0.0/8", "token_per_hour": 500}]}
    ]}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    let content = words(299);
    let send = |extra: (&str, &str)| {
        let headers = [("x-mock-content", content.as_str()), extra];
        gw.post("/v1/chat/completions", &headers, &chat(json!({})))
            .unwrap()
            .status
    };
    let exhaust = |header: (&str, &str)| {
        assert_eq!(send(header), 200);
        assert_eq!(send(header), 200); // 600 charged: over the 500 budget
        assert_eq!(send(header), 429, "{header:?}");
    };
    // Consumers are named by Envoy's api_key_auth from the caller's key.
    exhaust(("authorization", "Bearer sk-demo-ann"));
    assert_eq!(send(("authorization", "Bearer sk-demo-bob")), 200);
    // A consumer header sent by the client is not believed.
    assert_eq!(
        send(("x-mse-consumer", "bob")),
        200,
        "the default test consumer is not limited"
    );
    exhaust(("x-team", "team-red"));
    assert_eq!(send(("x-team", "team-blue")), 200);
    assert_eq!(send(("x-team", "other")), 200); // no key matches: not limited
    exhaust(("x-real-ip", "10.1.1.1"));
    assert_eq!(send(("x-real-ip", "10.2.2.2")), 200);
    for _ in 0..3 {
        assert_eq!(send(("x-real-ip", "192.168.1.1")), 200); // outside 10.0.0.0/8
    }
}

#[test]
fn streams_without_usage_are_charged_by_estimate() {
    let config = r#"{"rule_name": "est", "global_threshold": {"token_per_hour": 1000}}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    let url = format!("{}/v1/chat/completions", gw.envoy.url());
    let (status, _) = gw
        .client
        .post_stream(
            &url,
            &[("x-mock-usage", "none")],
            &chat(json!({"stream": true})),
        )
        .unwrap();
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let resp = gw
        .post("/v1/chat/completions", &[], &chat(json!({})))
        .unwrap();
    let charged = o200k("hi") + o200k("w0 w1 w2 w3 w4 ");
    let expected = 1000 - charged - o200k("hi");
    assert_eq!(
        resp.header("x-ratelimit-remaining-tokens"),
        Some(expected.to_string().as_str())
    );
}

const RLS: &str = env!("CARGO_BIN_EXE_rls-server");

fn rls_config(deny: bool) -> String {
    json!({"rule_name": "shared", "backend": "rls", "default_max_tokens": 200,
           "global_threshold": {"token_per_hour": 1000},
           "rls": {"cluster": "rate_limit_service", "domain": "e2e", "timeout": 500, "failure_mode_deny": deny}})
    .to_string()
}

#[test]
fn two_envoys_share_one_budget_through_the_rate_limit_service() {
    let redis = e2e::Redis::start().unwrap();
    let rls = e2e::RateLimitService::start(RLS, redis.port).unwrap();
    let options = Options {
        rls_port: Some(rls.port),
        ..Options::plugin(PLUGIN, &rls_config(false))
    };
    let a = Gateway::start(MOCK, &options).unwrap();
    let b = e2e::envoy::Envoy::start(a.mock.port, &options).unwrap();
    let content = words(299);
    let headers = [("x-mock-content", content.as_str())];
    let post = |url: &str| {
        a.client
            .post(
                &format!("{url}/v1/chat/completions"),
                &headers,
                &chat(json!({})),
            )
            .unwrap()
    };
    // 300 tokens per answer, 201 reserved per request: A, B, A pass (900 used), then B is refused.
    let mut statuses = Vec::new();
    for url in [a.envoy.url(), b.url(), a.envoy.url(), b.url()] {
        statuses.push(post(&url).status);
        std::thread::sleep(Duration::from_millis(150)); // let the charge after each answer land
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let refused = post(&a.envoy.url());
    assert_eq!(refused.status, 429);
    assert!(refused.header("x-ratelimit-limit-tokens").is_some());
}

#[test]
fn rate_limit_service_down_follows_failure_mode_deny() {
    let options = |deny: bool| Options {
        rls_port: Some(1),
        ..Options::plugin(PLUGIN, &rls_config(deny))
    };
    let open = Gateway::start(MOCK, &options(false)).unwrap();
    assert_eq!(
        open.post("/v1/chat/completions", &[], &chat(json!({})))
            .unwrap()
            .status,
        200
    );
    let closed = Gateway::start(MOCK, &options(true)).unwrap();
    let resp = closed
        .post("/v1/chat/completions", &[], &chat(json!({})))
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(closed.mock.requests().unwrap().is_empty());
}

#[test]
fn a_cost_budget_refuses_once_the_price_table_says_it_is_spent() {
    // $1 an hour in micro-dollars, at $0.001 per prompt and $0.002 per generated token.
    let config = r#"{"rule_name": "spend", "global_threshold": {"token_per_hour": 1000000},
        "limit_by_cost": true,
        "price_table": {"models": [{"model": "m", "input": 1000, "output": 2000}]}}"#;
    let gw = Gateway::start(MOCK, &Options::plugin(PLUGIN, config)).unwrap();
    let content = words(299);
    let headers = [("x-mock-content", content.as_str())];
    let body = chat(json!({"max_tokens": 300}));
    let reserved = o200k("hi") * 1000 + 300 * 2000;
    let resp = gw.post("/v1/chat/completions", &headers, &body).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("x-ratelimit-remaining-tokens"),
        Some((1_000_000 - reserved).to_string().as_str())
    );
    // Charged 1 × 1000 + 299 × 2000: $0.401 left does not cover another reservation.
    let resp = gw.post("/v1/chat/completions", &headers, &body).unwrap();
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(resp.header("x-ratelimit-remaining-tokens"), Some("401000"));
    // A model without a price cannot be counted: refused, naming it.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &[],
            &json!({"model": "unpriced", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .unwrap();
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.json().unwrap()["error"]["code"], "model_not_priced");
    assert_eq!(gw.mock.requests().unwrap().len(), 1);
}
