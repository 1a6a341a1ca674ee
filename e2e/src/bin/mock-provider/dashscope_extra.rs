//! DashScope's native text embedding and rerank APIs, and its OpenAI-compatible rerank
//! (Model Studio API reference):
//!
//! - `POST /api/v1/services/embeddings/text-embedding/text-embedding`, body
//!   `{model, input: {texts}, parameters?: {dimension, text_type, output_type}}`, answered
//!   `{output: {embeddings: [{text_index, embedding}]}, usage: {total_tokens}, request_id}`.
//! - `POST /api/v1/services/rerank/text-rerank/text-rerank`, body
//!   `{model, input: {query, documents}, parameters?: {top_n, return_documents, instruct}}`,
//!   answered `{output: {results: [{index, relevance_score, document?: {text}}]}, usage, request_id}`.
//! - `POST /compatible-api/v1/reranks`, body `{model, query, documents, top_n?, instruct?,
//!   return_documents?}`, answered `{object: "list", results: [{index, relevance_score,
//!   document?}], model, id, usage: {total_tokens}}`.
//!
//! Fields DashScope does not define are refused (400 `InvalidParameter`), so an OpenAI field
//! leaking through a translation fails loudly. Word counts stand in for tokens. A document's
//! score is the share of the query's words it contains, ties by index; results best first.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::control::RequestCtx;
use crate::dashscope::{check_auth, error};
use crate::reply::{self, count_words};

/// Native text embedding.
pub const EMBEDDING_PATH: &str = "/api/v1/services/embeddings/text-embedding/text-embedding";
/// Native text rerank.
pub const RERANK_PATH: &str = "/api/v1/services/rerank/text-rerank/text-rerank";
/// OpenAI-compatible rerank.
pub const COMPATIBLE_RERANK_PATH: &str = "/compatible-api/v1/reranks";
/// Dimensions of an embedding when `parameters.dimension` is not given.
const DEFAULT_DIMENSION: u64 = 8;

/// The routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(EMBEDDING_PATH, post(embedding))
        .route(RERANK_PATH, post(rerank))
        .route(COMPATIBLE_RERANK_PATH, post(compatible_rerank))
}

fn only(value: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{at} must be a JSON object"))?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("Unknown field {at}.{k}")),
        None => Ok(()),
    }
}

fn strings(value: Option<&Value>, at: &str) -> Result<Vec<String>, String> {
    let list = value
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| format!("{at} must be a non-empty array of strings"))?;
    list.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{at} must be a non-empty array of strings"))
}

/// The embedding answer body for a request.
pub fn embedding_body(req: &Value, request_id: &str) -> Result<Value, String> {
    only(req, &["model", "input", "parameters"], "body")?;
    req.get("model")
        .and_then(Value::as_str)
        .ok_or("model is required")?;
    only(
        req.get("input").unwrap_or(&Value::Null),
        &["texts"],
        "input",
    )?;
    let texts = strings(req.pointer("/input/texts"), "input.texts")?;
    let dimension = match req.get("parameters") {
        Some(p) => {
            only(p, &["dimension", "text_type", "output_type"], "parameters")?;
            p.get("dimension").and_then(Value::as_u64)
        }
        None => None,
    }
    .unwrap_or(DEFAULT_DIMENSION);
    let embeddings: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let vector: Vec<f64> = (0..dimension)
                .map(|d| ((i as f64 + 1.0) * (d as f64 + 1.0) + t.len() as f64) / 1000.0)
                .collect();
            json!({"text_index": i, "embedding": vector})
        })
        .collect();
    let tokens: usize = texts.iter().map(|t| count_words(t)).sum();
    Ok(
        json!({"output": {"embeddings": embeddings}, "usage": {"total_tokens": tokens},
        "request_id": request_id}),
    )
}

/// Documents scored against the query, best first, `top_n` of them.
fn ranked(query: &str, docs: &[String], top_n: Option<u64>, with_docs: bool) -> Vec<Value> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let doc = d.to_lowercase();
            let hits = words.iter().filter(|w| doc.contains(w.as_str())).count();
            (i, hits as f64 / words.len().max(1) as f64)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let n = top_n.map_or(scored.len(), |n| (n as usize).min(scored.len()));
    scored
        .into_iter()
        .take(n)
        .map(|(i, score)| {
            let mut r = json!({"index": i, "relevance_score": score});
            if with_docs {
                r["document"] = json!({"text": docs[i]});
            }
            r
        })
        .collect()
}

fn tokens(query: &str, docs: &[String]) -> usize {
    count_words(query) + docs.iter().map(|d| count_words(d)).sum::<usize>()
}

/// The native rerank answer body.
pub fn rerank_body(req: &Value, request_id: &str) -> Result<Value, String> {
    only(req, &["model", "input", "parameters"], "body")?;
    req.get("model")
        .and_then(Value::as_str)
        .ok_or("model is required")?;
    let input = req.get("input").unwrap_or(&Value::Null);
    only(input, &["query", "documents"], "input")?;
    let query = input
        .get("query")
        .and_then(Value::as_str)
        .ok_or("input.query is required")?;
    let docs = strings(input.get("documents"), "input.documents")?;
    let params = req.get("parameters");
    if let Some(p) = params {
        only(p, &["top_n", "return_documents", "instruct"], "parameters")?;
    }
    let top_n = params.and_then(|p| p.get("top_n")).and_then(Value::as_u64);
    let with_docs = params
        .and_then(|p| p.get("return_documents"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(
        json!({"output": {"results": ranked(query, &docs, top_n, with_docs)},
        "usage": {"total_tokens": tokens(query, &docs)}, "request_id": request_id}),
    )
}

/// The OpenAI-compatible rerank answer body.
pub fn compatible_rerank_body(req: &Value, id: &str) -> Result<Value, String> {
    only(
        req,
        &[
            "model",
            "query",
            "documents",
            "top_n",
            "instruct",
            "return_documents",
        ],
        "body",
    )?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model is required")?;
    let query = req
        .get("query")
        .and_then(Value::as_str)
        .ok_or("query is required")?;
    let docs = strings(req.get("documents"), "documents")?;
    let top_n = req.get("top_n").and_then(Value::as_u64);
    let with_docs = req.get("return_documents").and_then(Value::as_bool) == Some(true);
    Ok(
        json!({"object": "list", "results": ranked(query, &docs, top_n, with_docs),
        "model": model, "id": id, "usage": {"total_tokens": tokens(query, &docs)}}),
    )
}

fn answer(
    ctx: &RequestCtx,
    headers: &HeaderMap,
    body: &[u8],
    build: fn(&Value, &str) -> Result<Value, String>,
) -> Response {
    let request_id = format!("mock-dashscope-{}", ctx.id);
    if let Some(resp) = check_auth(headers, &request_id) {
        return resp;
    }
    let out = reply::parse_json(body).and_then(|req| build(&req, &request_id));
    match out {
        Ok(v) => reply::json(StatusCode::OK, v),
        Err(msg) => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            &msg,
            &request_id,
        ),
    }
}

async fn embedding(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&ctx, &headers, &body, embedding_body)
}

async fn rerank(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&ctx, &headers, &body, rerank_body)
}

async fn compatible_rerank(
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&ctx, &headers, &body, compatible_rerank_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_proxy::translate::qwen::{from_qwen_embeddings, to_qwen_embeddings};

    #[test]
    fn embeddings_through_the_plugin_translation() {
        let req =
            to_qwen_embeddings(&json!({"input": ["a b", "c"], "dimensions": 3}), "v3").unwrap();
        let body = embedding_body(&req, "r").unwrap();
        let out = from_qwen_embeddings(body.to_string().as_bytes(), "v3").unwrap();
        assert_eq!(out["data"].as_array().unwrap().len(), 2);
        assert_eq!(out["data"][1]["embedding"].as_array().unwrap().len(), 3);
        assert_eq!(out["usage"]["total_tokens"], 3);
        // An OpenAI body is refused.
        assert!(embedding_body(&json!({"model": "m", "input": "x"}), "r").is_err());
    }

    #[test]
    fn rerank_orders_and_cuts() {
        let req = json!({"model": "gte-rerank-v2", "input": {"query": "red apple",
            "documents": ["a pear", "red apple pie", "red car"]},
            "parameters": {"top_n": 2, "return_documents": true}});
        let out = rerank_body(&req, "r").unwrap();
        let results = out["output"]["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["index"], 1);
        assert_eq!(results[0]["relevance_score"], 1.0);
        assert_eq!(results[1]["document"]["text"], "red car");
        assert_eq!(out["usage"]["total_tokens"], 9);
        let compat = json!({"model": "qwen3-rerank", "query": "red apple",
            "documents": ["a pear", "red apple pie"]});
        let out = compatible_rerank_body(&compat, "r").unwrap();
        assert_eq!(out["results"][0]["index"], 1);
        assert!(out["results"][0].get("document").is_none());
        assert!(compatible_rerank_body(&json!({"model": "m", "input": {}}), "r").is_err());
    }
}
