#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn set(config: Value) -> ToolSet {
    let server: ServerConfig = serde_json::from_value(config["server"].clone()).unwrap();
    let tools: Vec<RestTool> = serde_json::from_value(config["tools"].clone()).unwrap();
    ToolSet::new(server, tools).unwrap()
}

fn weather() -> ToolSet {
    set(json!({
        "server": {"name": "weather", "type": "rest", "config": {"apiKey": "k-123"}},
        "tools": [{
            "name": "get_weather",
            "description": "Query weather",
            "args": [
                {"name": "location", "type": "string", "required": true, "description": "City"},
                {"name": "unit", "type": "string", "enum": ["c", "f"], "default": "c"},
                {"name": "days", "type": "integer"}
            ],
            "requestTemplate": {
                "url": "http://weather.example:8080/weather?city={{.args.location}}&key={{.config.apiKey}}",
                "method": "GET",
                "headers": [{"key": "X-Api-Key", "value": "{{.config.apiKey}}"}],
                "timeout": 1500
            },
            "responseTemplate": {"body": "{{.city}}: {{.temp}} {{.unit}}"}
        }]
    }))
}

#[test]
fn schema_is_derived_from_args() {
    let s = weather();
    let t = s.get("get_weather").unwrap();
    assert_eq!(
        t.schema,
        json!({"type": "object", "properties": {
            "location": {"type": "string", "description": "City"},
            "unit": {"type": "string", "description": "", "enum": ["c", "f"], "default": "c"},
            "days": {"type": "integer", "description": ""}
        }, "required": ["location"]})
    );
    assert_eq!(t.to_mcp()["name"], "get_weather");
}

#[test]
fn arguments_are_validated_with_defaults() {
    let s = weather();
    let t = s.get("get_weather").unwrap();
    let args = t
        .validate(Some(&json!({"location": "Paris", "x": 1})))
        .unwrap();
    assert_eq!(
        Value::Object(args),
        json!({"location": "Paris", "unit": "c"})
    );
    assert!(t
        .validate(Some(&json!({})))
        .unwrap_err()
        .contains("missing required argument `location`"));
    assert!(t.validate(None).is_err());
    assert!(t
        .validate(Some(&json!({"location": 5})))
        .unwrap_err()
        .contains("type string"));
    assert!(t
        .validate(Some(&json!({"location": "a", "unit": "k"})))
        .unwrap_err()
        .contains("one of"));
    assert!(t
        .validate(Some(&json!({"location": "a", "days": 1.5})))
        .is_err());
    assert!(t
        .validate(Some(&json!({"location": "a", "days": 3})))
        .is_ok());
    assert!(t.validate(Some(&json!([1]))).is_err());
}

#[test]
fn request_is_rendered_from_the_template() {
    let s = weather();
    let t = s.get("get_weather").unwrap();
    let args = t.validate(Some(&json!({"location": "New York"}))).unwrap();
    let out = t.request(&s.server, &args).unwrap();
    assert_eq!(out.cluster, "weather.example");
    assert_eq!(out.timeout, Duration::from_millis(1500));
    assert_eq!(
        out.headers,
        vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/weather?city=New%20York&key=k-123".into()),
            (":authority".into(), "weather.example:8080".into()),
            ("x-api-key".into(), "k-123".into()),
            ("accept".into(), "*/*".into()),
        ]
    );
    assert_eq!(out.body, None);
}

#[test]
fn args_go_where_their_position_or_mode_says() {
    let s = set(json!({
        "server": {"name": "s", "cluster": "api", "timeout": 700},
        "tools": [{
            "name": "t",
            "args": [
                {"name": "id", "position": "path"},
                {"name": "q", "position": "query"},
                {"name": "h", "position": "header"},
                {"name": "c", "position": "cookie"},
                {"name": "n", "type": "integer"}
            ],
            "requestTemplate": {"url": "/items/{id}", "method": "post", "argsToJsonBody": true}
        }, {
            "name": "form",
            "args": [{"name": "a"}, {"name": "b"}],
            "requestTemplate": {"url": "https://api.example.com/f", "method": "POST", "argsToFormBody": true}
        }, {
            "name": "query",
            "args": [{"name": "a"}],
            "requestTemplate": {"url": "https://api.example.com/q?x=1", "argsToUrlParam": true, "cluster": "qc"}
        }]
    }));
    let t = s.get("t").unwrap();
    let args = t
        .validate(Some(
            &json!({"id": "a/b", "q": "x y", "h": "hv", "c": "cv", "n": 3}),
        ))
        .unwrap();
    let out = t.request(&s.server, &args).unwrap();
    assert_eq!(out.cluster, "api");
    assert_eq!(out.timeout, Duration::from_millis(700));
    let h = |n: &str| {
        out.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h(":method"), Some("POST"));
    assert_eq!(h(":path"), Some("/items/a%2Fb?q=x%20y"));
    assert_eq!(h(":authority"), Some("api"));
    assert_eq!(h("h"), Some("hv"));
    assert_eq!(h("cookie"), Some("c=cv"));
    assert_eq!(h("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(out.body.as_deref(), Some(br#"{"n":3}"#.as_slice()));

    let f = s.get("form").unwrap();
    let out = f
        .request(
            &s.server,
            &f.validate(Some(&json!({"a": "1&2", "b": "z"}))).unwrap(),
        )
        .unwrap();
    assert_eq!(out.body.as_deref(), Some(b"a=1%262&b=z".as_slice()));
    assert_eq!(out.cluster, "api");

    let q = s.get("query").unwrap();
    let out = q
        .request(&s.server, &q.validate(Some(&json!({"a": "v"}))).unwrap())
        .unwrap();
    assert_eq!(out.cluster, "qc");
    assert_eq!(out.headers[1].1, "/q?x=1&a=v");
}

#[test]
fn answers_are_rendered_or_reported_as_errors() {
    let s = weather();
    let t = s.get("get_weather").unwrap();
    let ok = t.response(
        200,
        &[],
        br#"{"city":"Paris","temp":21,"unit":"C"}"#,
        &Map::new(),
    );
    assert_eq!(
        ok,
        ToolOutput {
            text: "Paris: 21 C".into(),
            is_error: false,
            structured: None
        }
    );
    assert_eq!(ok.to_mcp()["content"][0]["text"], "Paris: 21 C");
    let bad = t.response(503, &[], b"down", &Map::new());
    assert!(bad.is_error);
    assert_eq!(bad.text, "call failed, status: 503, response: down");

    let s = set(json!({
        "server": {"name": "s"},
        "tools": [{
            "name": "raw",
            "requestTemplate": {"url": "http://h/x"},
            "responseTemplate": {"prependBody": "<<", "appendBody": ">>"},
            "errorResponseTemplate": "failed: {{.message}} ({{index ._headers \":status\"}})",
            "outputSchema": {"type": "object"}
        }]
    }));
    let t = s.get("raw").unwrap();
    let ok = t.response(200, &[], br#"{"a":1}"#, &Map::new());
    assert_eq!(ok.text, r#"<<{"a":1}>>"#);
    assert_eq!(ok.structured, Some(json!({"a": 1})));
    let bad = t.response(
        404,
        &[(":status".into(), "404".into())],
        br#"{"message":"nope"}"#,
        &Map::new(),
    );
    assert_eq!(bad.text, "failed: nope (404)");

    // `.args` in a response template (Higress's README example), and a non-object answer.
    let s = set(
        json!({"server": {"name": "s"}, "tools": [{"name": "w", "requestTemplate": {"url": "http://h/"},
        "responseTemplate": {"body": "weather for {{.args.location}}: {{.body}}"}}]}),
    );
    let args = Map::from_iter([("location".to_string(), json!("Oslo"))]);
    let ok = s.get("w").unwrap().response(200, &[], b"\"rain\"", &args);
    assert_eq!(ok.text, "weather for Oslo: rain");
}

#[test]
fn bad_definitions_name_the_field() {
    let err = |tools: Value| {
        let tools: Vec<RestTool> = serde_json::from_value(tools).unwrap();
        ToolSet::new(ServerConfig::default(), tools)
            .unwrap_err()
            .path
    };
    assert_eq!(
        err(
            json!([{"name": "a", "requestTemplate": {"url": "/x", "argsToJsonBody": true, "argsToFormBody": true}}])
        ),
        "tools[0].requestTemplate"
    );
    assert_eq!(
        err(
            json!([{"name": "a", "args": [{"name": "x", "type": "str"}], "requestTemplate": {"url": "/x"}}])
        ),
        "tools[0].args[0].type"
    );
    assert_eq!(
        err(
            json!([{"name": "a", "requestTemplate": {"url": "/x"}, "responseTemplate": {"body": "{{if .a}}"}}])
        ),
        "tools[0].responseTemplate.body"
    );
    // A tool without a URL loads (Higress's README example has none) with a warning; calls fail.
    let s = set(json!({"server": {"name": "s"}, "tools": [{"name": "a"}]}));
    assert_eq!(s.warnings().len(), 1);
    assert!(s.get("a").unwrap().request(&s.server, &Map::new()).is_err());
    assert_eq!(
        err(
            json!([{"name": "a", "requestTemplate": {"url": "/x"}}, {"name": "a", "requestTemplate": {"url": "/x"}}])
        ),
        "tools[1].name"
    );
    let server = ServerConfig {
        kind: Some("mcp-proxy".into()),
        ..ServerConfig::default()
    };
    assert_eq!(
        ToolSet::new(server, vec![]).unwrap_err().path,
        "server.type"
    );
    // A relative URL without a cluster cannot be called.
    let s = set(
        json!({"server": {"name": "s"}, "tools": [{"name": "a", "requestTemplate": {"url": "/x"}}]}),
    );
    let t = s.get("a").unwrap();
    assert!(t.request(&s.server, &Map::new()).is_err());
}
