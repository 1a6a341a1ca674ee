//! Higress's ReAct text protocol (`promptTemplate`): the tools are described in a system prompt,
//! the model answers `Action:` / `Action Input:` lines or a `Final Answer:`, tool results go back
//! as `Observation:` messages.

use crate::config::{PromptTemplate, TemplateParts};
use sdk::tools::Tool;
use serde_json::Value;

/// The labels of one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// The question.
    pub question: String,
    /// The model's reasoning.
    pub thought: String,
    /// A tool result.
    pub observation: String,
    /// The reasoning before the final answer.
    pub thought2: String,
}

impl Labels {
    /// The labels `promptTemplate` selects (English unless `language: CH`).
    pub fn from_template(t: &PromptTemplate) -> Labels {
        let ch = t
            .language
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case("CH"));
        let (parts, defaults) = if ch {
            (t.ch_template.as_ref(), ["问题", "思考", "观察", "思考"])
        } else {
            (
                t.en_template.as_ref(),
                ["Question", "Thought", "Observation", "Thought"],
            )
        };
        let none = TemplateParts::default();
        let parts = parts.unwrap_or(&none);
        let pick = |v: &Option<String>, d: &str| {
            v.as_deref()
                .map(|s| s.trim().trim_end_matches(':').trim())
                .filter(|s| !s.is_empty())
                .unwrap_or(d)
                .to_string()
        };
        Labels {
            question: pick(&parts.question, defaults[0]),
            thought: pick(&parts.thought1, defaults[1]),
            observation: pick(&parts.observation, defaults[2]),
            thought2: pick(&parts.thought2, defaults[3]),
        }
    }
}

/// The system prompt describing the tools and the answer format.
pub fn system_prompt(labels: &Labels, tools: &[Tool]) -> String {
    let mut out =
        String::from("Answer the question as well as you can. You can use these tools:\n\n");
    for t in tools {
        out.push_str(&format!(
            "{}: {} Parameters (JSON Schema): {}\n",
            t.name(),
            t.def.description.trim(),
            t.schema
        ));
    }
    let names: Vec<&str> = tools.iter().map(Tool::name).collect();
    out.push_str(&format!(
        "\nUse this format:\n\n{q}: the question to answer\n{t}: what to do next\nAction: the tool to use, one of [{names}]\nAction Input: the tool's arguments as one JSON object\n{o}: the tool's result\n... ({t}/Action/Action Input/{o} can repeat)\n{t2}: I now know the final answer\nFinal Answer: the answer to the question\n\nStop after `Action Input`: the {o} is given to you.",
        q = labels.question,
        t = labels.thought,
        o = labels.observation,
        t2 = labels.thought2,
        names = names.join(", "),
    ));
    out
}

/// What a ReAct answer asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The final answer.
    Final(String),
    /// A tool call: name and argument text.
    Action(String, String),
}

fn after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.rfind(label).map(|i| &text[i + label.len()..])
}

/// Reads a model answer in the ReAct format; text in no known format is the final answer.
pub fn parse(text: &str, labels: &Labels) -> Parsed {
    if let Some(answer) = after(text, "Final Answer:") {
        return Parsed::Final(answer.trim().to_string());
    }
    let Some(action) = after(text, "Action:") else {
        return Parsed::Final(text.trim().to_string());
    };
    let name = action.lines().next().unwrap_or_default().trim();
    let input = after(action, "Action Input:").unwrap_or("{}");
    // The model may go on to invent the observation: it is not the input.
    let input = input
        .split_once(&format!("{}:", labels.observation))
        .map_or(input, |(i, _)| i)
        .trim();
    let input = input
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    Parsed::Action(name.trim_matches('`').to_string(), input.to_string())
}

/// The user message carrying a tool result back.
pub fn observation(labels: &Labels, result: &str) -> Value {
    serde_json::json!({"role": "user", "content": format!("{}: {result}", labels.observation)})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn en() -> Labels {
        Labels::from_template(&PromptTemplate::default())
    }

    #[test]
    fn reads_actions_and_final_answers() {
        let l = en();
        assert_eq!(
            parse(
                "Thought: look it up\nAction: get_weather\nAction Input: {\"city\": \"Paris\"}\nObservation: made up",
                &l
            ),
            Parsed::Action("get_weather".into(), "{\"city\": \"Paris\"}".into())
        );
        assert_eq!(
            parse("Thought: done\nFinal Answer: 21 C in Paris", &l),
            Parsed::Final("21 C in Paris".into())
        );
        assert_eq!(parse("just text", &l), Parsed::Final("just text".into()));
        assert_eq!(
            parse("Action: t\nAction Input: ```json\n{}\n```", &l),
            Parsed::Action("t".into(), "{}".into())
        );
    }

    #[test]
    fn labels_follow_the_language_and_overrides() {
        let t: PromptTemplate =
            serde_json::from_str(r#"{"language": "CH", "chTemplate": {"observation": "结果:"}}"#)
                .unwrap();
        let l = Labels::from_template(&t);
        assert_eq!(l.observation, "结果");
        assert_eq!(l.question, "问题");
        assert_eq!(en().thought, "Thought");
    }
}
