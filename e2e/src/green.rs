//! Alibaba Cloud RPC request signatures (signature version 1.0, HMAC-SHA1), written for the
//! tests independently of the plugin: the mock content security service verifies what the
//! gateway sends with it, and tests sign (and tamper with) calls of their own.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Percent-encoding of the RPC signature: the form encoding of the `url` crate family,
/// then `+` → `%20`, `*` → `%2A`, `%7E` → `~` (the way Alibaba Cloud's SDKs describe it).
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

/// The signature of `params` (without `Signature`) for `method`, keyed with `secret`.
pub fn sign(method: &str, params: &[(String, String)], secret: &str) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    pairs.sort();
    let string_to_sign = format!("{method}&{}&{}", encode("/"), encode(&pairs.join("&")));
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(format!("{secret}&").as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Parses an `application/x-www-form-urlencoded` body into pairs.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A form body of `params`.
pub fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alibaba Cloud's documented example (ECS DescribeRegions, secret `testsecret`).
    #[test]
    fn documented_example() {
        let params: Vec<(String, String)> = [
            ("Version", "2014-05-26"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("Format", "XML"),
            ("Action", "DescribeRegions"),
            ("AccessKeyId", "testid"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert_eq!(encode("a b*~/"), "a%20b%2A~%2F");
        let body = form(&params);
        assert_eq!(parse_form(body.as_bytes()), params);
    }
}
