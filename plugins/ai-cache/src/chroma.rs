//! Chroma's HTTP API v2 (`/api/v2/tenants/{t}/databases/{d}/collections/{id}/…`) and the
//! OpenAI embeddings API: the bodies the plugin sends and what it reads from the answers.
//!
//! An entry is one record: id = the exact key, embedding = the question's (a constant
//! one-dimensional vector in a collection used only for exact entries), document = the answer
//! as JSON, metadata = `{scope, expires}` (Chroma has no TTL: expired entries read as misses
//! and are overwritten by the next store).

use sdk::llm::answer::Answer;
use serde_json::{json, Value};

/// The vector an exact-only collection stores with every entry.
pub const EXACT_EMBEDDING: [f32; 1] = [1.0];

/// `POST {base}/get`: the entry with this id.
pub fn get_body(id: &str) -> String {
    json!({"ids": [id], "include": ["documents", "metadatas"]}).to_string()
}

/// `POST {base}/query`: the nearest `top_k` entries of `scope`.
pub fn query_body(embedding: &[f32], top_k: u32, scope: &str) -> String {
    json!({"query_embeddings": [embedding], "n_results": top_k,
        "where": {"scope": scope}, "include": ["documents", "metadatas", "distances"]})
    .to_string()
}

/// `POST {base}/upsert`: one entry.
pub fn upsert_body(
    id: &str,
    embedding: &[f32],
    answer: &Answer,
    scope: &str,
    expires: u64,
) -> Option<String> {
    let document = serde_json::to_string(answer).ok()?;
    Some(
        json!({"ids": [id], "embeddings": [embedding], "documents": [document],
            "metadatas": [{"scope": scope, "expires": expires}]})
        .to_string(),
    )
}

fn live_answer(document: &Value, metadata: &Value, now: u64) -> Option<Answer> {
    let expires = metadata.get("expires").and_then(Value::as_u64).unwrap_or(0);
    if expires != 0 && expires <= now {
        return None;
    }
    serde_json::from_str(document.as_str()?).ok()
}

/// The answer of a `get` reply, if the entry exists and has not expired.
pub fn read_get(body: &[u8], now: u64) -> Result<Option<Answer>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let docs = v
        .get("documents")
        .and_then(Value::as_array)
        .ok_or("no documents")?;
    let metas = v.get("metadatas").and_then(Value::as_array);
    Ok(docs.first().and_then(|d| {
        let meta = metas.and_then(|m| m.first()).unwrap_or(&Value::Null);
        live_answer(d, meta, now)
    }))
}

/// What a `query` found: the nearest live answer close enough, with its distance, and the
/// nearest distance seen (for logs).
pub type Nearest = (Option<(Answer, f64)>, Option<f64>);

/// Reads a `query` reply; `accepts` says whether a distance is close enough.
pub fn read_query(body: &[u8], now: u64, accepts: impl Fn(f64) -> bool) -> Result<Nearest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let first = |k: &str| {
        v.get(k)
            .and_then(|x| x.get(0))
            .and_then(Value::as_array)
            .cloned()
    };
    let docs = first("documents").ok_or("no documents")?;
    let dists = first("distances").ok_or("no distances")?;
    let metas = first("metadatas").unwrap_or_default();
    let nearest = dists.first().and_then(Value::as_f64);
    for (i, (doc, dist)) in docs.iter().zip(&dists).enumerate() {
        let Some(d) = dist.as_f64() else { continue };
        if !accepts(d) {
            continue;
        }
        if let Some(a) = live_answer(doc, metas.get(i).unwrap_or(&Value::Null), now) {
            return Ok((Some((a, d)), nearest));
        }
    }
    Ok((None, nearest))
}

/// The body of an OpenAI embeddings request.
pub fn embedding_body(model: &str, text: &str) -> String {
    json!({"model": model, "input": text}).to_string()
}

/// The first vector of an OpenAI embeddings answer.
pub fn read_embedding(body: &[u8]) -> Result<Vec<f32>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let vector = v
        .pointer("/data/0/embedding")
        .and_then(Value::as_array)
        .ok_or("no data[0].embedding")?;
    let out: Vec<f32> = vector
        .iter()
        .filter_map(Value::as_f64)
        .map(|x| x as f32)
        .collect();
    if out.is_empty() || out.len() != vector.len() {
        return Err("embedding is not a list of numbers".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        Answer {
            model: "m".into(),
            text: "t".into(),
            finish_reason: Some("stop".into()),
            ..Answer::default()
        }
    }

    #[test]
    fn replies_are_read_with_expiry_and_threshold() {
        let doc = serde_json::to_string(&answer()).unwrap();
        let get = json!({"ids": ["k"], "documents": [doc], "metadatas": [{"scope": "s", "expires": 100}]});
        let bytes = get.to_string().into_bytes();
        assert_eq!(read_get(&bytes, 99).unwrap(), Some(answer()));
        assert_eq!(read_get(&bytes, 100).unwrap(), None);
        assert_eq!(
            read_get(br#"{"ids":[],"documents":[],"metadatas":[]}"#, 0).unwrap(),
            None
        );
        assert!(read_get(b"oops", 0).is_err());

        let q = json!({"ids": [["a", "b"]], "documents": [[doc, doc]], "distances": [[0.3, 0.05]],
            "metadatas": [[{"expires": 0}, {"expires": 0}]]});
        let bytes = q.to_string().into_bytes();
        let (hit, nearest) = read_query(&bytes, 0, |d| d < 0.1).unwrap();
        assert_eq!(hit.map(|h| h.1), Some(0.05));
        assert_eq!(nearest, Some(0.3));
        assert_eq!(read_query(&bytes, 0, |d| d < 0.01).unwrap().0, None);
    }

    #[test]
    fn embeddings_are_read() {
        let v = read_embedding(br#"{"data":[{"embedding":[0.5,-1]}]}"#).unwrap();
        assert_eq!(v, vec![0.5, -1.0]);
        assert!(read_embedding(br#"{"data":[]}"#).is_err());
        assert!(read_embedding(br#"{"data":[{"embedding":["x"]}]}"#).is_err());
        let body = upsert_body("k", &[1.0], &answer(), "s", 0).unwrap();
        assert!(body.contains("\"scope\":\"s\""));
    }
}
