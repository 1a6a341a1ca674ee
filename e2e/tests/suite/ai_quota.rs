//! ai-quota through a real Envoy: Higress's admin API, balances drawn by reservation and settled
//! with the real usage (JSON and streams), refusals in the client's protocol, the embedded store
//! and Redis behind webdis (restarts, two Envoys, store down).

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common;
use common::o200k;
use e2e::envoy::{Envoy, Options};
use e2e::http::{Client, Response};
use e2e::{Gateway, Webdis};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");
const PLUGIN: &str = "ai-quota";
const ALICE: &str = "Bearer sk-e2e-alice";
const BOB: &str = "Bearer sk-demo-bob";
const ADMIN: &str = "Bearer sk-e2e-quota-admin";
const LOCAL: &str = r#"{"admin_consumer": "quota-admin"}"#;

fn chat(extra: Value) -> String {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

fn words(n: usize) -> String {
    vec!["tok"; n].join(" ")
}

fn client() -> Client {
    Client::new(Duration::from_secs(30))
}

/// An admin call: GET with a query, or POST with a form body.
fn admin(url: &str, key: &str, path: &str, form: Option<&str>) -> Response {
    let c = client();
    let url = format!("{url}/v1/chat/completions{path}");
    match form {
        None => c.get(&url, &[("authorization", key)]).unwrap(),
        Some(body) => c
            .request(
                "POST",
                &url,
                &[
                    ("authorization", key),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Some(body),
            )
            .unwrap(),
    }
}

fn balance(url: &str, consumer: &str) -> i64 {
    let r = admin(url, ADMIN, &format!("/quota?consumer={consumer}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json().unwrap();
    assert_eq!(v["consumer"], consumer);
    v["quota"].as_i64().unwrap()
}

fn refresh(url: &str, consumer: &str, quota: i64) {
    let r = admin(
        url,
        ADMIN,
        "/quota/refresh",
        Some(&format!("consumer={consumer}&quota={quota}")),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "refresh quota successful")
    );
}

/// A chat request of `key` whose answer uses 1 prompt + `output` tokens, `max_tokens` reserved.
fn ask(url: &str, key: &str, output: usize, max_tokens: u64) -> Response {
    let content = words(output);
    client()
        .post(
            &format!("{url}/v1/chat/completions"),
            &[("authorization", key), ("x-mock-content", &content)],
            &chat(json!({"max_tokens": max_tokens})),
        )
        .unwrap()
}

fn quota_options(config: &str) -> Options {
    Options::plugin(PLUGIN, config)
}

#[test]
fn admin_sets_a_balance_that_requests_spend() {
    let gw = Gateway::start(MOCK, &quota_options(LOCAL)).unwrap();
    let url = gw.envoy.url();
    // Only the admin consumer manages balances.
    for (path, form) in [
        ("/quota?consumer=alice", None),
        ("/quota/refresh", Some("consumer=alice&quota=99999")),
        ("/quota/delta", Some("consumer=alice&value=99999")),
    ] {
        let r = admin(&url, ALICE, path, form);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json().unwrap()["error"]["type"], "permission_error");
    }
    refresh(&url, "alice", 1000);
    refresh(&url, "bob", 1000);
    assert_eq!(balance(&url, "alice"), 1000);
    // Each answer uses 300 tokens; 1 prompt token + 300 allowed output are reserved.
    let estimate = o200k("hi") as i64 + 300;
    for i in 0..3 {
        let r = ask(&url, ALICE, 299, 300);
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.json().unwrap()["usage"]["total_tokens"], 300);
        assert_eq!(
            balance(&url, "alice"),
            1000 - 300 * (i + 1),
            "settled with the usage"
        );
    }
    // 100 left: the next estimate does not fit.
    let r = ask(&url, ALICE, 299, 300);
    assert_eq!(r.status, 429, "{}", r.body);
    let v = r.json().unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(r.header("x-quota-remaining"), Some("100"));
    assert!(estimate > 100);
    // A small request still fits.
    let r = ask(&url, ALICE, 9, 50);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(balance(&url, "alice"), 90);
    // Anthropic clients get Anthropic's shape; the provider saw none of the refused requests.
    let seen = gw.mock.requests().unwrap().len();
    let r = client()
        .post(
            &format!("{url}/v1/messages"),
            &[("authorization", ALICE)],
            &json!({"model": "c", "max_tokens": 200,
                    "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        )
        .unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    let v = r.json().unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error"))
    );
    // The official openai SDK (max_tokens 200: 90 left does not cover it) sees a
    // RateLimitError with the OpenAI error body.
    let out = e2e::run_sdk_script(
        "openai_quota.py",
        &[&format!("{url}/v1"), "m", "sk-e2e-alice"],
    )
    .unwrap();
    assert_eq!(out["ok"], false, "{out}");
    assert_eq!(
        (&out["status"], &out["class"], &out["code"]),
        (
            &json!(429),
            &json!("RateLimitError"),
            &json!("insufficient_quota")
        ),
        "{out}"
    );
    assert_eq!(
        gw.mock.requests().unwrap().len(),
        seen,
        "refused requests reached the provider"
    );
    // bob is unaffected.
    assert_eq!(ask(&url, BOB, 299, 300).status, 200);
    assert_eq!(balance(&url, "bob"), 700);
    // delta adds (and takes), refresh sets; the SDK is admitted again.
    let r = admin(
        &url,
        ADMIN,
        "/quota/delta",
        Some("consumer=alice&value=510"),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "delta quota successful"));
    assert_eq!(balance(&url, "alice"), 600);
    let r = admin(
        &url,
        ADMIN,
        "/quota/delta",
        Some("consumer=alice&value=-100"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(balance(&url, "alice"), 500);
    let out = e2e::run_sdk_script(
        "openai_quota.py",
        &[&format!("{url}/v1"), "m", "sk-e2e-alice"],
    )
    .unwrap();
    assert_eq!(out["ok"], true, "{out}");
    let used = out["usage"]["total_tokens"].as_i64().unwrap();
    assert_eq!(balance(&url, "alice"), 500 - used);
    refresh(&url, "alice", 0);
    assert_eq!(ask(&url, ALICE, 1, 1).status, 429);
    // Bad parameters get 400 naming the parameter; nothing reaches the provider.
    for (path, form, name) in [
        ("/quota", None, "consumer"),
        ("/quota/refresh", Some("consumer=alice"), "quota"),
        ("/quota/refresh", Some("quota=5"), "consumer"),
        ("/quota/delta", Some("consumer=alice&value=ten"), "value"),
    ] {
        let r = admin(&url, ADMIN, path, form);
        assert_eq!(r.status, 400, "{path} {form:?}: {}", r.body);
        let msg = r.json().unwrap()["error"]["message"].to_string();
        assert!(msg.contains(&format!("`{name}`")), "{msg}");
    }
    assert_eq!(balance(&url, "alice"), 0);
    assert_eq!(
        gw.mock
            .requests()
            .unwrap()
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("quota")))
            .count(),
        0,
        "an admin call reached the provider"
    );
}

#[test]
fn a_request_without_a_consumer_is_refused() {
    // The consumer header is read from another header the client does not send.
    let config = r#"{"admin_consumer": "quota-admin", "consumer_header": "x-tenant"}"#;
    let gw = Gateway::start(MOCK, &quota_options(config)).unwrap();
    let r = gw
        .post("/v1/chat/completions", &[], &chat(json!({})))
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(gw.mock.requests().unwrap().is_empty());
    let config = r#"{"admin_consumer": "quota-admin", "consumer_header": "x-tenant",
        "allow_anonymous": true}"#;
    gw.envoy.push_plugin_config(PLUGIN, config, 2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw
            .post("/v1/chat/completions", &[], &chat(json!({})))
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 20 concurrent streamed requests of one consumer; returns how many were admitted.
fn twenty_streams(url: &str) -> i64 {
    let url = Arc::new(url.to_string());
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let content = words(99);
                let (status, _) = client()
                    .post_stream(
                        &format!("{url}/v1/chat/completions"),
                        &[
                            ("authorization", ALICE),
                            ("x-mock-content", &content),
                            ("x-mock-delay-ms", "300"),
                            ("x-mock-chunk-delay-ms", "20"),
                        ],
                        &chat(json!({"max_tokens": 100, "stream": true,
                                     "stream_options": {"include_usage": true}})),
                    )
                    .unwrap();
                status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as i64;
    let refused = statuses.iter().filter(|s| **s == 429).count() as i64;
    assert_eq!(admitted + refused, 20, "{statuses:?}");
    assert!(admitted >= 1 && refused >= 1, "{statuses:?}");
    admitted
}

#[test]
fn concurrent_streams_cannot_overdraw_the_balance() {
    let gw = Gateway::start(MOCK, &quota_options(LOCAL)).unwrap();
    let url = gw.envoy.url();
    refresh(&url, "alice", 1000);
    let admitted = twenty_streams(&url);
    let estimate = o200k("hi") as i64 + 100;
    // Every answer used 100 tokens; the balance holds exactly what was not spent.
    let left = balance(&url, "alice");
    eprintln!("local store: {admitted} of 20 streams admitted, {left} left");
    assert_eq!(left, 1000 - 100 * admitted, "{admitted} admitted");
    assert!(left >= -estimate, "overdrawn: {left}");
}

fn fleet_config(fail_open: bool) -> String {
    json!({"admin_consumer": "quota-admin",
           "redis": {"service_name": "quota_store", "timeout": 500},
           "fail_open": fail_open})
    .to_string()
}

fn fleet_options(webdis_port: u16, config: &str) -> Options {
    Options {
        webdis_port: Some(webdis_port),
        ..quota_options(config)
    }
}

#[test]
fn webdis_balances_survive_restarts_and_are_shared_by_envoys() {
    let store = Webdis::start().unwrap();
    let options = fleet_options(store.port, &fleet_config(false));
    let gw = Gateway::start(MOCK, &options).unwrap();
    let url = gw.envoy.url();
    refresh(&url, "alice", 1000);
    // The key is laid out as Higress does, so an existing Higress Redis keeps working.
    assert_eq!(
        store.command("/GET/chat_quota:alice").unwrap(),
        json!({"GET": "1000"})
    );
    assert_eq!(ask(&url, ALICE, 299, 300).status, 200);
    assert_eq!(balance(&url, "alice"), 700);
    // A fresh Envoy (restart) sees the balance; so does a second Envoy at the same time.
    let second = Envoy::start(gw.mock.port, &options).unwrap();
    drop(gw.envoy);
    let first = Envoy::start(gw.mock.port, &options).unwrap();
    let (a, b) = (first.url(), second.url());
    assert_eq!(balance(&a, "alice"), 700);
    assert_eq!(ask(&a, ALICE, 299, 300).status, 200);
    assert_eq!(balance(&b, "alice"), 400);
    assert_eq!(ask(&b, ALICE, 299, 300).status, 200);
    assert_eq!(balance(&a, "alice"), 100);
    // Spent on either: refused on both.
    for url in [&a, &b] {
        let r = ask(url, ALICE, 299, 300);
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.header("x-quota-remaining"), Some("100"));
    }
    // A refused reservation is given back whole.
    assert_eq!(
        store.command("/GET/chat_quota:alice").unwrap(),
        json!({"GET": "100"})
    );
    // delta through one Envoy, seen by the other; 20 concurrent streams across both cannot
    // overdraw it.
    let r = admin(&a, ADMIN, "/quota/delta", Some("consumer=alice&value=900"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(balance(&b, "alice"), 1000);
    let admitted = twenty_streams(&b);
    let left = balance(&a, "alice");
    eprintln!("webdis: {admitted} of 20 streams admitted, {left} left");
    assert_eq!(left, 1000 - 100 * admitted, "{admitted} admitted");
    assert!(left >= -(o200k("hi") as i64 + 100), "overdrawn: {left}");
}

#[test]
fn a_store_that_is_down_fails_closed_or_open_without_hanging() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = Gateway::start(MOCK, &fleet_options(port, &fleet_config(false))).unwrap();
    let url = gw.envoy.url();
    let started = Instant::now();
    let r = ask(&url, ALICE, 1, 10);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.json().unwrap()["error"]["code"],
        "quota_store_unavailable"
    );
    let r = admin(&url, ADMIN, "/quota?consumer=alice", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(gw.mock.requests().unwrap().is_empty());
    gw.envoy
        .push_plugin_config(PLUGIN, &fleet_config(true), 2)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ask(&url, ALICE, 1, 10);
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// $0.001 per prompt token, $0.002 per generated token (micro-units: 1000 and 2000).
const PRICES: &str =
    r#"{"currency": "USD", "models": [{"model": "m*", "input": 1000, "output": 2000}]}"#;

/// The cost metric of `consumer`'s requests for model `m`, once recorded.
fn cost_metric(envoy: &Envoy, consumer: &str, want: u64) -> Option<u64> {
    let name = format!(
        "wasmcustom.route.llm.upstream.llm_upstream.model.m.consumer.{consumer}.metric.cost_micros"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = envoy.stat(&name).unwrap();
        if v == Some(want) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cost_quota_stops_a_consumer_and_the_cost_metric_is_usage_times_price() {
    let quota = format!(
        r#"{{"admin_consumer": "quota-admin", "limit_by_cost": true, "price_table": {PRICES}}}"#
    );
    let stats = format!(r#"{{"price_table": {PRICES}, "cost_header": "x-ai-cost"}}"#);
    let options = quota_options(&quota).with_plugin("ai-statistics", &stats);
    let gw = Gateway::start(MOCK, &options).unwrap();
    let url = gw.envoy.url();
    // A budget of $1 in micro-dollars.
    refresh(&url, "alice", 1_000_000);
    // 1 prompt + 299 generated tokens: 1000 + 598000 micro-dollars (601000 reserved).
    let r = ask(&url, ALICE, 299, 300);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-ai-cost"), Some("0.599000"));
    assert_eq!(balance(&url, "alice"), 1_000_000 - 599_000);
    assert_eq!(cost_metric(&gw.envoy, "alice", 599_000), Some(599_000));
    // $0.401 left does not cover another 300-token allowance ($0.601): refused.
    let r = ask(&url, ALICE, 299, 300);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("x-ai-cost"), None, "a refusal costs nothing");
    // A smaller one fits; streamed, it is settled at its price too.
    let content = words(99);
    let (status, reads) = client()
        .post_stream(
            &format!("{url}/v1/chat/completions"),
            &[("authorization", ALICE), ("x-mock-content", &content)],
            &chat(json!({"max_tokens": 100, "stream": true,
                         "stream_options": {"include_usage": true}})),
        )
        .unwrap();
    assert_eq!(status, 200);
    assert!(!reads.is_empty());
    let stream_cost = 1000 + 99 * 2000;
    assert_eq!(balance(&url, "alice"), 401_000 - stream_cost);
    assert_eq!(
        cost_metric(&gw.envoy, "alice", 599_000 + stream_cost as u64),
        Some(599_000 + stream_cost as u64)
    );
    // The access log carries each request's cost.
    let logs = gw.envoy.ai_logs(2);
    let costs: Vec<(String, String)> = logs
        .iter()
        .map(|l| (l["cost"].to_string(), l["currency"].to_string()))
        .collect();
    assert!(
        costs.contains(&("0.599".into(), "\"USD\"".into())),
        "{costs:?}"
    );
    assert!(
        costs.contains(&("0.199".into(), "\"USD\"".into())),
        "{costs:?}"
    );
    // bob has no budget at all.
    assert_eq!(ask(&url, BOB, 1, 1).status, 429);
}

#[test]
fn the_cost_metric_is_usage_times_price_for_json_and_streams() {
    // ai-statistics alone, with the shipped default table behind a configured price.
    let stats = r#"{"price_table": {"models": [{"model": "m", "input": 3, "output": 10}]},
        "cost_header": "x-ai-cost"}"#;
    let gw = Gateway::start(MOCK, &Options::plugin("ai-statistics", stats)).unwrap();
    let content = words(299);
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-content", &content)],
            &chat(json!({})),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ai-cost"), Some("0.002993"));
    assert_eq!(
        r.json().unwrap()["usage"]["total_tokens"],
        300,
        "the answer is whole"
    );
    // 1 × 3 + 299 × 10 micro-dollars.
    assert_eq!(cost_metric(&gw.envoy, "e2e", 2_993), Some(2_993));
    let (status, _) = gw
        .client
        .post_stream(
            &format!("{}/v1/chat/completions", gw.envoy.url()),
            &[("x-mock-content", &words(99))],
            &chat(json!({"stream": true, "stream_options": {"include_usage": true}})),
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        cost_metric(&gw.envoy, "e2e", 2_993 + 993),
        Some(2_993 + 993)
    );
    let logs = gw.envoy.ai_logs(2);
    let mut costs: Vec<f64> = logs.iter().filter_map(|l| l["cost"].as_f64()).collect();
    costs.sort_by(f64::total_cmp);
    assert_eq!(costs, [0.000993, 0.002993]);
    // A default-table model is priced from the shipped table (gpt-4o-mini: $0.15 / $0.60 per 1M).
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-content", &words(9))],
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let logs = gw.envoy.ai_logs(3);
    let mini = logs.iter().find(|l| l["model"] == "gpt-4o-mini").unwrap();
    // 1 × 0.15 + 9 × 0.60 = 5.55 micro-dollars, rounded.
    assert_eq!(mini["cost"].as_f64(), Some(0.000006), "{mini}");
}
