//! The subset of Go templates (as Higress's GJSON templates write them) that REST tool
//! definitions use, over JSON data.
//!
//! Supported: `{{.a.b}}` and `{{.items.0.name}}` paths (a path that finds nothing prints
//! nothing), `$` and `$var.path`, string and number literals, pipes (`{{.x | upper}}`), trim
//! markers (`{{-`, `-}}`), `{{if}}`/`{{else if}}`/`{{else}}`, `{{range .list}}`,
//! `{{range $i, $v := .list}}`, `{{with}}`, `{{/* comments */}}`, and the functions `add`, `sub`,
//! `mul`, `div`, `upper`, `lower`, `trim`, `default`, `toJson`, `urlquery`, `gjson`, `eq`, `ne`,
//! `not`, `and`, `or`, `len`, `index`, `printf` (`%s`, `%d`, `%v` only). Anything else is an
//! error when the config loads.

use serde_json::{Map, Value};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct GoTemplate {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Print(Pipe),
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    Range {
        key: Option<String>,
        value: Option<String>,
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// Commands joined by `|`: each command's result is the last argument of the next.
#[derive(Debug, Clone, PartialEq)]
struct Pipe(Vec<Cmd>);

#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Arg(Arg),
    Call(String, Vec<Arg>),
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.a.b` (empty path: `.`).
    Dot(Vec<String>),
    /// `$name.a.b` (`$` alone: the root).
    Var(String, Vec<String>),
    Lit(Value),
    Sub(Box<Pipe>),
}

const FUNCS: [&str; 19] = [
    "add", "sub", "mul", "div", "upper", "lower", "trim", "default", "toJson", "urlquery", "gjson",
    "eq", "ne", "not", "and", "or", "len", "index", "printf",
];

/// One `{{ }}` action or a text run, before nesting.
enum Token {
    Text(String),
    Action(String),
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_prev = after.starts_with("- ") || after.starts_with("-\n") || after == "-";
        if trim_prev {
            text = text.trim_end();
        }
        if !text.is_empty() {
            out.push(Token::Text(text.to_string()));
        }
        let end = find_close(after).ok_or_else(|| "unclosed `{{`".to_string())?;
        let mut inner = &after[..end];
        if trim_prev {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push(Token::Action(inner.to_string()));
        }
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Token::Text(text.to_string()));
    }
    Ok(out)
}

/// Where an action's `}}` is, skipping quoted strings.
fn find_close(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if bytes[i..].starts_with(b"}}") => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Splits an action into words: quoted strings and parenthesised groups stay whole.
fn words(action: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '"' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated string in `{action}`"));
            }
            i += 1;
        } else if c == '(' {
            let mut depth = 0;
            while i < chars.len() {
                match chars[i] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unbalanced `(` in `{action}`"));
            }
            i += 1;
        } else if c == '|' || c == ',' {
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !"|,(".contains(chars[i]) {
                i += 1;
            }
        }
        out.push(chars[start..i].iter().collect());
    }
    Ok(out)
}

fn path_of(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_arg(word: &str) -> Result<Arg, String> {
    if let Some(inner) = word.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
        return Ok(Arg::Sub(Box::new(parse_pipe(inner)?)));
    }
    if word.starts_with('.') {
        return Ok(Arg::Dot(path_of(word)));
    }
    if let Some(var) = word.strip_prefix('$') {
        let (name, path) = var.split_once('.').unwrap_or((var, ""));
        return Ok(Arg::Var(name.to_string(), path_of(path)));
    }
    if let Some(raw) = word.strip_prefix('`').and_then(|w| w.strip_suffix('`')) {
        return Ok(Arg::Lit(Value::String(raw.to_string())));
    }
    if word.starts_with('"') {
        return serde_json::from_str::<String>(word)
            .map(|s| Arg::Lit(Value::String(s)))
            .map_err(|_| format!("bad string literal {word}"));
    }
    match word {
        "true" => return Ok(Arg::Lit(Value::Bool(true))),
        "false" => return Ok(Arg::Lit(Value::Bool(false))),
        "nil" => return Ok(Arg::Lit(Value::Null)),
        _ => {}
    }
    serde_json::from_str::<serde_json::Number>(word)
        .map(|n| Arg::Lit(Value::Number(n)))
        .map_err(|_| format!("unknown word `{word}`"))
}

fn parse_pipe(text: &str) -> Result<Pipe, String> {
    let words = words(text)?;
    let mut cmds = Vec::new();
    for group in words.split(|w| w == "|") {
        let Some((first, args)) = group.split_first() else {
            return Err(format!("empty command in `{text}`"));
        };
        if FUNCS.contains(&first.as_str()) {
            let args = args
                .iter()
                .map(|a| parse_arg(a))
                .collect::<Result<_, _>>()?;
            cmds.push(Cmd::Call(first.clone(), args));
        } else if args.is_empty() {
            cmds.push(Cmd::Arg(parse_arg(first)?));
        } else if first.starts_with(['.', '$', '"', '(']) {
            return Err(format!("`{first}` takes no arguments in `{text}`"));
        } else {
            return Err(format!("unknown function `{first}`"));
        }
    }
    Ok(Pipe(cmds))
}

/// What ended a list of nodes.
enum Closer {
    Eof,
    End,
    Else(String),
}

struct Parser {
    tokens: std::vec::IntoIter<Token>,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Closer), String> {
        let mut nodes = Vec::new();
        while let Some(token) = self.tokens.next() {
            let action = match token {
                Token::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Token::Action(a) => a,
            };
            let (head, rest) = action
                .split_once(char::is_whitespace)
                .map_or((action.as_str(), ""), |(h, r)| (h, r.trim()));
            match head {
                "end" => return Ok((nodes, Closer::End)),
                "else" => return Ok((nodes, Closer::Else(rest.to_string()))),
                "if" => nodes.push(self.if_chain(rest)?),
                "with" => {
                    let pipe = parse_pipe(rest)?;
                    let (body, end) = self.list()?;
                    let otherwise = self.tail(end, "with")?;
                    nodes.push(Node::With(pipe, body, otherwise));
                }
                "range" => {
                    let (key, value, expr) = match rest.split_once(":=") {
                        Some((vars, expr)) => {
                            let vars: Vec<&str> = vars.split(',').map(str::trim).collect();
                            let name = |v: &str| {
                                v.strip_prefix('$')
                                    .map(str::to_string)
                                    .ok_or_else(|| format!("bad range variable `{v}`"))
                            };
                            match vars.as_slice() {
                                [v] => (None, Some(name(v)?), expr),
                                [k, v] => (Some(name(k)?), Some(name(v)?), expr),
                                _ => return Err(format!("bad range `{rest}`")),
                            }
                        }
                        None => (None, None, rest),
                    };
                    let pipe = parse_pipe(expr)?;
                    let (body, end) = self.list()?;
                    let otherwise = self.tail(end, "range")?;
                    nodes.push(Node::Range {
                        key,
                        value,
                        pipe,
                        body,
                        otherwise,
                    });
                }
                _ => nodes.push(Node::Print(parse_pipe(&action)?)),
            }
        }
        Ok((nodes, Closer::Eof))
    }

    /// The `else` part of a `with`/`range`, up to its `end`.
    fn tail(&mut self, end: Closer, what: &str) -> Result<Vec<Node>, String> {
        match end {
            Closer::End => Ok(Vec::new()),
            Closer::Else(rest) if rest.is_empty() => match self.list()? {
                (nodes, Closer::End) => Ok(nodes),
                _ => Err(format!("`{what}` without `end`")),
            },
            _ => Err(format!("`{what}` without `end`")),
        }
    }

    fn if_chain(&mut self, cond: &str) -> Result<Node, String> {
        let mut branches = Vec::new();
        let mut cond = cond.to_string();
        loop {
            let pipe = parse_pipe(&cond)?;
            let (body, end) = self.list()?;
            branches.push((pipe, body));
            match end {
                Closer::End => return Ok(Node::If(branches, Vec::new())),
                Closer::Else(rest) if rest.is_empty() => {
                    return match self.list()? {
                        (nodes, Closer::End) => Ok(Node::If(branches, nodes)),
                        _ => Err("`if` without `end`".into()),
                    }
                }
                Closer::Else(rest) => match rest.strip_prefix("if ") {
                    Some(next) => cond = next.trim().to_string(),
                    None => return Err(format!("bad `else {rest}`")),
                },
                Closer::Eof => return Err("`if` without `end`".into()),
            }
        }
    }
}

/// Whether a value counts as true in `if`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as text: strings as they are, null as nothing, the rest as JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Follows a dotted path (object keys, array indexes).
pub fn lookup<'a>(mut v: &'a Value, path: &[String]) -> Option<&'a Value> {
    for seg in path {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Scope<'a> {
    root: &'a Value,
    vars: Vec<(String, Value)>,
}

impl Scope<'_> {
    fn var(&self, name: &str) -> Option<&Value> {
        if name.is_empty() {
            return Some(self.root);
        }
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Value, String> {
        Ok(match arg {
            Arg::Dot(path) => lookup(dot, path).cloned().unwrap_or(Value::Null),
            Arg::Var(name, path) => {
                let base = self
                    .var(name)
                    .ok_or_else(|| format!("undefined variable ${name}"))?;
                lookup(base, path).cloned().unwrap_or(Value::Null)
            }
            Arg::Lit(v) => v.clone(),
            Arg::Sub(pipe) => self.pipe(pipe, dot)?,
        })
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, String> {
        let mut last: Option<Value> = None;
        for cmd in &pipe.0 {
            let value = match cmd {
                Cmd::Arg(a) => self.arg(a, dot)?,
                Cmd::Call(name, args) => {
                    let mut vals = args
                        .iter()
                        .map(|a| self.arg(a, dot))
                        .collect::<Result<Vec<_>, _>>()?;
                    vals.extend(last.take());
                    call(name, &vals, dot)?
                }
            };
            last = Some(value);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Print(p) => out.push_str(&to_text(&self.pipe(p, dot)?)),
                Node::If(branches, otherwise) => {
                    let mut done = false;
                    for (cond, body) in branches {
                        if truthy(&self.pipe(cond, dot)?) {
                            self.nodes(body, dot, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::With(pipe, body, otherwise) => {
                    let v = self.pipe(pipe, dot)?;
                    if truthy(&v) {
                        self.nodes(body, &v, out)?;
                    } else {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::Range {
                    key,
                    value,
                    pipe,
                    body,
                    otherwise,
                } => {
                    let list = self.pipe(pipe, dot)?;
                    let items: Vec<(Value, Value)> = match list {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v))
                            .collect(),
                        Value::Object(m) => {
                            m.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
                        }
                        _ => Vec::new(),
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot, out)?;
                    }
                    for (k, v) in items {
                        let mark = self.vars.len();
                        if let Some(name) = key {
                            self.vars.push((name.clone(), k));
                        }
                        if let Some(name) = value {
                            self.vars.push((name.clone(), v.clone()));
                        }
                        self.nodes(body, &v, out)?;
                        self.vars.truncate(mark);
                    }
                }
            }
        }
        Ok(())
    }
}

fn call(name: &str, args: &[Value], dot: &Value) -> Result<Value, String> {
    let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
    let text = |i: usize| to_text(arg(i));
    let need = |n: usize| {
        if args.len() < n {
            Err(format!("{name} needs {n} arguments"))
        } else {
            Ok(())
        }
    };
    Ok(match name {
        "add" => number(args.iter().map(num).sum()),
        "sub" => {
            need(2)?;
            number(num(arg(0)) - num(arg(1)))
        }
        "mul" => number(args.iter().map(num).product()),
        "div" => {
            need(2)?;
            let d = num(arg(1));
            if d == 0.0 {
                return Err("div by zero".into());
            }
            number((num(arg(0)) / d).trunc())
        }
        "upper" => Value::String(text(0).to_uppercase()),
        "lower" => Value::String(text(0).to_lowercase()),
        "trim" => Value::String(text(0).trim().to_string()),
        "default" => {
            need(2)?;
            if truthy(arg(1)) {
                arg(1).clone()
            } else {
                arg(0).clone()
            }
        }
        "toJson" => Value::String(arg(0).to_string()),
        "urlquery" => Value::String(url_escape(&text(0))),
        "gjson" => lookup(dot, &path_of(&text(0)))
            .cloned()
            .unwrap_or(Value::Null),
        "eq" => Value::Bool(arg(0) == arg(1) || (text(0) == text(1) && args.len() == 2)),
        "ne" => Value::Bool(text(0) != text(1)),
        "not" => Value::Bool(!truthy(arg(0))),
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "len" => Value::from(match arg(0) {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.chars().count(),
            _ => 0,
        }),
        "index" => {
            let path: Vec<String> = args.iter().skip(1).map(to_text).collect();
            lookup(arg(0), &path).cloned().unwrap_or(Value::Null)
        }
        "printf" => {
            let format = text(0);
            let mut out = String::new();
            let mut rest = args.iter().skip(1);
            let mut chars = format.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('%') => out.push('%'),
                    Some('s' | 'v' | 'd') => {
                        out.push_str(&rest.next().map(to_text).unwrap_or_default())
                    }
                    Some(other) => return Err(format!("printf verb %{other} is not supported")),
                    None => out.push('%'),
                }
            }
            Value::String(out)
        }
        _ => return Err(format!("unknown function `{name}`")),
    })
}

impl GoTemplate {
    /// Parses `src`; the error says what is wrong.
    pub fn parse(src: &str) -> Result<GoTemplate, String> {
        let mut parser = Parser {
            tokens: tokenize(src)?.into_iter(),
        };
        match parser.list()? {
            (nodes, Closer::Eof) => Ok(GoTemplate { nodes }),
            (_, Closer::End) => Err("`end` without an opening action".into()),
            (_, Closer::Else(_)) => Err("`else` without `if`".into()),
        }
    }

    /// Renders over `data` (`.` is the root).
    pub fn render(&self, data: &Value) -> Result<String, String> {
        let mut scope = Scope {
            root: data,
            vars: Vec::new(),
        };
        let mut out = String::new();
        scope.nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// Renders with `.args` and `.config` as Higress's request templates see them.
    pub fn render_request(
        &self,
        args: &Map<String, Value>,
        config: &Value,
    ) -> Result<String, String> {
        let mut data = Map::new();
        data.insert("args".into(), Value::Object(args.clone()));
        data.insert("config".into(), config.clone());
        self.render(&Value::Object(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value) -> String {
        GoTemplate::parse(src).unwrap().render(&data).unwrap()
    }

    #[test]
    fn paths_pipes_and_functions() {
        let d = json!({"args": {"city": "Paris", "n": 2}, "items": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            render("weather for {{.args.city}}", d.clone()),
            "weather for Paris"
        );
        assert_eq!(render("{{ .args.city | upper }}", d.clone()), "PARIS");
        assert_eq!(render("{{add .args.n 1}}", d.clone()), "3");
        assert_eq!(render("{{.items.1.name}}", d.clone()), "b");
        assert_eq!(render("[{{.missing}}]", d.clone()), "[]");
        assert_eq!(render(r#"{{.missing | default "x"}}"#, d.clone()), "x");
        assert_eq!(
            render("{{urlquery .args.city}}&{{toJson .args}}", d.clone()),
            r#"Paris&{"city":"Paris","n":2}"#
        );
        assert_eq!(
            render(r#"{{printf "%s-%d" .args.city .args.n}}"#, d.clone()),
            "Paris-2"
        );
        assert_eq!(render(r#"{{gjson "items.0.name"}}"#, d.clone()), "a");
        // `}}` and non-ASCII inside a string literal.
        assert_eq!(render(r#"é{{"}}é"}}{{.args.city}}"#, d), "é}}éParis");
    }

    #[test]
    fn control_structures_and_trim_markers() {
        let d = json!({"items": [{"name": "a"}, {"name": "b"}], "ok": true, "none": []});
        assert_eq!(
            render("# List\n{{- range $i, $it := .items }}\n- {{add $i 1}}: {{ $it.name }}\n{{- end }}", d.clone()),
            "# List\n- 1: a\n- 2: b"
        );
        assert_eq!(
            render("{{range .items}}{{.name}},{{end}}", d.clone()),
            "a,b,"
        );
        assert_eq!(
            render("{{range .none}}x{{else}}empty{{end}}", d.clone()),
            "empty"
        );
        assert_eq!(render("{{if .ok}}yes{{else}}no{{end}}", d.clone()), "yes");
        assert_eq!(
            render("{{if .nope}}1{{else if .ok}}2{{else}}3{{end}}", d.clone()),
            "2"
        );
        assert_eq!(
            render("{{with .items.0}}{{.name}}{{end}}{{/* c */}}", d.clone()),
            "a"
        );
        assert_eq!(render(r#"{{if eq .items.0.name "a"}}A{{end}}"#, d), "A");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(GoTemplate::parse("{{.a").unwrap_err().contains("unclosed"));
        assert!(GoTemplate::parse("{{if .a}}x").unwrap_err().contains("end"));
        assert!(GoTemplate::parse("{{nope .a}}")
            .unwrap_err()
            .contains("nope"));
        assert!(GoTemplate::parse("{{end}}").is_err());
        assert!(GoTemplate::parse("{{range $a, $b, $c := .x}}{{end}}").is_err());
    }
}
