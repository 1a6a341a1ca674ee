//! Golden cases (`plugins/ai-proxy/golden/`) through a real Envoy: the mock provider replays each
//! case's recorded upstream answer (`x-mock-golden: <case>`), in pieces, and what the provider
//! received and the client got must match the same expected files the Sim runner
//! (`fuzz/tests/golden.rs`) checks, with the same normalisation (`e2e::golden`). Envoy and the
//! mock add headers of their own, so headers are checked as a subset here.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::envoy::Options;
use e2e::golden::{self, Answer, Case, Clock, Headers, Sent};
use e2e::Gateway;
use std::time::{SystemTime, UNIX_EPOCH};

const MOCK: &str = env!("CARGO_BIN_EXE_mock-provider");

/// The providers whose cases run here (every case named `<provider>-…`): streams to each client
/// protocol, whole JSON answers and upstream errors. Starting Envoy costs far more than a case.
const PROVIDERS: [&str; 3] = ["claude", "gemini", "bedrock"];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends the case's request through Envoy; what the provider received and the client got.
fn exchange(gw: &Gateway, case: &Case) -> (Sent, Answer) {
    let mut headers: Vec<(&str, &str)> = case
        .request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.push((golden::MOCK_HEADER, &case.name));
    gw.mock.clear().unwrap();
    let resp = gw
        .post(&case.request.path, &headers, &case.request.body)
        .unwrap();
    let recorded = gw.last_upstream_request().unwrap();
    let mut sent_headers: Vec<(String, String)> = recorded["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let k = if k == "host" {
                ":authority"
            } else {
                k.as_str()
            };
            (k.to_string(), v.as_str().unwrap_or_default().to_string())
        })
        .collect();
    sent_headers.retain(|(k, _)| k != golden::MOCK_HEADER);
    let path = match recorded["query"].as_str() {
        Some(q) => format!("{}?{q}", recorded["path"].as_str().unwrap()),
        None => recorded["path"].as_str().unwrap().to_string(),
    };
    let sent = Sent {
        method: recorded["method"].as_str().unwrap().to_string(),
        path,
        headers: sent_headers,
        body: recorded["body"].as_str().unwrap().as_bytes().to_vec(),
    };
    let answer = Answer {
        status: u32::from(resp.status),
        headers: resp.headers.clone(),
        body: resp.body.into_bytes(),
    };
    (sent, answer)
}

#[test]
fn golden_cases_through_envoy_match_the_expected_files() {
    assert!(
        !golden::blessing(),
        "the expected files are blessed from the Sim runner (fuzz/tests/golden.rs), not here"
    );
    let cases: Vec<Case> = golden::case_names()
        .unwrap()
        .iter()
        .filter(|n| PROVIDERS.iter().any(|p| n.starts_with(&format!("{p}-"))))
        .map(|n| Case::load(n).unwrap())
        .collect();
    for p in PROVIDERS {
        let streams = cases
            .iter()
            .filter(|c| c.name.starts_with(p) && c.name.contains("stream"))
            .count();
        assert!(streams > 0, "no streaming {p} case");
    }
    let mut failures = Vec::new();
    // One Envoy per provider config, its cases in turn.
    let mut configs: Vec<&str> = Vec::new();
    for c in &cases {
        if !configs.contains(&c.config.as_str()) {
            configs.push(&c.config);
        }
    }
    for config in configs {
        let gw = Gateway::start(MOCK, &Options::plugin("ai-proxy", config)).unwrap();
        for case in cases.iter().filter(|c| c.config == config) {
            let from = unix_now();
            let (sent, answer) = exchange(&gw, case);
            let clock = Clock {
                from,
                to: unix_now(),
            };
            let checked = case
                .check_upstream_request(&sent, Headers::Subset, clock)
                .and_then(|()| case.check_response(&answer, Headers::Subset, clock));
            if let Err(e) = checked {
                failures.push(e);
            }
        }
    }
    eprintln!("{} golden cases through Envoy", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ through Envoy:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
