//! AWS Signature Version 4 for request headers (`Authorization: AWS4-HMAC-SHA256 …`).
//!
//! Pure functions: the caller passes the request as it will go on the wire (method, path and
//! query percent-encoded as sent, the headers to sign, the body) and a clock reading.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The signing algorithm name.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id (`AKIA…`/`ASIA…`).
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials; sent (and signed) as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the token.
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// Path as sent on the wire (percent-encoded), e.g. `/model/a.b-v1%3A0/converse`.
    pub path: &'a str,
    /// Query string as sent, without `?` (empty when none).
    pub query: &'a str,
    /// Headers to sign (names in any case; repeated names allowed). Include `host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Request body.
    pub payload: &'a [u8],
}

/// How the canonical request is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningOptions {
    /// URI-encode the (already encoded) path again, as every AWS service but S3 expects
    /// (`%3A` is canonicalised as `%253A`). When false the path is decoded and encoded once.
    pub double_encode: bool,
    /// Remove `.`/`..` segments and empty segments from the path (all services but S3).
    pub normalize_path: bool,
    /// Also send and sign `x-amz-content-sha256` (S3-style services).
    pub content_sha256_header: bool,
}

impl Default for SigningOptions {
    /// The options for AWS services other than S3 (Bedrock among them).
    fn default() -> Self {
        SigningOptions {
            double_encode: true,
            normalize_path: true,
            content_sha256_header: false,
        }
    }
}

/// A canonical request and the list of headers it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// The canonical request text.
    pub text: String,
    /// Signed header names, lowercase, sorted, `;`-joined.
    pub signed_headers: String,
}

/// Signs `req` (path normalized; encoded a second time when `double_encode`, as every AWS
/// service but S3 expects) and returns the headers to add to it: `x-amz-date`,
/// `x-amz-security-token` (with a session token) and `authorization`.
pub fn sign(
    req: &RequestParts<'_>,
    region: &str,
    service: &str,
    time: SystemTime,
    creds: &Credentials,
    double_encode: bool,
) -> Vec<(String, String)> {
    let opts = SigningOptions {
        double_encode,
        ..SigningOptions::default()
    };
    sign_with(req, region, service, time, creds, &opts)
}

/// [`sign`] with explicit options. Headers of `req` named `authorization`, `x-amz-date`,
/// `x-amz-security-token` or `x-amz-content-sha256` are replaced by the signer's own.
pub fn sign_with(
    req: &RequestParts<'_>,
    region: &str,
    service: &str,
    time: SystemTime,
    creds: &Credentials,
    opts: &SigningOptions,
) -> Vec<(String, String)> {
    let amz_date = amz_date(time);
    let date = amz_date.get(..8).unwrap_or_default();
    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), amz_date.clone())];
    if let Some(token) = &creds.session_token {
        added.push(("x-amz-security-token".into(), token.clone()));
    }
    if opts.content_sha256_header {
        added.push(("x-amz-content-sha256".into(), hex(&sha256(req.payload))));
    }
    let replaced = |name: &str| {
        name.eq_ignore_ascii_case("authorization")
            || added.iter().any(|(n, _)| name.eq_ignore_ascii_case(n))
    };
    let mut headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(name, _)| !replaced(name))
        .copied()
        .collect();
    headers.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let signed_req = RequestParts {
        headers: &headers,
        ..*req
    };
    let canonical = canonical_request(&signed_req, opts);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(&amz_date, &scope, &canonical.text);
    let key = signing_key(&creds.secret_key, date, region, service);
    let signature = hex(&hmac_sha256(&key, sts.as_bytes()));
    added.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            creds.access_key, canonical.signed_headers
        ),
    ));
    added
}

/// The canonical request for `req` (all its headers are signed).
pub fn canonical_request(req: &RequestParts<'_>, opts: &SigningOptions) -> CanonicalRequest {
    // Lowercase names, values trimmed with inner whitespace runs collapsed, repeated names
    // joined with `,` in their order; sorted by name (stable, so values keep their order).
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers {
        let name = name.trim().to_ascii_lowercase();
        let value = collapse_whitespace(value);
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = String::new();
    text.push_str(req.method);
    text.push('\n');
    text.push_str(&canonical_uri(req.path, opts));
    text.push('\n');
    text.push_str(&canonical_query(req.query));
    text.push('\n');
    for (name, value) in &headers {
        text.push_str(name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    text.push('\n');
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    text.push_str(&signed_headers);
    text.push('\n');
    text.push_str(&hex(&sha256(req.payload)));
    CanonicalRequest {
        text,
        signed_headers,
    }
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&sha256(canonical_request.as_bytes()))
    )
}

/// The signing key: HMAC chain over date (`YYYYMMDD`), region, service and `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The canonical URI of a wire path.
pub fn canonical_uri(path: &str, opts: &SigningOptions) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let normalized;
    let path = if opts.normalize_path {
        normalized = normalize_path(path);
        normalized.as_str()
    } else {
        path
    };
    let mut out = String::with_capacity(path.len() + 8);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if opts.double_encode {
            encode_into(segment.as_bytes(), &mut out);
        } else {
            encode_into(&percent_decode(segment), &mut out);
        }
    }
    out
}

/// Removes `.`, `..` and empty segments (RFC 3986 dot-segment removal, repeated slashes
/// collapsed); a trailing slash (or trailing dot segment) stays a trailing slash.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = path.split('/').collect();
    for segment in &raw {
        match *segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = matches!(raw.last(), Some(&"") | Some(&".") | Some(&".."));
    let mut out = String::from("/");
    out.push_str(&segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query: parameters decoded, encoded again, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode_bytes(&percent_decode(name)),
                uri_encode_bytes(&percent_decode(value)),
            )
        })
        .collect();
    params.sort();
    params
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// AWS URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX` (uppercase hex).
pub fn uri_encode(s: &str) -> String {
    uri_encode_bytes(s.as_bytes())
}

fn uri_encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    encode_into(bytes, &mut out);
    out
}

fn encode_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| char::from(*c).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| char::from(*c).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                // Two hex digits: at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Trims and collapses every run of whitespace (spaces, tabs, folded line breaks) to a space.
fn collapse_whitespace(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC (times before 1970 clamp to the epoch).
pub fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA256 (any key length is valid, so the error arm is never taken).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    Hmac::<Sha256>::new_from_slice(key)
        .map(|mac| mac.chain_update(message).finalize().into_bytes().into())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ACCESS: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    /// 2015-08-30T12:36:00Z.
    const SUITE_TIME: u64 = 1_440_938_160;
    /// The suite's options: normalized paths, no double encoding.
    const SUITE: SigningOptions = SigningOptions {
        double_encode: false,
        normalize_path: true,
        content_sha256_header: false,
    };

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key: ACCESS.into(),
            secret_key: SECRET.into(),
            session_token: token.map(str::to_string),
        }
    }

    fn time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SUITE_TIME)
    }

    struct Case<'a> {
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
    }

    impl Case<'_> {
        fn parts(&self) -> RequestParts<'_> {
            RequestParts {
                method: self.method,
                path: self.path,
                query: self.query,
                headers: self.headers,
                payload: self.body,
            }
        }
    }

    fn get<'a>(path: &'a str, query: &'a str, headers: &'a [(&'a str, &'a str)]) -> Case<'a> {
        Case {
            method: "GET",
            path,
            query,
            headers,
            body: b"",
        }
    }

    /// Signs a suite case and checks the canonical request (when given) and the headers.
    fn check(
        name: &str,
        case: Case<'_>,
        opts: SigningOptions,
        token: Option<&str>,
        creq: Option<&str>,
        signed_headers: &str,
        signature: &str,
    ) {
        let added = sign_with(
            &case.parts(),
            "us-east-1",
            "service",
            time(),
            &creds(token),
            &opts,
        );
        let get = |n: &str| {
            added
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("x-amz-date"), "20150830T123600Z", "{name}");
        assert_eq!(
            get("authorization"),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={signed_headers}, Signature={signature}"
            ),
            "{name}"
        );
        if let Some(expected) = creq {
            let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
            headers.extend(
                added
                    .iter()
                    .filter(|(k, _)| k != "authorization")
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let parts = RequestParts {
                headers: &headers,
                ..case.parts()
            };
            assert_eq!(canonical_request(&parts, &opts).text, expected, "{name}");
        }
    }

    #[test]
    fn get_vanilla() {
        check(
            "get-vanilla",
            get("/", "", &[HOST]),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        // get-vanilla-query: an empty query signs like none.
        check(
            "get-vanilla-query",
            get("/", "", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn query_vectors() {
        check(
            "get-vanilla-query-order-key-case",
            get("/", "Param2=value2&Param1=value1", &[HOST]),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        check(
            "get-vanilla-query-unreserved",
            get("/", &format!("{unreserved}={unreserved}"), &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        );
        check(
            "get-vanilla-query-order-encoded",
            get("/", "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", &[HOST]),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;x-amz-date",
            "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
        );
        // get-vanilla-utf8-query: raw UTF-8 in the query is encoded.
        check(
            "get-vanilla-utf8-query",
            get("/", "\u{1234}=bar", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
        check(
            "get-vanilla-empty-query-key",
            get("/", "Param1=value1", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        );
        assert_eq!(canonical_query("b&a=&c=1+2"), "a=&b=&c=1%2B2");
    }

    #[test]
    fn path_vectors() {
        // get-utf8: the same canonical URI from the raw and the percent-encoded path.
        for path in ["/\u{1234}", "/%E1%88%B4", "/%e1%88%b4"] {
            check(
                "get-utf8",
                get(path, "", &[HOST]),
                SUITE,
                None,
                Some(&format!(
                    "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_HASH}"
                )),
                "host;x-amz-date",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            );
        }
        let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        check(
            "get-unreserved",
            get(unreserved, "", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
        for path in ["/example space/", "/example%20space/"] {
            check(
                "get-space-normalized",
                get(path, "", &[HOST]),
                SUITE,
                None,
                None,
                "host;x-amz-date",
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            );
        }
        check(
            "get-slashes-normalized",
            get("//example//", "", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        );
        check(
            "get-slashes-unnormalized",
            get("//example//", "", &[HOST]),
            SigningOptions {
                normalize_path: false,
                ..SUITE
            },
            None,
            None,
            "host;x-amz-date",
            "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5",
        );
        check(
            "get-slash-pointless-dot-normalized",
            get("/./example", "", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        );
        check(
            "get-relative-relative-normalized",
            get("/example1/example2/../..", "", &[HOST]),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn header_vectors() {
        check(
            "get-header-value-trim",
            get(
                "/",
                "",
                &[HOST, ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            ),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
        check(
            "get-header-key-duplicate",
            get(
                "/",
                "",
                &[HOST, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            ),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
        check(
            "get-header-value-order",
            get(
                "/",
                "",
                &[
                    HOST,
                    ("My-Header1", "value4"),
                    ("My-Header1", "value1"),
                    ("My-Header1", "value3"),
                    ("My-Header1", "value2"),
                ],
            ),
            SUITE,
            None,
            None,
            "host;my-header1;x-amz-date",
            "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        );
        check(
            "get-header-value-multiline",
            get("/", "", &[HOST, ("My-Header1", "value1\n  value2\n     value3")]),
            SUITE,
            None,
            Some(&format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;my-header1;x-amz-date",
            "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
        );
    }

    fn post<'a>(query: &'a str, headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Case<'a> {
        Case {
            method: "POST",
            path: "/",
            query,
            headers,
            body,
        }
    }

    #[test]
    fn post_vectors() {
        check(
            "post-vanilla",
            post("", &[HOST], b""),
            SUITE,
            None,
            Some(&format!(
                "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_HASH}"
            )),
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        );
        // post-header-key-case: the suite's `Host` and a caller's `X-AMZ-DATE` are replaced.
        check(
            "post-header-key-case",
            post("", &[HOST, ("X-AMZ-DATE", "20000101T000000Z")], b""),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        );
        check(
            "post-vanilla-query",
            post("Param1=value1", &[HOST], b""),
            SUITE,
            None,
            None,
            "host;x-amz-date",
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        );
        check(
            "post-header-key-sort",
            post("", &[HOST, ("My-Header1", "value1")], b""),
            SUITE,
            None,
            None,
            "host;my-header1;x-amz-date",
            "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        );
        check(
            "post-header-value-case",
            post("", &[HOST, ("My-Header1", "VALUE1")], b""),
            SUITE,
            None,
            None,
            "host;my-header1;x-amz-date",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        );
        let body_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        let with_sha = SigningOptions {
            content_sha256_header: true,
            ..SUITE
        };
        check(
            "post-x-www-form-urlencoded",
            post(
                "",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    HOST,
                    ("Content-Length", "13"),
                ],
                b"Param1=value1",
            ),
            with_sha,
            None,
            Some(&format!(
                "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-content-sha256:{body_hash}\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n{body_hash}"
            )),
            "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        );
        check(
            "post-x-www-form-urlencoded-parameters",
            post(
                "",
                &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    ),
                    HOST,
                    ("Content-Length", "13"),
                ],
                b"Param1=value1",
            ),
            with_sha,
            None,
            None,
            "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422",
        );
    }

    #[test]
    fn session_token_vectors() {
        let sts = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        check(
            "post-sts-header-before",
            post("", &[HOST], b""),
            SUITE,
            Some(sts),
            Some(&format!(
                "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{sts}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY_HASH}"
            )),
            "host;x-amz-date;x-amz-security-token",
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        );
        check(
            "get-vanilla-with-session-token",
            get("/", "", &[HOST]),
            SUITE,
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            None,
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        );
        let added = sign(
            &post("", &[HOST], b"").parts(),
            "us-east-1",
            "service",
            time(),
            &creds(Some(sts)),
            false,
        );
        assert!(added.contains(&("x-amz-security-token".to_string(), sts.to_string())));
    }

    #[test]
    fn double_encoding_of_bedrock_paths() {
        let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
        let double = SigningOptions::default();
        assert_eq!(
            canonical_uri(path, &double),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
        assert_eq!(
            canonical_uri(path, &SUITE),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        // An ARN model id: `/` and `:` encoded once on the wire, twice in the canonical URI.
        assert_eq!(
            canonical_uri("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse-stream", &double),
            "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A1%253Ainference-profile%252Fus.x/converse-stream"
        );
        assert_eq!(canonical_uri("/a/./b/../c//d", &double), "/a/c/d");
        assert_eq!(canonical_uri("", &double), "/");
        assert_eq!(uri_encode("a b:c/~"), "a%20b%3Ac%2F~");
        // Both modes sign differently.
        let headers = [("host", "bedrock-runtime.us-east-1.amazonaws.com")];
        let req = RequestParts {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            payload: b"{}",
        };
        let a = sign_with(&req, "us-east-1", "bedrock", time(), &creds(None), &double);
        let b = sign_with(&req, "us-east-1", "bedrock", time(), &creds(None), &SUITE);
        assert_ne!(a.last(), b.last());
    }

    #[test]
    fn signing_key_matches_the_documented_example() {
        // AWS documentation's derived key for 20150830/us-east-1/iam.
        assert_eq!(
            hex(&signing_key(SECRET, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 (short key) and 6 (key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dates_format() {
        assert_eq!(amz_date(time()), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        // A leap day and the end of a century leap year; a day in the next century.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(amz_date(leap), "20000229T235959Z");
        let later = UNIX_EPOCH + Duration::from_secs(4_102_444_801);
        assert_eq!(amz_date(later), "21000101T000001Z");
        assert_eq!(
            amz_date(UNIX_EPOCH - Duration::from_secs(1)),
            "19700101T000000Z"
        );
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let shown = format!("{:?}", creds(Some("token")));
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("EXAMPLEKEY") && !shown.contains("token"));
    }
}
