//! The quota core: answer the admin API, reserve a request's estimate from its consumer's
//! balance before it leaves, and settle with the real usage when the answer ends.

use crate::config::QuotaConfig;
use crate::store;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::{Host, LogLevel};
use sdk::meter::Reservation;
use sdk::pipeline::{BodyMode, BodyOutcome, CallResult, ChunkOut, Exchange, Need, Stage};
use sdk::usage::Usage;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

/// An admin API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `GET <path><admin_path>?consumer=c`.
    Query,
    /// `POST <path><admin_path>/refresh` with `consumer=c&quota=n`.
    Refresh,
    /// `POST <path><admin_path>/delta` with `consumer=c&value=n`.
    Delta,
}

/// The admin call a path names, if any.
pub fn admin_call(path: &str, admin_path: &str) -> Option<Admin> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_suffix(admin_path).map(|_| Admin::Query);
    rest.or_else(|| {
        let base = path.strip_suffix("/refresh").map(|p| (p, Admin::Refresh));
        let (p, call) = base.or_else(|| path.strip_suffix("/delta").map(|p| (p, Admin::Delta)))?;
        p.ends_with(admin_path).then_some(call)
    })
}

/// What a store callout was for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// Took `amount`; the answer is the balance after it.
    Reserve(i64),
    /// Gave back a reservation that did not fit; the balance before it.
    Refund(i64),
    /// Charged the difference at the end of the answer.
    Settle,
    /// An admin call for a consumer.
    Admin(Admin, String, i64),
}

/// Per-request state (lives in the HTTP context).
pub struct QuotaStage {
    rules: Rc<RuleSet<QuotaConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<QuotaConfig>>,
    consumer: Option<String>,
    admin: Option<Admin>,
    reservation: Reservation,
    /// Units taken from the balance (a reservation stands while `drawing`).
    reserved: i64,
    drawing: bool,
    settled: bool,
    call: Option<(u32, Call)>,
}

impl QuotaStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<QuotaConfig>>) -> QuotaStage {
        QuotaStage {
            rules,
            active: None,
            consumer: None,
            admin: None,
            reservation: Reservation::default(),
            reserved: 0,
            drawing: false,
            settled: false,
            call: None,
        }
    }

    fn config(&self) -> Option<&QuotaConfig> {
        self.active.as_deref()
    }

    fn key(&self, consumer: &str) -> String {
        let prefix = self.config().map_or("", |c| c.redis_key_prefix.as_str());
        format!("{prefix}{consumer}")
    }

    /// Sends a webdis command; the stage waits for its answer.
    fn webdis(
        &mut self,
        host: &dyn Host,
        command: &str,
        key: &str,
        arg: Option<i64>,
        call: Call,
    ) -> bool {
        let Some(redis) = self.config().and_then(|c| c.redis.clone()) else {
            return false;
        };
        let path = store::webdis_path(redis.database, command, key, arg);
        let authority = match redis.service_port {
            Some(port) => format!("{}:{port}", redis.service_name),
            None => redis.service_name.clone(),
        };
        let auth = match (&redis.username, &redis.password) {
            (Some(u), Some(p)) => Some(format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))),
            _ => None,
        };
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", authority.as_str()),
        ];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let timeout = Duration::from_millis(redis.timeout);
        match host.dispatch_http_call(&redis.service_name, &headers, None, timeout) {
            Ok(token) => {
                self.call = Some((token, call));
                true
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("[ai-quota] quota store not called: {e:?}"),
                );
                false
            }
        }
    }

    /// The price table when balances count cost.
    fn prices(&self) -> Option<&sdk::cost::PriceTable> {
        self.config()
            .filter(|c| c.limit_by_cost)
            .map(|c| &c.price_table)
    }

    /// What the answer drew (a model without a price draws what was reserved).
    fn used(&self, ex: &Exchange, usage: &Usage) -> i64 {
        self.reservation
            .amount(ex, usage, self.prices())
            .map_or(self.reserved, units)
    }

    fn refusal(&self, balance: i64) -> ErrorReply {
        let (code, msg) = self.config().map_or((429, String::new()), |c| {
            (c.rejected_code, c.rejected_msg.clone())
        });
        ErrorReply::new(code, "insufficient_quota", Some("insufficient_quota"), msg)
            .with_header("x-quota-remaining", balance.max(0).to_string())
    }

    /// The store failed: the request goes on undrawn (fail open) or gets 503.
    fn store_down(&mut self, host: &dyn Host, what: &str) -> Result<(), ErrorReply> {
        host.log(
            LogLevel::Warn,
            &format!("[ai-quota] quota store failed: {what}"),
        );
        self.drawing = false;
        if self.config().is_some_and(|c| c.fail_open) {
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    fn admin_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(admin) = self.admin else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let params = match admin {
            Admin::Query => query(&ex.path),
            Admin::Refresh | Admin::Delta => form(ex),
        };
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let consumer = get("consumer").filter(|c| !c.is_empty()).ok_or_else(|| {
            ErrorReply::bad_request("invalid_parameter", "parameter `consumer` is required")
        })?;
        let number = |name: &str| -> Result<i64, ErrorReply> {
            get(name).and_then(|v| v.parse().ok()).ok_or_else(|| {
                ErrorReply::bad_request(
                    "invalid_parameter",
                    format!("parameter `{name}` must be an integer"),
                )
            })
        };
        let (command, arg) = match admin {
            Admin::Query => ("GET", None),
            Admin::Refresh => ("SET", Some(number("quota")?)),
            Admin::Delta => ("INCRBY", Some(number("value")?)),
        };
        let consumer = consumer.to_string();
        let key = self.key(&consumer);
        if self.config().is_some_and(|c| c.redis.is_some()) {
            let call = Call::Admin(admin, consumer, arg.unwrap_or(0));
            if self.webdis(host, command, &key, arg, call) {
                return Ok(BodyOutcome::UNCHANGED.waiting(true));
            }
            return Err(unavailable());
        }
        let balance = match (admin, arg) {
            (Admin::Refresh, Some(n)) => {
                store::local_set(host, &key, n);
                n
            }
            (Admin::Delta, Some(n)) => store::local_add(host, &key, n),
            _ => store::local_balance(host, &key),
        };
        Err(admin_answer(admin, &consumer, balance))
    }

    /// Charges the difference between the real amount and the reservation; true when a store
    /// callout is out (the answer's end waits for it).
    fn settle(&mut self, host: &dyn Host, actual: i64) -> bool {
        if !self.drawing || self.settled {
            return false;
        }
        self.settled = true;
        let Some(consumer) = self.consumer.clone() else {
            return false;
        };
        let key = self.key(&consumer);
        let delta = actual.saturating_sub(self.reserved);
        if delta == 0 {
            return false;
        }
        if self.config().is_some_and(|c| c.redis.is_some()) {
            return self.webdis(host, "INCRBY", &key, Some(-delta), Call::Settle);
        }
        store::local_add(host, &key, -delta);
        false
    }
}

fn unavailable() -> ErrorReply {
    ErrorReply::new(
        503,
        "server_error",
        Some("quota_store_unavailable"),
        "the quota store is unavailable",
    )
}

/// The admin API's answers, as Higress gives them.
fn admin_answer(admin: Admin, consumer: &str, balance: i64) -> ErrorReply {
    match admin {
        Admin::Query => ErrorReply::raw(
            200,
            "application/json",
            json!({"quota": balance, "consumer": consumer}).to_string(),
        ),
        Admin::Refresh => ErrorReply::raw(200, "text/plain", "refresh quota successful".into()),
        Admin::Delta => ErrorReply::raw(200, "text/plain", "delta quota successful".into()),
    }
}

fn units(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `application/x-www-form-urlencoded` pairs.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn query(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| pairs(q))
        .unwrap_or_default()
}

/// The admin call's body: a form (as Higress takes it) or a JSON object.
fn form(ex: &Exchange) -> Vec<(String, String)> {
    if let Some(raw) = &ex.unparsed_body {
        return pairs(&String::from_utf8_lossy(raw));
    }
    let Some(Value::Object(map)) = ex.body.as_ref().and_then(|b| b.to_json()) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'+') => out.push(b' '),
            Some(b'%') => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            Some(b) => out.push(*b),
            None => {}
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Stage for QuotaStage {
    fn name(&self) -> &'static str {
        "ai-quota"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        let Some(config) = self.rules.select(|key| ex.match_value(host, key)) else {
            return Ok(Need::Nothing);
        };
        let consumer = ex
            .request_header(host, &config.consumer_header)
            .filter(|c| !c.is_empty());
        if let Some(admin) = admin_call(&ex.path, &config.admin_path) {
            if consumer.as_deref() != Some(config.admin_consumer.as_str()) {
                return Err(ErrorReply::new(
                    403,
                    "permission_error",
                    Some("forbidden"),
                    "Request denied by ai quota check. Unauthorized admin consumer.",
                ));
            }
            let method = if admin == Admin::Query { "GET" } else { "POST" };
            if !ex.method.eq_ignore_ascii_case(method) {
                return Err(ErrorReply::new(
                    405,
                    "invalid_request_error",
                    Some("method_not_allowed"),
                    format!("the quota admin API takes {method} here"),
                ));
            }
            self.active = Some(config.clone());
            self.admin = Some(admin);
            return Ok(Need::Body);
        }
        let path = ex.path.split('?').next().unwrap_or_default();
        if !config
            .enable_path_suffixes
            .iter()
            .any(|s| path.ends_with(s))
        {
            return Ok(Need::Nothing);
        }
        let Some(consumer) = consumer else {
            if config.allow_anonymous {
                return Ok(Need::Nothing);
            }
            return Err(ErrorReply::new(
                401,
                "invalid_request_error",
                Some("unauthenticated"),
                "Request denied by ai quota check. No consumer.",
            ));
        };
        self.active = Some(config.clone());
        self.consumer = Some(consumer);
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        if self.admin.is_some() {
            return self.admin_body(host, ex);
        }
        let (Some(config), Some(consumer)) = (self.config(), self.consumer.clone()) else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let default_output = config.default_max_tokens;
        let fleet = config.redis.is_some();
        self.reservation = Reservation::estimate(ex, default_output);
        let model = self.reservation.model.clone();
        let estimate = self.reservation.usage();
        let amount = self.reservation.amount(ex, &estimate, self.prices());
        let Some(amount) = amount.map(units) else {
            return Err(ErrorReply::new(
                403,
                "invalid_request_error",
                Some("model_not_priced"),
                format!("the quota counts cost and model `{model}` has no price"),
            ));
        };
        let key = self.key(&consumer);
        if fleet {
            if self.webdis(host, "DECRBY", &key, Some(amount), Call::Reserve(amount)) {
                return Ok(BodyOutcome::UNCHANGED.waiting(true));
            }
            self.store_down(host, "not called")?;
            return Ok(BodyOutcome::UNCHANGED);
        }
        match store::local_reserve(host, &key, amount) {
            Ok(_) => {
                self.reserved = amount;
                self.drawing = true;
                Ok(BodyOutcome::UNCHANGED)
            }
            Err(balance) => Err(self.refusal(balance)),
        }
    }

    fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        _ex: &mut Exchange,
        token: u32,
        body_size: usize,
    ) -> CallResult {
        let call = match self.call.take() {
            Some((t, call)) if t == token => call,
            other => {
                self.call = other;
                return CallResult::NotMine;
            }
        };
        let status = host.http_call_response_header(":status");
        let body = host.http_call_response_body(body_size).unwrap_or_default();
        let command = match &call {
            Call::Reserve(_) => "DECRBY",
            Call::Refund(_) | Call::Settle => "INCRBY",
            Call::Admin(Admin::Query, ..) => "GET",
            Call::Admin(Admin::Refresh, ..) => "SET",
            Call::Admin(Admin::Delta, ..) => "INCRBY",
        };
        let value = if status.as_deref() == Some("200") {
            store::webdis_integer(&body, command)
        } else {
            None
        };
        let failure = || {
            format!(
                "{command}: status {}, {}",
                status
                    .as_deref()
                    .unwrap_or("none (timeout or no connection)"),
                String::from_utf8_lossy(&body)
            )
        };
        match call {
            Call::Reserve(amount) => match value {
                Some(after) if store::refused(after.saturating_add(amount), after) => {
                    let key = self
                        .consumer
                        .clone()
                        .map(|c| self.key(&c))
                        .unwrap_or_default();
                    let before = after.saturating_add(amount);
                    if amount != 0
                        && self.webdis(host, "INCRBY", &key, Some(amount), Call::Refund(before))
                    {
                        return CallResult::Wait;
                    }
                    CallResult::Reply(self.refusal(before))
                }
                Some(_) => {
                    self.reserved = amount;
                    self.drawing = true;
                    CallResult::ResumeRequest { changed: false }
                }
                None => match self.store_down(host, &failure()) {
                    Ok(()) => CallResult::ResumeRequest { changed: false },
                    Err(e) => CallResult::Reply(e),
                },
            },
            Call::Refund(before) => CallResult::Reply(self.refusal(before)),
            Call::Settle => {
                if value.is_none() {
                    host.log(
                        LogLevel::Warn,
                        &format!("[ai-quota] settlement not stored: {}", failure()),
                    );
                }
                CallResult::ResumeResponse
            }
            Call::Admin(admin, consumer, arg) => match value {
                Some(n) => {
                    let balance = if admin == Admin::Refresh { arg } else { n };
                    CallResult::Reply(admin_answer(admin, &consumer, balance))
                }
                None => {
                    host.log(
                        LogLevel::Warn,
                        &format!("[ai-quota] quota store failed: {}", failure()),
                    );
                    CallResult::Reply(unavailable())
                }
            },
        }
    }

    fn on_response_headers(&mut self, host: &dyn Host, ex: &mut Exchange) -> BodyMode {
        if !self.drawing {
            return BodyMode::Untouched;
        }
        // Providers do not bill errors: a failed answer is charged only usage it reports.
        let status = ex.response_status(host);
        let stream = ex
            .response_header(host, "content-type")
            .is_some_and(|t| t.contains("text/event-stream"));
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
            // The answer's end waits until the charge is stored.
            let actual = self.used(ex, &used);
            let waits = self.settle(host, actual);
            return ChunkOut::pass(chunk).holding(waits);
        }
        if end && !self.reservation.is_metered() {
            let waits = self.settle(host, 0);
            return ChunkOut::pass(chunk).holding(waits);
        }
        ChunkOut::pass(chunk)
    }

    fn on_log(&mut self, host: &dyn Host, ex: &mut Exchange) {
        // An answer cut short is charged for what was seen; a request that got no answer at all
        // (refused further on, upstream gone) gets its reservation back.
        let used = self.reservation.settle(ex);
        if self.drawing && !self.settled {
            let actual = used.map_or(0, |u| self.used(ex, &u));
            self.settle(host, actual);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths() {
        let q = "/quota";
        assert_eq!(
            admin_call("/v1/chat/completions/quota?consumer=a", q),
            Some(Admin::Query)
        );
        assert_eq!(
            admin_call("/v1/chat/completions/quota/refresh", q),
            Some(Admin::Refresh)
        );
        assert_eq!(
            admin_call("/v1/messages/quota/delta", q),
            Some(Admin::Delta)
        );
        assert_eq!(admin_call("/v1/chat/completions", q), None);
        assert_eq!(admin_call("/v1/refresh", q), None);
    }

    #[test]
    fn forms_and_encodings() {
        assert_eq!(
            pairs("consumer=al%20ice&value=-5&x"),
            [
                ("consumer".to_string(), "al ice".to_string()),
                ("value".to_string(), "-5".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(decode("a+b%2Fc%zz"), "a b/c%zz");
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;
    use sdk::config::RuleMode;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;

    fn pipeline(config: &str) -> Pipeline {
        let rules: RuleSet<QuotaConfig> =
            RuleSet::parse(config.as_bytes(), RuleMode::Independent).unwrap();
        Pipeline::new(vec![Box::new(QuotaStage::new(Rc::new(rules)))])
    }

    fn request(consumer: &str, path: &str, body: &str) -> MockHost {
        let host = MockHost::with_request_headers(&[
            (":method", "POST"),
            (":path", path),
            (":authority", "gw"),
            ("x-mse-consumer", consumer),
        ]);
        *host.request_body.borrow_mut() = body.as_bytes().to_vec();
        host
    }

    fn answer_call(host: &MockHost, p: &mut Pipeline, body: &str) {
        let token = host.callouts.borrow().len() as u32;
        *host.call_response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
        *host.call_response_body.borrow_mut() = body.as_bytes().to_vec();
        p.on_http_call_response(host, token, body.len());
    }

    fn last_path(host: &MockHost) -> String {
        let calls = host.callouts.borrow();
        let call = calls.last().unwrap();
        call.headers
            .iter()
            .find(|(k, _)| k == ":path")
            .unwrap()
            .1
            .clone()
    }

    const CHAT: &str =
        r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    const FLEET: &str =
        r#"{"admin_consumer":"root","redis":{"service_name":"webdis","database":3}}"#;

    #[test]
    fn webdis_reserve_then_settle_holding_the_last_chunk() {
        let mut p = pipeline(FLEET);
        let host = request("alice", "/v1/chat/completions", CHAT);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, CHAT.len(), true);
        // 1 prompt token + 10 allowed.
        assert_eq!(last_path(&host), "/3/DECRBY/chat_quota:alice/11");
        answer_call(&host, &mut p, r#"{"DECRBY":989}"#);
        assert_eq!(host.resumed.borrow().0, 1);
        assert!(host.reply.borrow().is_none());
        *host.response_headers.borrow_mut() =
            vec![("content-type".into(), "application/json".into())];
        p.on_response_headers(&host);
        let body =
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#;
        *host.response_body.borrow_mut() = body.as_bytes().to_vec();
        let held = p.on_response_body(&host, body.len(), true);
        assert_eq!(
            held,
            proxy_wasm::types::Action::Pause,
            "waits for the charge"
        );
        // 5 used, 11 reserved: 6 given back.
        assert_eq!(last_path(&host), "/3/INCRBY/chat_quota:alice/6");
        answer_call(&host, &mut p, r#"{"INCRBY":995}"#);
        assert_eq!(host.resumed.borrow().1, 1);
        p.on_log(&host);
        assert_eq!(host.callouts.borrow().len(), 2, "settled once");
    }

    #[test]
    fn a_failed_answer_gives_the_reservation_back() {
        let mut p = pipeline(FLEET);
        let host = request("alice", "/v1/chat/completions", CHAT);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, CHAT.len(), true);
        answer_call(&host, &mut p, r#"{"DECRBY":989}"#);
        *host.response_headers.borrow_mut() = vec![(":status".into(), "500".into())];
        p.on_response_headers(&host);
        let body = r#"{"error":{"message":"boom"}}"#;
        *host.response_body.borrow_mut() = body.as_bytes().to_vec();
        p.on_response_body(&host, body.len(), true);
        assert_eq!(last_path(&host), "/3/INCRBY/chat_quota:alice/11");
    }

    #[test]
    fn webdis_refusal_gives_the_reservation_back() {
        let mut p = pipeline(FLEET);
        let host = request("alice", "/v1/chat/completions", CHAT);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, CHAT.len(), true);
        answer_call(&host, &mut p, r#"{"DECRBY":-3}"#);
        assert_eq!(last_path(&host), "/3/INCRBY/chat_quota:alice/11");
        assert!(host.reply.borrow().is_none(), "refused once given back");
        answer_call(&host, &mut p, r#"{"INCRBY":8}"#);
        let reply = host.reply.borrow().clone().unwrap();
        assert_eq!(reply.status, 429);
        assert!(reply
            .headers
            .contains(&("x-quota-remaining".into(), "8".into())));
    }

    #[test]
    fn local_admin_and_refusals() {
        let config = r#"{"admin_consumer":"root"}"#;
        let form = "consumer=alice&quota=5";
        let mut p = pipeline(config);
        let host = request("root", "/v1/chat/completions/quota/refresh", form);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, form.len(), true);
        let reply = host.reply.borrow().clone().unwrap();
        assert_eq!(
            (reply.status, reply.body.as_slice()),
            (200, b"refresh quota successful".as_slice())
        );
        assert_eq!(store::local_balance(&host, "chat_quota:alice"), 5);
        // The estimate (11) does not fit in 5 (balances live in the mock's shared data).
        let mut p = pipeline(config);
        let shared = host.shared.borrow().clone();
        let host = request("alice", "/v1/chat/completions", CHAT);
        *host.shared.borrow_mut() = shared;
        p.on_request_headers(&host, false);
        p.on_request_body(&host, CHAT.len(), true);
        assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(429));
        // A non-admin is refused before anything is read.
        let mut p = pipeline(config);
        let host = request("alice", "/v1/chat/completions/quota?consumer=alice", "");
        p.on_request_headers(&host, true);
        assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(403));
    }
}
