//! Text templates with placeholders filled per request.
//!
//! | placeholder | value |
//! |---|---|
//! | `${header:x-user-id}` | request header (name case-insensitive) |
//! | `${property:xds.route_name}` | Envoy attribute, path segments separated by `.` |
//! | `${geo-country}` `${geo-province}` `${geo-city}` `${geo-isp}` | Higress geo attributes |
//!
//! `${header:x-lang|en}` gives `en` when the value is missing (the default is empty otherwise);
//! `$${` writes a literal `${`. Placeholders are checked when the config loads.

use crate::host::Host;

const GEO_KEYS: [&str; 4] = ["geo-country", "geo-province", "geo-city", "geo-isp"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Header { name: String, default: String },
    Property { path: Vec<String>, default: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error says which placeholder is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find("${") {
            if pos > 0 && rest[..pos].ends_with('$') {
                literal.push_str(&rest[..pos - 1]);
                literal.push_str("${");
                rest = &rest[pos + 2..];
                continue;
            }
            literal.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed placeholder `${{{after}`"))?;
            let inner = &after[..end];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(parse_placeholder(inner)?);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// Whether the template has placeholders.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Request header names the template reads.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Header { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Fills the placeholders; `header` supplies request header values.
    pub fn render(&self, host: &dyn Host, header: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Header { name, default } => {
                    out.push_str(&header(name).unwrap_or_else(|| default.clone()))
                }
                Part::Property { path, default } => {
                    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
                    match host.property(&segs) {
                        Some(v) if !v.is_empty() => out.push_str(&String::from_utf8_lossy(&v)),
                        _ => out.push_str(default),
                    }
                }
            }
        }
        out
    }
}

fn parse_placeholder(inner: &str) -> Result<Part, String> {
    let (spec, default) = match inner.split_once('|') {
        Some((s, d)) => (s.trim(), d.to_string()),
        None => (inner.trim(), String::new()),
    };
    if let Some(name) = spec.strip_prefix("header:") {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("`${{{inner}}}` names no header"));
        }
        return Ok(Part::Header { name, default });
    }
    if let Some(path) = spec.strip_prefix("property:") {
        let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`${{{inner}}}` has an empty property path segment"));
        }
        return Ok(Part::Property { path, default });
    }
    if GEO_KEYS.contains(&spec) {
        return Ok(Part::Property {
            path: vec![spec.to_string()],
            default,
        });
    }
    Err(format!(
        "unknown placeholder `${{{inner}}}` (use ${{header:NAME}}, ${{property:PATH}} or ${{geo-country}}-style names)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MockHost;

    #[test]
    fn renders_headers_properties_and_defaults() {
        let host = MockHost::default();
        host.set_prop("xds.route_name", "chat");
        host.set_prop("geo-city", "Paris");
        let t = Template::parse(
            "user=${header:X-User} lang=${header:x-lang|en} route=${property:xds.route_name} city=${geo-city} none=[${property:a.b}] $${literal}",
        )
        .unwrap();
        assert_eq!(t.headers().collect::<Vec<_>>(), vec!["x-user", "x-lang"]);
        let header = |n: &str| (n == "x-user").then(|| "ann".to_string());
        assert_eq!(
            t.render(&host, &header),
            "user=ann lang=en route=chat city=Paris none=[] ${literal}"
        );
        assert!(!t.is_static());
        assert!(Template::parse("plain $ text").unwrap().is_static());
    }

    #[test]
    fn bad_placeholders_are_errors() {
        assert!(Template::parse("${nope}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(Template::parse("${header:x")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("${header:}").is_err());
        assert!(Template::parse("${property:a..b}").is_err());
    }
}
