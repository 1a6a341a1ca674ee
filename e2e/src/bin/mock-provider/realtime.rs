//! OpenAI Realtime API over WebSocket: `GET /v1/realtime?model=…` upgraded to a WebSocket that
//! speaks the Realtime events (GA shape, as the official SDK's `client.realtime` parses them).
//!
//! The upgrade request goes through the recording middleware like any other, so a test sees
//! the path, the `?model=` and the `authorization` the provider got. On connect the mock sends
//! `session.created`; it answers `session.update` with `session.updated`,
//! `conversation.item.create` with `conversation.item.added` and `conversation.item.done`, and
//! `response.create` with `response.created`, `response.output_text.delta` events (`w0 `,
//! `w1 `, … as the chat stream: `x-mock-chunks`, `x-mock-content` on the upgrade request),
//! `response.output_text.done` and `response.done`. The answer is text whatever the session's
//! modalities. Anything else gets an `error` event; the socket stays open.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

use crate::control::RequestCtx;
use crate::reply::{self, count_words};

/// The Realtime route.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/v1/realtime", get(realtime))
}

/// The query of the upgrade request.
#[derive(Debug, Deserialize)]
struct RealtimeQuery {
    model: Option<String>,
}

/// The key of `Authorization: Bearer <key>`, when there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

async fn realtime(
    Extension(ctx): Extension<RequestCtx>,
    Query(query): Query<RealtimeQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if bearer(&headers).is_none() {
        return reply::error(
            StatusCode::UNAUTHORIZED,
            "missing API key: send `Authorization: Bearer <key>`",
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return reply::error(
                rejection.status(),
                &format!(
                    "the Realtime API takes a WebSocket: {}",
                    rejection.body_text()
                ),
                "invalid_request_error",
                "websocket_required",
            )
        }
    };
    let model = query.model.unwrap_or_else(|| "unknown".to_owned());
    let pieces = crate::openai::stream_pieces(&ctx.control);
    let session = Session::new(ctx.id, &model, pieces);
    let delay = ctx.control.chunk_delay;
    upgrade.on_upgrade(move |socket| serve(socket, session, delay))
}

/// Runs one connection: `session.created`, then an answer to each client event.
async fn serve(mut socket: WebSocket, mut session: Session, delay: Duration) {
    let created = session.created();
    if send(&mut socket, &created).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let text = match message {
            Message::Text(text) => text.as_str().to_owned(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            // Pings are answered by the WebSocket layer.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        for event in session.answer(&text) {
            if !delay.is_zero() && event["type"] == "response.output_text.delta" {
                tokio::time::sleep(delay).await;
            }
            if send(&mut socket, &event).await.is_err() {
                return;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, event: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(event.to_string().into())).await
}

/// One mock Realtime session: its configuration and the ids it handed out.
#[derive(Debug)]
struct Session {
    /// The session object of `session.created` / `session.updated`.
    config: Value,
    /// Id suffix shared by everything this session names (the request id).
    tag: u64,
    /// Server events sent so far (for `event_id`).
    events: u64,
    /// Responses created so far.
    responses: u64,
    /// Conversation items so far.
    items: u64,
    /// The last conversation item's id.
    last_item: Option<String>,
    /// Words of the user's text items since the last response (its input tokens).
    input_words: usize,
    /// Text of each answer, piece by piece.
    pieces: Vec<String>,
}

impl Session {
    fn new(tag: u64, model: &str, pieces: Vec<String>) -> Session {
        Session {
            config: json!({
                "type": "realtime",
                "object": "realtime.session",
                "id": format!("sess_mock_{tag}"),
                "model": model,
                "output_modalities": ["audio"],
                "instructions": "You are a mock assistant.",
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
            }),
            tag,
            events: 0,
            responses: 0,
            items: 0,
            last_item: None,
            input_words: 0,
            pieces,
        }
    }

    /// A server event of `kind` with the next `event_id` and `fields`.
    fn event(&mut self, kind: &str, fields: Value) -> Value {
        self.events += 1;
        let mut event =
            json!({"type": kind, "event_id": format!("event_mock_{}_{}", self.tag, self.events)});
        if let (Some(out), Value::Object(fields)) = (event.as_object_mut(), fields) {
            out.extend(fields);
        }
        event
    }

    /// `session.created`, the first event of a connection.
    fn created(&mut self) -> Value {
        let session = self.config.clone();
        self.event("session.created", json!({ "session": session }))
    }

    /// The server events answering one client message.
    fn answer(&mut self, text: &str) -> Vec<Value> {
        let event: Value = match serde_json::from_str(text) {
            Ok(event @ Value::Object(_)) => event,
            _ => return vec![self.error("invalid_json", "the event is not a JSON object", None)],
        };
        let client_id = event.get("event_id").and_then(Value::as_str);
        match event.get("type").and_then(Value::as_str) {
            Some("session.update") => self.update(&event),
            Some("conversation.item.create") => self.add_item(&event),
            Some("response.create") => self.respond(&event),
            Some(other) => {
                let message = format!("the mock does not handle `{other}` events");
                vec![self.error("unknown_event", &message, client_id)]
            }
            None => vec![self.error("invalid_event", "The 'type' field is missing.", client_id)],
        }
    }

    /// An `error` event (the session stays open).
    fn error(&mut self, code: &str, message: &str, client_event: Option<&str>) -> Value {
        self.event(
            "error",
            json!({"error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": null,
                "event_id": client_event,
            }}),
        )
    }

    /// `session.update`: every field but `model` and the ids is taken; answered with the whole
    /// session.
    fn update(&mut self, event: &Value) -> Vec<Value> {
        if let (Some(config), Some(update)) = (
            self.config.as_object_mut(),
            event.get("session").and_then(Value::as_object),
        ) {
            for (key, value) in update {
                if !matches!(key.as_str(), "model" | "id" | "object") {
                    config.insert(key.clone(), value.clone());
                }
            }
        }
        let session = self.config.clone();
        vec![self.event("session.updated", json!({ "session": session }))]
    }

    /// `conversation.item.create`: the item, with an id, is added and done at once.
    fn add_item(&mut self, event: &Value) -> Vec<Value> {
        let mut item = event.get("item").cloned().unwrap_or_else(|| json!({}));
        self.items += 1;
        let id = match item.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => format!("item_mock_{}_{}", self.tag, self.items),
        };
        if let Some(fields) = item.as_object_mut() {
            fields.insert("id".into(), json!(id));
            fields.insert("object".into(), json!("realtime.item"));
            fields.insert("status".into(), json!("completed"));
        }
        if item["role"] == "user" {
            self.input_words += item["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .map(count_words)
                .sum::<usize>();
        }
        let previous = self.last_item.replace(id);
        let added = self.event(
            "conversation.item.added",
            json!({"previous_item_id": previous, "item": item}),
        );
        let done = self.event(
            "conversation.item.done",
            json!({"previous_item_id": previous, "item": item}),
        );
        vec![added, done]
    }

    /// `response.create`: the answer as text deltas, then `response.done`.
    fn respond(&mut self, event: &Value) -> Vec<Value> {
        self.responses += 1;
        let id = format!("resp_mock_{}_{}", self.tag, self.responses);
        self.items += 1;
        let item_id = format!("item_mock_{}_{}", self.tag, self.items);
        let modalities = event
            .pointer("/response/output_modalities")
            .or_else(|| self.config.get("output_modalities"))
            .cloned()
            .unwrap_or_else(|| json!(["audio"]));
        let conversation = format!("conv_mock_{}", self.tag);
        let mut out = vec![self.event(
            "response.created",
            json!({"response": {
                "id": id,
                "object": "realtime.response",
                "status": "in_progress",
                "status_details": null,
                "conversation_id": conversation,
                "output_modalities": modalities,
                "output": [],
                "usage": null,
            }}),
        )];
        let position = |e: Value| {
            let mut e = e;
            if let Some(fields) = e.as_object_mut() {
                fields.insert("response_id".into(), json!(id));
                fields.insert("item_id".into(), json!(item_id));
                fields.insert("output_index".into(), json!(0));
                fields.insert("content_index".into(), json!(0));
            }
            e
        };
        for piece in self.pieces.clone() {
            let delta = self.event("response.output_text.delta", json!({ "delta": piece }));
            out.push(position(delta));
        }
        let text = self.pieces.concat();
        let done = self.event("response.output_text.done", json!({ "text": text }));
        out.push(position(done));
        let input = std::mem::take(&mut self.input_words);
        let output = count_words(&text);
        out.push(self.event(
            "response.done",
            json!({"response": {
                "id": id,
                "object": "realtime.response",
                "status": "completed",
                "status_details": null,
                "conversation_id": conversation,
                "output_modalities": modalities,
                "output": [{
                    "id": item_id,
                    "object": "realtime.item",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text}],
                }],
                "usage": {
                    "total_tokens": input + output,
                    "input_tokens": input,
                    "output_tokens": output,
                    "input_token_details": {"text_tokens": input, "audio_tokens": 0, "cached_tokens": 0},
                    "output_token_details": {"text_tokens": output, "audio_tokens": 0},
                },
            }}),
        ));
        self.last_item = Some(item_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    fn session() -> Session {
        Session::new(7, "gpt-realtime", vec!["w0 ".into(), "w1 ".into()])
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().filter_map(|e| e["type"].as_str()).collect()
    }

    #[test]
    fn reads_the_bearer_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer sk-1".parse().unwrap());
        assert_eq!(bearer(&headers), Some("sk-1"));
    }

    #[test]
    fn creates_and_updates_the_session() {
        let mut s = session();
        let created = s.created();
        assert_eq!(created["type"], "session.created");
        assert_eq!(created["event_id"], "event_mock_7_1");
        assert_eq!(created["session"]["type"], "realtime");
        assert_eq!(created["session"]["id"], "sess_mock_7");
        assert_eq!(created["session"]["model"], "gpt-realtime");

        let update = json!({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"], "instructions": "Be brief.",
            "model": "other"}});
        let out = s.answer(&update.to_string());
        assert_eq!(types(&out), ["session.updated"]);
        let session = &out[0]["session"];
        assert_eq!(session["output_modalities"], json!(["text"]));
        assert_eq!(session["instructions"], "Be brief.");
        // The model is the connection's.
        assert_eq!(session["model"], "gpt-realtime");
        assert_eq!(session["id"], "sess_mock_7");
    }

    #[test]
    fn answers_a_response_with_text_deltas() {
        let mut s = session();
        let item = json!({"type": "conversation.item.create", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": "say hello now"}]}});
        let added = s.answer(&item.to_string());
        assert_eq!(
            types(&added),
            ["conversation.item.added", "conversation.item.done"]
        );
        assert_eq!(added[0]["item"]["id"], "item_mock_7_1");
        assert_eq!(added[0]["previous_item_id"], Value::Null);

        let out = s.answer(r#"{"type":"response.create"}"#);
        assert_eq!(
            types(&out),
            [
                "response.created",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.done"
            ]
        );
        assert_eq!(out[0]["response"]["status"], "in_progress");
        assert_eq!(out[0]["response"]["output_modalities"], json!(["audio"]));
        let deltas: String = out.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(deltas, "w0 w1 ");
        for e in &out[1..4] {
            assert_eq!(e["response_id"], "resp_mock_7_1", "{e}");
            assert_eq!(e["item_id"], "item_mock_7_2", "{e}");
            assert_eq!(
                (e["output_index"].as_u64(), e["content_index"].as_u64()),
                (Some(0), Some(0))
            );
        }
        let done = &out[4]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "w0 w1 ");
        assert_eq!(
            (
                done["usage"]["input_tokens"].as_u64(),
                done["usage"]["output_tokens"].as_u64()
            ),
            (Some(3), Some(2))
        );
        // Event ids are unique.
        let mut ids: Vec<&str> = added
            .iter()
            .chain(&out)
            .filter_map(|e| e["event_id"].as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 7);
        // The response's own modalities win over the session's.
        let text =
            s.answer(r#"{"type":"response.create","response":{"output_modalities":["text"]}}"#);
        assert_eq!(text[0]["response"]["output_modalities"], json!(["text"]));
        assert_eq!(text[0]["response"]["id"], "resp_mock_7_2");
    }

    #[test]
    fn answers_anything_else_with_an_error_event() {
        let mut s = session();
        let out = s.answer("not json");
        assert_eq!(types(&out), ["error"]);
        assert_eq!(out[0]["error"]["code"], "invalid_json");
        let out = s.answer(r#"{"type":"input_audio_buffer.commit","event_id":"c1"}"#);
        assert_eq!(out[0]["error"]["code"], "unknown_event");
        assert_eq!(out[0]["error"]["event_id"], "c1");
        let out = s.answer(r#"{"event_id":"c2"}"#);
        assert_eq!(out[0]["error"]["code"], "invalid_event");
    }

    /// The next text message of `ws`, as JSON.
    async fn next_event<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// The route behind the real app, over a real WebSocket: the key is required, the session
    /// speaks the events, and the upgrade request is recorded with its query and headers.
    #[tokio::test]
    async fn serves_a_websocket_session() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::app(std::sync::Arc::new(crate::record::Shared::default()));
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        let url = format!("ws://{addr}/v1/realtime?model=gpt-realtime-mini");

        // No key: refused before the upgrade.
        let refused = tokio_tungstenite::connect_async(url.as_str()).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401)
            }
            other => panic!("expected a 401, got {other:?}"),
        }

        let mut request = url.as_str().into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("authorization", "Bearer sk-mock".parse().unwrap());
        headers.insert("x-mock-chunks", "3".parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(resp.status(), 101);
        let created = next_event(&mut ws).await;
        assert_eq!(created["type"], "session.created");
        assert_eq!(created["session"]["model"], "gpt-realtime-mini");

        let update = json!({"type": "session.update",
            "session": {"type": "realtime", "output_modalities": ["text"]}});
        for event in [
            update.to_string(),
            r#"{"type":"response.create"}"#.to_owned(),
        ] {
            ws.send(WsMessage::Text(event.into())).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut text = String::new();
        loop {
            let event = next_event(&mut ws).await;
            if let Some(delta) = event["delta"].as_str() {
                text.push_str(delta);
            }
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            seen.push(kind.clone());
            if kind == "response.done" {
                break;
            }
        }
        assert_eq!(seen[..2], ["session.updated", "response.created"]);
        assert_eq!(text, "w0 w1 w2 ");
        ws.close(None).await.unwrap();

        let recorded = tokio::task::spawn_blocking(move || {
            let client = e2e::http::Client::new(Duration::from_secs(10));
            client
                .get(&format!("http://{addr}/__mock/requests"), &[])
                .unwrap()
        })
        .await
        .unwrap();
        let list: Value = serde_json::from_str(&recorded.body).unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        let upgrade = &list[1];
        assert_eq!(upgrade["method"], "GET");
        assert_eq!(upgrade["path"], "/v1/realtime");
        assert_eq!(upgrade["query"], "model=gpt-realtime-mini");
        assert_eq!(upgrade["headers"]["authorization"], "Bearer sk-mock");
        assert_eq!(upgrade["headers"]["upgrade"], "websocket");
        assert_eq!(list[0]["headers"].get("authorization"), None);
    }
}
