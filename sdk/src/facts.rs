//! Filter-state keys the plugins write (Envoy prefixes them with `wasm.`; access logs read them
//! as `%FILTER_STATE(wasm.<key>:PLAIN)%`). One place, so a writer and its readers agree. Only
//! ai-statistics' `attributes` write keys of the user's choosing. Stages in one filter hand
//! facts over in the VM (`Exchange::set_fact`), and write them to filter state as well.

/// The provider type ai-proxy chose (ai-statistics labels metrics with it).
pub const PROVIDER: &str = "ai_gateway.provider";
/// Request headers ai-proxy decided from the body, for the `ai-proxy-headers` filter
/// (JSON `[[name, value|null], …]`).
pub const UPSTREAM_HEADERS: &str = "ai_gateway.upstream_headers";
/// ai-statistics' access-log object.
pub const AI_LOG: &str = "ai_log";
/// Moderation verdict: `allowed` or `blocked`.
pub const GUARDRAIL_RESULT: &str = "gen_ai.guardrail.result.type";
/// Which way the checked text travelled: `request` or `response`.
pub const GUARDRAIL_DIRECTION: &str = "gen_ai.guardrail.direction";
/// What decided: `local`, `service` or `failure`.
pub const GUARDRAIL_SOURCE: &str = "gen_ai.guardrail.source";
/// What matched, or the service's categories.
pub const GUARDRAIL_CATEGORIES: &str = "gen_ai.guardrail.categories";
/// What ai-cache did with the request: `hit`, `miss`, `skip` or `bypass` (ai-statistics puts
/// it into `ai_log` as `cache_status`).
pub const CACHE_STATUS: &str = "ai_gateway.cache_status";

// ai-security-guard's results under Higress's names, as filter state and as `ai_log` fields.

/// The last check's outcome: `request pass`, `request mask`, `reqeust deny` (Higress's
/// spelling), `response error`, ….
pub const SAFECHECK_STATUS: &str = "safecheck_status";
/// Milliseconds the content-security service took on the prompt.
pub const SAFECHECK_REQUEST_RT: &str = "safecheck_request_rt";
/// Milliseconds the content-security service took on the answer.
pub const SAFECHECK_RESPONSE_RT: &str = "safecheck_response_rt";
/// The risk label of a refusal.
pub const SAFECHECK_RISK_LABEL: &str = "safecheck_riskLabel";
/// The risk words of a refusal.
pub const SAFECHECK_RISK_WORDS: &str = "safecheck_riskWords";
/// The service's request id of the last check.
pub const SAFECHECK_REQUEST_ID: &str = "safecheck_request_id";
/// The service's request ids of every check so far (a JSON array).
pub const SAFECHECK_REQUEST_IDS: &str = "safecheck_request_ids";
