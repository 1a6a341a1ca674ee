//! Higress's ai-agent README configs (as JSON) load unchanged and turn into the expected model
//! cluster, tools and tool calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ai_agent::core::{Run, Step};
use ai_agent::AiAgent;
use sdk::shell::Plugin;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn higress_readme_configs_load_and_call_as_documented() {
    let fixtures: Vec<Value> = serde_json::from_str(include_str!("higress_examples.json")).unwrap();
    for f in fixtures {
        let name = f["name"].as_str().unwrap();
        let (set, warnings) = AiAgent::parse_config(f["config"].to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        let config = set
            .global
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no global config"));
        assert_eq!(config.llm_cluster, f["llm_cluster"], "{name}");
        let tools: Vec<&str> = config.tools.iter().map(|t| t.name()).collect();
        assert_eq!(json!(tools), f["tools"], "{name}");

        let body = json!({"model": "qwen", "messages": [{"role": "user", "content": "weather?"}]});
        let mut run = Run::start(config, &body).unwrap().unwrap();
        let request = run.model_request(config, Duration::from_secs(1));
        let sent: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        if let Some(rf) = f.get("response_format") {
            assert_eq!(&sent["response_format"], rf, "{name}");
        }
        let Some(call) = f.get("call") else { continue };
        // The ReAct protocol (promptTemplate): the model names the action in text.
        let text = format!(
            "Thought: look it up\nAction: {}\nAction Input: {}",
            call["tool"].as_str().unwrap(),
            call["arguments"]
        );
        let answer = json!({"choices": [{"message": {"role": "assistant", "content": text}}]});
        let step = run.on_model_answer(config, Some(200), answer.to_string().as_bytes());
        let Step::Tools(calls) = step else {
            panic!("{name}: {step:?}")
        };
        let out = calls[0].plan.as_ref().unwrap();
        assert_eq!(out.cluster, call["cluster"], "{name}");
        let header = |k: &str| {
            out.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header(":authority").as_deref(), call["authority"].as_str());
        assert_eq!(header(":path").as_deref(), call["path"].as_str(), "{name}");
    }
}
