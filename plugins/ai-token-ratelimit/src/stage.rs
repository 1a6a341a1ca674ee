//! The rate-limit core: find the request's counter, reserve its estimated tokens before it
//! leaves, and charge the real usage (or the estimate) once the answer is done.

use crate::config::{Backend, RateLimitConfig, Source};
use crate::local::{self, Budget};
use crate::rls;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel, MetricType};
use sdk::meter::Reservation;
use sdk::pipeline::{BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, Stage};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// The counter a request is charged to.
#[derive(Debug, Clone)]
struct Counter {
    id: String,
    limit: u64,
    window: u64,
}

/// Per-request state (lives in the HTTP context).
pub struct RateLimitStage {
    rules: Rc<RuleSet<RateLimitConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<RateLimitConfig>>,
    counter: Option<Counter>,
    /// The request's estimate, settled with the answer's usage.
    reservation: Reservation,
    /// What was reserved: tokens, or micro-units of cost (`limit_by_cost`).
    reserved: u64,
    budget: Option<Budget>,
    call: Option<u32>,
}

impl RateLimitStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<RateLimitConfig>>) -> RateLimitStage {
        RateLimitStage {
            rules,
            active: None,
            counter: None,
            reservation: Reservation::default(),
            reserved: 0,
            budget: None,
            call: None,
        }
    }

    fn config(&self) -> Option<&RateLimitConfig> {
        self.active.as_deref()
    }

    fn rejection(&self, host: &dyn Host, config: &RateLimitConfig, budget: &Budget) -> ErrorReply {
        let name = format!("ai_token_ratelimit.rejected.rule=.={};.;", config.rule_name);
        if let Ok(id) = host.define_metric(MetricType::Counter, &name) {
            let _ = host.increment_metric(id, 1);
        }
        rejected(config)
            .with_header("x-ratelimit-limit-tokens", budget.limit.to_string())
            .with_header("x-ratelimit-remaining-tokens", budget.remaining.to_string())
            .with_header("x-ratelimit-reset-tokens", format!("{}s", budget.reset))
            .with_header("retry-after", budget.reset.to_string())
            .with_header("x-tokenratelimit-reset", budget.reset.to_string())
    }

    /// Charges the difference between the real usage and the reservation.
    fn reconcile(&mut self, host: &dyn Host, ex: &mut Exchange) {
        // ai-cache answered (a local reply this stage never saw as a response): no provider
        // tokens were used, the reservation is given back.
        if !self.reservation.is_metered()
            && !self.reservation.is_settled()
            && ex.fact(host, sdk::facts::CACHE_STATUS).as_deref() == Some(&b"hit"[..])
        {
            self.reservation.mark_settled();
            self.settle(host, ex, 0);
            return;
        }
        let Some(used) = self.reservation.settle(ex) else {
            return;
        };
        let actual = self.amount(ex, &used);
        self.settle(host, ex, actual);
    }

    /// What `usage` counts against the budget: tokens, or its cost (`limit_by_cost`; a model
    /// without a price counts what was reserved).
    fn amount(&self, ex: &Exchange, usage: &sdk::usage::Usage) -> u64 {
        let prices = self
            .config()
            .filter(|c| c.limit_by_cost)
            .map(|c| &c.price_table);
        self.reservation
            .amount(ex, usage, prices)
            .unwrap_or(self.reserved)
    }

    fn settle(&mut self, host: &dyn Host, ex: &mut Exchange, actual: u64) {
        let (Some(config), Some(counter)) = (self.active.as_deref(), self.counter.clone()) else {
            return;
        };
        let delta = i64::try_from(actual).unwrap_or(i64::MAX)
            - i64::try_from(self.reserved).unwrap_or(i64::MAX);
        match config.backend {
            Backend::Local => {
                let start = self.budget.map_or(0, |b| b.window_start);
                local::adjust(
                    host,
                    &counter.id,
                    counter.window,
                    start,
                    now(host, ex),
                    delta,
                );
            }
            // The service API cannot give tokens back: only what exceeds the reservation is charged.
            Backend::Rls if delta > 0 => {
                if let Some(rls) = &config.rls {
                    let msg = rls::request(
                        &rls.domain,
                        &counter.id,
                        counter.limit,
                        counter.window,
                        delta.unsigned_abs(),
                    );
                    let timeout = Duration::from_millis(rls.timeout);
                    let _ = host.dispatch_grpc_call(
                        &rls.cluster,
                        rls::SERVICE,
                        rls::METHOD,
                        &msg,
                        timeout,
                    );
                }
            }
            Backend::Rls => {}
        }
    }
}

fn now(host: &dyn Host, ex: &mut Exchange) -> u64 {
    seconds(ex.now(host))
}

fn seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The value a rule item limits on, read from the request.
fn source_value(
    host: &dyn Host,
    ex: &Exchange,
    source: &Source,
    consumer_header: &str,
) -> Option<String> {
    match source {
        Source::Header(h) => ex.request_header(host, h),
        Source::Param(p) => query_param(&ex.path, p),
        Source::Consumer => ex.request_header(host, consumer_header),
        Source::Cookie(c) => ex
            .request_header(host, "cookie")
            .and_then(|h| cookie(&h, c)),
        Source::IpHeader(h) => ex
            .request_header(host, h)
            .and_then(|v| v.split(',').next().map(|s| s.trim().to_string())),
        Source::RemoteAddr => host.property(&["source", "address"]).map(|a| {
            let a = String::from_utf8_lossy(&a).into_owned();
            match a.rsplit_once(':') {
                Some((ip, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                    ip.trim_start_matches('[').trim_end_matches(']').to_string()
                }
                _ => a,
            }
        }),
        Source::Global => Some(String::new()),
    }
    .filter(|v| !v.is_empty() || *source == Source::Global)
}

impl Stage for RateLimitStage {
    fn name(&self) -> &'static str {
        "ai-token-ratelimit"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().is_llm() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        for (i, item) in config.compiled.iter().enumerate() {
            let Some(value) = source_value(host, ex, &item.source, &config.consumer_header) else {
                continue;
            };
            let Some((j, key)) = item
                .keys
                .iter()
                .enumerate()
                .find(|(_, k)| k.matcher.matches(&value))
            else {
                continue;
            };
            let mut counter_id = format!("{}/{i}/{j}", config.rule_name);
            if item.per_value {
                counter_id.push('/');
                counter_id.push_str(&value);
            }
            self.counter = Some(Counter {
                id: counter_id,
                limit: key.limit,
                window: key.window,
            });
            self.active = Some(config.clone());
            return Ok(Need::Body);
        }
        Ok(Need::Nothing)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let (Some(config), Some(counter), true) = (
            self.active.as_deref(),
            self.counter.clone(),
            ex.body.is_some(),
        ) else {
            return Ok(BodyOutcome::UNCHANGED.waiting(self.call.is_some()));
        };
        self.reservation = Reservation::estimate(ex, config.default_max_tokens);
        let prices = config.limit_by_cost.then_some(&config.price_table);
        let Some(reserved) = self
            .reservation
            .amount(ex, &self.reservation.usage(), prices)
        else {
            self.counter = None;
            return Err(ErrorReply::new(
                403,
                "invalid_request_error",
                Some("model_not_priced"),
                format!(
                    "the rate limit counts cost and model `{}` has no price",
                    self.reservation.model
                ),
            ));
        };
        self.reserved = reserved;
        match config.backend {
            Backend::Local => match local::reserve(
                host,
                &counter.id,
                counter.limit,
                counter.window,
                seconds(ex.started(host)),
                reserved,
            ) {
                Ok(budget) => self.budget = Some(budget),
                Err(budget) => {
                    self.counter = None;
                    return Err(self.rejection(host, config, &budget));
                }
            },
            Backend::Rls => {
                let Some(rls) = &config.rls else {
                    return Ok(BodyOutcome::UNCHANGED.waiting(self.call.is_some()));
                };
                let msg = rls::request(
                    &rls.domain,
                    &counter.id,
                    counter.limit,
                    counter.window,
                    reserved,
                );
                let timeout = Duration::from_millis(rls.timeout);
                match host.dispatch_grpc_call(
                    &rls.cluster,
                    rls::SERVICE,
                    rls::METHOD,
                    &msg,
                    timeout,
                ) {
                    Ok(call) => self.call = Some(call),
                    Err(e) => {
                        host.log(
                            LogLevel::Warn,
                            &format!("[ai-token-ratelimit] rate limit service not called: {e:?}"),
                        );
                        if rls.failure_mode_deny {
                            return Err(ErrorReply::new(
                                503,
                                "server_error",
                                Some("rate_limit_service_unavailable"),
                                "the rate limit service is unavailable",
                            ));
                        }
                    }
                }
            }
        }
        Ok(BodyOutcome::UNCHANGED.waiting(self.call.is_some()))
    }

    fn on_grpc_call_response(
        &mut self,
        host: &dyn Host,
        _ex: &mut Exchange,
        token: u32,
        status: u32,
        message: &[u8],
    ) -> CallResult {
        if self.call != Some(token) {
            return CallResult::NotMine;
        }
        self.call = None;
        let (Some(config), Some(counter)) = (self.active.as_deref(), self.counter.clone()) else {
            return CallResult::ResumeRequest { changed: false };
        };
        let deny_on_failure = config.rls.as_ref().is_some_and(|r| r.failure_mode_deny);
        match (status, rls::answer(message)) {
            (0, Some((over, remaining, reset))) => {
                let budget = Budget {
                    limit: counter.limit,
                    remaining: remaining.unwrap_or(0),
                    reset: reset.unwrap_or(counter.window),
                    window_start: 0,
                };
                if over {
                    self.counter = None;
                    return CallResult::Reply(self.rejection(host, config, &budget));
                }
                self.budget = Some(budget);
                CallResult::ResumeRequest { changed: false }
            }
            _ => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "[ai-token-ratelimit] rate limit service failed (grpc status {status})"
                    ),
                );
                self.counter = None;
                if deny_on_failure {
                    CallResult::Reply(ErrorReply::new(
                        503,
                        "server_error",
                        Some("rate_limit_service_unavailable"),
                        "the rate limit service is unavailable",
                    ))
                } else {
                    CallResult::ResumeRequest { changed: false }
                }
            }
        }
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        if self.counter.is_none() || self.config().is_none() {
            return BodyMode::Untouched;
        }
        if let Some(b) = self.budget {
            let limit = b.limit.to_string();
            let remaining = b.remaining.to_string();
            let reset = format!("{}s", b.reset);
            ex.set_response_header(host, "x-ratelimit-limit-tokens", Some(&limit));
            ex.set_response_header(host, "x-ratelimit-remaining-tokens", Some(&remaining));
            ex.set_response_header(host, "x-ratelimit-reset-tokens", Some(&reset));
        }
        let stream = ex
            .response_header(host, "content-type")
            .is_some_and(|t| t.contains("text/event-stream"));
        let status = ex.response_status(host);
        self.reservation.start(ex, stream, status);
        BodyMode::Stream
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        chunk: Vec<u8>,
        end: bool,
    ) -> ChunkOut {
        if let Some(used) = self.reservation.feed(ex, &chunk, end) {
            let actual = self.amount(ex, &used);
            self.settle(host, ex, actual);
        }
        ChunkOut::pass(chunk)
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        // An answer cut short (client gone) is still charged for what was seen.
        self.reconcile(host, ex);
    }
}

/// The refusal's body: a JSON object in `rejected_msg` is sent as is (Higress sends the message
/// raw); text becomes the message of an error in the client's shape.
fn rejected(config: &RateLimitConfig) -> ErrorReply {
    let msg = &config.rejected_msg;
    let is_object = msg.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(msg).is_ok();
    if is_object {
        ErrorReply::raw(config.rejected_code, "application/json", msg.clone())
    } else {
        ErrorReply::new(
            config.rejected_code,
            "tokens",
            Some("rate_limit_exceeded"),
            msg.clone(),
        )
    }
}

#[cfg(test)]
mod rejected_tests {
    use super::*;

    #[test]
    fn rejected_msg_is_text_or_a_whole_json_body() {
        let mut config = RateLimitConfig::default();
        let reply = rejected(&config);
        assert_eq!(
            (reply.status, reply.message.as_str()),
            (429, "Too many requests")
        );
        assert!(reply.raw.is_none());
        config.rejected_msg = r#"{"code":-1,"msg":"Too many requests"}"#.into();
        let reply = rejected(&config);
        let (content_type, body) = *reply.raw.unwrap();
        assert_eq!(content_type, "application/json");
        assert_eq!(body, config.rejected_msg);
    }
}
