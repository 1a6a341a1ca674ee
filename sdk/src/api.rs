//! Which LLM API a request is for, decided from its method and path.

/// The API a request targets; decides which wire format the body has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// OpenAI `POST …/chat/completions` (also Azure-style deployment paths).
    ChatCompletions,
    /// OpenAI legacy `POST …/completions`.
    Completions,
    /// OpenAI `POST …/embeddings`.
    Embeddings,
    /// OpenAI `GET …/models`.
    Models,
    /// OpenAI `POST …/images/generations` (JSON).
    ImageGenerations,
    /// OpenAI `POST …/images/edits` (multipart, or JSON with image URLs).
    ImageEdits,
    /// OpenAI `POST …/images/variations` (multipart, or JSON with image URLs).
    ImageVariations,
    /// Anthropic `POST …/v1/messages`.
    AnthropicMessages,
    /// OpenAI Responses API `POST …/responses`.
    Responses,
    /// Anything else: not an LLM call the plugins understand.
    Other,
}

impl ApiKind {
    /// The OpenTelemetry GenAI `gen_ai.operation.name` of a call to this API.
    pub fn operation_name(self) -> &'static str {
        match self {
            ApiKind::Embeddings => "embeddings",
            ApiKind::Completions => "text_completion",
            _ if self.is_image() => "image_generation",
            _ => "chat",
        }
    }

    /// Whether it is one of the images APIs (generations, edits, variations).
    pub fn is_image(self) -> bool {
        matches!(
            self,
            ApiKind::ImageGenerations | ApiKind::ImageEdits | ApiKind::ImageVariations
        )
    }
}

/// The protocol the client speaks; decides the shape of error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientProtocol {
    /// OpenAI-style JSON errors.
    #[default]
    OpenAi,
    /// Anthropic-style JSON errors.
    Anthropic,
    /// The OpenAI Responses API: OpenAI-style errors, answers as `response` objects and its
    /// typed stream events.
    Responses,
}

impl ApiKind {
    /// Classifies a request by method and path (query string ignored).
    pub fn detect(method: &str, path: &str) -> ApiKind {
        let path = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let post = method.eq_ignore_ascii_case("POST");
        if post && path.ends_with("/chat/completions") {
            ApiKind::ChatCompletions
        } else if post && path.ends_with("/v1/messages") {
            ApiKind::AnthropicMessages
        } else if post && path.ends_with("/completions") {
            ApiKind::Completions
        } else if post && path.ends_with("/embeddings") {
            ApiKind::Embeddings
        } else if post && path.ends_with("/responses") {
            ApiKind::Responses
        } else if post && path.ends_with("/images/generations") {
            ApiKind::ImageGenerations
        } else if post && path.ends_with("/images/edits") {
            ApiKind::ImageEdits
        } else if post && path.ends_with("/images/variations") {
            ApiKind::ImageVariations
        } else if method.eq_ignore_ascii_case("GET") && path.ends_with("/models") {
            ApiKind::Models
        } else {
            ApiKind::Other
        }
    }

    /// The protocol of the client that sends this kind of request.
    pub fn client_protocol(self) -> ClientProtocol {
        match self {
            ApiKind::AnthropicMessages => ClientProtocol::Anthropic,
            ApiKind::Responses => ClientProtocol::Responses,
            _ => ClientProtocol::OpenAi,
        }
    }

    /// Whether the request is an LLM call the observing plugins meter (usage, estimates).
    pub fn is_llm(self) -> bool {
        matches!(
            self,
            ApiKind::ChatCompletions
                | ApiKind::AnthropicMessages
                | ApiKind::Completions
                | ApiKind::Embeddings
                | ApiKind::Responses
        )
    }

    /// Whether the request carries a JSON body the plugins read (every POST API they know but
    /// image edits and variations, mostly multipart forms).
    pub fn has_json_body(self) -> bool {
        !matches!(
            self,
            ApiKind::Models | ApiKind::Other | ApiKind::ImageEdits | ApiKind::ImageVariations
        )
    }

    /// Whether the request carries a chat conversation (`messages`).
    pub fn is_chat(self) -> bool {
        matches!(self, ApiKind::ChatCompletions | ApiKind::AnthropicMessages)
    }

    /// Whether the request is a turn of a conversation with a model: chat, Messages or the
    /// Responses API (whose conversation is its `input` items).
    pub fn is_conversation(self) -> bool {
        self.is_chat() || self == ApiKind::Responses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds() {
        let cases = [
            ("POST", "/v1/chat/completions", ApiKind::ChatCompletions),
            ("POST", "/v1/chat/completions?x=1", ApiKind::ChatCompletions),
            (
                "POST",
                "/openai/deployments/gpt/chat/completions",
                ApiKind::ChatCompletions,
            ),
            ("POST", "/v1/messages", ApiKind::AnthropicMessages),
            ("POST", "/v1/completions", ApiKind::Completions),
            ("POST", "/v1/embeddings", ApiKind::Embeddings),
            ("POST", "/v1/images/generations", ApiKind::ImageGenerations),
            ("POST", "/v1/images/edits", ApiKind::ImageEdits),
            ("POST", "/v1/images/variations", ApiKind::ImageVariations),
            ("POST", "/v1/responses", ApiKind::Responses),
            (
                "POST",
                "/openai/v1/responses?api-version=preview",
                ApiKind::Responses,
            ),
            ("POST", "/v1/responses/resp_1/cancel", ApiKind::Other),
            ("GET", "/v1/responses/resp_1", ApiKind::Other),
            ("GET", "/v1/models", ApiKind::Models),
            ("GET", "/v1/chat/completions", ApiKind::Other),
            ("POST", "/healthz", ApiKind::Other),
        ];
        for (method, path, want) in cases {
            assert_eq!(ApiKind::detect(method, path), want, "{method} {path}");
        }
        assert_eq!(
            ApiKind::AnthropicMessages.client_protocol(),
            ClientProtocol::Anthropic
        );
        assert_eq!(
            ApiKind::ChatCompletions.client_protocol(),
            ClientProtocol::OpenAi
        );
    }
}
