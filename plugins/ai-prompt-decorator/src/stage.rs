//! The decorator core: choose the config, render the added messages, edit the conversation.

use crate::config::{DecoratorConfig, MessageTemplate};
use sdk::api::ApiKind;
use sdk::config::RuleSet;
use sdk::error::ErrorReply;
use sdk::host::Host;
use sdk::llm::{anthropic, openai};
use sdk::pipeline::{BodyOutcome, Exchange, Need, RequestBody, Stage};
use serde_json::{json, Value};
use std::rc::Rc;

/// A message ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rendered {
    role: String,
    text: String,
}

/// Per-request decorator state (lives in the HTTP context).
pub struct DecoratorStage {
    rules: Rc<RuleSet<DecoratorConfig>>,
    /// The config this request's route selected.
    active: Option<Rc<DecoratorConfig>>,
    prepend: Vec<Rendered>,
    append: Vec<Rendered>,
}

impl DecoratorStage {
    /// A stage over the parsed rule set.
    pub fn new(rules: Rc<RuleSet<DecoratorConfig>>) -> DecoratorStage {
        DecoratorStage {
            rules,
            active: None,
            prepend: Vec::new(),
            append: Vec::new(),
        }
    }

    fn config(&self) -> Option<&DecoratorConfig> {
        self.active.as_deref()
    }
}

fn render(host: &dyn Host, ex: &Exchange, list: &[MessageTemplate]) -> Vec<Rendered> {
    let header = |name: &str| ex.request_header(host, name);
    list.iter()
        .map(|m| Rendered {
            role: m.role.clone(),
            text: match &m.template {
                Some(t) => t.render(host, &header),
                None => m.content.clone(),
            },
        })
        .collect()
}

impl Stage for DecoratorStage {
    fn name(&self) -> &'static str {
        "ai-prompt-decorator"
    }

    fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<Need, ErrorReply> {
        if !ex.api().is_conversation() {
            return Ok(Need::Nothing);
        }
        let Some(config) = self
            .rules
            .select(|key| ex.match_value(host, key))
            .filter(|c| !c.is_empty())
        else {
            return Ok(Need::Nothing);
        };
        // Headers are readable now, so placeholders are filled now.
        self.prepend = render(host, ex, &config.prepend);
        self.append = render(host, ex, &config.append);
        self.active = Some(config);
        Ok(Need::Body)
    }

    fn on_request_body(
        &mut self,
        _host: &dyn Host,
        ex: &mut Exchange,
    ) -> Result<BodyOutcome, ErrorReply> {
        let Some(config) = self.config() else {
            return Ok(BodyOutcome::UNCHANGED);
        };
        let responses = ex.api() == ApiKind::Responses;
        match &mut ex.body {
            Some(RequestBody::Chat(chat)) => {
                decorate_openai(chat, config, &self.prepend, &self.append)
            }
            Some(RequestBody::Messages(msgs)) => {
                decorate_anthropic(msgs, config, &self.prepend, &self.append)
            }
            Some(RequestBody::Json(v)) if responses && v.is_object() => {
                decorate_responses(v, config, &self.prepend, &self.append)
            }
            // A chat request it cannot read cannot be decorated: refused, never sent bare.
            _ => {
                return ex
                    .body_error
                    .clone()
                    .map_or(Ok(BodyOutcome::UNCHANGED), Err)
            }
        }
        Ok(BodyOutcome::CHANGED)
    }
}

fn decorate_openai(
    chat: &mut openai::ChatRequest,
    config: &DecoratorConfig,
    prepend: &[Rendered],
    append: &[Rendered],
) {
    for msg in &mut chat.messages {
        if let Some(content) = msg.content.as_mut() {
            rewrite(config, &msg.role, |f| content.map_text(f));
        }
    }
    let to_msg = |r: &Rendered| openai::ChatMessage::text(r.role.clone(), r.text.clone());
    let mut messages: Vec<openai::ChatMessage> = prepend.iter().map(to_msg).collect();
    messages.append(&mut chat.messages);
    messages.extend(append.iter().map(to_msg));
    chat.messages = messages;
}

/// Runs the replace rules that apply to `role` over a message's text (`map_text` visits each
/// piece of text).
fn rewrite(
    config: &DecoratorConfig,
    role: &str,
    map_text: impl FnOnce(&mut dyn FnMut(&str) -> String),
) {
    let rules: Vec<_> = config
        .replace
        .iter()
        .filter(|r| r.applies_to(role))
        .collect();
    if !rules.is_empty() {
        map_text(&mut |t: &str| rules.iter().fold(t.to_string(), |acc, r| r.apply(&acc)));
    }
}

fn is_system(role: &str) -> bool {
    role == "system" || role == "developer"
}

/// Anthropic keeps system text in the top-level `system` field: system decorations go there,
/// the rest become turns.
fn decorate_anthropic(
    req: &mut anthropic::MessagesRequest,
    config: &DecoratorConfig,
    prepend: &[Rendered],
    append: &[Rendered],
) {
    if let Some(system) = req.system.as_mut() {
        rewrite(config, "system", |f| system.map_text(f));
    }
    for msg in &mut req.messages {
        rewrite(config, &msg.role, |f| msg.content.map_text(f));
    }
    let sys_before: Vec<&str> = prepend
        .iter()
        .filter(|r| is_system(&r.role))
        .map(|r| r.text.as_str())
        .collect();
    let sys_after: Vec<&str> = append
        .iter()
        .filter(|r| is_system(&r.role))
        .map(|r| r.text.as_str())
        .collect();
    if !sys_before.is_empty() || !sys_after.is_empty() {
        req.system = Some(merge_system(req.system.take(), &sys_before, &sys_after));
    }
    let to_msg = |r: &Rendered| anthropic::Message {
        role: r.role.clone(),
        content: anthropic::Content::Text(r.text.clone()),
        extra: Default::default(),
    };
    let mut messages: Vec<anthropic::Message> = prepend
        .iter()
        .filter(|r| !is_system(&r.role))
        .map(to_msg)
        .collect();
    messages.append(&mut req.messages);
    messages.extend(append.iter().filter(|r| !is_system(&r.role)).map(to_msg));
    req.messages = messages;
}

/// A Responses API request: replace rules over `instructions` (as `system`) and the text of
/// each message item; added messages become message items around `input` (a string `input` is
/// one user item).
fn decorate_responses(
    req: &mut Value,
    config: &DecoratorConfig,
    prepend: &[Rendered],
    append: &[Rendered],
) {
    let edit = |role: &str, text: &mut String| {
        rewrite(config, role, |f| *text = f(text));
    };
    if let Some(Value::String(instructions)) = req.get_mut("instructions") {
        edit("system", instructions);
    }
    let mut items = match req.get_mut("input").map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(other) => vec![other],
        None => Vec::new(),
    };
    for item in &mut items {
        let role = item
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match item.get_mut("content") {
            Some(Value::String(text)) => edit(&role, text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(Value::String(text)) = part.get_mut("text") {
                        edit(&role, text);
                    }
                }
            }
            _ => {}
        }
    }
    let to_item = |r: &Rendered| json!({"role": r.role, "content": r.text});
    let mut input: Vec<Value> = prepend.iter().map(to_item).collect();
    input.append(&mut items);
    input.extend(append.iter().map(to_item));
    req["input"] = Value::Array(input);
}

fn merge_system(
    existing: Option<anthropic::Content>,
    before: &[&str],
    after: &[&str],
) -> anthropic::Content {
    match existing {
        Some(anthropic::Content::Blocks(blocks)) => {
            let mut out: Vec<anthropic::Block> =
                before.iter().map(|t| anthropic::Block::text(*t)).collect();
            out.extend(blocks);
            out.extend(after.iter().map(|t| anthropic::Block::text(*t)));
            anthropic::Content::Blocks(out)
        }
        Some(anthropic::Content::Text(text)) => {
            let mut parts: Vec<&str> = before.to_vec();
            if !text.is_empty() {
                parts.push(&text);
            }
            parts.extend(after);
            anthropic::Content::Text(parts.join("\n\n"))
        }
        None => {
            let parts: Vec<&str> = before.iter().chain(after).copied().collect();
            anthropic::Content::Text(parts.join("\n\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::config::RuleMode;
    use sdk::host::MockHost;
    use sdk::pipeline::Pipeline;
    use serde_json::{json, Value};

    fn run(config: &str, headers: &[(&str, &str)], body: Value) -> (MockHost, Pipeline) {
        let rules = RuleSet::parse(config.as_bytes(), RuleMode::Independent).unwrap();
        let mut all = headers.to_vec();
        for (k, v) in [
            (":method", "POST"),
            (":authority", "api.example.com"),
            (":path", "/v1/chat/completions"),
        ] {
            if !all.iter().any(|(name, _)| *name == k) {
                all.push((k, v));
            }
        }
        let host = MockHost::with_request_headers(&all);
        host.set_prop("xds.route_name", "chat-route");
        let raw = body.to_string().into_bytes();
        *host.request_body.borrow_mut() = raw.clone();
        let mut p = Pipeline::new(vec![Box::new(DecoratorStage::new(Rc::new(rules)))]);
        p.on_request_headers(&host, false);
        p.on_request_body(&host, raw.len(), true);
        (host, p)
    }

    #[test]
    fn responses_requests_are_decorated() {
        let config = r#"{"prepend": [{"role": "system", "content": "Be kind."}],
            "append": [{"role": "user", "content": "Answer in ${header:x-lang|English}."}],
            "replace": [{"pattern": "secret", "replacement": "[x]"}]}"#;
        let (host, _) = run(
            config,
            &[(":path", "/v1/responses"), ("x-lang", "French")],
            json!({"model": "m", "instructions": "no secret", "input": "my secret"}),
        );
        assert_eq!(
            sent(&host),
            json!({"model": "m", "instructions": "no [x]", "input": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "my [x]"},
                {"role": "user", "content": "Answer in French."}]})
        );
        let (host, _) = run(
            config,
            &[(":path", "/v1/responses")],
            json!({"input": [{"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "a secret"}]},
                {"type": "function_call_output", "call_id": "c", "output": "secret"}]}),
        );
        let input = &sent(&host)["input"];
        assert_eq!(input[1]["content"][0]["text"], "a [x]");
        // Tool payloads are left alone.
        assert_eq!(input[2]["output"], "secret");
        assert_eq!(input[3]["content"], "Answer in English.");
    }

    fn sent(host: &MockHost) -> Value {
        serde_json::from_slice(&host.request_body.borrow()).unwrap()
    }

    const CONF: &str = r#"{
        "prepend": [{"role": "system", "content": "You are helpful. User: ${header:x-user|anon}."}],
        "append": [{"role": "user", "content": "Answer in ${header:x-lang|English}."}]
    }"#;

    #[test]
    fn openai_prepend_append_with_placeholders() {
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.1});
        let (host, _) = run(CONF, &[("x-user", "ann")], body);
        let v = sent(&host);
        assert_eq!(
            v["messages"],
            json!([
                {"role": "system", "content": "You are helpful. User: ann."},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": "Answer in English."}
            ])
        );
        assert_eq!(v["temperature"], 0.1);
    }

    #[test]
    fn anthropic_system_goes_top_level() {
        let body = json!({"model": "claude", "max_tokens": 10, "system": "Base.", "messages": [{"role": "user", "content": "hi"}]});
        let (host, _) = run(CONF, &[(":path", "/v1/messages")], body);
        let v = sent(&host);
        assert_eq!(v["system"], "You are helpful. User: anon.\n\nBase.");
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "hi"}, {"role": "user", "content": "Answer in English."}])
        );
        let body = json!({"model": "c", "max_tokens": 10,
            "system": [{"type": "text", "text": "Base.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]});
        let (host, _) = run(CONF, &[(":path", "/v1/messages")], body);
        assert_eq!(
            sent(&host)["system"],
            json!([{"type": "text", "text": "You are helpful. User: anon."},
                   {"type": "text", "text": "Base.", "cache_control": {"type": "ephemeral"}}])
        );
    }

    #[test]
    fn replace_applies_to_client_messages_only() {
        let conf = r#"{"prepend":[{"role":"system","content":"keep foo"}],
            "replace":[{"pattern":"foo","replacement":"bar","on_role":"user"},
                       {"pattern":"(\\d{4})-(\\d{4})","replacement":"$2-$1","regex":true}]}"#;
        let body = json!({"messages": [
            {"role": "system", "content": "foo 1234-5678"},
            {"role": "user", "content": [{"type": "text", "text": "foo foo"}, {"type": "image_url", "image_url": {"url": "foo"}}]}
        ]});
        let (host, _) = run(conf, &[], body);
        let v = sent(&host);
        assert_eq!(v["messages"][0]["content"], "keep foo");
        assert_eq!(v["messages"][1]["content"], "foo 5678-1234");
        assert_eq!(v["messages"][2]["content"][0]["text"], "bar bar");
        assert_eq!(v["messages"][2]["content"][1]["image_url"]["url"], "foo");
    }

    #[test]
    fn rules_pick_config_per_route_and_domain() {
        let conf = r#"{"prepend":[{"role":"system","content":"global"}],
            "_rules_":[{"_match_route_":["other"],"prepend":[{"role":"system","content":"other"}]},
                       {"_match_domain_":["*.example.com"],"prepend":[{"role":"system","content":"domain"}]}]}"#;
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let (host, _) = run(conf, &[], body.clone());
        assert_eq!(sent(&host)["messages"][0]["content"], "domain");
        let (host, _) = run(conf, &[(":authority", "localhost:10000")], body.clone());
        assert_eq!(sent(&host)["messages"][0]["content"], "global");
        let conf = conf.replace("\"other\"]", "\"chat-route\"]");
        let (host, _) = run(&conf, &[], body);
        assert_eq!(sent(&host)["messages"][0]["content"], "other");
    }

    #[test]
    fn non_chat_requests_and_empty_config_pass_untouched() {
        let (host, p) = run(CONF, &[(":path", "/v1/embeddings")], json!({"input": "x"}));
        assert!(!p.replied());
        assert_eq!(sent(&host), json!({"input": "x"}));
        let (host, p) = run("{}", &[], json!({"no": "messages"}));
        assert!(!p.replied());
        assert_eq!(sent(&host), json!({"no": "messages"}));
    }

    #[test]
    fn missing_messages_is_a_400() {
        let (host, p) = run(CONF, &[], json!({"model": "m"}));
        assert!(p.replied());
        let reply = host.local_reply().unwrap();
        assert_eq!(reply.status, 400);
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("messages"));
    }
}
