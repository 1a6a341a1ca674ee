//! Coze (Higress type `coze`): nothing to translate.
//!
//! Higress only points the request at [`COZE_HOST`] with `Authorization: Bearer <key>`: the path
//! and body go through untouched, and its documentation uses the type with `protocol: original`,
//! i.e. clients speak Coze's own API (`/v3/chat`, `/v1/workflow/run`, …). Coze offers no
//! OpenAI-compatible chat endpoint, and its chat API needs a `bot_id` plus polling for
//! non-streamed answers, so an OpenAI chat request cannot be mapped onto it statelessly. The
//! provider is therefore an authenticated pass-through of the client's path and body.

/// Host Higress sends Coze requests to.
pub const COZE_HOST: &str = "api.coze.cn";
