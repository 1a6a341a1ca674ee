//! ai-proxy's translations as data: every case of `plugins/ai-proxy/golden/` (see its README)
//! through the real ai-proxy stage in a [`Sim`]. For each case: the request goes upstream as
//! `upstream-request.json` says; the recorded upstream answer, fed whole, reaches the client as
//! `response.json` (and `response.sse`) say; fed in seeded random byte splits it reaches the
//! client as the same events; and under another clock it still matches (what depends on the
//! clock is normalised, see `e2e::golden`).
//!
//! `GOLDEN_BLESS=1 cargo test -p fuzz --test golden` rewrites the expected files from what the
//! code does now; read the diff before committing it.

#![allow(clippy::unwrap_used, clippy::panic)]

use e2e::golden::{self, Answer, Case, Clock, Headers, Sent};
use fuzz::sim::{self, Sim};
use std::time::{Duration, Instant};

/// The gateway's clock in the Sim (2025-10-09T08:53:20Z): later than any recorded timestamp.
const CLOCK: u64 = 1_760_000_000;
/// A second clock: a case's normalised output must not change with it.
const OTHER_CLOCK: u64 = 1_780_000_000;
/// Seeded splits of the upstream answer per case, with the largest chunk of each.
const SPLITS: [(u8, usize); 8] = [
    (1, 1),
    (2, 2),
    (3, 5),
    (4, 7),
    (5, 16),
    (6, 31),
    (7, 64),
    (8, 200),
];

/// The one ai-proxy stage with the case's config.
fn pipeline(case: &Case) -> Result<sdk::pipeline::Pipeline, String> {
    let (loaded, warnings) = ai_proxy::loader("ai-proxy", case.config.as_bytes())
        .map_err(|e| format!("config.json refused: {e}"))?;
    if !warnings.is_empty() {
        return Err(format!("config.json warnings: {warnings:?}"));
    }
    Ok(sdk::pipeline::Pipeline::new(
        loaded.iter().flat_map(|l| l.stages()).collect(),
    ))
}

/// The client's request headers: as the e2e client sends them (its key unless the case gives
/// one of its own).
fn request_headers(case: &Case) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", case.request.path.as_str()),
        (":authority", "gateway.test"),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.extend(case.request.headers.iter().cloned());
    let has_key = headers
        .iter()
        .any(|(k, _)| k == "authorization" || k == "x-api-key");
    if !has_key {
        headers.push((
            "authorization".into(),
            format!("Bearer {}", e2e::http::TEST_KEY),
        ));
    }
    headers
}

/// One exchange: the request, then the upstream answer in `chunks`.
fn run(case: &Case, clock: u64, chunks: &[&[u8]]) -> Result<(Sent, Answer), String> {
    let headers = request_headers(case);
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut sim = Sim::new(pipeline(case)?, &refs);
    *sim.host.clock.borrow_mut() = Duration::from_secs(clock);
    match sim.request(&[case.request.body.as_bytes()])? {
        sim::Sent::Upstream => {}
        sim::Sent::Replied(a) => {
            return Err(format!(
                "the gateway answered itself: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ))
        }
        sim::Sent::Waiting => return Err("the request waits on a callout".into()),
    }
    let request_headers = sim.host.request_headers.borrow().clone();
    let find = |name: &str| {
        request_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let sent = Sent {
        method: find(":method"),
        path: find(":path"),
        headers: request_headers.clone(),
        body: sim.host.request_body.borrow().clone(),
    };
    let mut upstream_headers = vec![(":status".to_string(), case.upstream.status.to_string())];
    upstream_headers.extend(case.upstream.headers.iter().cloned());
    let answer = sim.response(upstream_headers, chunks)?;
    if answer.local {
        return Err(format!(
            "the gateway replaced the answer: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    Ok((
        sent,
        Answer {
            status: answer.status,
            headers: answer
                .headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            body: answer.body,
        },
    ))
}

/// Everything the runner checks of one case.
fn check(case: &Case) -> Result<(), String> {
    let clock = Clock::at(CLOCK);
    let body = case.upstream.body.as_slice();
    let (sent, whole) = run(case, CLOCK, &[body])?;
    if golden::blessing() {
        case.bless_upstream_request(&sent, clock)?;
        case.bless_response(&whole, clock)?;
    }
    case.check_upstream_request(&sent, Headers::Exact, clock)?;
    case.check_response(&whole, Headers::Exact, clock)?;
    for (seed, max) in SPLITS {
        let (_, split) = run(case, CLOCK, &fuzz::split(body, seed, max))?;
        let why = |e: String| format!("split with seed {seed} (chunks up to {max} bytes): {e}");
        case.check_response(&split, Headers::Exact, clock)
            .map_err(why)?;
        // The same bytes, not only the same events: a client may read them any way.
        if split.body != whole.body {
            return Err(why(format!(
                "same events, other bytes:\n{}",
                golden::diff(
                    &String::from_utf8_lossy(&whole.body),
                    &String::from_utf8_lossy(&split.body)
                )
            )));
        }
    }
    let (sent, later) = run(case, OTHER_CLOCK, &[body])?;
    let other = Clock::at(OTHER_CLOCK);
    let why = |e: String| format!("under another clock: {e}");
    case.check_upstream_request(&sent, Headers::Exact, other)
        .map_err(why)?;
    case.check_response(&later, Headers::Exact, other)
        .map_err(why)
}

#[test]
fn every_golden_case_translates_as_recorded() {
    let started = Instant::now();
    let names = golden::case_names().unwrap();
    assert!(!names.is_empty(), "no case in {}", golden::dir().display());
    let mut failures = Vec::new();
    for name in &names {
        let result = Case::load(name)
            .map_err(|e| e.to_string())
            .and_then(|case| check(&case));
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    eprintln!(
        "{} golden cases in {:.2?}{}",
        names.len(),
        started.elapsed(),
        if golden::blessing() { " (blessed)" } else { "" }
    );
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}
