//! Reading streamed answers in tests (the suite's and the mock's own).

use serde_json::Value;

/// The `data:` payloads of an SSE body that are JSON (`[DONE]` left out).
pub fn data_json(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// The text of an OpenAI chat stream: every `choices[0].delta.content`, joined.
pub fn chat_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_deltas_of_the_json_events() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a \"}}]}\n\n\
                    data:{\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        let chunks = data_json(body);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chat_text(&chunks), "a b");
    }
}
