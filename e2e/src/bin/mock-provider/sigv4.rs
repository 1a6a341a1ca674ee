//! The receiving side of AWS Signature Version 4, as an AWS service checks a request: the
//! signature is computed again with AWS's own signer (the `aws-sigv4` crate, not the gateway's
//! code) from the request as received, and compared with the one in `Authorization`.
//!
//! What is checked: the credential scope (access key, date, region, service), the list of
//! signed headers (each must be in the request; `host` and `x-amz-date` must be among them),
//! the body hash (in the canonical request, and `x-amz-content-sha256` when sent), the path
//! (normalized and encoded twice, as every AWS service but S3 expects) and the query.
//! The clock window and which session tokens are valid are the caller's business.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use sha2::{Digest, Sha256};

/// The signing algorithm name.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers the signer adds itself; taken from the request, not passed to it as headers.
const SIGNER_HEADERS: [&str; 3] = ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// A request as received.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path and query as they came on the wire (percent-encoded).
    pub path_and_query: &'a str,
    /// Every received header (names lowercase); `host` included.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

impl Received<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The fields of an `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id.
    pub access_key: String,
    /// Scope date (`YYYYMMDD`), region and service.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service.
    pub service: String,
    /// Signed header names as listed (`;`-separated).
    pub signed_headers: String,
    /// The signature (hex).
    pub signature: String,
}

impl Authorization {
    /// Parses the header; `None` when it is not of that shape.
    pub fn parse(value: &str) -> Option<Authorization> {
        let rest = value.trim().strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for field in rest.split(',') {
            match field.trim().split_once('=')? {
                ("Credential", v) => credential = Some(v),
                ("SignedHeaders", v) => signed = Some(v),
                ("Signature", v) => signature = Some(v),
                _ => return None,
            }
        }
        let scope: Vec<&str> = credential?.split('/').collect();
        let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
            return None;
        };
        let auth = Authorization {
            access_key: (*access_key).to_owned(),
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
            signed_headers: signed?.to_owned(),
            signature: signature?.to_owned(),
        };
        let well_formed = !auth.access_key.is_empty()
            && auth.signed_headers.split(';').all(|h| !h.is_empty())
            && auth.signature.len() == 64
            && auth.signature.bytes().all(|c| c.is_ascii_hexdigit());
        well_formed.then_some(auth)
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No SigV4 `Authorization`, a malformed one, or a missing or malformed `x-amz-date`.
    Malformed(String),
    /// The access key is not known.
    UnknownKey(String),
    /// `x-amz-content-sha256` is not the hash of the body.
    BodyHash,
    /// The signature (or its scope or signed header list) is not the one AWS computes.
    Mismatch(String),
}

/// Parses `x-amz-date` (`YYYYMMDD'T'HHMMSS'Z'`, UTC).
pub fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let digits = |from: usize, to: usize| {
        value
            .get(from..to)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
    };
    let two = |from: usize| digits(from, from + 2)?.parse::<u8>().ok();
    let year = digits(0, 4)?.parse::<i32>().ok()?;
    let month = time::Month::try_from(two(4)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, two(6)?).ok()?;
    let clock = time::Time::from_hms(two(9)?, two(11)?, two(13)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .into(),
    )
}

/// Checks `req`'s signature for `service`; `secret_for` maps an access key to its secret.
/// On success, the parsed authorization and the signing time.
pub fn verify(
    req: &Received<'_>,
    service: &str,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<(Authorization, SystemTime), Rejection> {
    let malformed = |why: &str| Rejection::Malformed(why.to_owned());
    let given = req
        .header("authorization")
        .and_then(Authorization::parse)
        .ok_or_else(|| malformed("authorization header"))?;
    let time = req
        .header("x-amz-date")
        .and_then(|d| parse_amz_date(d.trim()))
        .ok_or_else(|| malformed("x-amz-date"))?;
    let listed: Vec<&str> = given.signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !listed.contains(&required) {
            return Err(Rejection::Malformed(format!("{required} is not signed")));
        }
    }
    let secret = secret_for(&given.access_key)
        .ok_or_else(|| Rejection::UnknownKey(given.access_key.clone()))?;
    let body_hash = format!("{:x}", Sha256::digest(req.body));
    let content_sha256 = req.header("x-amz-content-sha256");
    if content_sha256.is_some_and(|h| h.trim() != body_hash) {
        return Err(Rejection::BodyHash);
    }

    // The listed headers as received, but those the signer adds from its own inputs.
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &listed {
        let before = headers.len();
        headers.extend(
            req.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        if headers.len() == before {
            return Err(Rejection::Mismatch(format!(
                "signed header {name} is not in the request"
            )));
        }
    }
    headers.retain(|(n, _)| !SIGNER_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s)));

    let identity = Credentials::new(
        given.access_key.clone(),
        secret,
        req.header("x-amz-security-token").map(str::to_owned),
        None,
        "mock-provider",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the sender listed (the default leaves out e.g. `user-agent`).
    settings.excluded_headers = None;
    if content_sha256.is_some() {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&given.region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| Rejection::Mismatch(format!("signing parameters: {e}")))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.path_and_query,
        headers.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| malformed(&format!("request: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| Rejection::Mismatch(format!("signing: {e}")))?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| Authorization::parse(v))
        .ok_or_else(|| Rejection::Mismatch("the signer wrote no authorization".into()))?;
    if expected.date != given.date
        || expected.region != given.region
        || expected.service != given.service
    {
        return Err(Rejection::Mismatch(format!(
            "credential scope {}/{}/{} is not {}/{}/{}",
            given.date, given.region, given.service, expected.date, expected.region, service
        )));
    }
    if expected.signed_headers != given.signed_headers {
        return Err(Rejection::Mismatch(format!(
            "signed headers {} are not {}",
            given.signed_headers, expected.signed_headers
        )));
    }
    if !expected.signature.eq_ignore_ascii_case(&given.signature) {
        return Err(Rejection::Mismatch("signature".into()));
    }
    Ok((given, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// AWS's published SigV4 test suite: credentials, `post-vanilla` and `post-x-www-form-
    /// urlencoded` (with `x-amz-content-sha256`), signed for service `service` at 20150830T123600Z.
    const ACCESS: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn secret_for(key: &str) -> Option<String> {
        (key == ACCESS).then(|| SECRET.to_owned())
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect()
    }

    fn vanilla(signature: &str) -> Vec<(String, String)> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={signature}"
        );
        headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", &auth),
        ])
    }

    const VANILLA_SIG: &str = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";

    fn check(headers: &[(String, String)], body: &[u8]) -> Result<(), Rejection> {
        let req = Received {
            method: "POST",
            path_and_query: "/",
            headers,
            body,
        };
        verify(&req, "service", secret_for).map(|_| ())
    }

    #[test]
    fn accepts_the_published_vectors() {
        assert_eq!(check(&vanilla(VANILLA_SIG), b""), Ok(()));
        // Unsigned headers added on the way (by Envoy) do not matter.
        let mut more = vanilla(VANILLA_SIG);
        more.push(("x-forwarded-proto".into(), "http".into()));
        more.push(("user-agent".into(), "envoy".into()));
        assert_eq!(check(&more, b""), Ok(()));

        let body = b"Param1=value1";
        let hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        let form = |content_sha: &str, signature: &str| {
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
                 Signature={signature}"
            );
            headers(&[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("Content-Length", "13"),
                ("X-Amz-Content-Sha256", content_sha),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", &auth),
            ])
        };
        let sig = "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b";
        assert_eq!(check(&form(hash, sig), body), Ok(()));
        // Another body under the same header hash, and a header hash of another body.
        assert_eq!(
            check(&form(hash, sig), b"Param1=value2"),
            Err(Rejection::BodyHash)
        );
        let other = format!("{:x}", Sha256::digest(b"Param1=value2"));
        assert_eq!(
            check(&form(&other, sig), b"Param1=value2"),
            Err(Rejection::Mismatch("signature".into()))
        );
    }

    #[test]
    fn rejects_tampered_requests() {
        let mismatch = Err(Rejection::Mismatch("signature".into()));
        // One hex digit of the signature changed.
        let tampered = format!("6{}", &VANILLA_SIG[1..]);
        assert_eq!(check(&vanilla(&tampered), b""), mismatch);
        // The body changed after signing.
        assert_eq!(check(&vanilla(VANILLA_SIG), b"{}"), mismatch);
        // A signed header changed, another time, another path.
        let mut h = vanilla(VANILLA_SIG);
        h[0].1 = "example.amazonaws.com.evil".into();
        assert_eq!(check(&h, b""), mismatch);
        let mut h = vanilla(VANILLA_SIG);
        h[1].1 = "20150830T123601Z".into();
        assert_eq!(check(&h, b""), mismatch);
        let req = Received {
            method: "POST",
            path_and_query: "/other",
            headers: &vanilla(VANILLA_SIG),
            body: b"",
        };
        assert_eq!(verify(&req, "service", secret_for).map(|_| ()), mismatch);
        // Another service, another secret, an unknown key.
        let req = Received {
            method: "POST",
            path_and_query: "/",
            headers: &vanilla(VANILLA_SIG),
            body: b"",
        };
        assert!(matches!(
            verify(&req, "bedrock", secret_for),
            Err(Rejection::Mismatch(m)) if m.starts_with("credential scope")
        ));
        assert_eq!(
            verify(&req, "service", |_| Some("guess".into())).map(|_| ()),
            mismatch
        );
        assert_eq!(
            verify(&req, "service", |_| None).map(|_| ()),
            Err(Rejection::UnknownKey(ACCESS.into()))
        );
        // A session token that was not signed; a signed header dropped on the way.
        let mut h = vanilla(VANILLA_SIG);
        h.push(("x-amz-security-token".into(), "token".into()));
        assert!(
            matches!(check(&h, b""), Err(Rejection::Mismatch(m)) if m.starts_with("signed headers"))
        );
        let h: Vec<_> = vanilla(VANILLA_SIG)
            .into_iter()
            .map(|(n, v)| {
                let v = v.replace("host;x-amz-date", "content-type;host;x-amz-date");
                (n, v)
            })
            .collect();
        assert!(
            matches!(check(&h, b""), Err(Rejection::Mismatch(m)) if m.contains("content-type"))
        );
    }

    #[test]
    fn malformed_authorization() {
        for (name, value) in [
            ("authorization", "Bearer x"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=x"),
            ("x-amz-date", "2015-08-30T12:36:00Z"),
        ] {
            let mut h = vanilla(VANILLA_SIG);
            h.retain(|(n, _)| n != name);
            h.push((name.into(), value.into()));
            assert!(
                matches!(check(&h, b""), Err(Rejection::Malformed(_))),
                "{name}: {value}"
            );
        }
        let unsigned_date = vanilla(VANILLA_SIG)
            .into_iter()
            .map(|(n, v)| (n, v.replace("host;x-amz-date", "host")))
            .collect::<Vec<_>>();
        assert_eq!(
            check(&unsigned_date, b""),
            Err(Rejection::Malformed("x-amz-date is not signed".into()))
        );
        assert_eq!(
            Authorization::parse(&vanilla(VANILLA_SIG)[2].1).map(|a| a.service),
            Some("service".into())
        );
    }

    #[test]
    fn amz_dates() {
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        assert_eq!(
            parse_amz_date("20000229T235959Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_868_799))
        );
        for bad in [
            "",
            "20150830T123600",
            "20151330T123600Z",
            "2015-08-30T12:36:00Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
